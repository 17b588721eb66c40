"""Compiling one rule: its source patterns, targets, condition, cast, shape ops and structure.

A rule is one of:

- a rename: ``from: PATTERN`` ``to: TARGET`` (or ``to: [T1, T2]``: a tie, the same tensor twice);
- a structural op: ``split``, ``unstack``, ``concat``, ``stack``, ``dedup``,
  ``fold_weight_norm`` or ``unfold_weight_norm``, whose arity is checked here;
- a drop: ``drop: PATTERN`` or ``drop: true``.

Any of the non-drops may carry ``ops:`` (shape ops on every output) and ``cast:``. Each target may
be ``{key: TARGET, ops: [...]}`` for ops on that target alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from ..errors import Loc, RuleError
from .expr import Expr, compile_expr
from .model import DTYPES, Output, Rule
from .ops import SHAPE_OPS, STRUCTURES, Param, ShapeOp, Structure
from .patterns import Pattern, compile_pattern, compile_regex, compile_template
from .schema import check_fields, seq
from .yamlnode import Node

RULE_FIELDS: Final = ("from", "regex", "to", "drop", "when", "cast", "reason", "examples", "ops", *STRUCTURES)
STRUCTURE_FIELDS: Final = {"split": ("dim", "sizes"), "unstack": ("dim", "index"), "concat": ("dim", "over"),
                           "stack": ("dim", "over"), "dedup": ("over", "count"), "fold_weight_norm": ("dim",),
                           "unfold_weight_norm": ("dim",)}
TENSOR_NAMES: Final = frozenset({"shape", "dtype"})


class RuleCompiler:
    """Compiles rule mappings; ``names`` are the config names expressions may use."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def expr(self, node: Node, extra: Iterable[str], what: str) -> Expr:
        return compile_expr(node.value, node.loc, self.names | frozenset(extra), what)

    def when(self, node: Node | None, captures: Iterable[str]) -> Expr | None:
        """A condition sees config names, the pattern's captures, and the tensor's shape and dtype."""
        return None if node is None else self.expr(node, set(captures) | TENSOR_NAMES, "condition")

    def drop_shorthand(self, node: Node) -> Rule:
        check_fields(node, ("drop", "when", "reason", "examples"), "a drop rule")
        c = node.children
        pattern = compile_pattern(c["drop"].value, c["drop"].loc)
        return Rule(node.loc, pattern, None, self.when(c.get("when"), pattern.captures), None, _reason(node))

    def rule(self, node: Node) -> Rule:
        check_fields(node, RULE_FIELDS, "a rule")
        c = node.children
        if ("from" in c) == ("regex" in c):
            raise RuleError("a rule needs exactly one of 'from' (a key pattern) or 'regex'", node.loc)
        patterns, source_ops = self._sources(c["from"]) if "from" in c else (
            (compile_regex(c["regex"].value, c["regex"].loc),), ())
        label = " + ".join(p.text for p in patterns)
        drop = "drop" in c and c["drop"].value is True
        if "drop" in c and c["drop"].value is not True:
            raise RuleError("'drop' must be true, or a pattern string on its own", c["drop"].loc)
        if drop == ("to" in c):
            raise RuleError(f"rule '{label}' needs exactly one of 'to' or 'drop: true'", node.loc)
        captures = patterns[0].captures
        when = self.when(c.get("when"), captures)
        if drop:
            if len(patterns) > 1 or set(c) & {"cast", "ops", *STRUCTURES}:
                raise RuleError("a drop rule takes one pattern, and no cast, ops or structure", node.loc)
            return Rule(node.loc, patterns[0], None, when, None, _reason(node))
        structure = self._structure(node, patterns)
        ints = patterns[0].int_captures | ({structure.index} if structure.index else set())
        visible = tuple(n for n in (*captures, structure.index) if n and n != structure.over)
        outputs = self._outputs(c["to"], visible, frozenset(ints), label)
        _check_arity(node, structure, patterns, outputs)
        ops = self._shape_ops(c.get("ops"), captures)
        cast = self._cast(c.get("cast"))
        plain = not ops and not outputs[0].ops and not any(source_ops)
        if len(patterns) == 1 and len(outputs) == 1 and plain and structure.kind == "map":
            return Rule(node.loc, patterns[0], outputs[0].template, when, cast, _reason(node))
        return Rule(node.loc, patterns[0], outputs[0].template, when, cast, _reason(node),
                    sources=patterns if len(patterns) > 1 else (),
                    source_ops=source_ops if any(source_ops) else (), outputs=outputs, ops=ops,
                    structure=structure)

    def _sources(self, node: Node) -> tuple[tuple[Pattern, ...], tuple[tuple[ShapeOp, ...], ...]]:
        """Source patterns, each a string or ``{key: PATTERN, ops: [...]}`` (ops on that input alone)."""
        if not node.is_seq:
            return (compile_pattern(node.value, node.loc),), ()
        patterns, source_ops = [], []
        for item in node.items:
            if item.is_map:
                check_fields(item, ("key", "ops"), "a source")
                if "key" not in item.children:
                    raise RuleError("a source mapping needs 'key'", item.loc)
                pattern = compile_pattern(item.children["key"].value, item.children["key"].loc)
                source_ops.append(self._shape_ops(item.children.get("ops"), pattern.captures))
            else:
                pattern = compile_pattern(item.value, item.loc)
                source_ops.append(())
            patterns.append(pattern)
        if len(patterns) < 2:
            raise RuleError("a list of source patterns needs at least two (use a string for one)", node.loc)
        for p in patterns[1:]:
            if set(p.captures) != set(patterns[0].captures):
                raise RuleError(f"source patterns '{patterns[0].text}' and '{p.text}' must define the same "
                                f"captures, so that their keys can be grouped", node.loc)
        return tuple(patterns), tuple(source_ops)

    def _outputs(self, node: Node, captures: tuple[str, ...], ints: frozenset[str], label: str) -> tuple[Output, ...]:
        items = node.items if node.is_seq else (node,)
        if not items:
            raise RuleError("'to' must name at least one target", node.loc)
        outputs = []
        for item in items:
            if item.is_map:
                check_fields(item, ("key", "ops"), "a target")
                if "key" not in item.children:
                    raise RuleError("a target mapping needs 'key'", item.loc)
                key, ops = item.children["key"], self._shape_ops(item.children.get("ops"), captures)
            else:
                key, ops = item, ()
            outputs.append(Output(compile_template(key.value, key.loc, captures, label, ints), ops))
        return tuple(outputs)

    def _cast(self, node: Node | None) -> str | None:
        if node is None:
            return None
        if node.value not in DTYPES:
            raise RuleError(f"unknown dtype '{node.value}' (allowed: {', '.join(sorted(DTYPES))})", node.loc)
        return str(node.value)

    def _param(self, node: Node, captures: Iterable[str], what: str) -> Param:
        if isinstance(node.value, int) and not isinstance(node.value, bool):
            return node.value
        if not isinstance(node.value, str):
            raise RuleError(f"{what} must be an integer or an expression string", node.loc)
        return self.expr(node, {*captures, "shape"}, what)

    def _params(self, node: Node, captures: Iterable[str], what: str) -> tuple[Param, ...]:
        items = node.items if node.is_seq else (node,)
        return tuple(self._param(item, captures, what) for item in items)

    def _shape_ops(self, node: Node | None, captures: Iterable[str]) -> tuple[ShapeOp, ...]:
        ops = []
        for item in seq(node, "ops"):
            check_fields(item, (*SHAPE_OPS, "back"), "an op")
            kinds = [k for k in item.children if k in SHAPE_OPS]
            if len(kinds) != 1 or ("back" in item.children and kinds != ["reshape"]):
                raise RuleError(f"an op is one of {', '.join(SHAPE_OPS)} ('back' only with reshape)", item.loc)
            kind, arg = kinds[0], item.children[kinds[0]]
            args = self._params(arg, captures, f"{kind} parameter")
            _check_op_arity(kind, args, arg.loc)
            back = self._params(item.children["back"], captures, "back") if "back" in item.children else None
            ops.append(ShapeOp(kind, args, item.loc, back))
        return tuple(ops)

    def _structure(self, node: Node, patterns: tuple[Pattern, ...]) -> Structure:
        kinds = [k for k in STRUCTURES if k in node.children]
        if len(kinds) > 1:
            raise RuleError(f"a rule has at most one of {', '.join(STRUCTURES)} (found {', '.join(kinds)})",
                            node.loc)
        if not kinds:
            return Structure()
        kind, spec = kinds[0], node.children[kinds[0]]
        if not spec.is_map:  # `split: 0` is short for `split: {dim: 0}`
            if kind == "dedup":
                return Structure(kind, over=_capture_name(spec, patterns[0], "dedup"))
            return Structure(kind, dim=_int(spec, f"{kind} dim"))
        check_fields(spec, STRUCTURE_FIELDS[kind], kind)
        c, captures = spec.children, patterns[0].captures
        return Structure(
            kind, dim=_int(c["dim"], f"{kind} dim") if "dim" in c else 0,
            sizes=self._params(c["sizes"], captures, "split size") if "sizes" in c else None,
            over=_capture_name(c["over"], patterns[0], kind) if "over" in c else None,
            index=_new_index(c["index"], patterns[0]) if "index" in c else None,
            count=self.expr(c["count"], (), "dedup count") if "count" in c else None)


