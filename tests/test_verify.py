"""`remap verify`: per-layer parity against the original implementation, with one-line failures."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

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
