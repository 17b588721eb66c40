"""Safe expressions: conv specs parse without eval, nothing reaches Python internals, and nothing a rule
file or a config value holds makes an evaluation cost more than a bounded amount (issue 9)."""

from __future__ import annotations

import re
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# Issue 9: every value-building path is bounded, for rule files and config values from strangers.

def laughs() -> list:
    """One list shared ten times per level: 10**10 elements once expanded, a few hundred bytes in memory."""
    value: list = [1]
    for _ in range(10):
        value = [value] * 10
    return value


def deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


def cycle() -> list:
    value: list = []
    value.append(value)
    return value


def run(text: str, **names: object) -> object:
    return compile_expr(text, LOC, frozenset(names)).evaluate(names)


BOMBS = [
    ('"%0999999999d" % 1', {}, "a format width or precision of 999999999 is more than 100000"),
    ('"%.99999999f" % 1.0', {}, "a format width or precision of 99999999 is more than 100000"),
    ('"%*d" % (999999999, 1)', {}, r"'\*' widths and parentheses in keys are not supported"),
    ('"%(a(%)b)999999999d" % {"a(%)b": 1}', {}, "parentheses in keys are not supported"),
    ('"%(a)s" * 19999 % {"a": "x" * 49999}', {}, "% formatting would build more than 100000 characters"),
    ('b"%0999999999d" % (1,)', {}, "a format width or precision of 999999999"),
    ('"%s" % (x,)', {"x": laughs()}, "the text of this value would be longer than 100000 characters"),
    ('f"{1:>999999999}"', {}, "a format width or precision of 999999999 is more than 100000"),
    ('f"{1.0:.99999999f}"', {}, "a format width or precision of 99999999 is more than 100000"),
    ('f"{1:>{w}}"', {"w": 10**9}, "a format width or precision of 1000000000 is more than 100000"),
    ('f"{x}"', {"x": laughs()}, "the text of this value would be longer than 100000 characters"),
    ('f"{x:>5}"', {"x": laughs()}, "the text of this value would be longer than 100000 characters"),
    ('f"{s}{s}"', {"s": "x" * 60_000}, "the f-string would be longer than 100000 characters"),
    ("str(x)", {"x": laughs()}, "the text of this value would be longer than 100000 characters"),
    ("str(x)", {"x": deep(100_000)}, "a value nested deeper than 100 levels cannot become text"),
    ("str(x)", {"x": cycle()}, "a value nested deeper than 100 levels cannot become text"),
    ("str(x)", {"x": dict.fromkeys(range(60000), "v")}, "the text of this value would be longer than 100000"),
    ("4000000 ** 4000000", {}, "the result would have more than 4096 bits"),
    ("3 ** 4000000", {}, "the result would have more than 4096 bits"),
    ("(1 << 10000) * 2", {}, "the result would have more than 4096 bits"),
    ("x * x", {"x": 2**5000}, "arithmetic on integers of more than 4096 bits"),
    ("x // 7", {"x": 2**5000}, "arithmetic on integers of more than 4096 bits"),
    ('int("9" * 99999)', {}, r"int\(\) of a string longer than 5000 characters"),
    ('int("1" * 99999, 2)', {}, r"int\(\) of a string longer than 5000 characters"),
    ('float("1" * 99999)', {}, r"float\(\) of a string longer than 5000 characters"),
    ('"ab" * 99999', {}, "Sorry, I will not evaluate something that long"),  # simpleeval's own limit, kept
    ('[s + "a" for c in s]', {"s": "x" * 99_999}, "the expression builds more than 32 MiB of values"),
    ("[x[:] for c in x]", {"x": [0] * 99_999}, "the expression builds more than 32 MiB of values"),
    ("[{**d} for c in s]", {"d": dict.fromkeys(range(90_000)), "s": "x" * 999}, "builds more than 32 MiB"),
    ("{**d}", {"d": dict.fromkeys(range(200_000))}, "the result would hold more than 100000 characters or items"),
    ("x + x", {"x": [0] * 99_999}, "adding those two together would make something too long"),
    ("max(r)", {"r": range(10**12)}, r"max\(\) over more than 100000 items"),
    ("all(r)", {"r": range(1, 10**12)}, r"all\(\) over more than 100000 items"),
    ("any(r)", {"r": iter(range(10**12))}, r"any\(\) over more than 100000 items"),
    ("[c for c in r]", {"r": range(10**12)}, "Comprehension generates too many elements"),  # simpleeval's, kept
    ("list_expr(s)", {"s": " + ".join(["[(512,10,5)]"] * 50_000)}, r"list expression is too long: \d+ characters, at most 10000"),
    ("list_expr(s)", {"s": "[(1,2,3)] * 99999 + " * 499 + "[]"}, "more than 100000 elements"),
]


