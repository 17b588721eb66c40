"""Whisper: openai-whisper checkpoints -> WhisperForConditionalGeneration, tokenizer, generation config.

Every checkpoint is openai-whisper's own ``Whisper`` with tiny dimensions and perturbed weights
(``tests/whisper_fixtures.py``), saved as openai's released files are. The reference side of every
comparison is openai-whisper's code: its model, its ``log_mel_spectrogram``, its greedy
``decode`` and its tokenizer. Never remap's output.

Measured (this machine): encoder output and decoder logits on the same mel, 0 for every variant;
through ``remap verify`` (each side with its own audio front end) <= 1e-6; greedy tokens identical.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from remap import compile_file, compile_text, convert
from remap.verify import verify
from tests.conftest import ROOT
from tests.whisper_fixtures import build, dims, save

RULES = ROOT / "rules" / "whisper.yaml"
VARIANTS: dict[str, dict[str, int]] = {
    "80-multilingual": dims(80, "multilingual"),   # tiny ... large-v2: 99 languages
    "80-english": dims(80, "english"),             # the .en models
    "128-multilingual": dims(128, "v3"),           # large-v3: 128 mel bins, 100 languages
    "128-english": dims(128, "english"),
}
# Weight seeds whose greedy decoding, on the test's noise, gives more than one distinct token (random
# models often repeat one token): a comparison of such sequences can tell a wrong order or step apart.
SEEDS = {"80-multilingual": 0, "80-english": 3, "128-multilingual": 1, "128-english": 5}
warnings.filterwarnings("ignore", message=".*forced_decoder_ids.*")


class Converted:
    def __init__(self, root: Path, name: str) -> None:
        self.model = build(VARIANTS[name], seed=SEEDS[name])
        self.ckpt, self.out = root / f"{name}.pt", root / name
        save(self.ckpt, self.model)
        convert(compile_file(RULES), self.ckpt, self.out)

    def hf(self) -> Any:
        from transformers import WhisperForConditionalGeneration

        model, info = WhisperForConditionalGeneration.from_pretrained(self.out, output_loading_info=True)
        assert not any(info.values()), info
        return model.eval()


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Converted]:
    root = tmp_path_factory.mktemp("whisper")
    return {name: Converted(root, name) for name in VARIANTS}


def mel_of(model: Any, seed: int = 0) -> torch.Tensor:
    """whisper's own log-mel of one second of seeded noise, padded to the model's window."""
    from whisper.audio import log_mel_spectrogram, pad_or_trim

    wave = 0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(seed))
    return log_mel_spectrogram(pad_or_trim(wave, 320 * model.dims.n_audio_ctx), model.dims.n_mels)


def whisper_tokenizer(n_vocab: int, **kwargs: Any) -> Any:
    from whisper.tokenizer import get_tokenizer

    multilingual = n_vocab >= 51865
    return get_tokenizer(multilingual, num_languages=n_vocab - 51765 - int(multilingual), **kwargs)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_encoder_and_decoder_match_openai_whisper(name: str, converted: dict[str, Converted]) -> None:
    c = converted[name]
    hf, mel = c.hf(), mel_of(c.model)
    tokens = torch.tensor([[*whisper_tokenizer(c.model.dims.n_vocab).sot_sequence_including_notimestamps,
                            *whisper_tokenizer(c.model.dims.n_vocab).encode(" hello world, again")]])
    with torch.no_grad():
        want_enc = c.model.encoder(mel[None])
        got_enc = hf.model.encoder(mel[None]).last_hidden_state
        want_logits = c.model.decoder(tokens, want_enc)
        got_logits = hf(input_features=mel[None], decoder_input_ids=tokens).logits
    diffs = {"encoder": float((want_enc - got_enc).abs().max()), "logits": float((want_logits - got_logits).abs().max())}
    assert max(diffs.values()) <= 1e-5, diffs
    assert float(want_logits.std()) > 0.1  # the comparison is not between two near-constant outputs


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_greedy_decoding_matches_openai_whisper(name: str, converted: dict[str, Converted]) -> None:
    """whisper's decode (temperature 0, no timestamps, its default suppression) vs generate on the same mel."""
    from whisper.decoding import DecodingOptions, decode

    c = converted[name]
    hf, mel = c.hf(), mel_of(c.model)
    sample_len = c.model.dims.n_text_ctx // 2
    options = DecodingOptions(temperature=0.0, without_timestamps=True, fp16=False,
                              language=None if c.model.is_multilingual else "en")
    want = decode(c.model, mel, options)
    got = hf.generate(mel[None], max_new_tokens=sample_len)[0].tolist()
    eot = whisper_tokenizer(c.model.dims.n_vocab).eot
    assert got[:got.index(eot) if eot in got else None] == want.tokens
    assert len(set(want.tokens)) > 1  # more than one distinct token: the test can tell orders apart
    if c.model.is_multilingual:  # the language generate detected is whisper's
        lang = hf.detect_language(mel[None]).item()
        assert lang == whisper_tokenizer(c.model.dims.n_vocab).to_language_token(want.language)


