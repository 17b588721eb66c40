"""Running a rule file's inline examples, like unit tests of single rules.

Each example is checked against the whole rule set (not just the rule that
declares it), so an example also catches a second rule that overlaps.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RemapError
from .explain import describe, near_misses
from .planner import resolve
from .rules import Example, RuleSet


@dataclass(frozen=True)
class Outcome:
    example: Example
    passed: bool
    detail: str  # why it failed; empty when it passed

    def describe(self) -> str:
        ex = self.example
        return f"{ex.loc}: example '{ex.key}': {self.detail}"


def _expected(ex: Example) -> str:
    if ex.expect == "to":
        return f"'{ex.target}'"
    if ex.expect == "error":
        return f"an error containing '{ex.target}'"
    return "a drop" if ex.expect == "drop" else "no rule"


def run_example(ruleset: RuleSet, ex: Example) -> Outcome:
    try:
        env = ruleset.environment(ex.config)
        res = resolve(ruleset, ex.key, env, ex.info)
    except RemapError as exc:
        return _error_outcome(ex, str(exc))
    if len(res.fired) > 1:
        rules = " and ".join(f"'{r.label}' ({r.loc})" for r, _ in res.fired)
        return _error_outcome(ex, f"{len(res.fired)} rules match: {rules}")
    if ex.expect == "error":
        return Outcome(ex, False, f"expected {_expected(ex)}, but there was no error")
    if not res.fired:
        if ex.expect == "unmatched":
            return Outcome(ex, True, "")
        misses = "".join(f"; {describe(m)}" for m in near_misses(ruleset, ex.key, env, ex.info))
        return Outcome(ex, False, f"expected {_expected(ex)}, but no rule applies{misses}")
    rule, captures = res.fired[0]
    got = "a drop" if rule.target is None else f"'{rule.target.render(captures)}'"
    by = f"'{rule.label}' ({rule.loc})"
    if got != _expected(ex):
        return Outcome(ex, False, f"expected {_expected(ex)}, got {got} from rule {by}")
    if ex.rule is not None and rule is not ex.rule:
        return Outcome(ex, False, f"expected rule '{ex.rule.label}' ({ex.rule.loc}) to produce it, "
                                  f"but rule {by} did")
    return Outcome(ex, True, "")


def _error_outcome(ex: Example, message: str) -> Outcome:
    if ex.expect == "error" and ex.target is not None and ex.target in message:
        return Outcome(ex, True, "")
    return Outcome(ex, False, f"expected {_expected(ex)}, but {message}")


def run_examples(ruleset: RuleSet) -> list[Outcome]:
    return [run_example(ruleset, ex) for ex in ruleset.examples]
