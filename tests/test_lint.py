"""`remap lint` finds seeded dead and overlapping rules, unreachable targets and non-invertible rules."""

from __future__ import annotations

from pathlib import Path

from remap import compile_text
from remap.authoring.lint import dead_and_dynamic, invertibility, overlaps, unreachable_targets
from remap.tensors import TensorInfo
from tests.conftest import EXAMPLE, RULES

SEEDED = """\
remap: 1
name: seeded
source: {state_dict: sd, defaults: {mode: a}}
target: {class: HubertModel}
rules:
  - from: layers.{n:int}.weight
    to: encoder.layers.{n}.weight
    examples:
      - layers.3.weight: encoder.layers.3.weight
  - from: layers.0.{p}
    to: first.{p}
  - from: norm.{p}
    to: norm_a.{p}
    when: mode == "a"
    examples:
      - norm.weight: norm_a.weight
  - from: norm.{p}
    to: norm_b.{p}
    when: mode == "b"
    examples:
      - {key: norm.bias, config: {mode: b}, to: norm_b.bias}
  - regex: 'heads\\.(?P<i>\\d+)\\b.*'
    to: out.{i}
  - from: heads.{i}.{rest:path}
    to: out.{i}
    examples:
      - heads.1.w: out.1
  - from: unused.{x}.{y}
    to: merged.{x}
    cast: float16
"""


def messages(findings) -> list[str]:
    return [str(f) for f in findings]


def test_static_overlap_is_a_warning_with_a_witness_key() -> None:
    found = messages(overlaps(compile_text(SEEDED, "s.yaml")))
    assert ("s.yaml:6: warning: rules 'layers.{n:int}.weight' (s.yaml:6) and 'layers.0.{p}' (s.yaml:10) both match "
            "keys like 'layers.0.weight'; make the patterns or conditions exclusive") in found


def test_overlap_kept_apart_by_conditions_is_a_note() -> None:
    import re

    found = messages(overlaps(compile_text(SEEDED, "s.yaml")))
    pattern = (r"s\.yaml:12: note: rules 'norm\.\{p\}' \(s\.yaml:12\) and 'norm\.\{p\}' \(s\.yaml:17\) both match "
               r"keys like 'norm\.[^.']+', but their conditions kept them apart in every config tried")
    assert [f for f in found if re.fullmatch(pattern, f)], found


def test_regex_overlap_is_found_from_example_keys() -> None:
    found = messages(dead_and_dynamic(compile_text(SEEDED, "s.yaml"), None, None))
    assert ("s.yaml:22: warning: key 'heads.1.w' matches 'heads\\.(?P<i>\\d+)\\b.*' (s.yaml:22) and "
            "'heads.{i}.{rest:path}' (s.yaml:24)") in found


def test_rules_nothing_exercises_are_dead() -> None:
    found = messages(dead_and_dynamic(compile_text(SEEDED, "s.yaml"), None, None))
    assert [f for f in found if "never exercised" in f] == [
        "s.yaml:10: warning: rule 'layers.0.{p}' is never exercised: no example applies it",
        "s.yaml:28: warning: rule 'unused.{x}.{y}' is never exercised: no example applies it"]


def test_source_keys_count_as_exercise() -> None:
    source = {"layers.0.bias": TensorInfo((2,), "float32"), "unused.a.b": TensorInfo((2,), "float32")}
    found = messages(dead_and_dynamic(compile_text(SEEDED, "s.yaml"), source, {}))
    assert [f for f in found if "never exercised" in f] == []


def test_invertibility_notes() -> None:
    found = messages(invertibility(compile_text(SEEDED, "s.yaml")))
    assert found == [
        "s.yaml:22: note: rule 'heads\\.(?P<i>\\d+)\\b.*' is a raw regex; its inverse cannot be derived",
        "s.yaml:24: note: rule 'heads.{i}.{rest:path}' is many-to-one: its pattern has parts the target does not keep",
        "s.yaml:28: note: rule 'unused.{x}.{y}' is many-to-one: its pattern has parts the target does not keep",
        "s.yaml:28: note: rule 'unused.{x}.{y}' casts to float16, which may lose precision"]


