"""WavLM: Microsoft's checkpoint layout -> WavLMModel, checked layer by layer against s3prl's own WavLM."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from remap import compile_file
from remap.verify import verify
from tests.conftest import ROOT
from tests.layouts import perturb, save_fairseq

warnings.filterwarnings("ignore", message=r".*torch\.nn\.utils\.weight_norm.*is deprecated", category=FutureWarning)

RULES = ROOT / "rules" / "wavlm.yaml"

# Tiny WavLMs: 2 layers, width 32, 4 heads, a 4-layer conv stack (~400 frames per second of audio).
TINY: dict[str, Any] = {
    "conv_feature_layers": "[(24,10,5)] + [(24,3,2)] * 2 + [(24,2,2)]",
    "encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 4,
    "conv_pos": 16, "conv_pos_groups": 4, "num_buckets": 16, "max_distance": 64,
}
# WavLM-Base/Base+: post-LN, group norm, gated relative position bias.
BASE = {**TINY, "relative_position_embedding": True, "gru_rel_pos": True}
# WavLM-Large: pre-LN, layer-norm conv stack with biases, normalised input.
LARGE = {**BASE, "layer_norm_first": True, "extractor_mode": "layer_norm", "conv_bias": True, "normalize": True}

VARIANTS = {
    "base": BASE,
    "large": LARGE,
    # s3prl's WavLMConfig defaults: no relative position bias, no gating
    "no-relative-position": {**TINY, "extractor_mode": "layer_norm"},
    # gating weights present but no bias to gate
    "gru-without-relative-position": {**TINY, "gru_rel_pos": True, "layer_norm_first": True},
    # no post_extract_proj; 3 layers, relu, odd conv_pos
    "conv-width-equals-model-width": {
        **BASE, "conv_feature_layers": "[(32,10,5)] + [(32,3,2)] * 3", "encoder_layers": 3,
        "activation_fn": "relu", "conv_pos": 9, "conv_pos_groups": 2},
}


def build_wavlm(config: dict[str, Any], seed: int = 0) -> torch.nn.Module:
    """s3prl's WavLM with every tensor (grep_a and the relative position table included) moved off its init."""
    with contextlib.redirect_stdout(io.StringIO()):
        from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

        torch.manual_seed(seed)
        model = WavLM(WavLMConfig(dict(config)))
    perturb(model, seed)
    # s3prl initialises the bias table and grep_linear with std 0.02, so the gated bias barely moves the
    # attention; trained WavLMs have a bias of order 1. Make both (and each head's grep_a) matter.
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed + 1)
        for name, param in model.state_dict().items():
            if name.endswith("grep_a"):
                param.copy_(0.5 + torch.rand(param.shape, generator=generator))
            elif name.endswith("relative_attention_bias.weight") or name.endswith("grep_linear.weight"):
                param.copy_(torch.randn(param.shape, generator=generator))
            elif name.endswith("grep_linear.bias"):
                param.copy_(0.5 * torch.randn(param.shape, generator=generator))
    return model.eval()


def save_official(path: Path, model: torch.nn.Module, config: dict[str, Any], layout: str) -> None:
    """Microsoft's release layout: {"cfg": WavLMConfig fields, "model": state_dict}; cfg a dict or a DictConfig.

    ``layout`` "fairseq" writes what fairseq's trainer saves instead (see `save_fairseq_trainer`).
    """
    if layout == "fairseq":
        save_fairseq_trainer(path, model, config)
        return
    cfg: Any = dict(config)
    if layout == "official-dictconfig":
        from omegaconf import OmegaConf

        cfg = OmegaConf.create(cfg)
    torch.save({"cfg": cfg, "model": model.state_dict()}, path)


