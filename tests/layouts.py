"""Writers for the checkpoint layouts found in the wild, for family tests (fairseq and s3prl's converted).

fairseq is never installed: its classes are stood in by classes whose module
path is fairseq's, so the pickles name ``fairseq.data.dictionary.Dictionary``
exactly as real checkpoints do. The config is a real omegaconf DictConfig.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Any

import torch

SYMBOLS = ["<s>", "<pad>", "</s>", "<unk>", "A", "B", "C"]


def fairseq_modules() -> dict[str, types.ModuleType]:
    module = types.ModuleType("fairseq.data.dictionary")

    class Dictionary:
        def __init__(self, symbols: list[str]) -> None:
            self.bos_word, self.unk_word, self.pad_word, self.eos_word = "<s>", "<unk>", "<pad>", "</s>"
            self.symbols = list(symbols)
            self.count = [1] * len(symbols)
            self.indices = {s: i for i, s in enumerate(symbols)}
            self.nspecial = 4

    Dictionary.__module__, Dictionary.__qualname__ = module.__name__, "Dictionary"
    module.Dictionary = Dictionary  # type: ignore[attr-defined]
    return {"fairseq": types.ModuleType("fairseq"), "fairseq.data": types.ModuleType("fairseq.data"),
            "fairseq.data.dictionary": module}


def save_fairseq(path: Path, state_dict: dict[str, torch.Tensor], model_cfg: dict[str, Any],
                 task_cfg: dict[str, Any], *, old_args: bool = False, symbols: list[str] | None = None) -> None:
    """fairseq's checkpoint: {"cfg": DictConfig(model, task, ...) or "args": Namespace, "model", ...}."""
    from omegaconf import OmegaConf

    modules = fairseq_modules()
    sys.modules.update(modules)
    try:
        dictionary = modules["fairseq.data.dictionary"].Dictionary(symbols or SYMBOLS)  # type: ignore[attr-defined]
        state: dict[str, Any] = {
            "model": state_dict,
            "task_state": {"dictionaries": [dictionary]},
            "optimizer_history": [{"criterion_name": "ModelCriterion", "optimizer_name": "FairseqAdam",
                                   "num_updates": 400000}],
            "extra_state": {"epoch": 3, "train_iterator": {"epoch": 3}},
            "last_optimizer_state": {"state": {}, "param_groups": []},
        }
        if old_args:
            state["args"] = argparse.Namespace(**{**task_cfg, **model_cfg, "arch": model_cfg.get("_name", "x")})
        else:
            state["cfg"] = OmegaConf.create({"common": {"seed": 1}, "model": model_cfg, "task": task_cfg,
                                             "criterion": {"_name": "model"}})
        torch.save(state, path)
    finally:
        for name in modules:
            sys.modules.pop(name, None)


def save_s3prl_converted(path: Path, state_dict: dict[str, torch.Tensor], model_cfg: dict[str, Any],
                         task_cfg: dict[str, Any], symbols: list[str] | None = None) -> None:
    """s3prl's upstream/*/convert.py layout."""
    torch.save({"task_cfg": task_cfg, "model_cfg": model_cfg, "model_weight": state_dict,
                "dictionaries_symbols": [symbols or SYMBOLS]}, path)


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every floating tensor away from its init, so that a wrong mapping shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.state_dict().items():
            if not param.is_floating_point():
                continue
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("weight_g") or name.endswith("original0"):
                param.mul_(1.0 + 0.2 * noise.abs())
            else:
                scale = float(param.std()) if param.numel() > 1 and float(param.std()) > 0 else 0.1
                param.add_(noise * 0.2 * scale)
    return model.eval()


def swap_layer_norm_targets(rules_text: str) -> str:
    """A rule file whose two per-layer layer norms trade targets: same shapes, wrong model."""
    return (rules_text.replace("to: encoder.layers.{n}.layer_norm.{param}", "to: TMP")
            .replace("to: encoder.layers.{n}.final_layer_norm.{param}", "to: encoder.layers.{n}.layer_norm.{param}")
            .replace("to: TMP", "to: encoder.layers.{n}.final_layer_norm.{param}"))
