"""`remap verify`: per-layer parity against the original implementation, with one-line failures."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import EXAMPLE, RULES, TINY
from tests.layouts import swap_layer_norm_targets


def test_verify_reports_parity_per_layer(cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert cli("apply", RULES, EXAMPLE, "-o", out).code == 0
    result = cli("verify", RULES, EXAMPLE, out)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["layer1", "layer2", "final"]
    assert lines[-1] == "PARITY OK: worst 0 (tolerance 0.0001); transformers load report clean"


def test_verify_fails_on_a_wrong_conversion(cli, tmp_path: Path) -> None:
    swapped = tmp_path / "swapped.yaml"
    swapped.write_text(swap_layer_norm_targets(RULES.read_text())
                       .replace("encoder.layers.1.layer_norm.weight", "encoder.layers.1.final_layer_norm.weight")
                       .replace("encoder.layers.0.final_layer_norm.weight\n", "encoder.layers.0.layer_norm.weight\n"))
    out = tmp_path / "out"
    assert cli("apply", swapped, EXAMPLE, "-o", out).code == 0
    result = cli("verify", RULES, EXAMPLE, out)
    assert result.code == 1
    assert result.out.splitlines()[-1].startswith("PARITY FAILED: worst ")


def test_verify_reads_a_wav_file(cli, tmp_path: Path) -> None:
    audio = tmp_path / "a.wav"
    with wave.open(str(audio), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes((np.sin(np.arange(8000) / 10) * 8000).astype("<i2").tobytes())
    out = tmp_path / "out"
    assert cli("apply", RULES, EXAMPLE, "-o", out).code == 0
    result = cli("verify", RULES, EXAMPLE, out, "--audio", audio)
    assert result.code == 0 and result.out.splitlines()[-1].startswith("PARITY OK")
    stereo = tmp_path / "b.wav"
    with wave.open(str(stereo), "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(44100)
        f.writeframes(b"\0" * 400)
    result = cli("verify", RULES, EXAMPLE, out, "--audio", stereo)
    assert result.err == f"error: {stereo}: need 16 kHz mono 16-bit PCM; this is 44100 Hz, 2 channel(s), 16-bit\n"


def test_verify_notices_a_folder_from_another_checkpoint(cli, make_ckpt, tmp_path: Path) -> None:
    other, _ = make_ckpt({**TINY, "encoder_embed_dim": 48, "encoder_attention_heads": 4})
    out = tmp_path / "out"
    assert cli("apply", RULES, other, "-o", out).code == 0
    result = cli("verify", RULES, EXAMPLE, out)
    assert result.err == (f"error: {out}: 'layer1' is [1, 49, 32] in the original but [1, 399, 48] in the converted "
                          "model; was this folder converted from distilhubert-tiny.ckpt?\n")


def test_verify_needs_an_adapter(cli, tmp_path: Path) -> None:
    rules = tmp_path / "mystery.yaml"
    rules.write_text(RULES.read_text().replace("name: distilhubert", "name: mystery-model"))
    result = cli("verify", rules, EXAMPLE, tmp_path)
    assert result.err == (f"error: {rules}: no verify adapter for rule file 'mystery-model' "
                          "(write remap/verify/adapters/mystery_model.py, or register one under the entry point "
                          "group remap.adapters)\n")


def test_verify_wants_a_converted_folder(cli, tmp_path: Path) -> None:
    result = cli("verify", RULES, EXAMPLE, tmp_path / "nowhere")
    assert result.err == (f"error: {tmp_path / 'nowhere'}: not a converted model folder (no config.json); pass the "
                          "folder `remap apply` wrote\n")


def test_conv_specs_reach_s3prl_only_as_canonical_literals() -> None:
    """What s3prl evals is re-rendered from remap's parse: plain integer triples, whatever the file wrote."""
    from remap.verify.adapters._s3prl import conv_layers_literal, with_conv_layers
    from remap.verify.adapters.wav2vec2 import model_config

    spec = "[(24,10,5)] + [(24,3,2)] * 2 + [(24, 2, 2)]"
    canonical = "[(24, 10, 5), (24, 3, 2), (24, 3, 2), (24, 2, 2)]"
    assert conv_layers_literal(spec, "conv_feature_layers", "c.pt") == canonical
    assert conv_layers_literal([[24, 10, 5], (24, 3, 2)], "f", "c.pt") == "[(24, 10, 5), (24, 3, 2)]"  # omegaconf lists
    assert with_conv_layers({"conv_feature_layers": spec, "x": 1}, "conv_feature_layers", "c.pt") == {
        "conv_feature_layers": canonical, "x": 1}
    assert with_conv_layers({"x": 1}, "conv_feature_layers", "c.pt") == {"x": 1}  # absent: s3prl's own default
    assert model_config({"conv_feature_layers": spec, "encoder_layers": 2}).conv_feature_layers == canonical