def _reason(node: Node) -> str:
    return str(node.children["reason"].value) if "reason" in node.children else ""


def _int(node: Node, what: str) -> int:
    if isinstance(node.value, bool) or not isinstance(node.value, int):
        raise RuleError(f"{what} must be an integer", node.loc)
    return node.value


def _capture_name(node: Node, pattern: Pattern, what: str) -> str:
    name = node.value
    if name not in pattern.int_captures:
        raise RuleError(f"{what} over '{name}': pattern '{pattern.text}' has no int capture of that name "
                        f"(int captures: {', '.join(sorted(pattern.int_captures)) or 'none'})", node.loc)
    return str(name)


def _new_index(node: Node, pattern: Pattern) -> str:
    name = node.value
    if not isinstance(name, str) or not name.isidentifier() or name in pattern.captures:
        raise RuleError(f"unstack index must be a new name, not a capture of '{pattern.text}'", node.loc)
    return name


def _check_op_arity(kind: str, args: tuple[Param, ...], loc: Loc) -> None:
    wanted = {"transpose": 2, "squeeze": 1, "unsqueeze": 1, "rope_permute": 1, "rope_unpermute": 1}
    if kind in wanted and len(args) != wanted[kind]:
        raise RuleError(f"{kind} takes {wanted[kind]} parameter{'s' if wanted[kind] > 1 else ''}", loc)
    if kind in ("permute", "reshape") and not args:
        raise RuleError(f"{kind} needs a list of dims", loc)


