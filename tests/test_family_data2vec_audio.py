"""data2vec audio: fairseq and s3prl checkpoints convert to transformers' Data2VecAudioModel, checked
layer by layer against s3prl's own Data2VecAudioModel (remap.verify.adapters.data2vec_audio)."""

from __future__ import annotations

import argparse
import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import ROOT
from tests.layouts import perturb, save_fairseq, save_s3prl_converted, swap_layer_norm_targets

with contextlib.redirect_stdout(io.StringIO()):
    from s3prl.upstream.data2vec.data2vec_model import Data2VecAudioConfig, Data2VecAudioModel

RULES = ROOT / "rules" / "data2vec-audio.yaml"

# Data2VecAudioModel.state_dict passes positional args to Module.state_dict (s3prl's code, not ours).
pytestmark = pytest.mark.filterwarnings("ignore:Positional args are being deprecated:FutureWarning")

# The published data2vec audio architecture (layer-norm extractor, a stack of plain positional
# convs, post-LN layers), shrunk: conv_pos 12 // depth 3 gives an even kernel of 4.
TINY: dict[str, Any] = {
    "_name": "data2vec_audio", "extractor_mode": "layer_norm",
    "conv_feature_layers": "[(24,10,5)] + [(24,3,2)] * 2 + [(24,2,2)]",
    "encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 4,
    "conv_pos": 12, "conv_pos_groups": 4, "pos_conv_depth": 3,
    "encoder_layerdrop": 0.05, "mask_prob": 0.65, "loss_beta": 0, "average_top_k_layers": 2,
    "instance_norm_target_layer": True, "ema_decay": 0.999, "ema_end_decay": 0.9999, "ema_anneal_end_step": 100,
}
VARIANTS: dict[str, dict[str, Any]] = {
    "published": TINY,
    # conv bias, an odd positional kernel (10 // 2 = 5), conv width = model width (data2vec still
    # projects), another activation, and no masking (so mask_emb has no target and is dropped).
    "conv-bias-odd-kernel-gelu-accurate-no-mask": {
        **TINY, "conv_bias": True, "conv_pos": 10, "pos_conv_depth": 2, "conv_pos_groups": 2,
        "conv_feature_layers": "[(32,10,5)] + [(32,3,2)] * 3", "activation_fn": "gelu_accurate",
        "encoder_attention_heads": 2, "mask_prob": 0.0},
}
TASK = {"_name": "audio_pretraining", "data": "/data/manifests", "normalize": True, "sample_rate": 16000,
        "max_sample_size": 320000, "min_sample_size": 32000}
LAYOUTS = ["fairseq", "fairseq-args", "s3prl"]


def build(config: dict[str, Any], seed: int = 0) -> Data2VecAudioModel:
    torch.manual_seed(seed)
    fields = Data2VecAudioConfig.__dataclass_fields__
    model = Data2VecAudioModel(Data2VecAudioConfig(**{k: v for k, v in config.items() if k in fields}))
    return perturb(model, seed)


def save(path: Path, layout: str, model: Data2VecAudioModel, config: dict[str, Any]) -> None:
    state = model.state_dict()
    if layout == "s3prl":  # as loaded by s3prl's convert.py: without the pretraining head
        state = {k: v for k, v in state.items() if not k.startswith("final_proj.")}
        save_s3prl_converted(path, state, config, TASK)
    else:  # a fairseq pretraining checkpoint keeps final_proj
        save_fairseq(path, state, config, TASK, old_args=layout == "fairseq-args")


def convert(cli, tmp_path: Path, layout: str, config: dict[str, Any]):
    model = build(config)
    ckpt = tmp_path / f"{layout}.pt"
    save(ckpt, layout, model, config)
    out = tmp_path / "out"
    return model, ckpt, out, cli("apply", RULES, ckpt, "-o", out)


def parity(ckpt: Path, out: Path, rules: Path = RULES) -> dict[str, float]:
    from remap import compile_file
    from remap.verify import verify

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return verify(compile_file(rules), ckpt, out).diffs


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_converted_model_matches_s3prl(variant: str, layout: str, cli, tmp_path: Path) -> None:
    _, ckpt, out, result = convert(cli, tmp_path, layout, VARIANTS[variant])
    assert result.code == 0, result.err
    diffs = parity(ckpt, out)
    assert set(diffs) == {"layer1", "layer2", "final"}, diffs
    assert max(diffs.values()) <= 1e-5, diffs


