"""Code in a config value: ``remap verify`` must never let s3prl ``eval`` text from the checkpoint.

s3prl's reference models call ``eval()`` on the conv layer spec (``conv_feature_layers``, or the
distiller's ``extractor_conv_feature_layers``). Each case writes a checkpoint, in the layout of one
verify adapter, whose spec is a Python expression that would create the marker file ``PWNED`` in the
case folder (the working directory) and then still evaluate to a valid spec. ``remap verify`` must
refuse it in one ``error:`` line naming the field, before building anything, and ``PWNED`` must not
exist. The converted folder is never reached, so the cases pass a folder that does not exist.

``bounded=False``: verify imports torch, transformers and s3prl, which no bomb bound is about.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.hostile.runner import Case

MARKER = "PWNED"
# Each payload would touch PWNED and then evaluate to a list of conv layers that s3prl accepts.
TOUCH = f"__import__('pathlib').Path('{MARKER}').touch() or [(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"
TOUCH_IN_REPEAT = f"[(24,10,5)] * (1 + (__import__('pathlib').Path('{MARKER}').touch() or 0))"
TOUCH_BY_EXEC = f"[(24,10,5)] + (exec(\"open('{MARKER}', 'w').close()\") or [(24,3,2)])"
MESSAGE = (r"^error: checkpoint\.pt: config '{field}' is not a literal list of \(dim, kernel, stride\) conv "
           r"layers: .* \(s3prl would run it as Python code; remap does not\)$")


def _weights() -> dict[str, Any]:
    import torch

    return {"encoder.layer_norm.weight": torch.ones(4), "encoder.layer_norm.bias": torch.zeros(4)}


def _save(folder: Path, tree: dict[str, Any]) -> None:
    import torch

    torch.save(tree, folder / "checkpoint.pt")


def _verify(rules: str) -> list[str]:
    return ["verify", rules, "checkpoint.pt", "converted"]


def _distilhubert(folder: Path) -> Sequence[str]:
    """s3prl's pretraining runner layout: {"Distiller", "Config": {"distiller": ...}}."""
    _save(folder, {"Distiller": _weights(), "Config": {"distiller": {
        "extractor_conv_feature_layers": TOUCH, "encoder_layers": 2, "encoder_embed_dim": 4}}})
    return _verify("distilhubert")


def _hubert_fairseq(folder: Path) -> Sequence[str]:
    """fairseq (hydra): {"cfg": {"model", "task"}, "model", "args": None}."""
    _save(folder, {"args": None, "model": _weights(), "cfg": {
        "model": {"_name": "hubert", "conv_feature_layers": TOUCH_IN_REPEAT, "encoder_layers": 2, "label_rate": 50},
        "task": {"_name": "hubert_pretraining", "normalize": False}}})
    return _verify("hubert")


def _wav2vec2_args(folder: Path) -> Sequence[str]:
    """fairseq (argparse): {"args": Namespace(flat), "model"}."""
    _save(folder, {"model": _weights(), "args": argparse.Namespace(
        arch="wav2vec2", conv_feature_layers=TOUCH_BY_EXEC, encoder_layers=2, normalize=False)})
    return _verify("wav2vec2")


def _wav2vec2_ctc_hydra(folder: Path) -> Sequence[str]:
    """fairseq-hydra-train's fine-tuned layout: the spec is in cfg.model.w2v_args.model."""
    _save(folder, {"args": None, "model": _weights(), "task_state": {}, "cfg": {
        "model": {"_name": "wav2vec_ctc", "w2v_path": "/ckpt/pretrained.pt", "final_dropout": 0.1,
                  "conv_feature_layers": "[(512, 10, 5)]",
                  "w2v_args": {"model": {"_name": "wav2vec2", "conv_feature_layers": TOUCH, "encoder_layers": 2}}},
        "task": {"_name": "audio_finetuning", "normalize": False}, "criterion": {"_name": "ctc"}}})
    return _verify("wav2vec2-ctc")


def _wav2vec2_ctc_args(folder: Path) -> Sequence[str]:
    """The argparse-era fine-tuned layout: the spec is in args.w2v_args (a flat Namespace)."""
    _save(folder, {"model": _weights(), "args": argparse.Namespace(
        arch="wav2vec_ctc", w2v_path="/ckpt/pretrained.pt", final_dropout=0.1, normalize=False,
        w2v_args=argparse.Namespace(arch="wav2vec2", conv_feature_layers=TOUCH_IN_REPEAT, encoder_layers=2))})
    return _verify("wav2vec2-ctc")


def _wavlm_official(folder: Path) -> Sequence[str]:
    """Microsoft's release layout: {"cfg": flat WavLMConfig fields, "model"}."""
    _save(folder, {"model": _weights(), "cfg": {"conv_feature_layers": TOUCH, "encoder_layers": 2}})
    return _verify("wavlm")


def _wavlm_fairseq(folder: Path) -> Sequence[str]:
    """fairseq's trainer layout for WavLM: {"cfg": {"model", "task"}, "model"}."""
    _save(folder, {"args": None, "model": _weights(), "cfg": {
        "model": {"_name": "wavlm", "conv_feature_layers": TOUCH_BY_EXEC, "encoder_layers": 2},
        "task": {"_name": "audio_pretraining", "normalize": False}}})
    return _verify("wavlm")


def _data2vec_s3prl(folder: Path) -> Sequence[str]:
    """s3prl's converted layout: {"task_cfg", "model_cfg", "model_weight"}."""
    _save(folder, {"model_weight": _weights(), "task_cfg": {"normalize": True}, "model_cfg": {
        "_name": "data2vec_audio", "extractor_mode": "layer_norm", "conv_feature_layers": TOUCH,
        "encoder_layers": 2}})
    return _verify("data2vec-audio")


def _case(name: str, build: Callable[[Path], Sequence[str]], field: str = "conv_feature_layers") -> Case:
    return Case(name, build, message=MESSAGE.format(field=field), marker=MARKER, bounded=False)


CASES = [
    _case("verify-distilhubert-conv-spec-runs-code", _distilhubert, "extractor_conv_feature_layers"),
    _case("verify-hubert-fairseq-conv-spec-runs-code", _hubert_fairseq),
    _case("verify-wav2vec2-args-conv-spec-runs-code", _wav2vec2_args),
    _case("verify-wav2vec2-ctc-hydra-conv-spec-runs-code", _wav2vec2_ctc_hydra),
    _case("verify-wav2vec2-ctc-args-conv-spec-runs-code", _wav2vec2_ctc_args),
    _case("verify-wavlm-official-conv-spec-runs-code", _wavlm_official),
    _case("verify-wavlm-fairseq-conv-spec-runs-code", _wavlm_fairseq),
    _case("verify-data2vec-audio-s3prl-conv-spec-runs-code", _data2vec_s3prl),
]