@pytest.mark.parametrize("text, names, message", BOMBS, ids=[b[0][:40] for b in BOMBS])
def test_every_value_building_path_is_bounded(text: str, names: dict, message: str) -> None:
    start = time.perf_counter()
    with pytest.raises(RuleError) as caught:
        run(text, **names)
    assert time.perf_counter() - start < 2
    error = str(caught.value)
    assert error.startswith(f"e.yaml:3: expression `{text}` failed: "), error
    assert re.search(message, error), error
    assert "\n" not in error and len(error) < 500


KEPT = [
    ('"%s-%03d%%" % ("a", 7)', {}, "a-007%"),
    ('"%(a)s:%(b).1f|%(a)-4s|" % {"a": "x", "b": 2.0}', {}, "x:2.0|x   |"),
    ('f"{n:>5}|{x:.2f}|{s!r}"', {"n": 3, "x": 1.5, "s": "a"}, "    3|1.50|a"),  # !r is ignored, as before
    ('str([1, (2, "a"), {"k": None}, 2.5])', {}, "[1, (2, 'a'), {'k': None}, 2.5]"),
    ("str(x)", {"x": [0] * 30_000}, str([0] * 30_000)),
    ("2 ** 4095 + 1 == x", {"x": 2**4095 + 1}, True),
    ('int("1" * 4096, 2) == x', {"x": 2**4096 - 1}, True),
    ('int("12_345") + int(" 7 ")', {}, 12_352),
    ('float("1e3")', {}, 1000.0),
    ("max(x) + min(x)", {"x": list(range(100_000))}, 99_999),
    ("all(x) or any(x)", {"x": list(range(100_000))}, True),
    ("max(3, 4, key=str)", {}, 4),
    ("x[1:3] + x[::-2]", {"x": [1, 2, 3, 4]}, [2, 3, 4, 2]),
    ('{**d, "b": 2}', {"d": {"a": 1}}, {"a": 1, "b": 2}),
    ('[c[0] for c in list_expr("[(512,10,5)] + [(512,3,2)] * 4")]', {}, [512] * 5),
    ('len("x" * 100000)', {}, 100_000),
    ("(1 << 1000) >> 999", {}, 2),
    ("x == x and len(x) == 10", {"x": laughs()}, True),  # names are not walked: no cost for a shared value
]


@pytest.mark.parametrize("text, names, expected", KEPT, ids=[k[0][:40] for k in KEPT])
def test_ordinary_values_are_untouched_by_the_bounds(text: str, names: dict, expected: object) -> None:
    assert run(text, **names) == expected


def test_a_shared_config_value_costs_nothing_to_name() -> None:
    expr = compile_expr("x[0][0] == x[1][0] and len(x) > 0", LOC, frozenset({"x"}))
    start = time.perf_counter()
    for _ in range(100):
        assert expr.evaluate({"x": laughs()}) is True
    assert time.perf_counter() - start < 1


def test_a_deeply_nested_expression_is_refused_at_compile_time() -> None:
    for text in ("-" * 5_000 + "1", " + ".join(["a"] * 150), "[" * 150 + "]" * 150):
        with pytest.raises(RuleError, match=r"^e\.yaml:3: condition `.*` nests deeper than 100 levels$"):
            compile_expr(text, LOC, frozenset({"a"}), "condition")
    assert compile_expr(" + ".join(["a"] * 40), LOC, frozenset({"a"})).evaluate({"a": 1}) == 40


