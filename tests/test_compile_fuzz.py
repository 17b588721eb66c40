"""Property: any text either compiles or raises RuleError whose line lies inside the file."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remap import RuleError, compile_text
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
