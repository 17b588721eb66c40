"""Converted models reproduce s3prl's reference DistillerModel, layer by layer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tests.conftest import RULES, TINY
from tests.layouts import swap_layer_norm_targets
from tests.reference import check_folder, padded_batch_diffs

VARIANTS = {
    # the published DistilHuBERT architecture, at full size
    "distilhubert-base": {"encoder_layers": 2, "feature_grad_mult": 0.1, "n_tasks": 3,
                          "pred_layer_id": [4, 8, 12]},
    "extractor-layer-norm": {**TINY, "extractor_mode": "layer_norm"},
    "layer-norm-first": {**TINY, "layer_norm_first": True},
    "layer-norm-first-and-extractor-layer-norm": {**TINY, "layer_norm_first": True, "extractor_mode": "layer_norm"},
    "conv-width-equals-model-width": {**TINY, "extractor_conv_feature_layers": "[(32,10,5)] + [(32,3,2)] * 3"},
    "three-layers-width-48-relu": {
        **TINY, "encoder_layers": 3, "encoder_embed_dim": 48, "encoder_ffn_embed_dim": 80,
        "encoder_attention_heads": 6, "conv_pos": 9, "conv_pos_groups": 3, "activation_fn": "relu",
        "extractor_conv_feature_layers": "[(40,10,5)] + [(40,3,2)] * 4"},
    "one-layer-gelu-accurate-no-heads": {
        **TINY, "encoder_layers": 1, "activation_fn": "gelu_accurate", "out_layer_type": "none",
        "task_emb_type": "none"},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_converted_model_matches_s3prl_reference(variant: str, make_ckpt, cli, tmp_path: Path) -> None:
    ckpt, model = make_ckpt(VARIANTS[variant])
    out = tmp_path / "out"
    result = cli("apply", RULES, ckpt, "-o", out)
    assert result.code == 0, result.err
    diffs = check_folder(model, out)
    assert max(diffs.values()) <= 1e-5, diffs
    n_layers = VARIANTS[variant].get("encoder_layers", 1)
    assert {"features", "final", *(f"layer{i}" for i in range(1, n_layers))} <= set(diffs)


def test_pure_renames_are_bit_exact(make_ckpt, cli, tmp_path: Path) -> None:
    ckpt, model = make_ckpt(TINY)
    out = tmp_path / "out"
    assert cli("apply", RULES, ckpt, "-o", out).code == 0
    source = model.state_dict()
    with safe_open(out / "model.safetensors", "pt") as f:
        assert torch.equal(f.get_tensor("encoder.layers.1.feed_forward.output_dense.weight"),
                           source["encoder.layers.1.fc2.weight"])
        assert torch.equal(f.get_tensor("encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
                           source["encoder.pos_conv.0.weight_g"])
        assert torch.equal(f.get_tensor("feature_extractor.conv_layers.0.layer_norm.bias"),
                           source["feature_extractor.conv_layers.0.2.bias"])


def test_missing_post_extract_proj_becomes_identity_projection(make_ckpt, cli, tmp_path: Path) -> None:
    ckpt, _ = make_ckpt({**TINY, "extractor_conv_feature_layers": "[(32,10,5)] + [(32,3,2)] * 3"})
    out = tmp_path / "out"
    result = cli("apply", RULES, ckpt, "-o", out)
    assert result.code == 0, result.err
    assert "3 initialised" in result.out
    with safe_open(out / "model.safetensors", "pt") as f:
        assert torch.equal(f.get_tensor("feature_projection.projection.weight"), torch.eye(32))
        assert torch.equal(f.get_tensor("feature_projection.projection.bias"), torch.zeros(32))


def test_half_precision_checkpoint_keeps_its_dtype(make_ckpt, cli, tmp_path: Path) -> None:
    from tests.reference import save_s3prl_checkpoint

    _, model = make_ckpt(TINY)
    half = tmp_path / "half.ckpt"
    save_s3prl_checkpoint(model.half(), TINY, half)
    out = tmp_path / "out"
    assert cli("apply", RULES, half, "-o", out).code == 0
    with safe_open(out / "model.safetensors", "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes == {"F16"}


def test_parity_check_catches_a_same_shape_mix_up(make_ckpt, cli, tmp_path: Path) -> None:
    """A wrong mapping that no shape check can see (two layer norms swapped) must fail parity."""
    swapped = tmp_path / "swapped.yaml"
    swapped.write_text(swap_layer_norm_targets(RULES.read_text()))
    ckpt, model = make_ckpt(TINY)
    out = tmp_path / "out"
    assert cli("apply", swapped, ckpt, "-o", out).code == 0
    assert max(check_folder(model, out).values()) > 1e-2


@pytest.mark.parametrize("variant", ["distilhubert-base", "layer-norm-first-and-extractor-layer-norm"])
def test_padded_batch_matches_s3prl_on_valid_frames(variant: str, make_ckpt, cli, tmp_path: Path) -> None:
    """Batched, padded audio through the converted folder's feature extractor (which returns an attention mask)."""
    ckpt, model = make_ckpt(VARIANTS[variant])
    out = tmp_path / "out"
    assert cli("apply", RULES, ckpt, "-o", out).code == 0
    diffs = padded_batch_diffs(model, out)
    assert max(diffs.values()) <= 1e-5, diffs


def test_config_values_are_coerced_like_s3prl_does(make_ckpt, cli, tmp_path: Path) -> None:
    """s3prl's DistillerConfig applies int()/float()/bool()/str(); a YAML config with 1 or 16.0 must convert."""
    config = {**TINY, "layer_norm_first": 1, "conv_pos": 16.0, "encoder_layers": "2", "dropout": "0.1"}
    ckpt, model = make_ckpt(config)
    out = tmp_path / "out"
    result = cli("apply", RULES, ckpt, "-o", out)
    assert result.code == 0, result.err
    assert max(check_folder(model, out).values()) <= 1e-5
