"""Mimi: Kyutai's released safetensors layout (and moshi 0.2.13's own) -> MimiModel, against moshi itself.

The fused attention projection is split into q/k/v with the q and k rows re-ordered from moshi's
interleaved RoPE to transformers' rotate_half. Other configurations than the released one come
from a moshi-format JSON config (--source-config). transformers' MimiModel ignores unexpected keys
under ``encoder.`` and ``decoder.`` when loading, so remap's own accounting, and an exact key-set
check of the output, are what catch a stray tensor.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from remap import compile_file, prepare
from remap.verify import verify
from tests.codec_fixtures import (
    apply,
    build_mimi,
    load_strictly,
    mimi_released_config,
    one_thread,
    reference_package,
    save_mimi_released,
    tiny_mimi_config,
    wave,
    worst,
    write_wav,
)
from tests.conftest import ROOT

RULES = ROOT / "rules" / "mimi.yaml"


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


# name -> (moshi config, released fused layout?). Tiny: width 32, 4 heads, ratios [4, 3, 2] at 2.4 kHz
# (hop 24, 50 Mimi frames per second), a 5-frame attention window, 6 codebooks of 64.
CONFIGS: dict[str, tuple[dict[str, Any], bool]] = {
    # the released architecture in small: fused in_proj_weight/out_proj.weight, interleaved RoPE
    "released-layout": (tiny_mimi_config(), True),
    # moshi 0.2.13's own names (in_projs.0/out_projs.0); weight-normed convs (folded), conv shortcuts,
    # grouped keys/values (kv_repeat 2: k is permuted per kv head), no layer scale (ones), float32 layer norm
    "moshi-layout-variant": (tiny_mimi_config(sections={
        "seanet": {"norm": "weight_norm", "true_skip": False, "n_residual_layers": 2},
        "transformer": {"kv_repeat": 2, "layer_scale": None, "norm": "layer_norm_f32", "max_period": 500},
        "quantizer": {"n_q_semantic": 2}}), False),
    # non-interleaved RoPE: no permutation
    "rope-concat": (tiny_mimi_config(sections={"transformer": {"positional_embedding": "rope_concat"}}), True),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """config name -> (moshi model, checkpoint, moshi-format config file); each built once."""
    built: dict[str, tuple[torch.nn.Module, Path, Path]] = {}

    def get(name: str) -> tuple[torch.nn.Module, Path, Path]:
        if name not in built:
            folder = tmp_path_factory.mktemp(name)
            config, fused = CONFIGS[name]
            model = build_mimi(config)
            save_mimi_released(model, folder / "mimi.safetensors", fused=fused)
            (folder / "mimi.json").write_text(json.dumps(config))
            built[name] = (model, folder / "mimi.safetensors", folder / "mimi.json")
        return built[name]

    return get


@pytest.mark.parametrize("name", list(CONFIGS))
def test_converted_model_matches_moshi(name: str, files: Any, tmp_path: Path) -> None:
    from transformers import AutoFeatureExtractor

    from remap.verify.adapters import mimi as adapter

    model, ckpt, config = files(name)
    out = tmp_path / "out"
    apply(RULES, ckpt, out, config)
    hf = load_strictly("MimiModel", out)
    rate = CONFIGS[name][0]["sample_rate"]
    audio = write_wav(tmp_path / "a.wav", wave(1, 2 * rate // 5)[0], rate)  # 20 Mimi frames: 4 attention windows
    report = verify(compile_file(RULES), ckpt, out, audio=audio, source_config=config)
    assert set(report.diffs) == set(adapter.OUTPUTS) and report.ok
    assert worst(report.diffs) <= 1e-4, report.diffs
    # against the in-memory model the file was written from
    x = wave(1, rate // 4, seed=3)
    want, got = adapter.outputs(model, x), adapter.converted(hf, x)
    assert want["codes"].shape[1] == CONFIGS[name][0]["quantizer"]["n_q"]
    assert worst({k: float((want[k].double() - got[k].double()).abs().max()) for k in want}) <= 1e-4
    extractor = AutoFeatureExtractor.from_pretrained(out)
    assert (type(extractor).__name__, extractor.sampling_rate, extractor.feature_size) == (
        "EncodecFeatureExtractor", rate, 1)


def test_swapping_q_and_k_breaks_parity(files: Any, tmp_path: Path) -> None:
    """q and k have the same shape: the swapped conversion loads cleanly, and only parity can tell."""
    text = RULES.read_text()
    assert text.count(".self_attn.q_proj.weight") >= 4
    mutated = tmp_path / "mimi.yaml"
    mutated.write_text(text.replace(".self_attn.q_proj.weight", ".self_attn.@.weight")
                       .replace(".self_attn.k_proj.weight", ".self_attn.q_proj.weight")
                       .replace(".self_attn.@.weight", ".self_attn.k_proj.weight"))
    _, ckpt, config = files("released-layout")
    out = tmp_path / "out"
    apply(mutated, ckpt, out, config)
    load_strictly("MimiModel", out)
    audio = write_wav(tmp_path / "a.wav", wave(1, 960)[0], 2400)
    report = verify(compile_file(RULES), ckpt, out, audio=audio, source_config=config)
    assert not report.ok and report.diffs["latents"] > 1e-2, report.diffs


def test_a_stray_tensor_is_refused_though_transformers_would_load_it(cli, files: Any, tmp_path: Path) -> None:
    from transformers import MimiModel

    _, ckpt, config = files("released-layout")
    state = load_file(ckpt)
    save_file({**state, "encoder.stray": torch.zeros(3), "encoder.model.99.conv.conv.weight": torch.zeros(2, 2, 1)},
              tmp_path / "stray.safetensors")
    result = cli("plan", RULES, tmp_path / "stray.safetensors", "--source-config", config)
    assert result.code == 1 and "2 problems" in result.out
    assert "source key 'encoder.stray' is not mapped by any rule" in result.out
    assert ("'encoder.model.99.conv.conv.weight' maps to 'encoder.encoder_seanet.layers.99.conv.weight', which "
            "MimiModel does not have") in result.out
    # why: the same stray tensor in a converted folder passes transformers' own load report
    out = tmp_path / "out"
    apply(RULES, ckpt, out, config)
    weights = load_file(out / "model.safetensors")
    save_file({**weights, "encoder.stray": torch.zeros(3)}, out / "model.safetensors", metadata={"format": "pt"})
    _, info = MimiModel.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info
    with pytest.raises(AssertionError):
        load_strictly("MimiModel", out)


@pytest.mark.parametrize(("change", "message"), [
    ({"transformer": {"gating": "silu"}}, "a plain GELU feed-forward (gating 'none') and LayerNorm"),
    ({"transformer": {"context": None}}, "a transformer without context cannot be expressed"),
    ({"transformer": {"positional_embedding": "sin_rope"}}, "rotary embeddings only"),
    ({"seanet": {"lstm": 2}}, "unknown seanet argument"),
    ({"quantizer": {"dimension": 32}}, "dimension must differ from it"),
    ({"frame_rate": 100}, "resamples the encoder frames by exactly 2"),
])
def test_configurations_mimimodel_cannot_express_are_refused(change: dict[str, Any], message: str, cli,
                                                            files: Any, tmp_path: Path) -> None:
    _, ckpt, _ = files("released-layout")
    config = tiny_mimi_config(sections={k: v for k, v in change.items() if isinstance(v, dict)},
                              **{k: v for k, v in change.items() if not isinstance(v, dict)})
    (tmp_path / "c.json").write_text(json.dumps(config))
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out", "--source-config", tmp_path / "c.json")
    assert result.code == 1 and result.err.count("\n") == 1 and message in result.err, result.err
    assert "unsupported source" in result.err and not (tmp_path / "out").exists()


def test_the_released_mimi_needs_no_config(tmp_path: Path) -> None:
    """moshi's _mimi_config at full size (79M parameters, zero weights: shapes are what is checked)."""
    loaders = reference_package("moshi.models.loaders")
    with torch.device("meta"):
        model = loaders.get_mimi(None, device="meta")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    fused = {k.replace("in_projs.0.weight", "in_proj_weight").replace("out_projs.0.weight", "out_proj.weight"): s
             for k, s in shapes.items()}
    save_file({k: torch.zeros(s) for k, s in fused.items()}, tmp_path / "tokenizer-e351c8d8-checkpoint125.safetensors")
    prepared = prepare(compile_file(RULES), tmp_path / "tokenizer-e351c8d8-checkpoint125.safetensors")
    assert [str(p) for p in prepared.plan.problems] == []
    config = prepared.target_config
    assert {k: config[k] for k in ("sampling_rate", "hidden_size", "num_quantizers", "codebook_size", "codebook_dim",
                                   "num_hidden_layers", "num_attention_heads", "sliding_window", "upsampling_ratios",
                                   "upsample_groups")} == {
        "sampling_rate": 24000, "hidden_size": 512, "num_quantizers": 32, "codebook_size": 2048, "codebook_dim": 256,
        "num_hidden_layers": 8, "num_attention_heads": 8, "sliding_window": 250, "upsampling_ratios": [8, 6, 5, 4],
        "upsample_groups": 512}
    assert config["rope_parameters"] == {"rope_type": "default", "rope_theta": 10000.0}
    assert mimi_released_config()["transformer"]["context"] == 250


def test_lint_is_clean_on_a_real_file(cli, files: Any) -> None:
    """moshi's own layout with weight-normed convs (the released layout is planned cleanly by the parity tests)."""
    _, ckpt, config = files("moshi-layout-variant")
    result = cli("lint", RULES, ckpt, "--source-config", config)
    assert result.code == 0 and "\n0 warnings" in "\n" + result.out, result.out + result.err
