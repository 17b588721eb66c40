"""Schema helpers shared by the compilers: field checks with suggestions, strings, lists."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from ..errors import RuleError
from .yamlnode import Node


def check_fields(node: Node, allowed: Iterable[str], what: str) -> None:
    """``node`` is a mapping whose keys are all in ``allowed``; an unknown key suggests the closest."""
    if not node.is_map:
        raise RuleError(f"{what} must be a mapping", node.loc)
    allowed = tuple(allowed)
    for key, loc in node.key_locs.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(allowed)})"
            raise RuleError(f"unknown field '{key}' in {what}{hint}", loc)


def string(node: Node, what: str) -> str:
    if not isinstance(node.value, str) or not node.value.strip():
        raise RuleError(f"{what} must be a non-empty string", node.loc)
    return node.value


def seq(node: Node | None, what: str) -> tuple[Node, ...]:
    """The items of a list (none when absent or null)."""
    if node is None or node.value is None:
        return ()
    if not node.is_seq:
        raise RuleError(f"{what} must be a list", node.loc)
    return node.items
