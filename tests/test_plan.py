"""Planning is pure and strict: every key is accounted for, and every problem is reported at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from remap import TensorInfo, compile_text, plan
from remap.errors import Loc
from remap.rules.patterns import compile_pattern

PATTERN_CASES = yaml.safe_load((Path(__file__).parent / "cases" / "patterns.yaml").read_text())


@pytest.mark.parametrize("case", PATTERN_CASES, ids=[f"{c['pattern']}~{c['key']}" for c in PATTERN_CASES])
def test_pattern_matches_whole_keys_with_typed_captures(case: dict[str, Any]) -> None:
    pattern = compile_pattern(case["pattern"], Loc("p", 1))
    raw = pattern.match(case["key"])
    assert (None if raw is None else pattern.typed(raw)) == case["captures"]


def test_int_captures_render_as_written() -> None:
    pattern = compile_pattern("layers.{n:int}.w", Loc("p", 1))
    assert pattern.match("layers.01.w") == {"n": "01"} and pattern.typed({"n": "01"}) == {"n": 1}


RULES = """\
remap: 1
name: toy
source:
  state_dict: sd
  defaults: {norm: group}
target: {class: HubertModel}
rules:
  - from: layers.{n:int}.fc.{p:weight|bias}
    to: encoder.layers.{n}.dense.{p}
  - from: conv.{i:int}.norm.weight
    to: conv.{i}.layer_norm.weight
    when: norm == "layer" or i == 0
  - drop: head.**
init:
  - key: proj.weight
    fill: eye
  - key: spec
    fill: zeros
allow_missing:
  - key: buffers.{name}
