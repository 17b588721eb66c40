"""Safe expressions: conv specs parse without eval, and nothing reaches Python internals."""

from __future__ import annotations

import pytest

from remap import RuleError
from remap.errors import Loc
from remap.rules.expr import compile_expr, list_expr

LOC = Loc("e.yaml", 3)


@pytest.mark.parametrize("text, expected", [
    ("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
     [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2),
    ("[(512, 10, 5)]", [(512, 10, 5)]),
    ("[(32,3,2)]*0", []),
    (" [ (1,2,3) , (4,5,6) ] ", [(1, 2, 3), (4, 5, 6)]),
    ("[(-1, 2.5, 'x')]", [(-1, 2.5, "x")]),
])
def test_list_expr_parses_conv_specs(text: str, expected: list) -> None:
    assert list_expr(text) == expected


@pytest.mark.parametrize("text, message", [
    ("__import__('os').system('true')", "unsupported element \"__import__('os').system('true')\""),
    ("[(1,2,3)] * 10**9", "unsupported element '10 ** 9'"),
    ("[(1,2,3)] * 1000000", "list expression is too long"),
    ("[(1,2,3)", "not a list expression"),
    ("512", "not a list expression"),
    ("[x]", "unsupported element 'x'"),
])
def test_list_expr_rejects_anything_but_literals(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        list_expr(text)


def test_expression_sees_captures_and_config() -> None:
    expr = compile_expr('i == 0 or mode == "layer_norm"', LOC, frozenset({"i", "mode"}))
    assert expr.evaluate({"i": 0, "mode": "default"}) is True
    assert expr.evaluate({"i": 1, "mode": "default"}) is False
    assert expr.evaluate({"i": 1, "mode": "layer_norm"}) is True


def test_comprehension_variables_are_not_free_names() -> None:
    expr = compile_expr("[c[0] for c in list_expr(spec)]", LOC, frozenset({"spec"}))
    assert expr.evaluate({"spec": "[(8,2,1)] * 2"}) == [8, 8]


def test_runtime_failure_names_the_expression_and_line() -> None:
    expr = compile_expr("conv[-1][0]", LOC, frozenset({"conv"}))
    with pytest.raises(RuleError) as caught:
        expr.evaluate({"conv": []})
    assert str(caught.value) == "e.yaml:3: expression `conv[-1][0]` failed: IndexError: list index out of range"


def test_yaml_booleans_and_numbers_are_expressions_too() -> None:
    assert compile_expr(True, LOC, frozenset()).evaluate({}) is True
    assert compile_expr(0.5, LOC, frozenset()).evaluate({}) == 0.5