def _check_arity(node: Node, structure: Structure, patterns: tuple[Pattern, ...], outputs: tuple[Output, ...]) -> None:
    """Each structure takes a fixed number of sources and targets; say which, at the rule's line."""
    kind, n_in, n_out = structure.kind, len(patterns), len(outputs)
    listed = n_in > 1
    problems = {
        "map": listed and "a rename takes one source pattern (several need concat, stack or fold_weight_norm)",
        "split": (listed or n_out < 2) and "split takes one source and a list of two or more targets",
        "unstack": (listed or n_out != 1 or structure.index is None)
        and "unstack takes one source, an 'index' name, and one target that uses it",
        "concat": (n_out != 1 or listed == (structure.over is not None))
        and "concat takes either a list of sources or one source with 'over', and one target",
        "stack": (n_out != 1 or listed == (structure.over is not None))
        and "stack takes either a list of sources or one source with 'over', and one target",
        "dedup": (listed or n_out != 1 or structure.over is None)
        and "dedup takes one source with 'over', and one target",
        "fold_weight_norm": (n_in != 2 or n_out != 1)
        and "fold_weight_norm takes two sources [g, v] and one target",
        "unfold_weight_norm": (n_in != 1 or n_out != 2)
        and "unfold_weight_norm takes one source and two targets [g, v]",
    }
    if problems[kind]:
        raise RuleError(str(problems[kind]), node.loc)
    if structure.sizes is not None and len(structure.sizes) != n_out:
        raise RuleError(f"split has {len(structure.sizes)} sizes for {n_out} targets", node.loc)
    if structure.index is not None and structure.index not in outputs[0].template.names:
        raise RuleError(f"unstack's target must use its index '{{{structure.index}}}'", node.loc)
