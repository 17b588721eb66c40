"""Rule dispatch: find the few rules that can match a key without trying all of them.

Each rule is anchored on its rarest literal dotted component (``fc1`` in
``encoder.layers.{n}.fc1.{p}``). A key can only match a rule whose anchor is
one of the key's components, so the index maps components to rules and only
those candidates are tried. Rules with no literal component (``{a}.{b}``, raw
regexes) are tried on every key. Planning is then linear in the number of
keys, whatever the number of rules.
"""

from __future__ import annotations

from collections import Counter
from typing import Generic, Protocol, TypeVar

from .patterns import Pattern


class HasPattern(Protocol):
    @property
    def pattern(self) -> Pattern: ...


R = TypeVar("R", bound=HasPattern)


def literal_components(pattern: Pattern) -> list[str]:
    """Dotted components of a capture pattern that are plain text (none for a raw regex)."""
    if pattern.is_regex:
        return []
    return [part for part in pattern.text.split(".") if part and not any(c in part for c in "{}*")]


class RuleIndex(Generic[R]):
    """Candidate rules for a key, in file order."""

    def __init__(self, rules: tuple[R, ...]) -> None:
        self.rules = rules
        literals = [literal_components(r.pattern) for r in rules]
        counts = Counter(part for parts in literals for part in set(parts))
        self.by_anchor: dict[str, list[int]] = {}
        self.always: list[int] = []
        for i, parts in enumerate(literals):
            if not parts:
                self.always.append(i)
                continue
            anchor = min(parts, key=lambda part: (counts[part], part))
            self.by_anchor.setdefault(anchor, []).append(i)

    def candidates(self, key: str) -> list[R]:
        found = set(self.always)
        for part in set(key.split(".")):
            found.update(self.by_anchor.get(part, ()))
        return [self.rules[i] for i in sorted(found)]
