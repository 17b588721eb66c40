"""Which rules apply to one key: the first step of planning, shared with explain, lint and examples.

Pure: key strings, captures, the config and (for conditions) a shape and dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import RuleError
from .rules.expr import Expr
from .rules.model import Rule, RuleSet
from .tensors import TensorInfo


@dataclass(frozen=True)
class Fired:
    """A rule that applies to a key: its captures, and which of its source patterns matched."""

    rule: Rule
    captures: dict[str, str]
    position: int = 0


@dataclass(frozen=True)
class Resolution:
    """What the rules say about one key: the firing rules and the ones whose condition failed."""

    fired: tuple[Fired, ...]
    blocked: tuple[Rule, ...]


def tensor_names(info: TensorInfo | None) -> dict[str, Any]:
    """What conditions see of the tensor itself: ``shape`` (a tuple) and ``dtype`` (a name)."""
    return {} if info is None else {"shape": tuple(info.shape), "dtype": info.dtype}


def holds(condition: Expr | None, names: Mapping[str, Any], key: str, owner: str | Callable[[], str]) -> bool:
    """Whether a condition is true for ``key``.

    A failing expression is a RuleError at the expression's ``file:line`` that
    names the key and the rule (``owner``, or a function giving it) it belongs to.
    """
    if condition is None:
        return True
    try:
        return bool(condition.evaluate(names))
    except RuleError as exc:
        who = owner() if callable(owner) else owner
        raise RuleError(f"{exc.message} (key '{key}', {who})", exc.loc or exc.where) from None


def resolve(ruleset: RuleSet, key: str, env: Mapping[str, Any], info: TensorInfo | None = None) -> Resolution:
    """Find the rules that apply to ``key`` (a tensor described by ``info``) under ``env``.

    A condition that fails to evaluate raises a RuleError naming the key, the expression and its ``file:line``.
    """
    fired: list[Fired] = []
    blocked: list[Rule] = []
    tensor = tensor_names(info)
    for matcher in ruleset.index.candidates(key):
        captures = matcher.pattern.match(key)
        if captures is None:
            continue
        rule = matcher.rule
        if rule.when is None or holds(rule.when, {**env, **tensor, **matcher.pattern.typed(captures)}, key,
                                      lambda: f"rule '{rule.label}' at {rule.loc}"):  # noqa: B023 - called at once
            fired.append(Fired(rule, captures, matcher.position))
        else:
            blocked.append(rule)
    return Resolution(tuple(fired), tuple(blocked))