def save_fairseq_trainer(path: Path, model: torch.nn.Module, config: dict[str, Any]) -> None:
    """fairseq's trainer layout: {"cfg": DictConfig(model=..., task=...), "model", "args": None, "task_state", ...}.

    The model section holds the WavLMConfig fields (with fairseq's `_name`); the task's `normalize` is the
    audio_pretraining option, so it sits in the task section only.
    """
    model_cfg = {"_name": "wavlm", **{k: v for k, v in config.items() if k != "normalize"}}
    task = {"_name": "audio_pretraining", "data": "/data/librispeech", "sample_rate": 16000,
            "normalize": bool(config.get("normalize", False)), "max_sample_size": 250000}
    save_fairseq(path, model.state_dict(), model_cfg, task)


def convert(cli, tmp_path: Path, config: dict[str, Any], layout: str = "official-dict") -> tuple[Path, Path]:
    ckpt, out = tmp_path / "wavlm.pt", tmp_path / "out"
    save_official(ckpt, build_wavlm(config), config, layout)
    result = cli("apply", RULES, ckpt, "-o", out)
    assert result.code == 0, result.err
    return ckpt, out


@pytest.mark.parametrize("layout", ["official-dict", "official-dictconfig"])
@pytest.mark.parametrize("variant", ["base", "large"])
def test_converted_model_matches_s3prl(variant: str, layout: str, cli, tmp_path: Path) -> None:
    config = VARIANTS[variant]
    ckpt, out = convert(cli, tmp_path, config, layout)
    report = verify(compile_file(RULES), ckpt, out)
    n = config["encoder_layers"]
    assert set(report.diffs) == {"final", *(f"layer{i}" for i in range(1, n + 1))}
    assert report.worst <= 1e-5, report.diffs


@pytest.mark.parametrize("variant", ["base", "large", "conv-width-equals-model-width"])
def test_fairseq_trainer_layout_matches_s3prl(variant: str, cli, tmp_path: Path) -> None:
    """{cfg: {model, task}, model}: verify against s3prl, and directly against the model the file was written from."""
    import json

    from safetensors import safe_open

    from remap.verify import converted
    from remap.verify.adapters.wavlm import hiddens

    config = VARIANTS[variant]
    model = build_wavlm(config)
    ckpt, out = tmp_path / "checkpoint_best.pt", tmp_path / "out"
    save_fairseq_trainer(ckpt, model, config)
    result = cli("apply", RULES, ckpt, "-o", out)
    assert result.code == 0, result.err
    report = verify(compile_file(RULES), ckpt, out)
    n = config["encoder_layers"]
    assert set(report.diffs) == {"final", *(f"layer{i}" for i in range(1, n + 1))}
    assert report.worst <= 1e-5, report.diffs
    wave = torch.randn(1, 8000, generator=torch.Generator().manual_seed(1))
    want, got = hiddens(model, wave), converted(out, wave)
    direct = {k: float((want[k] - got[k]).abs().max()) for k in report.diffs}
    assert max(direct.values()) <= 1e-5, direct
    with safe_open(out / "model.safetensors", "pt") as f:
        assert f.metadata()["remap.layout"] == "fairseq"
    # normalize comes from the task section
    assert json.loads((out / "preprocessor_config.json").read_text())["do_normalize"] is bool(config.get("normalize"))
    assert json.loads((out / "config.json").read_text())["do_stable_layer_norm"] is bool(config.get("layer_norm_first"))


def test_layouts_are_told_apart(tmp_path: Path) -> None:
    """A flat cfg is the official layout; a cfg with a model section is fairseq's (never both)."""
    from remap.io import select_source
    from remap.io.readers import read_checkpoint

    rules = compile_file(RULES)
    model = build_wavlm(BASE)
    for layout in ("official-dict", "official-dictconfig", "fairseq"):
        save_official(tmp_path / "c.pt", model, BASE, layout)
        source = select_source(read_checkpoint(tmp_path / "c.pt"), rules.source)
        assert (source.layout, source.config["encoder_layers"]) == (layout.split("-")[0], 2)