"""
F32 = "float32"


def info(*shape: int, dtype: str = F32) -> TensorInfo:
    return TensorInfo(tuple(shape), dtype)


def toy_plan(source: dict[str, TensorInfo], target: dict[str, TensorInfo] | None, rules: str = RULES,
             **env: Any):
    ruleset = compile_text(rules, "toy.yaml")
    return plan(ruleset, source, ruleset.environment(env), target, source_name="ckpt", target_name="Toy")


GOOD_SOURCE = {"layers.0.fc.weight": info(4, 4), "layers.0.fc.bias": info(4), "conv.0.norm.weight": info(4),
               "head.0.weight": info(2, 4)}
GOOD_TARGET = {"encoder.layers.0.dense.weight": info(4, 4), "encoder.layers.0.dense.bias": info(4),
               "conv.0.layer_norm.weight": info(4), "proj.weight": info(4, 4), "spec": info(4),
               "buffers.pos": info(9)}


def test_clean_plan_accounts_for_every_key() -> None:
    p = toy_plan(GOOD_SOURCE, GOOD_TARGET)
    assert p.ok
    assert [(e.source, e.target) for e in p.entries] == [
        ("conv.0.norm.weight", "conv.0.layer_norm.weight"),
        ("layers.0.fc.bias", "encoder.layers.0.dense.bias"),
        ("layers.0.fc.weight", "encoder.layers.0.dense.weight")]
    assert [d.source for d in p.drops] == ["head.0.weight"]
    assert [(i.target, i.init.fill) for i in p.inits] == [("proj.weight", "eye"), ("spec", "zeros")]
    assert [k for k, _ in p.allowed_missing] == ["buffers.pos"]


def test_plan_without_target_model_still_maps_keys() -> None:
    p = toy_plan(GOOD_SOURCE, None)
    assert p.ok and len(p.entries) == 3 and [i.target for i in p.inits] == ["proj.weight", "spec"]


def test_unmapped_key_names_the_rule_whose_condition_failed() -> None:
    p = toy_plan({"conv.1.norm.weight": info(4), "extra.weight": info(1)}, None)
    assert [str(x) for x in p.problems] == [
        "ckpt: source key 'conv.1.norm.weight' is not mapped by any rule; add a rule for it, or drop it "
        "explicitly ('conv.{i:int}.norm.weight' (toy.yaml:10) matched but `norm == \"layer\" or i == 0` is false)",
        "ckpt: source key 'extra.weight' is not mapped by any rule; add a rule for it, or drop it explicitly",
    ]


def test_condition_sees_source_config() -> None:
    p = toy_plan({"conv.1.norm.weight": info(4)}, None, norm="layer")
    assert p.ok and p.entries[0].target == "conv.1.layer_norm.weight"


def test_two_rules_matching_one_key_is_an_error() -> None:
    rules = RULES.replace("  - drop: head.**", "  - drop: head.**\n  - drop: head.0.*")
    p = toy_plan({"head.0.weight": info(1)}, None, rules=rules)
    assert [str(x) for x in p.problems] == [
        "ckpt: source key 'head.0.weight' matches 2 rules: 'head.**' (toy.yaml:13) and 'head.0.*' (toy.yaml:14); "
        "make their patterns or conditions exclusive"]


def test_two_sources_landing_on_one_target_is_an_error() -> None:
    rules = RULES.replace("  - drop: head.**", "  - from: head.{x}.weight\n    to: same")
    p = toy_plan({"head.0.weight": info(1), "head.1.weight": info(1)}, None, rules=rules)
    assert [str(x) for x in p.problems] == [
        "toy.yaml:13: 2 source keys map to target 'same': 'head.0.weight' (toy.yaml:13), "
        "'head.1.weight' (toy.yaml:13)"]


def test_target_problems_are_all_reported_sorted() -> None:
    source = {**GOOD_SOURCE, "layers.0.fc.weight": info(4, 5), "layers.1.fc.bias": info(4)}
    target = {k: v for k, v in GOOD_TARGET.items() if k != "spec"}
    target["encoder.layers.0.extra"] = info(3)
    target["proj.weight"] = info(4, 2)
    p = toy_plan(source, target)
    assert [str(x) for x in p.problems] == [
        "toy.yaml:6: Toy key 'encoder.layers.0.extra' [3] is not produced by any rule; map a source key to it, "
        "or declare it under 'init' or 'allow_missing'",
        "toy.yaml:8: shape mismatch: 'layers.0.fc.weight' is [4, 5] but Toy expects [4, 4] for "
        "'encoder.layers.0.dense.weight'",
        "toy.yaml:8: 'layers.1.fc.bias' maps to 'encoder.layers.1.dense.bias', which Toy does not have "
        "(did you mean 'encoder.layers.0.dense.bias'?)",
        "toy.yaml:15: cannot fill 'proj.weight' with eye: its shape [4, 2] is not square",
        "toy.yaml:17: init key 'spec' is not in Toy",
    ]


def test_missing_target_key_problem_points_at_the_rule_file() -> None:
    p = toy_plan({}, {"lonely": info(2)}, rules=RULES.replace("rules:\n", "rules: []\nxrules:\n").split(
        "xrules:")[0] + "init: []\n")
    assert [str(x) for x in p.problems] == [
        "toy.yaml:6: Toy key 'lonely' [2] is not produced by any rule; map a source key to it, or declare it under "
        "'init' or 'allow_missing'"]


def test_inits_take_the_checkpoints_float_dtype() -> None:
    source = {k: info(*v.shape, dtype="float16") for k, v in GOOD_SOURCE.items()}
    p = toy_plan(source, GOOD_TARGET)
    assert {i.info.dtype for i in p.inits} == {"float16"}  # type: ignore[union-attr]
    assert {e.info.dtype for e in p.entries} == {"float16"}


def test_cast_changes_the_planned_dtype() -> None:
    rules = RULES.replace("    to: encoder.layers.{n}.dense.{p}", "    to: encoder.layers.{n}.dense.{p}\n    cast: bfloat16")
    p = toy_plan({"layers.0.fc.weight": info(4, 4)}, None, rules=rules)
    assert p.entries[0].info == TensorInfo((4, 4), "bfloat16")


def test_a_target_key_covered_twice_is_an_error() -> None:
    rules = RULES.replace("  - key: spec\n    fill: zeros\n", "  - key: spec\n    fill: zeros\n  - key: sp*\n    fill: ones\n")
    rules = rules.replace("  - key: buffers.{name}\n", "  - key: buffers.{name}\n  - key: proj.weight\n")
    p = toy_plan(GOOD_SOURCE, GOOD_TARGET, rules=rules)
    assert [str(x) for x in p.problems] == [
        "toy.yaml:15: Toy key 'proj.weight' is covered by 2 init/allow_missing entries: 'proj.weight' (toy.yaml:15) "
        "and 'proj.weight' (toy.yaml:23); make them exclusive",
        "toy.yaml:17: Toy key 'spec' is covered by 2 init/allow_missing entries: 'spec' (toy.yaml:17) and 'sp*' "
        "(toy.yaml:19); make them exclusive"]


def test_integer_tensor_for_a_float_parameter_is_an_error() -> None:
    source = {**GOOD_SOURCE, "layers.0.fc.bias": info(4, dtype="int64")}
    p = toy_plan(source, GOOD_TARGET)
    assert [str(x) for x in p.problems] == [
        "toy.yaml:8: dtype mismatch: 'layers.0.fc.bias' is int64 but Toy expects a floating-point tensor (float32) "
        "for 'encoder.layers.0.dense.bias'"]


def test_dtype_safetensors_cannot_store_is_an_error() -> None:
    p = toy_plan({"layers.0.fc.bias": info(4, dtype="complex128")}, None)
    assert [str(x) for x in p.problems] == [
        "toy.yaml:8: 'layers.0.fc.bias' has dtype complex128, which safetensors cannot store; add a cast"]


def test_a_condition_failing_at_runtime_is_a_problem_naming_the_key_and_rule() -> None:
    """`shape[1]` of a 1-D tensor: the plan goes on, and the problem says which key, expression and line."""
    rules = RULES.replace('    when: norm == "layer" or i == 0', "    when: shape[1] == 4")
    p = toy_plan({"conv.0.norm.weight": info(4), "conv.1.norm.weight": info(4, 4), "extra": info(1)}, None,
                 rules=rules)
    assert [str(x) for x in p.problems] == [
        "toy.yaml:12: expression `shape[1] == 4` failed: IndexError: tuple index out of range (key "
        "'conv.0.norm.weight', rule 'conv.{i:int}.norm.weight' at toy.yaml:10)",
        "ckpt: source key 'extra' is not mapped by any rule; add a rule for it, or drop it explicitly"]
    assert [e.source for e in p.entries] == ["conv.1.norm.weight"]
    (failed, _) = p.problems
    assert (failed.file, failed.line, failed.key, failed.severity) == ("toy.yaml", 12, "conv.0.norm.weight", "error")
