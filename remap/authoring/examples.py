"""Running a rule file's inline examples, like unit tests of single rules.

Each example is checked against the whole rule set (not just the rule that
declares it), so an example also catches a second rule that overlaps.
"""

from __future__ import annotations

from ..diagnostics import Diagnostic
from ..errors import RemapError
from ..planner import resolve
from ..rules.model import Example, RuleSet
from .explain import describe, near_misses


def _failed(ex: Example, detail: str) -> Diagnostic:
    return Diagnostic(ex.loc.file, f"example '{ex.key}': {detail}", "error", ex.key, ex.loc.line)


def _expected(ex: Example) -> str:
    if ex.expect == "to":
        return f"'{ex.target}'"
    if ex.expect == "error":
        return f"an error containing '{ex.target}'"
    return "a drop" if ex.expect == "drop" else "no rule"


def run_example(ruleset: RuleSet, ex: Example) -> Diagnostic | None:  # noqa: PLR0911 - one return per outcome
    """None when the example holds; else what went wrong, at the example's ``file:line``."""
    try:
        env = ruleset.environment({**ruleset.example_config, **ex.config})
        res = resolve(ruleset, ex.key, env, ex.info)
    except RemapError as exc:
        return _error_outcome(ex, str(exc))
    if len(res.fired) > 1:
        rules = " and ".join(f"'{r.label}' ({r.loc})" for r, _ in res.fired)
        return _error_outcome(ex, f"{len(res.fired)} rules match: {rules}")
    if ex.expect == "error":
        return _failed(ex, f"expected {_expected(ex)}, but there was no error")
    if not res.fired:
        if ex.expect == "unmatched":
            return None
        misses = "".join(f"; {describe(m)}" for m in near_misses(ruleset, ex.key, env, ex.info))
        return _failed(ex, f"expected {_expected(ex)}, but no rule applies{misses}")
    rule, captures = res.fired[0]
    got = "a drop" if rule.target is None else f"'{rule.target.render(captures)}'"
    by = f"'{rule.label}' ({rule.loc})"
    if got != _expected(ex):
        return _failed(ex, f"expected {_expected(ex)}, got {got} from rule {by}")
    if ex.rule is not None and rule is not ex.rule:
        return _failed(ex, f"expected rule '{ex.rule.label}' ({ex.rule.loc}) to produce it, "
                                  f"but rule {by} did")
    return None


def _error_outcome(ex: Example, message: str) -> Diagnostic | None:
    if ex.expect == "error" and ex.target is not None and ex.target in message:
        return None
    return _failed(ex, f"expected {_expected(ex)}, but {message}")


def run_examples(ruleset: RuleSet) -> list[Diagnostic]:
    """The examples that fail (an empty list when all of them hold), in file order."""
    return [failure for ex in ruleset.examples if (failure := run_example(ruleset, ex)) is not None]