def test_layout_is_recorded_and_config_mapped(cli, tmp_path: Path) -> None:
    import json

    from safetensors import safe_open

    model, _, out, result = convert(cli, tmp_path, "fairseq-args", TINY)
    assert result.code == 0, result.err
    config = json.loads((out / "config.json").read_text())
    assert (config["conv_pos_kernel_size"], config["num_conv_pos_embeddings"], config["num_hidden_layers"],
            config["conv_dim"], config["mask_time_prob"]) == (4, 3, 2, [24] * 4, 0.65)
    with safe_open(out / "model.safetensors", "pt") as f:
        assert f.metadata()["remap.layout"] == "fairseq-args"
        assert torch.equal(f.get_tensor("encoder.pos_conv_embed.layers.2.conv.weight"),
                           model.state_dict()["encoder.pos_conv.2.0.weight"])


@pytest.mark.parametrize(("change", "message"), [
    ({"extractor_mode": "default"}, "extractor_mode must be 'layer_norm'"),
    ({"pos_conv_depth": 1}, "pos_conv_depth must be > 1"),
    ({"layer_norm_first": True}, "layer_norm_first must be false"),
])
def test_inexpressible_variants_are_refused(change: dict[str, Any], message: str, cli, tmp_path: Path) -> None:
    _, _, out, result = convert(cli, tmp_path, "fairseq", {**TINY, **change})
    assert result.code == 1
    assert message in result.err and "data2vec-audio.yaml:" in result.err
    assert not out.exists()


def test_parity_check_catches_a_same_shape_mix_up(cli, tmp_path: Path) -> None:
    """Two same-shape layer norms swapped in the rules must fail parity."""
    swapped = tmp_path / "data2vec-audio.yaml"
    swapped.write_text(swap_layer_norm_targets(RULES.read_text()))
    model = build(TINY)
    ckpt, out = tmp_path / "f.pt", tmp_path / "out"
    save(ckpt, "fairseq", model, TINY)
    assert cli("apply", swapped, ckpt, "-o", out).code == 0
    assert max(parity(ckpt, out, swapped).values()) > 1e-2


def test_checkpoint_with_ema_teacher_converts(cli, tmp_path: Path) -> None:
    model = build(TINY)
    state = model.state_dict()
    # what fairseq's Data2VecAudioModel.state_dict adds: the EMA copy of the encoder, in fp32
    state["_ema"] = {k: v.float().clone() for k, v in model.encoder.state_dict().items()}
    ckpt, out = tmp_path / "f.pt", tmp_path / "out"
    save_fairseq(ckpt, state, TINY, TASK)
    result = cli("apply", RULES, ckpt, "-o", out)
    assert result.code == 0, result.err
    assert max(parity(ckpt, out).values()) <= 1e-5


@pytest.mark.parametrize("era", ["hydra", "args"])
def test_finetuned_data2vec_is_refused(era: str, cli, tmp_path: Path) -> None:
    """data2vec fine-tuned with wav2vec_ctc: the config names w2v_path and carries w2v_args; no layout matches."""
    model = build(TINY)
    state = {f"w2v_encoder.w2v_model.{k}": v for k, v in model.state_dict().items()}
    finetune = {"_name": "wav2vec_ctc", "w2v_path": "/ckpt/audio_base_ls.pt", "final_dropout": 0.1}
    ckpt = tmp_path / "finetuned.pt"
    if era == "hydra":
        torch.save({"args": None, "cfg": {"model": {**finetune, "w2v_args": {"model": TINY, "task": TASK}},
                                          "task": TASK}, "model": state}, ckpt)
    else:
        torch.save({"args": argparse.Namespace(**{**TASK, **finetune}, w2v_args=argparse.Namespace(**TINY)),
                    "model": state}, ckpt)
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out")
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert "matches none of the rule file's layouts (fairseq needs cfg, model (and no cfg.model.w2v_args" in result.err


def test_a_file_in_two_layouts_is_refused(cli, tmp_path: Path) -> None:
    model = build(TINY)
    ckpt = tmp_path / "both.pt"
    torch.save({"args": argparse.Namespace(**TINY), "model": model.state_dict(),
                "model_cfg": TINY, "task_cfg": TASK, "model_weight": model.state_dict()}, ckpt)
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out")
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert "matches several of the rule file's layouts (fairseq-args and s3prl)" in result.err
