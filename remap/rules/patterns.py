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

import ast
import re
from collections.abc import Mapping
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
class Placeholder:
    """``{name}`` (the captured text as written) or ``{i - 1}``: integer arithmetic over int captures."""

    text: str
    names: tuple[str, ...]
    tree: ast.expr | None = field(default=None, repr=False, compare=False)  # None for a bare name

    def value(self, values: Mapping[str, str]) -> str:
        if self.tree is None:
            return str(values[self.text])
        result = _arith(self.tree, values)
        if result < 0:
            raise RuleError(f"target index {{{self.text}}} is {result}, which is negative")
        return str(result)

    def affine(self) -> tuple[str, int, int] | None:
        """``(name, a, b)`` when the placeholder is ``a * name + b`` (a != 0), else None."""
        if self.tree is None:
            return self.text, 1, 0
        return _affine(self.tree)

    def divmod_part(self) -> tuple[str, str, int] | None:
        """``(name, "//" or "%", c)`` for ``name // c`` and ``name % c``, else None."""
        t = self.tree
        if isinstance(t, ast.BinOp) and isinstance(t.op, (ast.FloorDiv, ast.Mod)) and isinstance(t.left, ast.Name) \
                and isinstance(t.right, ast.Constant) and isinstance(t.right.value, int):
            return t.left.id, "//" if isinstance(t.op, ast.FloorDiv) else "%", t.right.value
        return None


@dataclass(frozen=True)
class Template:
    """A target key template such as ``encoder.layers.{n}.fc1.{param}`` or ``blocks.{b - 1}.weight``."""

    text: str
    names: tuple[str, ...]  # every capture the template uses
    parts: tuple[str | Placeholder, ...] = ()

    def render(self, values: Mapping[str, str]) -> str:
        """The target key; RuleError when an index comes out negative."""
        return "".join(p if isinstance(p, str) else p.value(values) for p in self.parts)

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return tuple(p for p in self.parts if isinstance(p, Placeholder))


_FIELD: Final = re.compile(r"\{([^{}]*)\}")
_ARITH: Final = (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod)


def _arith(node: ast.expr, values: Mapping[str, str]) -> int:
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, int) else 0
    if isinstance(node, ast.Name):
        return int(values[node.id])
    if isinstance(node, ast.UnaryOp):
        return -_arith(node.operand, values)
    assert isinstance(node, ast.BinOp)
    left, right = _arith(node.left, values), _arith(node.right, values)
    if isinstance(node.op, (ast.FloorDiv, ast.Mod)) and right == 0:
        raise RuleError("division by zero in a target index")
    ops = {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}
    if isinstance(node.op, ast.FloorDiv):
        return left // right
    if isinstance(node.op, ast.Mod):
        return left % right
    return ops[type(node.op)]


def _affine(node: ast.expr) -> tuple[str, int, int] | None:
    """Fold ``node`` into ``a * name + b`` if it is one, with integer a != 0."""
    def walk(n: ast.expr) -> tuple[str | None, int, int] | None:  # noqa: PLR0911 - one return per node kind
        if isinstance(n, ast.Constant):
            return None, 0, n.value if isinstance(n.value, int) else 0
        if isinstance(n, ast.Name):
            return n.id, 1, 0
        if isinstance(n, ast.UnaryOp):
            inner = walk(n.operand)
            return None if inner is None else (inner[0], -inner[1], -inner[2])
        if not isinstance(n, ast.BinOp) or not isinstance(n.op, (ast.Add, ast.Sub, ast.Mult)):
            return None
        left, right = walk(n.left), walk(n.right)
        if left is None or right is None or (left[0] and right[0]):
            return None
        name = left[0] or right[0]
        if isinstance(n.op, ast.Mult):
            if left[0] and right[0] is None:
                return name, left[1] * right[2], left[2] * right[2]
            return name, right[1] * left[2], right[2] * left[2]
        sign = 1 if isinstance(n.op, ast.Add) else -1
        return name, left[1] + sign * right[1], left[2] + sign * right[2]
    found = walk(node)
    if found is None or found[0] is None or found[1] == 0:
        return None
    return found[0], found[1], found[2]


def _placeholder(inner: str, text: str, loc: Loc, captures: tuple[str, ...], ints: frozenset[str],
                 pattern_text: str) -> Placeholder:
    inner = inner.strip()
    known = ", ".join(captures) or "none"
    if _NAME.match(inner):
        if inner not in captures:
            raise RuleError(f"target '{text}' uses capture '{inner}' that pattern '{pattern_text}' "
                            f"does not define (captures: {known})", loc)
        return Placeholder(inner, (inner,))
    try:
        tree = ast.parse(inner, mode="eval").body
    except SyntaxError:
        raise RuleError(f"invalid placeholder '{{{inner}}}' in target '{text}'", loc) from None
    for node in ast.walk(tree):
        allowed = isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Name, ast.Load, ast.USub, *_ARITH)) or (
            isinstance(node, ast.Constant) and type(node.value) is int)
        if not allowed:
            raise RuleError(f"placeholder '{{{inner}}}' in target '{text}': only int captures, integers and "
                            "+ - * // % are allowed", loc)
        if isinstance(node, ast.Name) and node.id not in ints:
            what = "does not define" if node.id not in captures else "captures as text, not {name:int},"
            raise RuleError(f"placeholder '{{{inner}}}' in target '{text}' uses '{node.id}', which pattern "
                            f"'{pattern_text}' {what} (int captures: {', '.join(sorted(ints)) or 'none'})", loc)
    names = tuple(sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}))
    return Placeholder(inner, names, tree)


def compile_template(text: Any, loc: Loc, captures: tuple[str, ...], pattern_text: str,
                     ints: frozenset[str] = frozenset()) -> Template:
    """Check that a target only uses captures its pattern defines (arithmetic only on int captures)."""
    if not isinstance(text, str) or not text:
        raise RuleError("a target key must be a non-empty string", loc)
    stripped = _FIELD.sub("", text)
    if "{" in stripped or "}" in stripped or "*" in stripped:
        raise RuleError(f"invalid target '{text}': only {{name}} placeholders are allowed", loc)
    parts: list[str | Placeholder] = []
    pos = 0
    for found in _FIELD.finditer(text):
        if found.start() > pos:
            parts.append(text[pos:found.start()])
        parts.append(_placeholder(found.group(1), text, loc, captures, ints, pattern_text))
        pos = found.end()
    if pos < len(text):
        parts.append(text[pos:])
    names = tuple(dict.fromkeys(n for p in parts if isinstance(p, Placeholder) for n in p.names))
    return Template(text, names, tuple(parts))
