"""HuBERT: fairseq and s3prl checkpoints -> transformers HubertModel, checked against s3prl's HubertModel.

Each test builds s3prl's own HubertModel at a tiny size with perturbed random
weights, writes it in one of the three layouts found in the wild, converts it
with ``remap apply`` and compares layer by layer with s3prl's model: through
``remap verify`` (whose adapter rebuilds s3prl's model from the checkpoint as
remap read it) and directly against the in-memory model the checkpoint was
written from.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from tests.layouts import SYMBOLS, perturb, save_fairseq, save_s3prl_converted, swap_layer_norm_targets

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules" / "hubert.yaml"

# HuBERT base's structure (post-LN, group norm on conv layer 0, no conv bias), tiny.
BASE: dict[str, Any] = {
    "_name": "hubert", "label_rate": 50.0,
    "conv_feature_layers": "[(24,10,5)] + [(24,3,2)] * 2 + [(24,2,2)]",
    "encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 4,
    "conv_pos": 16, "conv_pos_groups": 4, "final_dim": 16,
}
# HuBERT large's structure: pre-LN (layer_norm_first), layer norm in every conv layer, conv bias.
LARGE: dict[str, Any] = {**BASE, "extractor_mode": "layer_norm", "layer_norm_first": True, "conv_bias": True}
VARIANTS = {"base": BASE, "large": LARGE}
# HuBERT large was pretrained on normalised audio (task option `normalize`), base was not.
TASKS = {"base": False, "large": True}
LAYOUTS = ("fairseq", "fairseq-args", "s3prl")


def task_cfg(normalize: bool = False) -> dict[str, Any]:
    return {"_name": "hubert_pretraining", "label_rate": 50.0, "sample_rate": 16000, "normalize": normalize,
            "labels": ["km"]}


def build_s3prl(config: dict[str, Any], normalize: bool = False, seed: int = 0) -> torch.nn.Module:
    """s3prl's HubertModel, as its convert.py builds it, with weights moved away from their init."""
    from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig

    known = set(HubertConfig.__dataclass_fields__)
    torch.manual_seed(seed)
    model = HubertModel(HubertConfig(**{k: v for k, v in config.items() if k in known}),
                        HubertPretrainingConfig(normalize=normalize), [SYMBOLS])
    return perturb(model, seed)


def save(layout: str, path: Path, model: torch.nn.Module, config: dict[str, Any], normalize: bool = False) -> None:
    state = model.state_dict()
    if layout == "s3prl":
        save_s3prl_converted(path, state, config, task_cfg(normalize))
    else:
        save_fairseq(path, state, config, task_cfg(normalize), old_args=layout == "fairseq-args")


