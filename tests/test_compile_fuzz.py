"""Property: any text either compiles or raises RuleError whose line lies inside the file; and YAML
anchors, aliases and nesting cannot make a small file expensive (issue 9)."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remap import RuleError, compile_text
from remap.rules.yamlnode import load_yaml, node_budget
from tests.conftest import RULES

SHIPPED = RULES.read_text().splitlines()
FRAGMENTS = ["remap: 1", "name: x", "rules:", "  - from: a.{n}", "    to: b.{m}", "    when: (", "- ", ": ", "{",
             "[", "&a", "*a", "<<: *a", "!!python/object:os.system", "\t", "  ", "---", "...", "? ", "%YAML 1.1",
             "'", '"', "#", "    examples:", "      - a: b", "init:", "  - key: k", "    fill: eye", "source: 3",
             "target: {class: 1}", "let: {a: b}", "requires: [1]", "{x:int}", "regex: '('", "drop: '**'"]


def mutate(lines: list[str], edits: list[tuple[int, int, str]]) -> str:
    out = list(lines)
    for kind, position, fragment in edits:
        if not out:
            out.append(fragment)
            continue
        i = position % len(out)
        if kind == 0:
            del out[i]
        elif kind == 1:
            out.insert(i, fragment)
        elif kind == 2:
            out[i] = out[i][: len(out[i]) // 2] + fragment
        else:
            out[i] = fragment + out[i]
    return "\n".join(out) + "\n"


edits = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.sampled_from(FRAGMENTS)), max_size=6)


def check(text: str) -> None:
    try:
        compile_text(text, "fuzz.yaml")
    except RuleError as exc:
        match = re.match(r"fuzz\.yaml:(\d+): ", str(exc))
        assert match, f"error without a line: {exc}"
        # YAML also breaks lines at \r, \x85, \u2028 and \u2029, as str.splitlines does;
        # an error at the very end may point one past the last line.
        assert 1 <= int(match.group(1)) <= len(text.splitlines()) + 1, str(exc)
        assert "\n" not in str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits)
def test_mutated_rule_files_compile_or_fail_with_a_located_rule_error(changes) -> None:
    check(mutate(SHIPPED, changes))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_compiles_or_fails_with_a_located_rule_error(text: str) -> None:
    check(text)


values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, width=16),
              st.sampled_from(["a", "a.{n}", "{x:int}", "eye", "x ==", "1", "**", "", "HubertModel", "(?P<n>x)"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["from", "to", "key", "fill", "when", "drop", "regex",
                                                             "check", "message", "examples", "config", "class"]),
                                            inner, max_size=3)),
    max_leaves=8)
FIELDS = ["remap", "name", "source", "target", "rules", "let", "requires", "init", "allow_missing", "examples"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), values, max_size=6), st.booleans())
def test_structured_yaml_compiles_or_fails_with_a_located_rule_error(document: dict, complete: bool) -> None:
    import yaml

    if complete:
        base = {"remap": 1, "name": "f", "source": {"state_dict": "sd"}, "target": {"class": "HubertModel"},
                "rules": []}
        document = {**base, **document}
    check(yaml.safe_dump(document, sort_keys=False))


# Issue 9: a rule file costs at most a small multiple of its size, whatever its anchors and aliases do.

def _laughs(levels: int = 9, merge: bool = False) -> str:
    lines = ["l0: &a0 {k: lol}" if merge else "l0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"l{i}: &a{i} {{k{i}: [{refs}], <<: *a{i - 1}}}" if merge else f"l{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, message", [
    (_laughs(), r"^b\.yaml:5: YAML aliases expand the file to more than \d+ values \(an alias bomb\?\)$"),
    (_laughs(merge=True), r"^b\.yaml:5: YAML aliases expand the file to more than \d+ values"),
    ("x: &a [*a]\n", r"^b\.yaml:1: a YAML alias refers to a value that contains it$"),
    ("x: &a {k: [1, {j: *a}]}\n", r"^b\.yaml:1: a YAML alias refers to a value that contains it$"),
    ("a: 1\nx: " + "[" * 50_000 + "]" * 50_000 + "\n", r"^b\.yaml:2: YAML syntax error: values nest deeper than 100"),
    ("x: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n", r"^b\.yaml:1: YAML syntax error: values nest deeper than 100"),
    ("x:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 3_000)), r"^b\.yaml:100: YAML syntax error: values nest"),
    ("a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 120)),
     r"^b\.yaml:99: values nest deeper than 100 levels through YAML aliases$"),
])
def test_yaml_bombs_are_refused_quickly_with_a_line(text: str, message: str) -> None:
    start = time.perf_counter()
    with pytest.raises(RuleError, match=message):
        load_yaml(text, "b.yaml")
    assert time.perf_counter() - start < 2


def test_the_alias_budget_grows_with_the_file_and_leaves_plain_files_alone() -> None:
    assert node_budget("") == 10_000
    assert load_yaml("x: [" + "1, " * 15_000 + "]\n", "b.yaml").value["x"] == [1] * 15_000  # over 10,000 values
    shared = "base: &b {from: a, to: b, when: x}\n" + "".join(f"r{i}: {{<<: *b, to: c{i}}}\n" for i in range(1_000))
    assert load_yaml(shared, "b.yaml").value["r999"] == {"from": "a", "to": "c999", "when": "x"}


def test_nesting_up_to_the_limit_is_fine() -> None:
    assert load_yaml("x: " + "[" * 99 + "]" * 99 + "\n", "b.yaml").value["x"] is not None
    with pytest.raises(RuleError, match="nest deeper than 100"):
        load_yaml("x: " + "[" * 100 + "]" * 100 + "\n", "b.yaml")


@pytest.mark.parametrize("text, key, expected", [
    ("base: &b {x: 1, y: 2}\na: &a {<<: *b, x: 3}\nc: *a\n", "c", {"y": 2, "x": 3}),
    ("c: {<<: &a {<<: &b {x: 1}, x: 2}}\nd: *a\n", "d", {"x": 2}),
])
def test_an_aliased_mapping_keeps_its_own_keys_over_merged_ones(text: str, key: str, expected: dict) -> None:
    assert load_yaml(text, "b.yaml").value[key] == expected


@st.composite
def anchored_documents(draw: st.DrawFn) -> str:
    """Top-level anchors whose values alias the few before them: sequences, mappings and merges of
    mappings (keys unique to their mapping, so that PyYAML's and the spec's merge orders agree)."""
    lines, mappings = ["a0: &a0 {k0_0: v}"], [0]
    for i in range(1, draw(st.integers(1, 14))):
        refs = draw(st.lists(st.integers(max(0, i - 3), i - 1), min_size=1, max_size=9))
        kind = draw(st.sampled_from(["seq", "map", "merge"]))
        if kind == "seq":
            value = "[" + ", ".join(f"*a{r}" for r in refs) + "]"
        elif kind == "map":
            value = "{" + ", ".join(f"k{i}_{j}: *a{r}" for j, r in enumerate(refs)) + "}"
        else:
            sources = [draw(st.sampled_from(mappings)) for _ in refs]
            value = "{<<: [" + ", ".join(f"*a{r}" for r in sources) + f"], k{i}_own: *a{refs[0]}}}"
        mappings += [i] if kind != "seq" else []
        lines.append(f"a{i}: &a{i} {value}")
    return "\n".join(lines) + "\n"


def _expanded_size(value: object, memo: dict[int, int]) -> int:
    if id(value) not in memo:
        parts = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        memo[id(value)] = 1 + sum(_expanded_size(part, memo) for part in parts)
    return memo[id(value)]


@settings(max_examples=300, deadline=None)
@given(anchored_documents())
def test_aliases_load_as_pyyaml_loads_them_within_the_budget(text: str) -> None:
    import yaml

    expected = yaml.safe_load(text)
    if _expanded_size(expected, {}) > node_budget(text):
        with pytest.raises(RuleError, match=r"^b\.yaml:\d+: YAML aliases expand the file to more than"):
            load_yaml(text, "b.yaml")
    else:
        assert load_yaml(text, "b.yaml").value == expected
