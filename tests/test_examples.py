"""Inline examples test single rules; failures say what was expected, what happened and which rule did it."""

from __future__ import annotations

from remap import compile_text, run_examples

BASE = """\
remap: 1
name: ex
source: {state_dict: sd, defaults: {norm: group}}
target: {class: HubertModel}
rules:
  - from: conv.{i:int}.2.{p}
    to: conv.{i}.layer_norm.{p}
    when: i == 0 or norm == "layer"
    examples:
      - conv.0.2.weight: conv.0.layer_norm.weight
      - key: conv.3.2.weight
        config: {norm: layer}
        to: conv.3.layer_norm.weight
  - drop: head.**
    examples:
      - head.1.weight: null
"""


def failures(text: str) -> list[str]:
    return [str(failure) for failure in run_examples(compile_text(text, "ex.yaml"))]


def test_passing_examples_pass() -> None:
    ruleset = compile_text(BASE, "ex.yaml")
    assert len(ruleset.examples) == 3
    assert run_examples(ruleset) == []


def test_condition_that_blocks_an_expected_mapping_is_named() -> None:
    text = BASE + "examples:\n  - conv.3.2.weight: conv.3.layer_norm.weight\n"
    assert failures(text) == [
        "ex.yaml:18: example 'conv.3.2.weight': expected 'conv.3.layer_norm.weight', but no rule applies; "
        "'conv.{i:int}.2.{p}' (ex.yaml:6): condition `i == 0 or norm == \"layer\"` is false (with i=3, p='weight')"]


def test_pattern_near_miss_names_the_part_that_failed() -> None:
    text = BASE + "examples:\n  - conv.x.2.weight: conv.x.layer_norm.weight\n"
    assert failures(text) == [
        "ex.yaml:18: example 'conv.x.2.weight': expected 'conv.x.layer_norm.weight', but no rule applies; "
        "'conv.{i:int}.2.{p}' (ex.yaml:6): pattern part '{i:int}' does not match 'x' (after 'conv')"]


def test_example_expecting_a_drop_reports_the_mapping() -> None:
    text = BASE + "examples:\n  - conv.0.2.bias: null\n"
    assert failures(text) == [
        "ex.yaml:18: example 'conv.0.2.bias': expected a drop, got 'conv.0.layer_norm.bias' from rule "
        "'conv.{i:int}.2.{p}' (ex.yaml:6)"]


def test_example_declared_on_a_rule_must_be_produced_by_that_rule() -> None:
    text = BASE.replace("      - head.1.weight: null", "      - head.1.weight: null\n      - conv.0.2.x: null")
    text = text.replace("  - drop: head.**", "  - drop: conv.0.2.x\n  - drop: head.**")
    assert failures(text) == [
        "ex.yaml:18: example 'conv.0.2.x': expected a drop, but 2 rules match: 'conv.{i:int}.2.{p}' (ex.yaml:6) "
        "and 'conv.0.2.x' (ex.yaml:14)"]


def test_unmatched_expectation() -> None:
    text = BASE + "examples:\n  - key: conv.1.2.weight\n    unmatched: true\n  - key: head.x\n    unmatched: true\n"
    assert failures(text) == [
        "ex.yaml:20: example 'head.x': expected no rule, got a drop from rule 'head.**' (ex.yaml:14)"]


def test_example_under_one_rule_produced_by_another_fails() -> None:
    text = BASE.replace("      - head.1.weight: null", "      - conv.0.2.weight: conv.0.layer_norm.weight")
    assert failures(text) == [
        "ex.yaml:16: example 'conv.0.2.weight': expected rule 'head.**' (ex.yaml:14) to produce it, but rule "
        "'conv.{i:int}.2.{p}' (ex.yaml:6) did"]


def test_conditions_can_use_the_tensor_shape() -> None:
    text = BASE.replace("  - drop: head.**", "  - from: proj.weight\n    to: proj_in.weight\n    when: shape[0] > shape[1]\n"
                        "  - from: proj.weight\n    to: proj_out.weight\n    when: shape[0] <= shape[1]\n"
                        "  - drop: head.**")
    text += ("examples:\n  - {key: proj.weight, shape: [8, 4], to: proj_in.weight}\n"
             "  - {key: proj.weight, shape: [4, 8], to: proj_out.weight}\n")
    assert failures(text) == []


def test_examples_can_expect_an_error() -> None:
    text = BASE + "  - drop: head.0.*\n"
    text += ("examples:\n  - key: head.0.w\n    error: 2 rules match\n"
             "  - key: head.1.w\n    error: 2 rules match\n")
    assert failures(text) == [
        "ex.yaml:21: example 'head.1.w': expected an error containing '2 rules match', but there was no error"]


def test_an_unexpected_error_is_reported_as_such() -> None:
    text = BASE + "  - drop: head.0.*\n"
    text += "examples:\n  - key: head.0.w\n    drop: true\n"
    assert failures(text) == [
        "ex.yaml:19: example 'head.0.w': expected a drop, but 2 rules match: 'head.**' (ex.yaml:14) and "
        "'head.0.*' (ex.yaml:17)"]


def test_a_file_level_example_config_applies_to_every_example() -> None:
    """`example_config` sets what the defaults do not describe; an example's own `config` still wins."""
    text = BASE.replace("  - drop: head.**", "  - drop: head.**\n    when: norm == 'layer'") + (
        "example_config: {norm: layer}\n"
        "examples:\n"
        "  - conv.3.2.weight: conv.3.layer_norm.weight\n"
        "  - {key: head.1.weight, config: {norm: group}, unmatched: true}\n")
    ruleset = compile_text(text, "ex.yaml")
    assert dict(ruleset.example_config) == {"norm": "layer"}
    assert failures(text) == []
    assert failures(text.replace("example_config: {norm: layer}\n", "")) == [  # the defaults say norm: group
        "ex.yaml:17: example 'head.1.weight': expected a drop, but no rule applies; 'head.**' (ex.yaml:14): "
        "condition `norm == 'layer'` is false",
        "ex.yaml:19: example 'conv.3.2.weight': expected 'conv.3.layer_norm.weight', but no rule applies; "
        "'conv.{i:int}.2.{p}' (ex.yaml:6): condition `i == 0 or norm == \"layer\"` is false (with i=3, p='weight')"]
