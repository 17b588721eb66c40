"""`pytest rules/` collects each inline example as a test item and reports failures like `remap test`."""

from __future__ import annotations

import pytest

from tests.conftest import RULES, example_count

GOOD = """\
remap: 1
name: p
source: {state_dict: sd}
target: {class: HubertModel}
rules:
  - from: layers.{n:int}.fc1.weight
    to: encoder.layers.{n}.dense.weight
    examples:
      - layers.0.fc1.weight: encoder.layers.0.dense.weight
      - layers.1.fc1.weight: encoder.layers.1.dense.weight
"""


def test_examples_become_items_with_rule_ids(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", rules=GOOD)
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines([
        "rules.yaml::layers.{n:int}.fc1.weight[[]layers.0.fc1.weight[]]",
        "rules.yaml::layers.{n:int}.fc1.weight[[]layers.1.fc1.weight[]]",
    ])


def test_a_wrong_example_fails_with_the_remap_test_message(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", rules=GOOD.replace("encoder.layers.1.dense.weight", "encoder.layers.1.fc.weight"))
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*rules.yaml:10: example 'layers.1.fc1.weight': expected 'encoder.layers.1.fc.weight', got "
        "'encoder.layers.1.dense.weight' from rule 'layers.{n:int}.fc1.weight' (*rules.yaml:6)"])


def test_a_broken_rule_file_is_a_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", rules=GOOD.replace("    to: encoder", "    tto: encoder"))
    result = pytester.runpytest("-q")
    result.stdout.fnmatch_lines(["*rules.yaml:7: unknown field 'tto' in a rule (did you mean 'to'?)*"])
    assert result.ret != 0


def test_other_yaml_files_are_ignored(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", config="model: {layers: 2}\n")
    result = pytester.runpytest("-q")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_shipped_rule_files_are_part_of_the_suite(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(str(RULES), "-q")
    result.assert_outcomes(passed=example_count())
