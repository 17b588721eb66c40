"""Safe expressions for conditions (``when:``), derived values (``let:``) and config mapping.

Expressions are Python-syntax snippets evaluated by simpleeval, never ``eval``.
They are parsed once at compile time, where every free name is checked
against the names the rule file declares, so a typo is a compile error with
``file:line`` instead of a surprise during conversion.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import simpleeval

from ..errors import Loc, RuleError

MAX_LIST_LEN: Final = 100_000


def list_expr(text: str) -> list[Any]:
    """Evaluate a literal list expression such as ``"[(512,10,5)] + [(512,3,2)] * 4"``.

    Only numbers, strings, lists and tuples combined with ``+`` and ``*`` are
    accepted. This is the format s3prl and fairseq use for conv layer specs,
    which their own code passes to ``eval``.
    """
    if not isinstance(text, str):
        raise ValueError(f"list_expr() needs a string, got {type(text).__name__}")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"not a list expression: {text!r}") from None
    value = _literal(tree.body, text)
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"not a list expression: {text!r}")
    return list(value)


def _literal(node: ast.AST, text: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e, text) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        operand = _literal(node.operand, text)
        if isinstance(operand, (int, float)):
            return -operand
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _literal(node.left, text), _literal(node.right, text)
        if isinstance(node.op, ast.Add) and type(left) is type(right) and isinstance(left, (list, tuple)):
            return left + right
        if isinstance(node.op, ast.Mult) and isinstance(left, list) and isinstance(right, int):
            if len(left) * right > MAX_LIST_LEN:
                raise ValueError(f"list expression is too long: {text!r}")
            return left * right
    raise ValueError(f"unsupported element {ast.unparse(node)!r} in list expression {text!r}")


FUNCTIONS: Final[Mapping[str, Callable[..., Any]]] = {
    "list_expr": list_expr,
    "len": len,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "min": min,
    "max": max,
    "all": all,
    "any": any,
}

CONSTANTS: Final[Mapping[str, Any]] = {"true": True, "false": False, "null": None}


@dataclass(frozen=True)
class Expr:
    """A compiled expression: its text, parse tree, location and free names."""

    text: str
    loc: Loc
    names: frozenset[str]
    tree: ast.Expression = field(repr=False, compare=False)

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        evaluator = simpleeval.EvalWithCompoundTypes(
            names={**CONSTANTS, **names}, functions=dict(FUNCTIONS)
        )
        try:
            return evaluator.eval(self.text, previously_parsed=self.tree.body)
        except (simpleeval.InvalidExpression, ArithmeticError, TypeError, ValueError,
                KeyError, IndexError, AttributeError) as exc:
            raise RuleError(f"expression `{self.text}` failed: {_describe(exc)}", self.loc) from None


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def compile_expr(text: Any, loc: Loc, known: frozenset[str], what: str = "expression") -> Expr:
    """Parse ``text`` and check that every free name is in ``known`` (or a builtin)."""
    if not isinstance(text, (str, int, float)):
        raise RuleError(f"{what} must be an expression, got {type(text).__name__}", loc)
    source = ("True" if text else "False") if isinstance(text, bool) else str(text).strip()
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise RuleError(f"invalid {what} `{source}`: {exc.msg}", loc) from None
    _check_nodes(tree, source, loc, what)
    free = _free_names(tree) - set(FUNCTIONS) - set(CONSTANTS)
    unknown = sorted(free - known)
    if unknown:
        hint = f"; known names: {', '.join(sorted(known))}" if known else ""
        raise RuleError(f"unknown name '{unknown[0]}' in {what} `{source}`{hint}", loc)
    return Expr(source, loc, frozenset(free), tree)


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
