"""Why a rule did or did not apply to a key: the pattern part or the condition that failed.

Used by ``remap explain`` and by example failures (``remap test``, the pytest
plugin) to name near-miss rules.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..diagnostics import Diagnostic
from ..errors import Loc, RemapError
from ..expand import Match, expand
from ..resolve import Fired, resolve, tensor_names
from ..rules.model import Rule, RuleSet
from ..rules.patterns import Pattern, compile_pattern
from ..tensors import TensorInfo

_SEGMENT = re.compile(r"(?:\{[^{}]*\}|[^.{}])+")


@dataclass(frozen=True)
class Miss:
    rule: Rule
    reason: str
    matched: int  # how many characters of the key the rule's pattern matched before failing


def pattern_segments(pattern: Pattern) -> list[str]:
    """Dotted parts of a capture pattern (dots inside braces do not split)."""
    return _SEGMENT.findall(pattern.text)


def pattern_miss(pattern: Pattern, key: str) -> tuple[str, int]:
    """Where ``pattern`` stops matching ``key``: a reason and how far it got."""
    if pattern.is_regex:
        return f"regex '{pattern.text}' does not match", 0
    parts = pattern_segments(pattern)
    matched = 0
    for i in range(1, len(parts) + 1):
        partial = compile_pattern(".".join(parts[:i]), Loc("", 0))
        found = re.compile(partial.regex.pattern + r"(?=\.|\Z)").match(key)
        if found is None:
            rest = key[matched + 1 if matched else 0:]
            got = rest.split(".")[0] if rest else "the end of the key"
            after = f" (after '{key[:matched]}')" if matched else ""
            return f"pattern part '{parts[i - 1]}' does not match '{got}'{after}", matched
        matched = found.end()
    return f"the key goes on after the pattern ends ('{key[matched:]}' is left over)", matched


def why_not(rule: Rule, key: str, env: Mapping[str, Any], info: TensorInfo | None = None) -> Miss | None:
    """None when ``rule`` applies to ``key``; else what failed (for the source pattern that came closest)."""
    misses = []
    for pattern in rule.patterns:
        miss = _why_not(rule, pattern, key, env, info)
        if miss is None:
            return None
        misses.append(miss)
    return max(misses, key=lambda m: m.matched)


def _why_not(rule: Rule, pattern: Pattern, key: str, env: Mapping[str, Any], info: TensorInfo | None) -> Miss | None:
    captures = pattern.match(key)
    if captures is None:
        reason, matched = pattern_miss(pattern, key)
        return Miss(rule, reason, matched)
    if rule.when is None:
        return None
    typed = pattern.typed(captures)
    try:
        ok = rule.when.evaluate({**env, **tensor_names(info), **typed})
    except RemapError as exc:
        return Miss(rule, f"condition failed with an error: {exc.message}", len(key))
    if ok:
        return None
    shown = ", ".join(f"{k}={v!r}" for k, v in typed.items())
    return Miss(rule, f"condition `{rule.when.text}` is false" + (f" (with {shown})" if shown else ""), len(key))


def near_misses(ruleset: RuleSet, key: str, env: Mapping[str, Any], info: TensorInfo | None = None,
                limit: int | None = 3) -> list[Miss]:
    """The rules that came closest to applying, closest first."""
    misses = [m for rule in ruleset.rules if (m := why_not(rule, key, env, info)) is not None]
    misses.sort(key=lambda m: (-m.matched, -difflib.SequenceMatcher(None, m.rule.label, key).ratio()))
    return [m for m in misses if m.matched > 0 or limit is None][:limit]


def describe(miss: Miss) -> str:
    return f"'{miss.rule.label}' ({miss.rule.loc}): {miss.reason}"


def _ops_lines(ruleset: RuleSet, fired: Fired, key: str, info: TensorInfo | None,
               env: Mapping[str, Any]) -> list[str]:
    """For a rule with ops and a given shape: each output's shape and the steps that make it."""
    rule = fired.rule
    if rule.target is None or info is None or len(rule.patterns) > 1:
        return []
    problems: list[Diagnostic] = []
    entries = expand(rule, [Match(key, fired.captures, fired.position)], {key: info}, env, problems)
    if problems:
        return [f"  cannot apply its ops to shape {list(info.shape)}: {problems[0].message}"]
    return [f"  {e.target}: {list(e.info.shape)} by {e.recipe.describe()}" for e in entries]


def explain_lines(ruleset: RuleSet, key: str, config: Mapping[str, Any],
                  shape: tuple[int, ...] | None = None) -> tuple[list[str], int]:
    """``remap explain``: the outcome for ``key``, then why every other rule did not apply."""
    env = ruleset.environment(config)
    info = TensorInfo(shape, "float32") if shape is not None else None
    res = resolve(ruleset, key, env, info)
    if len(res.fired) == 1:
        rule, captures = res.fired[0].rule, res.fired[0].captures
        outcome = "dropped" if rule.target is None else f"-> {', '.join(rule.render_targets(captures))}"
        lines = [f"{key} {outcome}", f"  by rule '{rule.label}' ({rule.loc})"]
        lines += [f"  reason: {rule.reason}"] if rule.reason else []
        lines += _ops_lines(ruleset, res.fired[0], key, info, env)
        code = 0
    elif res.fired:
        lines = [f"{key}: {len(res.fired)} rules apply, which is an error:"]
        lines += [f"  '{f.rule.label}' ({f.rule.loc})" for f in res.fired]
        code = 1
    else:
        lines, code = [f"{key}: no rule applies"], 1
    fired = {id(f.rule) for f in res.fired}
    others = [m for m in near_misses(ruleset, key, env, info, limit=None) if id(m.rule) not in fired]
    if others:
        lines += ["other rules, closest first:"] + [f"  {describe(m)}" for m in others]
    return lines, code