@pytest.mark.parametrize("language, task", [("de", "translate")])
def test_language_and_task_tokens_match_openai_whisper(language: str, task: str,
                                                        converted: dict[str, Converted]) -> None:
    """generate(language=, task=) reads lang_to_id and task_to_id; whisper decodes with the same choice."""
    from whisper.decoding import DecodingOptions, decode

    c = converted["128-multilingual"]
    hf, mel = c.hf(), mel_of(c.model, seed=1)
    want = decode(c.model, mel, DecodingOptions(temperature=0.0, without_timestamps=True, fp16=False,
                                                language=language, task=task))
    got = hf.generate(mel[None], max_new_tokens=c.model.dims.n_text_ctx // 2, language=language, task=task)
    eot = whisper_tokenizer(c.model.dims.n_vocab).eot
    got_tokens = got[0].tolist()
    assert got_tokens[:got_tokens.index(eot) if eot in got_tokens else None] == want.tokens
    assert len(set(want.tokens)) > 1


@pytest.mark.parametrize("name", ["80-multilingual", "128-english"])  # and 80-english in float16, below
def test_remap_verify_passes(name: str, converted: dict[str, Converted]) -> None:
    """The adapter: whisper's front end, model and decode vs the folder's feature extractor, model and generate.

    Each side computes its own log-mel (whisper's torch STFT, the folder's WhisperFeatureExtractor in
    numpy): the mels differ by ~6e-8, the encoder outputs by ~1e-6.
    """
    c = converted[name]
    report = verify(compile_file(RULES), c.ckpt, c.out)
    assert set(report.diffs) == {"encoder", "logits", "tokens"} and "tokens" in report.exact
    assert report.diffs["tokens"] == 0 and report.worst <= 1e-5, report.diffs


@pytest.mark.parametrize("name", ["80-multilingual", "80-english", "128-multilingual"])
def test_tokenizer_matches_openai_whisper(name: str, converted: dict[str, Converted]) -> None:
    """Same ids for text and for every special token, in whisper's order; the same decode."""
    from transformers import AutoTokenizer

    c = converted[name]
    tokenizer = AutoTokenizer.from_pretrained(c.out)
    reference = whisper_tokenizer(c.model.dims.n_vocab)
    assert type(tokenizer).__name__ == "WhisperTokenizer" and len(tokenizer) == c.model.dims.n_vocab
    text = "Hello world, it's remap: 1234 tokens! Ünïcödé 日本語 ♪♪ [MUSIC]  two  spaces"
    assert tokenizer.encode(text, add_special_tokens=False) == reference.encode(text)
    specials = sorted(reference.encoding.special_tokens_set, key=reference.encoding.encode_single_token)
    assert tokenizer.convert_tokens_to_ids(specials) == [reference.encoding.encode_single_token(s) for s in specials]
    ids = [*reference.sot_sequence_including_notimestamps, *reference.encode(text), reference.eot]
    assert tokenizer.decode(ids) == reference.decode(ids)
    assert tokenizer.decode(ids, skip_special_tokens=True) == reference.encoding.decode(reference.encode(text))
    timed = [reference.sot, reference.timestamp_begin, *reference.encode(" hi"), reference.timestamp_begin + 7]
    assert tokenizer.decode(timed, decode_with_timestamps=True) == reference.decode_with_timestamps(timed)


@pytest.mark.parametrize("name", ["80-multilingual", "80-english", "128-multilingual"])
def test_generation_config_is_whispers_decoding_setup(name: str, converted: dict[str, Converted]) -> None:
    """Every id comes from whisper's own tokenizer and DecodingTask, computed independently of the rule file."""
    from whisper.decoding import DecodingOptions, DecodingTask

    c = converted[name]
    config = json.loads((c.out / "generation_config.json").read_text())
    tok = whisper_tokenizer(c.model.dims.n_vocab)
    task = DecodingTask(c.model, DecodingOptions(without_timestamps=True, fp16=False,
                                                 language=None if c.model.is_multilingual else "en"))
    assert config["suppress_tokens"] == list(task._get_suppress_tokens())
    assert config["begin_suppress_tokens"] == [*tok.encode(" "), tok.eot]  # SuppressBlank
    assert (config["decoder_start_token_id"], config["eos_token_id"], config["pad_token_id"]) == (
        tok.sot, tok.eot, tok.eot)
    assert (config["no_timestamps_token_id"], config["prev_sot_token_id"]) == (tok.no_timestamps, tok.sot_prev)
    assert config["max_length"] == c.model.dims.n_text_ctx and config["is_multilingual"] is c.model.is_multilingual
    assert config["alignment_heads"] == c.model.alignment_heads.to_dense().nonzero().tolist()
    if c.model.is_multilingual:
        assert config["lang_to_id"] == {f"<|{code}|>": token for code, token in
                                        zip(tok.all_language_codes, tok.all_language_tokens, strict=True)}
        assert config["task_to_id"] == {"transcribe": tok.transcribe, "translate": tok.translate}
        assert config["forced_decoder_ids"] == [[1, None], [2, tok.transcribe]]
    else:
        assert "lang_to_id" not in config and "task_to_id" not in config
        assert config["forced_decoder_ids"] == [[1, tok.no_timestamps]]
    model_config = json.loads((c.out / "config.json").read_text())
    assert model_config["suppress_tokens"] == config["suppress_tokens"]
    assert model_config["begin_suppress_tokens"] == config["begin_suppress_tokens"]
    pre = json.loads((c.out / "preprocessor_config.json").read_text())
    assert (pre["feature_size"], pre["nb_max_frames"]) == (c.model.dims.n_mels, 2 * c.model.dims.n_audio_ctx)


def test_every_key_is_accounted_for_and_proj_out_is_tied(converted: dict[str, Converted]) -> None:
    from safetensors import safe_open

    from remap import prepare

    c = converted["80-multilingual"]
    plan = prepare(compile_file(RULES), c.ckpt).plan
    assert (len(plan.drops), len(plan.inits), plan.problems) == (0, 0, ())
    assert {e.source for e in plan.entries} == set(c.model.state_dict())
    with safe_open(c.out / "model.safetensors", "pt") as f:
        assert torch.equal(f.get_tensor("proj_out.weight"), c.model.decoder.token_embedding.weight)
    hf = c.hf()
    assert hf.proj_out.weight.data_ptr() == hf.model.decoder.embed_tokens.weight.data_ptr()


def test_a_float16_checkpoint_as_released(cli, tmp_path: Path) -> None:
    """openai's .pt files hold float16 weights: they stay float16, and verify computes in float32 on both sides."""
    from safetensors import safe_open

    model = build(VARIANTS["80-english"], seed=7)
    ckpt, out = tmp_path / "half.pt", tmp_path / "out"
    save(ckpt, model.half())
    result = cli("apply", RULES, ckpt, "-o", out)
    assert result.code == 0, result.err
    with safe_open(out / "model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    report = verify(compile_file(RULES), ckpt, out)
    assert report.diffs["tokens"] == 0 and report.worst <= 1e-5, report.diffs


def test_parity_check_catches_a_same_shape_mix_up(converted: dict[str, Converted], tmp_path: Path) -> None:
    """Swapping the value and out projections keeps every shape; parity against whisper must fail."""
    from transformers import WhisperForConditionalGeneration

    text = RULES.read_text()
    swapped = (text.replace("self_attn.v_proj.{p}", "TMP").replace("self_attn.out_proj.{p}", "self_attn.v_proj.{p}")
               .replace("TMP", "self_attn.out_proj.{p}"))
    assert swapped != text
    c = converted["80-english"]
    convert(compile_text(swapped, str(tmp_path / "whisper.yaml")), c.ckpt, tmp_path / "out")
    hf, mel = WhisperForConditionalGeneration.from_pretrained(tmp_path / "out").eval(), mel_of(c.model)
    with torch.no_grad():
        diff = float((c.model.encoder(mel[None]) - hf.model.encoder(mel[None]).last_hidden_state).abs().max())
    assert diff > 1e-2


@pytest.mark.parametrize("change, message", [
    ({"n_text_state": 32}, "WhisperForConditionalGeneration has one width (d_model) for the encoder and the "
                           "decoder; n_audio_state and n_text_state differ"),
    ({"n_vocab": 51000}, "n_vocab must be 51864 (English-only) or 51865 to 51866 (multilingual, 99 or 100 "
                         "languages), as whisper's tokenizer lays out its special tokens"),
    ({"n_audio_ctx": 60}, "the feature extractor pads audio to whole seconds (50 encoder frames each); n_audio_ctx "
                          "must be a multiple of 50 (1500 = 30 s in every released model)"),
    ({"n_mels": None}, "dims must hold all ten fields of whisper's ModelDimensions"),
])
def test_what_transformers_cannot_express_is_refused(change: dict[str, Any], message: str, cli,
                                                     tmp_path: Path) -> None:
    """Checked on the dims alone: the refusal comes before shapes are compared."""
    model = build(VARIANTS["80-english"], seed=3)
    ckpt = tmp_path / "bad.pt"
    model_dims = {k: v for k, v in {**VARIANTS["80-english"], **change}.items() if v is not None}
    torch.save({"dims": model_dims, "model_state_dict": model.state_dict()}, ckpt)
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out")
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert f"unsupported source: {message}" in result.err
    assert not (tmp_path / "out").exists()
