"""Whisper's reference: openai-whisper's own ``Whisper`` model, audio front end and greedy decoding.

``reference`` builds ``whisper.model.Whisper(ModelDimensions(**dims))`` from the ``dims`` and the
state dict remap read (nothing from the file is executed), computes the log-mel spectrogram with
whisper's ``log_mel_spectrogram`` on the 16 kHz wave padded or trimmed to the model's window
(``2 * n_audio_ctx`` frames: 30 s for every released model), and returns:

- ``encoder``: the audio encoder's output;
- ``logits``: the decoder's logits for a fixed token prefix (whisper's initial tokens for English
  transcription without timestamps, then the text " the quick brown fox jumps");
- ``tokens``: whisper's greedy decoding (``whisper.decoding.decode`` with ``temperature=0`` and
  ``without_timestamps=True``; the language is detected for multilingual models), cut at
  ``<|endoftext|>`` and padded with it to ``n_text_ctx // 2`` tokens. Integer outputs must match
  exactly.

``converted`` computes the same three from the transformers model: the log-mel from the output
folder's own ``WhisperFeatureExtractor`` (so its settings are checked too), the encoder, the
decoder on the same prefix, and ``generate``. Both sides compute in float32, as whisper does on a
CPU (its ``load_model`` copies a float16 checkpoint into float32 parameters).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ...errors import SourceError
from ...io.source import Source

SAMPLE_RATE = 16000
HOP = 160  # whisper/audio.py HOP_LENGTH: mel frames are 10 ms apart, two per encoder frame
FIELDS = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer", "n_vocab", "n_text_ctx",
          "n_text_state", "n_text_head", "n_text_layer")
TEXT = " the quick brown fox jumps"


def dimensions(config: Mapping[str, Any], where: str = "checkpoint") -> dict[str, int]:
    """The ten fields of whisper's ModelDimensions, each a positive integer, from the file's ``dims``."""
    missing = [name for name in FIELDS if name not in config]
    if missing:
        raise SourceError(f"dims lacks {', '.join(missing)} (whisper's ModelDimensions needs all ten fields)", where)
    bad = [name for name in FIELDS if type(config[name]) is not int or config[name] <= 0]
    if bad:
        raise SourceError(f"dims field '{bad[0]}' must be a positive integer, got {config[bad[0]]!r}", where)
    return {name: int(config[name]) for name in FIELDS}


def _tokenizer(n_vocab: int) -> Any:
    """whisper's tokenizer for a vocabulary size, as whisper's decoding builds it."""
    from whisper.tokenizer import get_tokenizer

    multilingual = n_vocab >= 51865
    return get_tokenizer(multilingual, num_languages=n_vocab - 51765 - int(multilingual),
                         language="en" if multilingual else None, task="transcribe" if multilingual else None)


def prefix(n_vocab: int) -> torch.Tensor:
    """The fixed decoder input both sides get: whisper's initial tokens, then a few words of text."""
    tokenizer = _tokenizer(n_vocab)
    return torch.tensor([[*tokenizer.sot_sequence_including_notimestamps, *tokenizer.encode(TEXT)]])


def window(n_audio_ctx: int) -> int:
    """Samples in the model's input window (whisper's N_SAMPLES for n_audio_ctx 1500)."""
    return 2 * n_audio_ctx * HOP


def padded(tokens: list[int], eot: int, length: int) -> torch.Tensor:
    """Tokens up to the first ``eot``, padded with it to ``length`` (as whisper pads finished sequences)."""
    kept = tokens[:tokens.index(eot)] if eot in tokens else tokens
    kept = kept[:length]
    return torch.tensor([kept + [eot] * (length - len(kept))])


