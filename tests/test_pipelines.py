"""transformers' pipelines on remap's output folders, offline, with nothing added by hand.

- ``automatic-speech-recognition`` runs on a Whisper folder as it is (model, generation config,
  feature extractor and tokenizer all come from the folder), and its text is openai-whisper's own
  greedy transcription of the same audio.
- ``automatic-speech-recognition`` runs on a wav2vec 2.0 CTC folder as it is, with the tokenizer
  built from the checkpoint's fairseq dictionary, and its text is the greedy CTC decoding of the
  reference model's (s3prl's encoder and fairseq's projection) logits, spelled with that dictionary.
- ``feature-extraction`` is text-only in transformers: it loads a tokenizer and feeds ``input_ids``.
  On an audio encoder's folder it cannot run as it is (no rule file can change that; a tokenizer
  would not help). Handing it the folder's own feature extractor in the tokenizer's place makes it
  run, and its features are then the original implementation's (s3prl's) for every family.

Audio files are read with the ``wave`` module: the pipeline reads a file name only through ffmpeg,
which is not installed here, so the samples are passed as ``{"raw": ..., "sampling_rate": 16000}``.
"""

from __future__ import annotations

import re
import warnings
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from remap import compile_file, convert
from remap.io import select_source
from remap.io.readers import read_checkpoint
from remap.verify import adapter
from tests.conftest import ROOT

warnings.filterwarnings("ignore", message=r".*weight_norm.*is deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message=".*forced_decoder_ids.*")


def write_wav(path: Path, seconds: float = 1.0, seed: int = 0) -> Path:
    samples = (0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds)) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes(samples.tobytes())
    return path


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as f:
        return np.frombuffer(f.readframes(-1), dtype="<i2").astype(np.float32) / 32768.0


# --- Whisper: automatic-speech-recognition --------------------------------------------------------

# weight seeds whose greedy transcription of the test audio has more than one distinct token
WHISPER_SEEDS = {"multilingual": 0, "english": 3}


@pytest.fixture(scope="module")
def whisper_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Path]]:
    """A tiny openai-whisper model per vocabulary, converted with rules/whisper.yaml: (model, folder)."""
    from tests.whisper_fixtures import dims, write

    root = tmp_path_factory.mktemp("whisper")
    made = {}
    for vocab, seed in WHISPER_SEEDS.items():
        ckpt, out = root / f"{vocab}.pt", root / vocab
        model = write(ckpt, dims(80, vocab), seed=seed)
        convert(compile_file(ROOT / "rules" / "whisper.yaml"), ckpt, out)
        made[vocab] = (model, out)
    return made


@pytest.mark.parametrize("vocab", sorted(WHISPER_SEEDS))
def test_whisper_transcribes_a_wav_file_offline(vocab: str, whisper_folders: dict[str, tuple[Any, Path]],
                                                tmp_path: Path) -> None:
    from transformers import pipeline
    from whisper.audio import log_mel_spectrogram, pad_or_trim
    from whisper.decoding import DecodingOptions, decode
    from whisper.tokenizer import get_tokenizer

    model, out = whisper_folders[vocab]
    audio = read_wav(write_wav(tmp_path / "speech.wav"))
    sample_len = model.dims.n_text_ctx // 2
    asr = pipeline("automatic-speech-recognition", model=str(out))
    inputs = asr.feature_extractor(audio, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)

    # As it is: the pipeline's own defaults (beam search with 5 beams, "as openai's whisper", up to the
    # generation config's max_length; language detection for the multilingual vocabulary)
    text = asr({"raw": audio, "sampling_rate": 16000})["text"]
    assert isinstance(text, str) and text.strip()

    # Greedy, as whisper's decode() defaults to: the same as the folder's model, generate and tokenizer by
    # hand, and as openai-whisper's own transcription of the same samples
    greedy = asr({"raw": audio, "sampling_rate": 16000},
                 generate_kwargs={"num_beams": 1, "max_new_tokens": sample_len})["text"]
    generated = asr.model.generate(inputs.input_features, attention_mask=inputs.attention_mask,
                                   max_new_tokens=sample_len)
    assert greedy == asr.tokenizer.decode(generated[0], skip_special_tokens=True)
    mel = log_mel_spectrogram(pad_or_trim(torch.from_numpy(audio), 320 * model.dims.n_audio_ctx), model.dims.n_mels)
    result = decode(model, mel, DecodingOptions(temperature=0.0, without_timestamps=True, fp16=False,
                                                language=None if model.is_multilingual else "en"))
    tokenizer = get_tokenizer(model.is_multilingual, num_languages=model.num_languages)
    assert greedy == tokenizer.decode(result.tokens) and len(set(result.tokens)) > 1


def test_whisper_pipeline_returns_timestamp_chunks(whisper_folders: dict[str, tuple[Any, Path]],
                                                   tmp_path: Path) -> None:
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(whisper_folders["multilingual"][1]))
    result = asr({"raw": read_wav(write_wav(tmp_path / "speech.wav")), "sampling_rate": 16000},
                 return_timestamps=True, generate_kwargs={"num_beams": 1})
    assert result["chunks"] and all(None not in chunk["timestamp"] for chunk in result["chunks"]), result


# --- wav2vec 2.0 CTC: automatic-speech-recognition ----------------------------------------------

def ctc_greedy_text(logits: torch.Tensor, symbols: list[str]) -> str:
    """fairseq's greedy CTC decoding with post_process 'letter': collapse repeats, drop the blank
    (index 0) and the other specials, spell '|' as a space."""
    ids = torch.unique_consecutive(logits.argmax(-1)).tolist()
    letters = "".join(symbols[i] for i in ids if i >= 4)
    return " ".join(letters.replace("|", " ").split())