def test_unreachable_target_keys() -> None:
    ruleset = compile_text(SEEDED, "s.yaml")
    target = {"encoder.layers.7.weight": TensorInfo((1,), "float32"), "norm_a.bias": TensorInfo((1,), "float32"),
              "pos_conv.weight": TensorInfo((1,), "float32")}
    assert messages(unreachable_targets(ruleset, target, ruleset.environment({}), "Toy")) == [
        "s.yaml: warning: Toy key 'pos_conv.weight' can be produced by no rule, init or allow_missing entry"]


def test_lint_command_on_the_shipped_rules_is_clean(cli) -> None:
    result = cli("lint", RULES, EXAMPLE)
    assert result.code == 0, result.out
    assert result.out.splitlines()[-1] == "0 warnings, 4 notes"


def test_lint_command_exits_1_on_warnings(cli, tmp_path: Path) -> None:
    seeded = tmp_path / "seeded.yaml"
    seeded.write_text(SEEDED)
    result = cli("lint", seeded, "--no-target")
    assert result.code == 1
    assert result.out.splitlines()[-1] == "4 warnings, 5 notes"  # the cast is a note of its own


def test_unmapped_source_keys_are_warnings() -> None:
    source = {"mystery.weight": TensorInfo((2,), "float32"), "layers.0.bias": TensorInfo((2,), "float32")}
    found = messages(dead_and_dynamic(compile_text(SEEDED, "s.yaml"), source, {}))
    assert "SOURCE: warning: source key 'mystery.weight' is not mapped by any rule" in found
    assert not any("'layers.0.bias' is not mapped" in f for f in found)


def test_lint_reports_a_target_capture_missing_from_its_pattern(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SEEDED.replace("    to: first.{p}", "    to: first.{q}"))
    result = cli("lint", bad, "--no-target")
    assert (result.code, result.err) == (1, f"error: {bad}:11: target 'first.{{q}}' uses capture 'q' that pattern "
                                            "'layers.0.{p}' does not define (captures: p)\n")


def test_target_check_is_skipped_with_a_note_when_defaults_are_not_convertible(cli, tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(SEEDED.replace("source: {state_dict: sd, defaults: {mode: a}}",
                                    "source: {state_dict: sd, defaults: {mode: a}}\nrequires:\n"
                                    "  - {check: mode == 'b', message: needs mode b}"))
    result = cli("lint", rules)
    assert (f"{rules}:6: note: target check skipped: unsupported source: needs mode b (check `mode == 'b'`); "
            "pass a SOURCE checkpoint") in result.out.splitlines()


OPS_RULES = """\
remap: 1
name: ops
source: {state_dict: "", defaults: {n: 2}}
target: {class: HubertModel}
rules:
  - from: a.{i:int}
    to: b.{i - 1}
  - from: c.{i:int}
    to: d.{i // 3}
  - from: e.{i:int}
    to: f.{i // 3}.{i % 3}
  - from: ["g.{i:int}.weight_g", "g.{i:int}.weight_v"]
    fold_weight_norm: 0
    to: g.{i}.weight
  - from: h
    to: h2
    ops: [{reshape: [-1]}]
  - from: r.{l:int}
    dedup: l
    to: r
  - from: s.{l:int}
    dedup: {over: l, count: n}
    to: s
"""


def test_ops_that_a_reverse_conversion_cannot_undo_exactly_are_named() -> None:
    found = messages(invertibility(compile_text(OPS_RULES, "o.yaml")))
    assert found == [
        "o.yaml:8: note: rule 'c.{i:int}' is many-to-one: its pattern has parts the target does not keep",
        "o.yaml:12: note: rule 'g.{i:int}.weight_g + g.{i:int}.weight_v' uses fold_weight_norm, which is numeric "
        "(weight = g * v / |v|), not byte-invertible",
        "o.yaml:17: note: rule 'h' has a reshape without 'back:', so a reverse conversion cannot undo it",
        "o.yaml:18: note: rule 'r.{l:int}' deduplicates without 'count', so a reverse conversion does not know how "
        "many copies to write"]


def test_lint_sees_every_source_pattern_of_a_multi_source_rule(cli, tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(OPS_RULES + "  - from: g.0.weight_v\n    to: stray\n")
    result = cli("lint", rules, "--no-target")
    assert ("rules 'g.{i:int}.weight_g + g.{i:int}.weight_v' (" in result.out
            and "both match keys like 'g.0.weight_v'" in result.out), result.out