@pytest.mark.parametrize(("value", "message"), [
    ("__import__('os').system('touch PWNED') or [(512,10,5)]",
     "c.pt: config 'conv_feature_layers' is not a literal list of (dim, kernel, stride) conv layers: "
     "\"__import__('os').system('touch PWNED') or [(512,10,5)]\" (s3prl would run it as Python code; remap does not)"),
    ("[(512, 10)]", "c.pt: config 'conv_feature_layers' must be a non-empty list of (dim, kernel, stride) positive "
                    "integer triples, got '[(512, 10)]'"),
    ("[(512, 10.0, 5)]", "must be a non-empty list of (dim, kernel, stride) positive integer triples"),
    ("[]", "must be a non-empty list"),
    ("[" + "(512, 10, 5), " * 50 + "(1, 2)]", "got " + repr("[" + "(512, 10, 5), " * 50)[:80] + "..."),  # shortened
    (None, "config 'conv_feature_layers' is not a literal list of (dim, kernel, stride) conv layers: 'None'"),
])
def test_a_conv_spec_that_is_not_a_literal_list_is_one_line(value: object, message: str) -> None:
    from remap.errors import SourceError
    from remap.verify.adapters._s3prl import conv_layers_literal

    with pytest.raises(SourceError) as caught:
        conv_layers_literal(value, "conv_feature_layers", "c.pt")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_string_latent_temp_is_parsed_not_literal_evaluated() -> None:
    from remap.errors import SourceError
    from remap.verify.adapters._s3prl import temperature_literal

    assert temperature_literal("(2, 0.5, 0.999995)", "latent_temp", "c.pt") == (2.0, 0.5, 0.999995)
    assert temperature_literal([2, 0.5, 0.9], "latent_temp", "c.pt") == [2, 0.5, 0.9]  # not text: s3prl takes it as is
    with pytest.raises(SourceError, match="must be a \\(max, min, decay\\) triple of numbers"):
        temperature_literal("(2, 0.5)", "latent_temp", "c.pt")


def test_the_payload_is_live_without_the_guard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hostile cases can fail: handed to s3prl as is, their conv specs run (here, harmlessly, in tmp_path)."""
    import contextlib
    import io

    from tests.hostile.cases_verify import MARKER, TOUCH, TOUCH_BY_EXEC, TOUCH_IN_REPEAT

    with contextlib.redirect_stdout(io.StringIO()):
        from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

    monkeypatch.chdir(tmp_path)
    for payload in (TOUCH, TOUCH_IN_REPEAT, TOUCH_BY_EXEC):
        WavLM(WavLMConfig({"conv_feature_layers": payload, "encoder_layers": 1, "encoder_embed_dim": 32,
                           "encoder_ffn_embed_dim": 32, "encoder_attention_heads": 2}))
        assert (tmp_path / MARKER).exists(), payload
        (tmp_path / MARKER).unlink()


def test_verify_refuses_code_in_a_conv_spec(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process twin of tests/hostile/cases_verify.py: one line, and the payload never ran."""
    import torch

    monkeypatch.chdir(tmp_path)
    torch.save({"Distiller": {"w": torch.ones(2)}, "Config": {"distiller": {
        "extractor_conv_feature_layers": "__import__('pathlib').Path('PWNED').touch() or [(512,10,5)]"}}},
        tmp_path / "states.ckpt")
    result = cli("verify", RULES, tmp_path / "states.ckpt", tmp_path / "nowhere")
    assert result.code == 1 and result.err.count("\n") == 1 and result.err.startswith("error: states.ckpt: config "
                                                                                       "'extractor_conv_feature_layers'")
    assert not (tmp_path / "PWNED").exists()
