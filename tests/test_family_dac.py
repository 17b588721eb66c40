"""DAC: descript-audio-codec's released file layout -> DacModel, checked against ``dac.DAC`` itself.

Every conv of DAC is weight-normed (weight_g/weight_v); DacModel's are plain, so the rule file folds
them. Encoder blocks shift down by one (``{b - 1}``) and residual units up (``{r + 1}``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from remap import compile_file
from remap.verify import verify
from tests.codec_fixtures import (
    DAC_TINY,
    apply,
    build_dac,
    dac_kwargs,
    load_strictly,
    one_thread,
    save_dac_released,
    wave,
    worst,
    write_wav,
)
from tests.conftest import ROOT

RULES = ROOT / "rules" / "dac.yaml"


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


CONFIGS: dict[str, dict[str, Any]] = {
    # 2 blocks, one codebook width given as an int
    "tiny": DAC_TINY,
    # 3 blocks, latent_dim spelled out, codebook_dim as a per-codebook list, another sample rate
    "three-blocks": {"encoder_dim": 4, "encoder_rates": [2, 2, 3], "latent_dim": 32, "decoder_dim": 24,
                     "decoder_rates": [3, 2, 2], "n_codebooks": 4, "codebook_size": 32, "codebook_dim": [3, 3, 3, 3],
                     "quantizer_dropout": 0.5, "sample_rate": 12000},
}


def converted_dac(tmp_path: Path, kwargs: dict[str, Any], rules: Path = RULES) -> tuple[torch.nn.Module, Path, Path]:
    model = build_dac(kwargs)
    ckpt, out = tmp_path / "weights.pth", tmp_path / "out"
    save_dac_released(model, kwargs, ckpt)
    apply(rules, ckpt, out)
    return model, ckpt, out


@pytest.mark.parametrize("name", list(CONFIGS))
def test_converted_model_matches_descript_dac(name: str, tmp_path: Path) -> None:
    from transformers import AutoFeatureExtractor

    from remap.verify.adapters import dac as adapter

    kwargs = CONFIGS[name]
    model, ckpt, out = converted_dac(tmp_path, kwargs)
    hf = load_strictly("DacModel", out)
    rate = kwargs["sample_rate"]
    audio = write_wav(tmp_path / "a.wav", wave(1, rate // 10)[0], rate)
    report = verify(compile_file(RULES), ckpt, out, audio=audio)
    assert set(report.diffs) == set(adapter.OUTPUTS) and report.ok
    assert worst(report.diffs) <= 1e-4, report.diffs
    # and against the in-memory model the file was written from (not rebuilt from the file)
    x = wave(1, 3 * rate // 20)
    want, got = adapter.outputs(model, x), adapter.converted(hf, x)
    assert worst({k: float((want[k].double() - got[k].double()).abs().max()) for k in want}) <= 1e-4
    # the model's own sample rate, not transformers' default 16000
    assert json.loads((out / "config.json").read_text())["sampling_rate"] == rate
    extractor = AutoFeatureExtractor.from_pretrained(out)
    assert (type(extractor).__name__, extractor.sampling_rate, extractor.feature_size) == ("DacFeatureExtractor", rate, 1)
    hop = 1
    for r in kwargs["encoder_rates"]:
        hop *= r
    assert extractor.hop_length == hop == hf.config.hop_length


def test_skipping_the_weight_norm_fold_breaks_parity(tmp_path: Path) -> None:
    """Copying weight_v as the weight (dropping weight_g) loads cleanly but is wrong: verify must see it."""
    text = RULES.read_text()
    fold = re.search(r"  - from: \[encoder\.block\.0\.weight_g, encoder\.block\.0\.weight_v\]\n    fold_weight_norm: 0\n"
                     r"    to: encoder\.conv1\.weight\n    examples:\n(?:      .*\n)+?(?=  - )", text)
    assert fold is not None
    mutated = tmp_path / "dac.yaml"
    mutated.write_text(text.replace(fold.group(0), "  - from: encoder.block.0.weight_v\n    to: encoder.conv1.weight\n"
                                                   "  - drop: encoder.block.0.weight_g\n    reason: mutation\n"))
    _, ckpt, out = converted_dac(tmp_path, DAC_TINY, mutated)
    load_strictly("DacModel", out)
    audio = write_wav(tmp_path / "a.wav", wave(1, 800)[0], DAC_TINY["sample_rate"])
    report = verify(compile_file(RULES), ckpt, out, audio=audio)
    assert not report.ok and report.diffs["latents"] > 1e-2, report.diffs


@pytest.mark.parametrize(("change", "message"), [
    ({"decoder_rates": [2, 3]}, "decoder_rates must be exactly that"),
    ({"codebook_dim": [4, 4, 2]}, "DacModel has one codebook_dim for every codebook"),
    ({"latent_dim": 12}, "latent_dim must equal it"),
    ({"codebook_size": 24}, "DacModel needs codebook_size to be a power of 2"),
])
def test_variants_dacmodel_cannot_express_are_refused(change: dict[str, Any], message: str, cli,
                                                     tmp_path: Path) -> None:
    model = build_dac(DAC_TINY)
    ckpt = tmp_path / "weights.pth"
    torch.save({"state_dict": model.state_dict(), "metadata": {"kwargs": {**dac_kwargs(model, DAC_TINY), **change}}},
               ckpt)
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out")
    assert result.code == 1 and result.err.count("\n") == 1 and message in result.err, result.err
    assert result.err.startswith(f"error: {RULES}:") and "unsupported source" in result.err
    assert not (tmp_path / "out").exists()


def test_a_stray_or_extra_tensor_is_refused_by_the_plan(cli, tmp_path: Path) -> None:
    model = build_dac(DAC_TINY)
    state = model.state_dict()
    state["encoder.block.1.extra"] = torch.zeros(2)
    state["quantizer.quantizers.3.codebook.weight"] = torch.zeros(16, 4)  # a 4th codebook in a 3-codebook model
    ckpt = tmp_path / "weights.pth"
    torch.save({"state_dict": state, "metadata": {"kwargs": dac_kwargs(model, DAC_TINY)}}, ckpt)
    result = cli("plan", RULES, ckpt)
    assert result.code == 1 and "2 problems" in result.out
    assert "source key 'encoder.block.1.extra' is not mapped by any rule" in result.out
    assert ("'quantizer.quantizers.3.codebook.weight' maps to 'quantizer.quantizers.3.codebook.weight', which DacModel "
            "does not have") in result.out


def test_lint_is_clean_on_a_real_file(cli, tmp_path: Path) -> None:
    model = build_dac(CONFIGS["three-blocks"])
    save_dac_released(model, CONFIGS["three-blocks"], tmp_path / "weights.pth")
    result = cli("lint", RULES, tmp_path / "weights.pth")
    assert result.code == 0 and "\n0 warnings" in "\n" + result.out, result.out + result.err