def s3prl_outputs(model: torch.nn.Module, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    from remap.verify.adapters.hubert import hiddens

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return hiddens(model, wave)


def check(out: Path, ckpt: Path, model: torch.nn.Module, n_layers: int, stable: bool) -> dict[str, float]:
    """remap verify, plus a direct comparison with the model the checkpoint was written from."""
    from remap import compile_file
    from remap.verify import converted, verify

    report = verify(compile_file(RULES), ckpt, out, tolerance=1e-5)  # raises if the load report is not clean
    assert report.worst <= 1e-5, report.diffs
    # the last layer of a layer_norm_first model is compared through `final` only (see remap.verify)
    expected = {"final", *(f"layer{i}" for i in range(1, n_layers + 1))}  # every layer, stable or not
    assert set(report.diffs) == expected, report.diffs

    wave = torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
    want, got = s3prl_outputs(model, wave), converted(out, wave)
    direct = {k: float((want[k] - got[k]).abs().max()) for k in expected}
    assert max(direct.values()) <= 1e-5, direct
    return {**report.diffs, **{f"direct-{k}": v for k, v in direct.items()}}


def layout_of(out: Path) -> str:
    with safe_open(out / "model.safetensors", "pt") as f:
        return f.metadata()["remap.layout"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_converted_model_matches_s3prl(variant: str, layout: str, cli, tmp_path: Path) -> None:
    config, normalize = VARIANTS[variant], TASKS[variant]
    model = build_s3prl(config, normalize)
    ckpt, out = tmp_path / "hubert.pt", tmp_path / "out"
    save(layout, ckpt, model, config, normalize)
    result = cli("apply", RULES, ckpt, "-o", out)
    assert result.code == 0, result.err
    assert "0 initialised" in result.out and "3 dropped" in result.out, result.out
    assert layout_of(out) == layout
    check(out, ckpt, model, config["encoder_layers"], stable=bool(config.get("layer_norm_first")))


def test_layouts_are_detected(tmp_path: Path) -> None:
    from remap import compile_file
    from remap.io import select_source
    from remap.io.readers import read_checkpoint

    rules = compile_file(RULES)
    model = build_s3prl(BASE)
    for layout in LAYOUTS:
        save(layout, tmp_path / f"{layout}.pt", model, BASE)
        source = select_source(read_checkpoint(tmp_path / f"{layout}.pt"), rules.source)
        assert (source.layout, source.config["encoder_layers"], len(source.tensors)) == (layout, 2, 51)
    # hydra-era fairseq checkpoints keep an `args: None` entry next to `cfg`
    torch.save({"args": None, "cfg": {"model": BASE, "task": task_cfg()}, "model": model.state_dict()},
               tmp_path / "both.pt")
    source = select_source(read_checkpoint(tmp_path / "both.pt"), rules.source)
    assert (source.layout, source.config["conv_pos"]) == ("fairseq", 16)


def test_untied_heads_target_glu_and_no_projection(cli, tmp_path: Path) -> None:
    """Conv width == model width (no post_extract_proj), relu, 3 layers, untied heads with target_glu."""
    config = {**BASE, "conv_feature_layers": "[(32,10,5)] + [(32,3,2)] * 3", "encoder_layers": 3,
              "activation_fn": "relu", "untie_final_proj": True, "target_glu": True, "conv_pos": 9,
              "conv_pos_groups": 2}
    from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig

    torch.manual_seed(0)
    model = perturb(HubertModel(HubertConfig(**{k: v for k, v in config.items() if k != "_name"}),
                                HubertPretrainingConfig(), [SYMBOLS, SYMBOLS[:5]]), 3)
    assert model.post_extract_proj is None
    ckpt, out = tmp_path / "hubert.pt", tmp_path / "out"
    save("fairseq", ckpt, model, config)
    result = cli("apply", RULES, ckpt, "-o", out)
    assert result.code == 0, result.err
    assert "2 initialised" in result.out and "5 dropped" in result.out, result.out
    check(out, ckpt, model, 3, stable=False)


def test_parity_check_catches_a_same_shape_mix_up(cli, tmp_path: Path) -> None:
    """Two same-shape layer norms swapped: shapes and accounting are fine, parity must fail."""
    from remap import compile_file
    from remap.verify import verify

    swapped = tmp_path / "hubert.yaml"  # same name, so the same adapter
    swapped.write_text(swap_layer_norm_targets(RULES.read_text()))
    model = build_s3prl(BASE)
    ckpt, out = tmp_path / "hubert.pt", tmp_path / "out"
    save("fairseq", ckpt, model, BASE)
    assert cli("apply", swapped, ckpt, "-o", out).code == 0
    assert verify(compile_file(swapped), ckpt, out).worst > 1e-2


def test_conformer_layers_are_refused(cli, tmp_path: Path) -> None:
    model = build_s3prl(BASE)
    ckpt = tmp_path / "hubert.pt"
    save("s3prl", ckpt, model, {**BASE, "layer_type": "conformer"})
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out")
    assert result.code == 1
    assert "only layer_type 'transformer' exists in HubertModel" in result.err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("normalize", [False, True])
def test_do_normalize_follows_the_task_config(layout: str, normalize: bool, cli, tmp_path: Path) -> None:
    """fairseq's task option `normalize` (false for base, true for large) becomes do_normalize."""
    import json

    model = build_s3prl(BASE, normalize=normalize)
    ckpt, out = tmp_path / "c.pt", tmp_path / "out"
    save(layout, ckpt, model, BASE, normalize=normalize)
    assert cli("apply", RULES, ckpt, "-o", out).code == 0
    assert json.loads((out / "preprocessor_config.json").read_text())["do_normalize"] is normalize


@pytest.mark.parametrize("era", ["hydra", "args"])
def test_finetuned_hubert_is_refused(era: str, cli, tmp_path: Path) -> None:
    """fairseq's HubertCtc: the fine-tuning config names w2v_path and carries w2v_args; no layout matches."""
    import argparse

    model = build_s3prl(BASE)
    state = {f"w2v_encoder.w2v_model.{k}": v for k, v in model.state_dict().items()}
    finetune = {"_name": "hubert_ctc", "w2v_path": "/ckpt/hubert_base_ls960.pt", "final_dropout": 0.1}
    ckpt = tmp_path / "finetuned.pt"
    if era == "hydra":
        torch.save({"args": None, "cfg": {"model": {**finetune, "w2v_args": {"model": BASE, "task": task_cfg()}},
                                          "task": task_cfg()}, "model": state}, ckpt)
    else:
        torch.save({"args": argparse.Namespace(**{**task_cfg(), **finetune},
                                                      w2v_args=argparse.Namespace(**BASE)),
                    "model": state}, ckpt)
    result = cli("apply", RULES, ckpt, "-o", tmp_path / "out")
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert ("matches none of the rule file's layouts (fairseq needs cfg, model (and no cfg.model.w2v_args, "
            "cfg.model.w2v_path); fairseq-args needs args, model (and no cfg, args.w2v_args, args.w2v_path); "
            "s3prl needs model_cfg, model_weight)") in result.err


def test_args_namespace_next_to_cfg_is_read_through_cfg(tmp_path: Path) -> None:
    """fairseq converts args to cfg when it loads a file; one re-saved with both is read through cfg."""
    import argparse

    from remap import compile_file
    from remap.io import select_source
    from remap.io.readers import read_checkpoint

    model = build_s3prl(BASE)
    torch.save({"args": argparse.Namespace(**{**BASE, "conv_pos": 999}), "cfg": {"model": BASE, "task": task_cfg()},
                "model": model.state_dict()}, tmp_path / "both.pt")
    source = select_source(read_checkpoint(tmp_path / "both.pt"), compile_file(RULES).source)
    assert (source.layout, source.config["conv_pos"]) == ("fairseq", 16)


def test_ambiguous_and_empty_configs_are_refused(cli, tmp_path: Path) -> None:
    model = build_s3prl(BASE)
    both = tmp_path / "both.pt"
    torch.save({"cfg": {"model": BASE, "task": task_cfg()}, "model": model.state_dict(),
                "model_cfg": BASE, "task_cfg": task_cfg(), "model_weight": model.state_dict()}, both)
    result = cli("apply", RULES, both, "-o", tmp_path / "out")
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert "matches several of the rule file's layouts (fairseq and s3prl)" in result.err
    empty = tmp_path / "empty.pt"
    torch.save({"model_cfg": {"_name": "hubert"}, "task_cfg": {"_name": "hubert_pretraining"},
                "model_weight": model.state_dict()}, empty)
    result = cli("apply", RULES, empty, "-o", tmp_path / "out")
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert ("the config at 'task_cfg', 'model_cfg' holds none of the fields the rule file declares" in result.err
            and "(layout 's3prl')" in result.err)