def test_finetuned_wavlm_is_refused(cli, tmp_path: Path) -> None:
    """A fine-tuned model's cfg.model is the fine-tuning config (w2v_path, w2v_args): neither layout matches."""
    model = build_wavlm(BASE)
    ckpt = tmp_path / "finetuned.pt"
    state = {f"w2v_encoder.w2v_model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"cfg": {"model": {"_name": "wav2vec_ctc", "w2v_path": "/ckpt/WavLM-Base.pt",
                                  "w2v_args": {"model": BASE}}, "task": {"normalize": False}},
                "model": state}, ckpt)
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out")
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert ("matches none of the rule file's layouts (official needs cfg, model (and no cfg.model); fairseq needs "
            "cfg.model, model (and no cfg.model.w2v_args, cfg.model.w2v_path))") in result.err


def test_config_without_wavlm_fields_is_refused(cli, tmp_path: Path) -> None:
    model = build_wavlm(BASE)
    ckpt = tmp_path / "other.pt"
    torch.save({"cfg": {"label_rate": 50, "sample_rate": 16000}, "model": model.state_dict()}, ckpt)
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out")
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert "the config at 'cfg' holds none of the fields the rule file declares" in result.err
    assert "(layout 'official')" in result.err


@pytest.mark.parametrize("variant", ["no-relative-position", "gru-without-relative-position",
                                     "conv-width-equals-model-width"])
def test_other_variants_match_s3prl(variant: str, cli, tmp_path: Path) -> None:
    ckpt, out = convert(cli, tmp_path, VARIANTS[variant])
    report = verify(compile_file(RULES), ckpt, out)
    assert report.worst <= 1e-5, report.diffs


@pytest.mark.parametrize("key", ["encoder.layers.1.attention.gru_rel_pos_const",
                                 "encoder.layers.0.attention.rel_attn_embed.weight"])
def test_parity_check_sees_the_gate_and_the_position_table(key: str, cli, tmp_path: Path) -> None:
    """Putting back transformers' init for grep_a or zeroing the bias table breaks parity: both are exercised."""
    ckpt, out = convert(cli, tmp_path, BASE)
    weights = out / "model.safetensors"
    tensors = load_file(weights)
    tensors[key] = torch.ones_like(tensors[key]) if key.endswith("const") else torch.zeros_like(tensors[key])
    save_file(tensors, weights, metadata={"format": "pt"})
    assert verify(compile_file(RULES), ckpt, out).worst > 1e-3


@pytest.mark.parametrize(("change", "message"), [
    ({"relative_position_embedding": True, "gru_rel_pos": False}, "relative_position_embedding without gru_rel_pos"),
    ({"activation_fn": "glu"}, "activation_fn must be one of"),
])
def test_unsupported_variants_are_refused(change: dict[str, Any], message: str, cli, tmp_path: Path) -> None:
    config = {**TINY, **change}
    ckpt, out = tmp_path / "wavlm.pt", tmp_path / "out"
    save_official(ckpt, build_wavlm(config), config, "official-dict")
    result = cli("apply", RULES, ckpt, "-o", out)
    assert result.code == 1
    assert result.err.count("\n") == 1 and result.err.startswith("error: ") and message in result.err, result.err
    assert not out.exists()


def test_weights_are_copied_bit_for_bit(cli, tmp_path: Path) -> None:
    ckpt, out = convert(cli, tmp_path, LARGE)
    source = torch.load(ckpt, weights_only=True)["model"]
    converted = load_file(out / "model.safetensors")
    pairs = {
        "encoder.layers.0.attention.rel_attn_embed.weight": "encoder.layers.0.self_attn.relative_attention_bias.weight",
        "encoder.layers.1.attention.gru_rel_pos_const": "encoder.layers.1.self_attn.grep_a",
        "encoder.layers.1.attention.gru_rel_pos_linear.weight": "encoder.layers.1.self_attn.grep_linear.weight",
        "feature_extractor.conv_layers.2.conv.bias": "feature_extractor.conv_layers.2.0.bias",
        "feature_projection.layer_norm.weight": "layer_norm.weight",
        "masked_spec_embed": "mask_emb",
    }
    for target, key in pairs.items():
        assert torch.equal(converted[target], source[key]), target
