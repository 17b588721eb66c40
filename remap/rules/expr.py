"""Safe expressions for conditions (``when:``), derived values (``let:``) and config mapping.

Expressions are Python-syntax snippets evaluated by simpleeval, never ``eval``.
They are parsed once at compile time, where every free name is checked
against the names the rule file declares, so a typo is a compile error with
``file:line`` instead of a surprise during conversion.

Rule files and config values may come from strangers, so every operation that
builds a value is bounded (issue 9): simpleeval's own limits, plus ``%`` and
f-string widths, ``str()`` of large or deep values, integer sizes, slices,
``min``/``max``/``all``/``any``, ``int``/``float`` of long strings, and a total
per evaluation. Breaking a bound fails the expression like any other error.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import operator
import re
import threading
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import simpleeval
from simpleeval import IterableTooLong, NumberTooHigh

from ..errors import Loc, RuleError

MAX_TEXT: Final[int] = simpleeval.MAX_STRING_LENGTH  # 100,000: longest string, list, tuple... one operation builds
MAX_EVAL_BYTES: Final = 32 * 2**20  # about what one evaluation may build in all (see `_ITEM_BYTES`)
MAX_INT_BITS: Final = 4096  # larger integers cannot even be printed (Python's 4300-digit limit)
MAX_NUMBER_TEXT: Final = 5_000  # int()/float() of a string: 4300 digits plus signs, spaces and underscores
MAX_DEPTH: Final = 100  # nesting of an expression's syntax tree, and of a value turned into text
MAX_LIST_LEN: Final = 100_000  # list_expr: elements in all, nested ones included
MAX_SPEC_TEXT: Final = 10_000  # list_expr: characters, hence syntax nodes (real conv specs have under 200)
MAX_SPEC_DEPTH: Final = 16  # list_expr: nesting (real conv specs have 3 levels)
FLOAT_TEXT: Final = 330  # the longest ``%f`` of a float (1e308 has 309 digits)


def _clip(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, for one-line error messages."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def list_expr(text: str) -> list[Any]:
    """Evaluate a literal list expression such as ``"[(512,10,5)] + [(512,3,2)] * 4"``.

    Only numbers, strings, lists and tuples combined with ``+`` and ``*`` are
    accepted. This is the format s3prl and fairseq use for conv layer specs,
    which their own code passes to ``eval``. The text, its syntax tree, its
    nesting and its result are bounded; ``+`` chains are joined in one pass.
    """
    if not isinstance(text, str):
        raise ValueError(f"list_expr() needs a string, got {type(text).__name__}")
    if len(text) > MAX_SPEC_TEXT:
        raise ValueError(f"list expression is too long: {len(text)} characters, at most {MAX_SPEC_TEXT}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError):
        raise ValueError(f"not a list expression: {_clip(repr(text), 80)}") from None
    except (RecursionError, MemoryError):
        raise _nests(text) from None
    value, _ = _literal(tree.body, text, 1)
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"not a list expression: {_clip(repr(text), 80)}")
    return list(value)


def _literal(node: ast.AST, text: str, depth: int) -> tuple[Any, int]:
    """The value of ``node`` and its size (1 per element, nested ones included)."""
    if depth > MAX_SPEC_DEPTH:
        raise _nests(text)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
        return node.value, 1
    if isinstance(node, (ast.List, ast.Tuple)):
        parts = [_literal(e, text, depth + 1) for e in node.elts]
        items = [value for value, _ in parts]
        return (items if isinstance(node, ast.List) else tuple(items)), _sized(1 + sum(n for _, n in parts), text)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        operand, _ = _literal(node.operand, text, depth + 1)
        if isinstance(operand, (int, float)):
            return -operand, 1
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _concat(node, text, depth)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        (left, size), (right, _) = _literal(node.left, text, depth + 1), _literal(node.right, text, depth + 1)
        if isinstance(left, list) and isinstance(right, int):
            return left * right, _sized(1 + (size - 1) * max(right, 0), text)
    raise _unsupported(node, text)


def _concat(node: ast.BinOp, text: str, depth: int) -> tuple[Any, int]:
    """``a + b + c ...`` (a left-leaning tree as deep as the chain is long), joined in one pass."""
    terms: list[ast.expr] = []
    current: ast.expr = node
    while isinstance(current, ast.BinOp) and isinstance(current.op, ast.Add):
        terms.append(current.right)
        current = current.left
    terms.append(current)
    result: list[Any] = []
    kind: type | None = None
    size = 1
    for term in reversed(terms):
        value, n = _literal(term, text, depth + 1)
        if not isinstance(value, (list, tuple)) or (kind is not None and type(value) is not kind):
            raise _unsupported(node, text)
        kind = type(value)
        result.extend(value)
        size = _sized(size + n - 1, text)
    return (result if kind is list else tuple(result)), size


def _sized(size: int, text: str) -> int:
    if size > MAX_LIST_LEN:
        raise ValueError(f"list expression is too long: more than {MAX_LIST_LEN} elements in {_clip(repr(text), 80)}")
    return size


def _nests(text: str) -> ValueError:
    return ValueError(f"list expression nests deeper than {MAX_SPEC_DEPTH} levels: {_clip(repr(text), 80)}")


def _unsupported(node: ast.AST, text: str) -> ValueError:
    try:
        part = ast.unparse(node)
    except RecursionError:
        part = ast.get_source_segment(text.strip(), node) or type(node).__name__
    return ValueError(f"unsupported element {_clip(repr(part), 80)} in list expression {_clip(repr(text), 80)}")


def _text_size(value: Any, limit: int = MAX_TEXT) -> int:
    """About ``len(str(value))``, without building it: walks at most about ``limit`` characters' worth
    (so one list shared a million times costs no more than a small one), and raises beyond."""
    total, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (str, bytes, bytearray)):
            total += len(item) + 2
        elif isinstance(item, int):
            total += int(item.bit_length() * 0.30103) + 1 + (item < 0)  # decimal digits and sign
        elif isinstance(item, (float, complex)) or item is None:
            total += 50
        else:
            children = _parts(item)
            if depth >= MAX_DEPTH and children:
                raise IterableTooLong(f"a value nested deeper than {MAX_DEPTH} levels cannot become text")
            total += 100 if children is None else 2 + 2 * len(children)
            if total <= limit and children:
                stack.extend((child, depth + 1) for child in children)
        if total > limit:
            raise IterableTooLong(f"the text of this value would be longer than {limit} characters")
    return total


def _parts(item: Any) -> tuple[Any, ...] | list[Any] | None:
    """What ``str(item)`` shows of a container (keys and values, record fields); None for other objects."""
    if isinstance(item, (list, tuple, set, frozenset)):
        return item if isinstance(item, (list, tuple)) else list(item)
    if isinstance(item, dict):
        return [*item.keys(), *item.values()]
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return [getattr(item, f.name) for f in dataclasses.fields(item)]
    return None


_PERCENT: Final = re.compile(r"%(?:%|(\([^)]*\))?[-+ #0]*(\*|\d*)(?:\.(\*|\d*))?)")  # %%, or (key) flags width .prec


def _spec_number(digits: str) -> int:
    if len(digits) > 6 or int(digits) > MAX_TEXT:
        raise IterableTooLong(f"a format width or precision of {digits[:12]} is more than {MAX_TEXT}")
    return int(digits)


def _percent_bound(fmt: str, args: Any) -> int:
    """An upper bound of ``len(fmt % args)``: each conversion adds at most its width plus all of ``args``."""
    conversions = widest = 0
    for match in _PERCENT.finditer(fmt):
        key, *numbers = match.groups()
        if "*" in numbers or "(" in (key or "")[1:]:  # CPython nests parentheses in keys; we do not parse that
            raise IterableTooLong("'*' widths and parentheses in keys are not supported in % formatting")
        widest = max(widest, *(_spec_number(n) if n else 0 for n in numbers))
        conversions += 1
    return len(fmt) + conversions * (widest + FLOAT_TEXT + _text_size(args)) if conversions else len(fmt)


_PLAIN: Final = frozenset({int, float, str, bool, type(None), bytes, complex, list, tuple, dict, set})
_SIZED: Final = (str, bytes, bytearray, list, tuple, dict, set, frozenset)
_ITEM_BYTES: Final[Mapping[type, int]] = {str: 1, bytes: 1, bytearray: 1, dict: 64, set: 64, frozenset: 64}  # else 8


class _Evaluator(simpleeval.EvalWithCompoundTypes):  # type: ignore[misc]  # simpleeval is untyped
    """simpleeval with every value-building path bounded; one per thread, reused across evaluations."""

    def __init__(self) -> None:
        functions = {**FUNCTIONS, "list_expr": lambda text: self.charge(list_expr(text)), "str": self._str,
                     "int": self._number(int), "float": self._number(float),
                     **{fn.__name__: _bounded(fn) for fn in (min, max, all, any)},
                     **{name: self._listing(fn) for name, fn in _LISTINGS.items()}, "range": _range}
        bounded: dict[type, Callable[..., Any]] = {kind: self._op(fn) for kind, fn in (
            (ast.Add, simpleeval.safe_add), (ast.Mult, simpleeval.safe_mult), (ast.Pow, self._power),
            (ast.Mod, self._mod), (ast.LShift, simpleeval.safe_lshift), (ast.RShift, simpleeval.safe_rshift),
            (ast.Sub, operator.sub), (ast.Div, operator.truediv), (ast.FloorDiv, operator.floordiv),
            (ast.BitAnd, operator.and_), (ast.BitOr, operator.or_), (ast.BitXor, operator.xor))}
        super().__init__(operators={**simpleeval.DEFAULT_OPERATORS, **bounded}, functions=functions, names={})
        for name in ("list", "tuple", "dict", "set"):  # simpleeval adds these; rules cannot call them
            self.functions.pop(name, None)
        self.spent, self.busy = 0, False

    def _listing(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` over iterables cut at MAX_TEXT items each, with what it returns charged."""
        def call(*args: Any, **kwargs: Any) -> Any:
            items = [_cut(a, fn) for a in args]
            return self.charge(fn(*items, **kwargs))
        return call

    def charge(self, result: Any) -> Any:
        """Count what an operation built against the bounds; return it."""
        if isinstance(result, int):
            if result.bit_length() > MAX_INT_BITS:
                raise NumberTooHigh(f"the result would have more than {MAX_INT_BITS} bits")
        elif isinstance(result, _SIZED):
            if len(result) > MAX_TEXT:
                raise IterableTooLong(f"the result would hold more than {MAX_TEXT} characters or items")
            self.spent += len(result) * _ITEM_BYTES.get(type(result), 8)
            if self.spent > MAX_EVAL_BYTES:
                raise IterableTooLong(f"the expression builds more than {MAX_EVAL_BYTES // 2**20} MiB of values")
        return result

    def _op(self, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def run(a: Any, b: Any) -> Any:
            if (isinstance(a, int) and a.bit_length() > MAX_INT_BITS) or (
                    isinstance(b, int) and b.bit_length() > MAX_INT_BITS):
                raise NumberTooHigh(f"arithmetic on integers of more than {MAX_INT_BITS} bits")
            return self.charge(fn(a, b))
        return run

    @staticmethod
    def _power(a: Any, b: Any) -> Any:
        if isinstance(a, int) and isinstance(b, int) and b > 0 and b * (abs(a).bit_length() - 1) > MAX_INT_BITS:
            raise NumberTooHigh(f"the result would have more than {MAX_INT_BITS} bits")
        return simpleeval.safe_power(a, b)

    @staticmethod
    def _mod(a: Any, b: Any) -> Any:
        if isinstance(a, (str, bytes, bytearray)):
            fmt = a if isinstance(a, str) else bytes(a).decode("latin-1")
            if _percent_bound(fmt, b) > MAX_TEXT:
                raise IterableTooLong(f"% formatting would build more than {MAX_TEXT} characters")
        return a % b

    def _str(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs:
            if type(args[0]) is str:
                return args[0]
            _text_size(args[0])
        return self.charge(str(*args, **kwargs))

    def _number(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def convert(*args: Any, **kwargs: Any) -> Any:
            if args and isinstance(args[0], (str, bytes, bytearray)) and len(args[0]) > MAX_NUMBER_TEXT:
                raise ValueError(f"{fn.__name__}() of a string longer than {MAX_NUMBER_TEXT} characters")
            return self.charge(fn(*args, **kwargs))
        return convert

    def _check_disallowed_items(self, item: Any) -> None:
        """Only the top level: simpleeval's walk of every result costs a config value's full expanded size at
        each name. Names hold plain config data, and only `FUNCTIONS` can be called (checked at compile)."""
        if type(item) in _PLAIN:
            return
        if isinstance(item, types.ModuleType) or (callable(item) and item in simpleeval.DISALLOW_FUNCTIONS):
            raise simpleeval.FeatureNotAvailable("this value is not available in expressions")

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        result = super()._eval_subscript(node)
        return self.charge(result) if isinstance(node.slice, ast.Slice) else result

    def _eval_dict(self, node: ast.Dict) -> Any:
        result = super()._eval_dict(node)
        return self.charge(result) if None in node.keys else result  # {**x} copies x

    def _eval_formattedvalue(self, node: ast.FormattedValue) -> Any:
        value = self._eval(node.value)
        if not node.format_spec:  # joined (and bounded) by _eval_joinedstr; !r/!s/!a are ignored, as before
            return value
        spec = str(self._eval(node.format_spec))  # its largest number is the width or the precision
        if max((_spec_number(d) for d in re.findall(r"\d+", spec)), default=0) + _text_size(value) > MAX_TEXT:
            raise IterableTooLong(f"formatting would build more than {MAX_TEXT} characters")
        return self.charge(format(value, spec))

    def _eval_joinedstr(self, node: ast.JoinedStr) -> str:
        parts, total = [], 0
        for part in node.values:
            text = self._str(self._eval(part))
            total += len(text)
            if total > MAX_TEXT:
                raise IterableTooLong(f"the f-string would be longer than {MAX_TEXT} characters")
            parts.append(text)
        result: str = self.charge("".join(parts))
        return result


def _cut(items: Any, fn: Callable[..., Any]) -> Any:
    """An iterable argument as a sequence of at most MAX_TEXT items (anything else unchanged)."""
    if isinstance(items, (*_SIZED, range)):
        if len(items) > MAX_TEXT:
            raise IterableTooLong(f"a function over more than {MAX_TEXT} items")
        return items
    if hasattr(items, "__iter__"):
        cut = list(itertools.islice(iter(items), MAX_TEXT + 1))
        if len(cut) > MAX_TEXT:
            raise IterableTooLong(f"a function over more than {MAX_TEXT} items")
        return cut
    return items


def _range(*args: int) -> range:
    """``range`` of at most MAX_TEXT numbers (a lazy range is cheap, but what iterates over it is not)."""
    if not all(type(a) is int for a in args):
        raise TypeError("range() takes integers")
    result = range(*args)
    if len(result) > MAX_TEXT:
        raise IterableTooLong(f"range() of more than {MAX_TEXT} numbers")
    return result


def _numbers(items: Any, name: str) -> list[int | float]:
    numbers = list(items)
    if not all(type(n) in (int, float, bool) for n in numbers):
        raise TypeError(f"{name}() takes numbers")
    return numbers


def _sum(items: Any) -> int | float:
    """``sum`` of numbers only (adding lists one by one costs the square of their length)."""
    return sum(_numbers(items, "sum"))


def _prod(items: Any) -> int | float:
    """``math.prod`` that stops once an integer passes MAX_INT_BITS (each step then stays cheap)."""
    result: int | float = 1
    for number in _numbers(items, "prod"):
        result *= number
        if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
            raise IterableTooLong(f"prod() of more than {MAX_INT_BITS} bits")
    return result


# Functions over iterables, evaluated on at most MAX_TEXT items and charged for what they build.
_LISTINGS: Final[Mapping[str, Callable[..., Any]]] = {
    "enumerate": lambda items: list(enumerate(items)), "zip": lambda *items: list(zip(*items, strict=False)),
    "sorted": sorted, "sum": _sum, "prod": _prod}


def _bounded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``min``/``max``/``all``/``any`` over at most MAX_TEXT items (a config value may be ``range(10**18)``)."""
    def call(*args: Any, **kwargs: Any) -> Any:
        if len(args) == 1:
            items = args[0]
            if not isinstance(items, (*_SIZED, range)):
                items = list(itertools.islice(iter(items), MAX_TEXT + 1))
            if len(items) > MAX_TEXT:
                raise IterableTooLong(f"{fn.__name__}() over more than {MAX_TEXT} items")
            args = (items,)
        return fn(*args, **kwargs)
    return call


# The functions expressions may call; evaluation uses bounded versions of most (see `_Evaluator`).
FUNCTIONS: Final[Mapping[str, Callable[..., Any]]] = {
    **{fn.__name__: fn for fn in (list_expr, len, int, float, str, bool, min, max, all, any, abs, round)},
    **_LISTINGS, "range": _range}

CONSTANTS: Final[Mapping[str, Any]] = {"true": True, "false": False, "null": None}
_FAILURES: Final = (simpleeval.InvalidExpression, ArithmeticError, TypeError, ValueError, KeyError, IndexError,
                    AttributeError, RecursionError)
_LOCAL = threading.local()


def _evaluator() -> _Evaluator:
    """This thread's evaluator (building one costs more than evaluating a condition); a fresh one if busy."""
    evaluator: _Evaluator | None = getattr(_LOCAL, "evaluator", None)
    if evaluator is None:
        evaluator = _LOCAL.evaluator = _Evaluator()
    return evaluator if not evaluator.busy else _Evaluator()


@dataclass(frozen=True)
class Expr:
    """A compiled expression: its text, parse tree, location and free names."""

    text: str
    loc: Loc
    names: frozenset[str]
    tree: ast.Expression = field(repr=False, compare=False)

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        evaluator = _evaluator()
        evaluator.busy, evaluator.spent, evaluator.names = True, 0, {**CONSTANTS, **names}
        try:
            return evaluator.eval(self.text, previously_parsed=self.tree.body)
        except _FAILURES as exc:
            raise RuleError(f"expression `{_clip(self.text)}` failed: {_describe(exc)}", self.loc) from None
        finally:
            evaluator.busy, evaluator.names = False, {}


def _describe(exc: BaseException) -> str:
    message = _clip(str(exc))  # a KeyError's message is the key's repr, which may be long
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def compile_expr(text: Any, loc: Loc, known: frozenset[str], what: str = "expression") -> Expr:
    """Parse ``text`` and check that every free name is in ``known`` (or a builtin)."""
    if not isinstance(text, (str, int, float)):
        raise RuleError(f"{what} must be an expression, got {type(text).__name__}", loc)
    source = ("True" if text else "False") if isinstance(text, bool) else str(text).strip()
    too_deep = RuleError(f"{what} `{_clip(source)}` nests deeper than {MAX_DEPTH} levels", loc)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise RuleError(f"invalid {what} `{_clip(source)}`: {exc.msg}", loc) from None
    except (RecursionError, MemoryError):
        raise too_deep from None
    if _too_deep(tree):
        raise too_deep
    _check_nodes(tree, source, loc, what)
    free = _free_names(tree) - set(FUNCTIONS) - set(CONSTANTS)
    unknown = sorted(free - known)
    if unknown:
        hint = f"; known names: {', '.join(sorted(known))}" if known else ""
        raise RuleError(f"unknown name '{unknown[0]}' in {what} `{source}`{hint}", loc)
    return Expr(source, loc, frozenset(free), tree)


def _too_deep(tree: ast.AST) -> bool:
    """Whether the syntax tree nests deeper than MAX_DEPTH (simpleeval recurses once or twice per level)."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return False


_FORBIDDEN: Final = (ast.Lambda, ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom, ast.Starred)


def _check_nodes(tree: ast.AST, source: str, loc: Loc, what: str) -> None:
    for node in ast.walk(tree):
        if isinstance(node, _FORBIDDEN):
            raise RuleError(f"{type(node).__name__} is not allowed in {what} `{source}`", loc)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise RuleError(f"private attribute '{node.attr}' is not allowed in {what} `{source}`", loc)
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
            name = ast.get_source_segment(source, node.func) or ast.unparse(node.func)
            allowed = ", ".join(sorted(FUNCTIONS))
            raise RuleError(f"unknown function '{name}' in {what} `{source}` (allowed: {allowed})", loc)


def _free_names(tree: ast.AST) -> set[str]:
    """Names read by the expression, minus names bound by its comprehensions."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension):
            bound |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return used - bound