def letters_only(text: str) -> str:
    """The pipeline's text without special tokens: transformers' CTC decoding keeps <unk> and </s>
    (they can be words), which an untrained model emits and fairseq's letter post-processing drops."""
    return " ".join(re.sub(r"<unk>|</s>|<s>", "", text).split())


def test_wav2vec2_ctc_transcribes_a_wav_file_offline(tmp_path: Path) -> None:
    from transformers import pipeline

    from tests.test_family_wav2vec2 import LETTERS, save_finetuned

    ckpt, out = tmp_path / "finetuned.pt", tmp_path / "out"
    save_finetuned(ckpt, "base")
    rules = compile_file(ROOT / "rules" / "wav2vec2-ctc.yaml")
    convert(rules, ckpt, out)
    audio = read_wav(write_wav(tmp_path / "speech.wav"))
    source = select_source(read_checkpoint(ckpt), rules.source)
    logits = adapter(rules).reference(source, torch.from_numpy(audio)[None])["logits"][0]
    want = ctc_greedy_text(logits, LETTERS)
    assert len(set(want.replace(" ", ""))) > 1, want  # a transcription with something to get wrong
    asr = pipeline("automatic-speech-recognition", model=str(out))
    assert type(asr.tokenizer).__name__ == "Wav2Vec2CTCTokenizer"
    assert letters_only(asr({"raw": audio, "sampling_rate": 16000})["text"]) == want


# --- encoder-only families: feature-extraction ----------------------------------------------------

def _distilhubert(path: Path) -> None:
    from tests.conftest import TINY
    from tests.reference import build_distiller, save_s3prl_checkpoint

    save_s3prl_checkpoint(build_distiller(TINY), TINY, path)


def _hubert(path: Path) -> None:
    import tests.test_family_hubert as hubert

    config = hubert.VARIANTS["large"]
    hubert.save("fairseq", path, hubert.build_s3prl(config, normalize=True), config, normalize=True)


def _wav2vec2(path: Path) -> None:
    import tests.test_family_wav2vec2 as wav2vec2

    wav2vec2.write("fairseq", "base", path)


def _wavlm(path: Path) -> None:
    import tests.test_family_wavlm as wavlm

    wavlm.save_official(path, wavlm.build_wavlm(wavlm.BASE), wavlm.BASE, "official-dict")


def _data2vec_audio(path: Path) -> None:
    import tests.test_family_data2vec_audio as data2vec

    data2vec.save(path, "fairseq", data2vec.build(data2vec.TINY), data2vec.TINY)


def _wav2vec2_conformer(path: Path) -> None:
    from tests.conformer_fixtures import TINY, write

    write("fairseq", {**TINY, "pos_enc_type": "rope"}, path)


FAMILIES: dict[str, Callable[[Path], None]] = {
    "distilhubert": _distilhubert, "hubert": _hubert, "wav2vec2": _wav2vec2, "wavlm": _wavlm,
    "data2vec-audio": _data2vec_audio, "wav2vec2-conformer": _wav2vec2_conformer,
}


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Each family's tiny checkpoint, converted with its shipped rule file: (checkpoint, folder)."""
    root = tmp_path_factory.mktemp("encoders")
    made = {}
    for name, writer in FAMILIES.items():
        ckpt, out = root / f"{name}.ckpt", root / name
        writer(ckpt)
        convert(compile_file(ROOT / "rules" / f"{name}.yaml"), ckpt, out)
        made[name] = (ckpt, out)
    return made


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_feature_extraction_with_the_folders_feature_extractor_gives_the_originals_features(
        family: str, encoders: dict[str, tuple[Path, Path]], tmp_path: Path) -> None:
    from transformers import AutoFeatureExtractor, pipeline

    ckpt, out = encoders[family]
    audio = read_wav(write_wav(tmp_path / "speech.wav", seconds=0.5, seed=1))
    feature_extractor = AutoFeatureExtractor.from_pretrained(out)
    extract = pipeline("feature-extraction", model=str(out), tokenizer=feature_extractor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "pass sampling_rate": the pipeline calls it as it calls a tokenizer
        features = torch.tensor(np.array(extract(audio)))[0]

    # s3prl's model (the rule file's verify adapter) on the same preprocessed input: the folder's
    # feature extractor normalises the waveform exactly when the original task did
    rules = compile_file(ROOT / "rules" / f"{family}.yaml")
    inputs = feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        want = adapter(rules).reference(select_source(read_checkpoint(ckpt), rules.source), inputs)["final"][0]
    assert features.shape == want.shape
    assert float((features - want).abs().max()) <= 1e-5
    assert float(want.std()) > 0.1


@pytest.mark.xfail(strict=True, raises=(TypeError, ValueError, OSError),
                   reason="transformers' FeatureExtractionPipeline is text-only: it loads a tokenizer "
                          "(AutoTokenizer) and feeds input_ids; an audio encoder's folder has no tokenizer, and a "
                          "tokenizer would not make the pipeline feed audio")
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_feature_extraction_pipeline_as_it_is(family: str, encoders: dict[str, tuple[Path, Path]]) -> None:
    from transformers import pipeline

    extract: Any = pipeline("feature-extraction", model=str(encoders[family][1]))
    assert np.array(extract(np.zeros(8000, dtype=np.float32))).ndim == 3
