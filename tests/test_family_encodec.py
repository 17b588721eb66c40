"""EnCodec: facebookresearch encodec's released files (bare state dicts) -> EncodecModel, against encodec itself.

The released 24 kHz and 48 kHz models carry no config; the rule file tells them apart by their
weights (weight norm and mono; time group norm and stereo) and refuses weights that are neither
unless encodec's model arguments come with ``--source-config``. Every tensor is a byte-exact
rename: transformers keeps weight norm as a parametrization (original0 = g, original1 = v).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from remap import compile_file
from remap.verify import verify
from tests.codec_fixtures import (
    apply,
    build_encodec,
    load_strictly,
    one_thread,
    save_encodec_released,
    wave,
    worst,
    write_wav,
)
from tests.conftest import ROOT

RULES = ROOT / "rules" / "encodec.yaml"


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


# encodec's EncodecModel._get_model arguments for a model that is not released: weight norm but stereo,
# non-causal, normalised, cut into 20 ms segments (so frames overlap and are added back), 32 kHz, 12 codebooks.
CUSTOM: dict[str, Any] = {"target_bandwidths": [6.0, 12.0], "sample_rate": 32000, "channels": 2, "causal": False,
                          "model_norm": "weight_norm", "audio_normalize": True, "segment": 0.02}
# style -> (sample rate, channels, seconds of audio, encodec model arguments or None for the released model)
STYLES: dict[str, tuple[int, int, float, dict[str, Any] | None]] = {
    "24khz": (24000, 1, 0.1, None),
    "48khz": (48000, 2, 0.1, None),
    "custom": (32000, 2, 0.05, CUSTOM),
}


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """style -> (encodec model, its released-layout file, its config file or None); each built once."""
    built: dict[str, tuple[torch.nn.Module, Path, Path | None]] = {}

    def get(style: str) -> tuple[torch.nn.Module, Path, Path | None]:
        if style not in built:
            folder = tmp_path_factory.mktemp(style)
            args = STYLES[style][3]
            model = build_encodec(style, **(args or {}))
            save_encodec_released(model, folder / f"encodec_{style}.th")
            config = None
            if args is not None:
                config = folder / "encodec.json"
                config.write_text(json.dumps(args))
            built[style] = (model, folder / f"encodec_{style}.th", config)
        return built[style]

    return get


@pytest.mark.parametrize("style", list(STYLES))
def test_converted_model_matches_encodec(style: str, released: Any, tmp_path: Path) -> None:
    from transformers import AutoFeatureExtractor

    from remap.verify.adapters import encodec as adapter

    model, ckpt, config = released(style)
    rate, channels, seconds, args = STYLES[style]
    out = tmp_path / "out"
    apply(RULES, ckpt, out, config)
    hf = load_strictly("EncodecModel", out)
    audio = write_wav(tmp_path / "a.wav", wave(channels, int(rate * seconds))[0], rate)
    report = verify(compile_file(RULES), ckpt, out, audio=audio, source_config=config)
    normalised = args["audio_normalize"] if args else style == "48khz"
    assert set(report.diffs) == {"codes", "latents", "audio"} | ({"scales"} if normalised else set())
    assert report.ok and worst(report.diffs) <= 1e-4, report.diffs
    # against the in-memory model the file was written from
    x = wave(channels, int(rate * seconds), seed=3)
    want, got = adapter.outputs(model, x), adapter.converted(hf, x)
    assert worst({k: float((want[k].double() - got[k].double()).abs().max()) for k in want}) <= 1e-4
    extractor = AutoFeatureExtractor.from_pretrained(out)
    segment = args["segment"] if args else (1.0 if style == "48khz" else None)
    assert (type(extractor).__name__, extractor.sampling_rate, extractor.feature_size, extractor.chunk_length_s,
            extractor.overlap) == ("EncodecFeatureExtractor", rate, channels, segment, 0.01 if segment else None)
    assert (hf.config.sampling_rate, hf.config.audio_channels, hf.config.chunk_length_s) == (rate, channels, segment)


def test_weights_of_neither_released_model_need_a_config(cli, released: Any, tmp_path: Path) -> None:
    _, ckpt, config = released("custom")  # weight norm but stereo: not a released model
    result = cli("plan", RULES, ckpt)
    assert result.code == 1 and result.err.count("\n") == 1
    assert result.err.startswith(f"error: {RULES}:")
    assert ("unsupported source: the weights match neither released EnCodec model (24 kHz: weight norm, mono; 48 kHz: "
            "time group norm, stereo); pass EncodecModel._get_model's arguments with --source-config") in result.err
    assert cli("plan", RULES, ckpt, "--source-config", config).code == 0


@pytest.mark.parametrize(("args", "message"), [
    ({"target_bandwidths": [1.5, 3.0], "model_norm": "time_group_norm", "causal": False},
     "model_norm does not match the weights"),
    ({"target_bandwidths": [1.5, 3.0], "channels": 2}, "channels does not match the first conv's input channels"),
    ({"sample_rate": 24000}, "target_bandwidths is required"),
    ({"target_bandwidths": [24.0], "model_norm": "spectral_norm"}, "only weight_norm and time_group_norm convs"),
])
def test_a_config_that_contradicts_the_weights_is_refused(args: dict[str, Any], message: str, cli, released: Any,
                                                         tmp_path: Path) -> None:
    _, ckpt, _ = released("24khz")
    config = tmp_path / "c.json"
    config.write_text(json.dumps(args))
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out", "--source-config", config)
    assert result.code == 1 and result.err.count("\n") == 1 and message in result.err, result.err
    assert not (tmp_path / "out").exists()


def test_stray_tensors_and_a_codebook_count_the_config_does_not_explain_are_refused(cli, released: Any,
                                                                                    tmp_path: Path) -> None:
    _, ckpt, _ = released("24khz")
    state = torch.load(ckpt, weights_only=True)
    state["encoder.model.13.lstm.weight_ih_l2"] = torch.zeros(2048, 512)  # a third LSTM layer
    state["decoder.stray"] = torch.zeros(1)
    torch.save(state, tmp_path / "stray.th")
    result = cli("plan", RULES, tmp_path / "stray.th")
    assert result.code == 1 and "2 problems" in result.out
    assert ("'encoder.model.13.lstm.weight_ih_l2' maps to 'encoder.layers.13.lstm.weight_ih_l2', which EncodecModel "
            "does not have") in result.out
    assert "source key 'decoder.stray' is not mapped by any rule" in result.out
    # 32 codebooks in the weights, but 22.5 kbps at 75 frames/s gives n_q = 30: the last 2 have no target
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"target_bandwidths": [1.5, 22.5]}))
    result = cli("plan", RULES, ckpt, "--source-config", config)
    assert result.code == 1 and "8 problems" in result.out
    assert "'quantizer.vq.layers.31._codebook.embed' maps to 'quantizer.layers.31.codebook.embed'" in result.out


def test_lint_is_clean_on_the_48khz_layout(cli, released: Any) -> None:
    _, ckpt, _ = released("48khz")
    result = cli("lint", RULES, ckpt)
    assert result.code == 0 and "0 warnings, 0 notes" in result.out + result.err, result.out + result.err