def test_a_long_failure_message_is_clipped_to_one_line() -> None:
    with pytest.raises(RuleError) as caught:
        run("x[k]", x={}, k="a\nb" * 50_000)
    assert str(caught.value).startswith("e.yaml:3: expression `x[k]` failed: KeyError: 'a\\nba\\nb")
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400


def test_threads_evaluate_independently() -> None:
    expr = compile_expr("str(i) * 3 + f'{i:>4}'", LOC, frozenset({"i"}))
    results: dict[int, list[str]] = {}

    def work(i: int) -> None:
        results[i] = [expr.evaluate({"i": i}) for _ in range(300)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[i] == [f"{i}{i}{i}{i:>4}"] * 300 for i in range(4))


@pytest.mark.parametrize("text, message", [
    ("[1]" + "+[1]" * 5_000, "list expression is too long: 20003 characters, at most 10000"),
    ("[(1,2,3)]" + "*1" * 3_000, "list expression nests deeper than 16 levels"),
    ("[(1,2,3)]" + "*1" * 20, "list expression nests deeper than 16 levels"),
    ("[" * 20 + "]" * 20, "list expression nests deeper than 16 levels"),
    ("[[0] * 1000] * 1000", "list expression is too long: more than 100000 elements"),
    ("[(1,2,3)] * 30000", "list expression is too long: more than 100000 elements"),
    ("[(1,2,3)] * 99999 + " * 400 + "[]", "list expression is too long: more than 100000 elements"),
    ("[1] + (2,)", "unsupported element '\\[1\\] \\+ \\(2,\\)'"),
])
def test_list_expr_is_bounded(text: str, message: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message) as caught:
        list_expr(text)
    assert time.perf_counter() - start < 1
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


def test_list_expr_joins_a_long_chain_in_linear_time() -> None:
    text = " + ".join(["[(1,2)]"] * 900)  # 9 kB, the most that fits
    start = time.perf_counter()
    assert list_expr(text) == [(1, 2)] * 900
    assert time.perf_counter() - start < 1
    assert list_expr("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2 + [(1,)] * 0") == (
        [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="[]()+*, -0123456789.'x", max_size=300))
def test_list_expr_returns_a_list_or_raises_value_error(text: str) -> None:
    try:
        assert isinstance(list_expr(text), list)
    except ValueError as exc:
        assert "\n" not in str(exc)


specs = st.lists(st.tuples(st.integers(-9, 9999), st.integers(0, 99), st.integers(1, 9)), min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(specs, st.integers(0, 6)), min_size=1, max_size=8))
def test_list_expr_agrees_with_python_on_conv_specs(terms: list) -> None:
    text = " + ".join(f"{layers!r} * {count}" for layers, count in terms)
    assert list_expr(text) == eval(text)


def test_iteration_helpers_work_and_are_bounded() -> None:
    """enumerate, zip, range, sorted, sum, prod, abs and round: what vocabularies and hop lengths need."""
    from remap.errors import Loc, RuleError
    from remap.rules.expr import compile_expr

    def run(text: str, **names: object) -> object:
        return compile_expr(text, Loc("x", 1), frozenset(names)).evaluate(names)

    assert run("{s: i for i, s in enumerate(symbols)}", symbols=["a", "b"]) == {"a": 0, "b": 1}
    assert run("[a * b for a, b in zip(xs, ys)]", xs=[1, 2], ys=[3, 4]) == [3, 8]
    assert run("prod(rates)", rates=[8, 5, 4, 2]) == 320
    assert run("(sum(range(4)), sorted(xs), abs(-2), round(2.5))", xs=[3, 1]) == (6, [1, 3], 2, 2)
    for text in ("range(10**6)", "sum(xs)", "prod(xs)"):
        with pytest.raises(RuleError, match="more than 100000"):
            run(text, xs=list(range(200_000)))
    with pytest.raises(RuleError, match="bits"):
        run("prod(xs)", xs=[2**60] * 100)
    with pytest.raises(RuleError, match="bits"):  # stops at the cap, not after a 100-million-bit product
        run("prod(xs)", xs=[2**1000] * 100_000)
    with pytest.raises(RuleError, match="takes numbers"):  # adding lists one by one is quadratic
        run("sum(xs)", xs=[[0] * 1000] * 1000)
