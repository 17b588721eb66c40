"""Key patterns and target templates.

A pattern is anchored at both ends and matches a whole dotted key:

- ``{name}`` captures one dotted component (``[^.]+``);
- ``{name:int}`` captures a run of digits and gives the condition an ``int``;
- ``{name:path}`` captures one or more components (``a.b.c``);
- ``{name:q|k|v}`` captures one of the listed literal alternatives;
- ``*`` matches one component and ``**`` one or more, without capturing;
- everything else is literal.

A rule may use ``regex:`` instead; its named groups are the captures, and
conditions see them as strings (write ``int(n) == 0``).
A target template substitutes ``{name}`` with a captured value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import Loc, RuleError

_COMPONENT: Final = r"[^.]+"
_TOKEN: Final = re.compile(r"\{([^{}]*)\}|\*\*|\*|[{}]")
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ALTERNATIVE: Final = re.compile(r"[A-Za-z0-9_]+\Z")


@dataclass(frozen=True)
class Pattern:
    """A compiled key pattern."""

    text: str
    regex: re.Pattern[str] = field(repr=False)
    captures: tuple[str, ...]
    int_captures: frozenset[str]
    prefix: str  # the literal text before the first capture or wildcard
    is_regex: bool = False
    capture_regexes: tuple[str, ...] = ()  # per capture, what it matches (empty for raw regexes)

    def match(self, key: str) -> dict[str, str] | None:
        """The captured text (what targets render), or None."""
        found = self.regex.fullmatch(key)
        return None if found is None else found.groupdict()

    def typed(self, captures: dict[str, str]) -> dict[str, Any]:
        """Captures as conditions see them: ``{n:int}`` becomes an int (``01`` is still rendered ``01``)."""
        return {k: int(v) if k in self.int_captures else v for k, v in captures.items()}


def compile_pattern(text: Any, loc: Loc) -> Pattern:
    """Compile a ``{capture}`` pattern; errors carry ``loc``."""
    if not isinstance(text, str) or not text:
        raise RuleError("a key pattern must be a non-empty string", loc)
    parts: list[str] = []
    captures: list[str] = []
    kinds: list[str] = []
    ints: set[str] = set()
    prefix: str | None = None
    pos = 0
    for token in _TOKEN.finditer(text):
        parts.append(re.escape(text[pos:token.start()]))
        if prefix is None:
            prefix = text[:token.start()]
        pos = token.end()
        parts.append(_token_regex(token, text, loc, captures, ints, kinds))
    parts.append(re.escape(text[pos:]))
    return Pattern(text, re.compile("".join(parts)), tuple(captures), frozenset(ints),
                   text if prefix is None else prefix, capture_regexes=tuple(kinds))


def _token_regex(token: re.Match[str], text: str, loc: Loc, captures: list[str], ints: set[str],
                 kinds: list[str]) -> str:
    whole = token.group(0)
    if whole == "**":
        return rf"{_COMPONENT}(?:\.{_COMPONENT})*"
    if whole == "*":
        return _COMPONENT
    if whole in "{}":
        raise RuleError(f"unbalanced brace in pattern '{text}'", loc)
    name, _, kind = token.group(1).partition(":")
    name = name.strip()
    if not _NAME.match(name):
        raise RuleError(f"invalid capture name '{name}' in pattern '{text}'", loc)
    if name in captures:
        raise RuleError(f"capture '{name}' appears twice in pattern '{text}'", loc)
    captures.append(name)
    kinds.append(_capture_regex(name, kind.strip(), text, loc, ints))
    return f"(?P<{name}>{kinds[-1]})"


def _capture_regex(name: str, kind: str, text: str, loc: Loc, ints: set[str]) -> str:
    if kind == "":
        return _COMPONENT
    if kind == "int":
        ints.add(name)
        return r"\d+"
    if kind == "path":
        return rf"{_COMPONENT}(?:\.{_COMPONENT})*"
    options = [o.strip() for o in kind.split("|")]
    if len(options) > 1 and all(_ALTERNATIVE.match(o) for o in options):
        return "|".join(re.escape(o) for o in options)
    raise RuleError(
        f"unknown capture type '{kind}' for '{name}' in pattern '{text}' "
        "(use int, path, or alternatives like q|k|v)", loc)


def compile_regex(text: Any, loc: Loc) -> Pattern:
    """Compile a raw ``regex:`` pattern (anchored); named groups are the captures."""
    if not isinstance(text, str) or not text:
        raise RuleError("a regex must be a non-empty string", loc)
    try:
        regex = re.compile(text)
    except re.error as exc:
        raise RuleError(f"invalid regex '{text}': {exc}", loc) from None
    if regex.groups != len(regex.groupindex):
        raise RuleError(f"regex '{text}' has unnamed groups; use (?P<name>...) or (?:...)", loc)
    return Pattern(text, regex, tuple(regex.groupindex), frozenset(), "", is_regex=True)


@dataclass(frozen=True)
class Template:
    """A target key template such as ``encoder.layers.{n}.fc1.{param}``."""

    text: str
    names: tuple[str, ...]

    def render(self, values: dict[str, str]) -> str:
        return _FIELD.sub(lambda m: str(values[m.group(1)]), self.text)


_FIELD: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def compile_template(text: Any, loc: Loc, captures: tuple[str, ...], pattern_text: str) -> Template:
    """Check that a target only uses captures its pattern defines."""
    if not isinstance(text, str) or not text:
        raise RuleError("a target key must be a non-empty string", loc)
    stripped = _FIELD.sub("", text)
    if "{" in stripped or "}" in stripped or "*" in stripped:
        raise RuleError(f"invalid target '{text}': only {{name}} placeholders are allowed", loc)
    names = tuple(_FIELD.findall(text))
    for name in names:
        if name not in captures:
            known = ", ".join(captures) or "none"
            raise RuleError(
                f"target '{text}' uses capture '{name}' that pattern '{pattern_text}' "
                f"does not define (captures: {known})", loc)
    return Template(text, names)
