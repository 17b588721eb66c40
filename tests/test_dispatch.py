"""The rule index never hides a rule that matches: candidates are a superset of the naive scan."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from remap.errors import Loc
from remap.rules.dispatch import RuleIndex
from remap.rules.model import Rule
from remap.rules.patterns import compile_pattern, compile_regex

WORDS = ["a", "b", "fc1", "0", "1", "layers", "weight"]
segment = st.one_of(st.sampled_from(WORDS), st.sampled_from(["{x}", "{n:int}", "*", "{p:a|b}", "{rest:path}", "**"]))


def rules_from(patterns: list[list[str]], regexes: list[str]) -> tuple[Rule, ...]:
    rules = []
    for i, parts in enumerate(patterns):
        used: set[str] = set()
        unique = []
        for part in parts:  # a capture name may appear once per pattern; repeat ones become wildcards
            unique.append("*" if part.startswith("{") and part in used else part)
            used.add(part)
        text = ".".join(unique)
        rules.append(Rule(Loc("r", i), compile_pattern(text, Loc("r", i)), None))
    rules += [Rule(Loc("x", i), compile_regex(r, Loc("x", i)), None) for i, r in enumerate(regexes)]
    return tuple(rules)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(segment, min_size=1, max_size=4), min_size=1, max_size=12),
       st.lists(st.sampled_from([r"a\..*", r"(?P<k>\d+)\.weight"]), max_size=2),
       st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=5), min_size=1, max_size=20))
def test_candidates_include_every_matching_rule(patterns, regexes, keys) -> None:
    rules = rules_from(patterns, regexes)
    index = RuleIndex(rules)
    for parts in keys:
        key = ".".join(parts)
        naive = [r for r in rules if r.pattern.match(key) is not None]
        candidates = index.candidates(key)
        assert all(r in candidates for r in naive)
        assert candidates == sorted(candidates, key=rules.index)
