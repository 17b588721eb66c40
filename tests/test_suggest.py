"""`remap suggest` drafts DistilHuBERT's rules; judged against the shipped (parity-tested) rule file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remap import compile_text, prepare, run_examples
from remap.authoring.suggest import draft, find_state_dict
from remap.io.readers import read_checkpoint
from tests.conftest import EXAMPLE, RULES, TINY


def score(ckpt: Path) -> tuple[int, int, str]:
    """(renames the draft gets right, renames the shipped rules make, draft text)."""
    truth = prepare(RULES, ckpt)
    assert truth.target is not None and truth.plan.ok
    text, mapping = draft(truth.source.infos, truth.target.tensors, name="d", state_dict="Distiller",
                          model_class="HubertModel")
    expected = {e.source: e.target for e in truth.plan.entries}
    return sum(mapping.get(k) == v for k, v in expected.items()), len(expected), text


@pytest.mark.parametrize("variant", [
    {"encoder_layers": 2, "n_tasks": 3},  # DistilHuBERT as published
    {**TINY, "extractor_mode": "layer_norm", "layer_norm_first": True},
    {**TINY, "extractor_conv_feature_layers": "[(32,10,5)] + [(32,3,2)] * 3"},
], ids=["published", "layer-norm", "no-projection"])
def test_draft_gets_every_distilhubert_rename_right(variant, make_ckpt) -> None:
    ckpt, _ = make_ckpt(variant)
    right, total, text = score(ckpt)
    assert (right, total) == (total, total)
    ruleset = compile_text(text, "draft.yaml")
    assert run_examples(ruleset) == []


def test_draft_marks_what_it_cannot_pair_as_todo() -> None:
    _, _, text = score(EXAMPLE)
    assert "  # TODO: no target for 'output_layer.{}.weight' [3, 32, 32], [96, 32]; map it, or drop it:" in text
    assert "#   masked_spec_embed [32]" in text


def test_state_dict_is_found_by_tensor_count() -> None:
    assert find_state_dict(read_checkpoint(EXAMPLE)) == "Distiller"


def test_suggest_command_writes_a_draft(cli, tmp_path: Path) -> None:
    out = tmp_path / "model"
    assert cli("apply", RULES, EXAMPLE, "-o", out).code == 0
    config = tmp_path / "config.json"
    config.write_text(json.dumps(json.loads((out / "config.json").read_text())))
    result = cli("suggest", EXAMPLE, "--target", "HubertModel", "--config", config, "-o", tmp_path / "draft.yaml")
    assert result.code == 0, result.err
    assert result.out == f"wrote {tmp_path / 'draft.yaml'}: 48 of 52 source keys paired; see the TODO lines\n"
    assert cli("test", tmp_path / "draft.yaml").code == 0


def test_draft_proposes_a_split_for_a_fused_qkv_projection() -> None:
    """nn.MultiheadAttention's in_proj_weight [3d, d] against separate q/k/v projections of [d, d]."""
    from remap.tensors import TensorInfo

    d = 8
    source: dict[str, TensorInfo] = {}
    target: dict[str, TensorInfo] = {}
    for n in range(2):
        source[f"layers.{n}.attn.in_proj_weight"] = TensorInfo((3 * d, d), "float32")
        source[f"layers.{n}.attn.in_proj_bias"] = TensorInfo((3 * d,), "float32")
        source[f"layers.{n}.attn.out_proj.weight"] = TensorInfo((d, d), "float32")
        for proj in ("v", "k", "q"):
            target[f"encoder.layer.{n}.attention.{proj}_proj.weight"] = TensorInfo((d, d), "float32")
            target[f"encoder.layer.{n}.attention.{proj}_proj.bias"] = TensorInfo((d,), "float32")
        target[f"encoder.layer.{n}.attention.o_proj.weight"] = TensorInfo((d, d), "float32")
    text, mapping = draft(source, target, name="mha", state_dict="", model_class="X")
    assert mapping["layers.1.attn.in_proj_weight"] == ("encoder.layer.1.attention.q_proj.weight, "
                                                       "encoder.layer.1.attention.k_proj.weight, "
                                                       "encoder.layer.1.attention.v_proj.weight")
    assert "    split: 0  # rows 24 = 8 + 8 + 8; check the order of the targets" in text
    ruleset = compile_text(text, "draft.yaml")
    assert run_examples(ruleset) == []
    assert sum(r.structure.name == "split" for r in ruleset.rules) == 2
