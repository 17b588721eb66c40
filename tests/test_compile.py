"""Rule files compile into frozen objects; every schema error names file:line and the fix."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from remap import RuleError, compile_file, compile_text
from tests.conftest import RULES

CASES = yaml.safe_load((Path(__file__).parent / "cases" / "compile_errors.yaml").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_rule_file_is_rejected_with_its_line(case: dict[str, str]) -> None:
    with pytest.raises(RuleError) as caught:
        compile_text(case["rules"], "case.yaml")
    assert str(caught.value) == case["error"]


def test_shipped_ruleset_compiles_to_frozen_objects() -> None:
    ruleset = compile_file(RULES)
    assert ruleset.name == "distilhubert"
    with pytest.raises(dataclasses.FrozenInstanceError):
        ruleset.rules[0].cast = "float16"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ruleset.source.defaults["conv_pos"] = 3  # type: ignore[index]


def test_rule_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError):
        compile_text("remap: 1\nname: [", "x.yaml")


def test_missing_rule_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match=r"nope\.yaml: cannot read rule file: No such file or directory"):
        compile_file(tmp_path / "nope.yaml")


def test_errors_come_before_any_checkpoint_is_read(tmp_path: Path, cli) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("remap: 1\nname: t\nsource: {state_dict: sd}\ntarget: {class: HubertModel}\n"
                   "rules:\n  - from: a.{n}\n    to: b.{m}\n")
    result = cli("apply", bad, tmp_path / "does-not-exist.ckpt", "-o", tmp_path / "out")
    assert result.code == 1
    assert result.err.startswith(f"error: {bad}:7: target 'b.{{m}}' uses capture 'm'")
    assert not (tmp_path / "out").exists()


def test_yaml_merge_keys_are_supported() -> None:
    ruleset = compile_text("remap: 1\nname: t\nsource: {state_dict: sd}\ntarget: {class: HubertModel}\n"
                           "rules:\n  - &r\n    from: a.{n}\n    to: b.{n}\n  - <<: *r\n    from: c.{n}\n", "m.yaml")
    assert [(r.pattern.text, r.target.text) for r in ruleset.rules] == [("a.{n}", "b.{n}"), ("c.{n}", "b.{n}")]


def test_bad_merge_is_a_rule_error() -> None:
    with pytest.raises(RuleError, match=r"m\.yaml:6: YAML error: expected a mapping or list of mappings for merging"):
        compile_text("remap: 1\nname: t\nsource: {state_dict: sd}\ntarget: {class: HubertModel}\n"
                     "rules:\n  - <<: 3\n", "m.yaml")
