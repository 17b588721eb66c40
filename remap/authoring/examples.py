"""Running a rule file's inline examples, like unit tests of single rules.

Each example is checked against the whole rule set (not just the rule that
declares it), so an example also catches a second rule that overlaps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..diagnostics import Diagnostic
from ..errors import RemapError
from ..expand import Match, expand
from ..resolve import Resolution, resolve
from ..rules.model import Example, RuleSet
from .explain import describe, near_misses


def _failed(ex: Example, detail: str) -> Diagnostic:
    return Diagnostic(ex.loc.file, f"example '{ex.key}': {detail}", "error", ex.key, ex.loc.line)


def _quoted(targets: tuple[str, ...] | list[str]) -> str:
    return f"'{targets[0]}'" if len(targets) == 1 else "[" + ", ".join(f"'{t}'" for t in targets) + "]"


def _expected(ex: Example) -> str:
    if ex.expect == "to":
        return _quoted(ex.targets or (str(ex.target),))
    if ex.expect == "error":
        return f"an error containing '{ex.target}'"
    return "a drop" if ex.expect == "drop" else "no rule"


def run_example(ruleset: RuleSet, ex: Example) -> Diagnostic | None:  # noqa: PLR0911 - one return per outcome
    """None when the example holds; else what went wrong, at the example's ``file:line``."""
    try:
        env = ruleset.environment({**ruleset.example_config, **ex.config})
        res = resolve(ruleset, ex.key, env, ex.info)
        outputs = _outputs(ruleset, ex, res, env)
    except RemapError as exc:
        return _error_outcome(ex, str(exc))
    if len(res.fired) > 1:
        rules = " and ".join(f"'{f.rule.label}' ({f.rule.loc})" for f in res.fired)
        return _error_outcome(ex, f"{len(res.fired)} rules match: {rules}")
    if ex.expect == "error":
        return _failed(ex, f"expected {_expected(ex)}, but there was no error")
    if not res.fired:
        if ex.expect == "unmatched":
            return None
        misses = "".join(f"; {describe(m)}" for m in near_misses(ruleset, ex.key, env, ex.info))
        return _failed(ex, f"expected {_expected(ex)}, but no rule applies{misses}")
    rule = res.fired[0].rule
    got = "a drop" if outputs is None else _quoted([key for key, _ in outputs])
    by = f"'{rule.label}' ({rule.loc})"
    if got != _expected(ex):
        return _failed(ex, f"expected {_expected(ex)}, got {got} from rule {by}")
    if ex.rule is not None and rule is not ex.rule:
        return _failed(ex, f"expected rule '{ex.rule.label}' ({ex.rule.loc}) to produce it, "
                           f"but rule {by} did")
    shapes = [shape for _, shape in outputs or []]
    if ex.shapes is not None and shapes != list(ex.shapes):
        return _failed(ex, f"expected shapes {[list(s) for s in ex.shapes]}, got "
                           f"{[list(s) if s is not None else None for s in shapes]} from rule {by}")
    return None


def _outputs(ruleset: RuleSet, ex: Example, res: Resolution,
             env: Mapping[str, Any]) -> list[tuple[str, tuple[int, ...] | None]] | None:
    """The targets (with shapes, when the example gives input shapes) of the rule that fired; None for a drop."""
    if len(res.fired) != 1 or res.fired[0].rule.target is None:
        return None
    fired = res.fired[0]
    if ex.info is None:
        return [(key, None) for key in fired.rule.render_targets(fired.captures)]
    infos = {ex.key: ex.info, **dict(ex.inputs)}
    matches = [Match(ex.key, fired.captures, fired.position)]
    for key, info in ex.inputs:
        other = [f for f in resolve(ruleset, key, env, info).fired if f.rule is fired.rule]
        if not other:
            raise RemapError(f"example input '{key}' is not a source of rule '{fired.rule.label}'")
        matches.append(Match(key, other[0].captures, other[0].position))
    problems: list[Diagnostic] = []
    entries = expand(fired.rule, matches, infos, env, problems)
    if problems:
        raise RemapError(problems[0].message)
    return [(e.target, e.info.shape) for e in entries]


def _error_outcome(ex: Example, message: str) -> Diagnostic | None:
    if ex.expect == "error" and ex.target is not None and ex.target in message:
        return None
    return _failed(ex, f"expected {_expected(ex)}, but {message}")


def run_examples(ruleset: RuleSet) -> list[Diagnostic]:
    """The examples that fail (an empty list when all of them hold), in file order."""
    return [failure for ex in ruleset.examples if (failure := run_example(ruleset, ex)) is not None]