def expected_shapes(dims: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
    """The shapes that fix how much memory whisper's model for ``dims`` takes, and the blocks it has."""
    state, text = dims["n_audio_state"], dims["n_text_state"]
    return {"encoder.conv1.weight": (state, dims["n_mels"], 3),
            "encoder.positional_embedding": (dims["n_audio_ctx"], state),
            f"encoder.blocks.{dims['n_audio_layer'] - 1}.mlp.0.weight": (4 * state, state),
            "decoder.token_embedding.weight": (dims["n_vocab"], text),
            "decoder.positional_embedding": (dims["n_text_ctx"], text),
            f"decoder.blocks.{dims['n_text_layer'] - 1}.mlp.0.weight": (4 * text, text)}


def build(source: Source) -> Any:
    """openai-whisper's model for the checkpoint, loaded strictly, as ``whisper.load_model`` does.

    ``dims`` is checked against the file's tensors first (widths, vocabulary, contexts, depth), so
    a ``dims`` that does not fit the weights is refused before anything is allocated.
    """
    from whisper.model import ModelDimensions, Whisper

    dims = dimensions(source.config, source.name)
    for key, shape in expected_shapes(dims).items():
        found = tuple(source.tensors[key].info.shape) if key in source.tensors else None
        if found != shape:
            raise SourceError(f"dims {dims} does not fit the weights: '{key}' is {list(found) if found else 'absent'}"
                              f", not {list(shape)}", source.name)
    for part, layers in (("encoder", dims["n_audio_layer"]), ("decoder", dims["n_text_layer"])):
        if f"{part}.blocks.{layers}.mlp.0.weight" in source.tensors:
            raise SourceError(f"the file has more {part} blocks than dims says ({layers})", source.name)
    model = Whisper(ModelDimensions(**dims))
    model.load_state_dict({key: ref.load() for key, ref in source.tensors.items()})
    return model.float().eval()


@torch.no_grad()
def outputs(model: Any, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    """Encoder output, logits for the prefix and greedy tokens from whisper's own code."""
    from whisper.audio import log_mel_spectrogram, pad_or_trim
    from whisper.decoding import DecodingOptions, decode

    n_vocab, n_ctx = model.dims.n_vocab, model.dims.n_text_ctx
    mel = log_mel_spectrogram(pad_or_trim(wave[0].float(), window(model.dims.n_audio_ctx)), model.dims.n_mels)
    encoded = model.encoder(mel[None])
    logits = model.decoder(prefix(n_vocab), encoded)
    options = DecodingOptions(temperature=0.0, without_timestamps=True, fp16=False,
                              language=None if model.is_multilingual else "en")
    result = decode(model, mel, options)
    tokens = padded(list(result.tokens), _tokenizer(n_vocab).eot, n_ctx // 2)
    return {"encoder": encoded, "logits": logits, "tokens": tokens}


def reference(source: Source, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    return outputs(build(source), wave)


def feature_extractor(model: Any) -> Any:
    """The output folder's WhisperFeatureExtractor; one built from the model's config if there is no folder."""
    from transformers import WhisperFeatureExtractor

    folder = Path(str(getattr(model, "name_or_path", "") or ""))
    if (folder / "preprocessor_config.json").is_file():
        return WhisperFeatureExtractor.from_pretrained(folder)
    ctx = int(model.config.max_source_positions)
    return WhisperFeatureExtractor(  # type: ignore[no-untyped-call]
        feature_size=model.config.num_mel_bins, chunk_length=window(ctx) // SAMPLE_RATE)


@torch.no_grad()
def converted(model: Any, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same three outputs from WhisperForConditionalGeneration, its feature extractor and ``generate``."""
    model = model.float().eval()
    features = feature_extractor(model)(wave[0].float().numpy(), sampling_rate=SAMPLE_RATE,
                                        return_tensors="pt").input_features
    n_vocab, n_ctx = int(model.config.vocab_size), int(model.config.max_target_positions)
    encoded = model.model.encoder(features).last_hidden_state
    logits = model(encoder_outputs=(encoded,), decoder_input_ids=prefix(n_vocab)).logits
    generated = model.generate(features, max_new_tokens=n_ctx // 2)
    tokens = padded([int(t) for t in generated[0]], _tokenizer(n_vocab).eot, n_ctx // 2)
    return {"encoder": encoded, "logits": logits, "tokens": tokens}
