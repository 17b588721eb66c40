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
from typing import Any, Final

from ..errors import RuleError
from ..ops import STRUCTURES, TENSOR_OPS, Field, Structure, TensorOp
from ..ops.base import Param
from ..ops.rename import Rename
from .expr import Expr, compile_expr
from .model import DTYPES, Output, Rule
from .patterns import Pattern, compile_pattern, compile_regex, compile_template
from .schema import check_fields, seq
from .yamlnode import Node

STRUCTURE_NAMES: Final = tuple(sorted(name for name in STRUCTURES if name != Rename.name))
RULE_FIELDS: Final = ("from", "regex", "to", "drop", "when", "cast", "reason", "examples", "ops", *STRUCTURE_NAMES)
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
            if len(patterns) > 1 or set(c) & {"cast", "ops", *STRUCTURE_NAMES}:
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
        if len(patterns) == 1 and len(outputs) == 1 and plain and isinstance(structure, Rename):
            return Rule(node.loc, patterns[0], outputs[0].template, when, cast, _reason(node))
        return Rule(node.loc, patterns[0], outputs[0].template, when, cast, _reason(node),
                    sources=patterns if len(patterns) > 1 else (),
                    source_ops=source_ops if any(source_ops) else (), outputs=outputs, ops=ops,
                    structure=structure)

    def _sources(self, node: Node) -> tuple[tuple[Pattern, ...], tuple[tuple[TensorOp, ...], ...]]:
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

    def _param(self, node: Node, captures: Iterable[str], what: str, numbers: bool = False) -> Param:
        kinds = (int, float) if numbers else (int,)
        if isinstance(node.value, kinds) and not isinstance(node.value, bool):
            return node.value
        if not isinstance(node.value, str):
            kind = "a number" if numbers else "an integer"
            raise RuleError(f"{what} must be {kind} or an expression string", node.loc)
        return self.expr(node, {*captures, "shape"}, what)

    def _field(self, spec: Field, node: Node, captures: Iterable[str], op: str, what: str) -> Any:
        """One op field's value from YAML: literals stay literals, strings are expressions."""
        if spec.kind in ("int", "number"):
            items = node.items if node.is_seq else (node,)
            if len(items) != 1:
                raise RuleError(f"{op} takes 1 parameter", node.loc)
            return self._param(items[0], captures, what, numbers=spec.kind == "number")
        if spec.kind == "value":
            if node.is_seq:
                return tuple(self._param(item, captures, what) for item in node.items)
            return self._param(node, captures, what)
        items = node.items if node.is_seq else (node,)
        if spec.count is not None and len(items) != spec.count:
            raise RuleError(f"{op} takes {spec.count} parameter{'s' if spec.count > 1 else ''}", node.loc)
        return tuple(self._param(item, captures, what) for item in items)

    def _shape_ops(self, node: Node | None, captures: Iterable[str]) -> tuple[TensorOp, ...]:
        extras = sorted({f.name for cls in TENSOR_OPS.values() for f in cls.extras})
        ops = []
        for item in seq(node, "ops"):
            check_fields(item, (*TENSOR_OPS, *extras), "an op")
            kinds = [k for k in item.children if k in TENSOR_OPS]
            cls = TENSOR_OPS[kinds[0]] if len(kinds) == 1 else None
            own = {f.name for f in cls.extras} if cls is not None else set()
            if cls is None or any(k not in own for k in item.children if k not in TENSOR_OPS):
                owners = "; ".join(f"'{f.name}' only with {c.name}" for c in TENSOR_OPS.values() for f in c.extras)
                raise RuleError(f"an op is one of {', '.join(TENSOR_OPS)}{f' ({owners})' if owners else ''}",
                                item.loc)
            ops.append(self._tensor_op(cls, item.children[cls.name], item, captures))
        return tuple(ops)

    def _tensor_op(self, cls: type[TensorOp], value: Node, item: Node, captures: Iterable[str]) -> TensorOp:
        params: dict[str, Any] = {}
        if cls.main is not None:
            params[cls.main.name] = self._field(cls.main, value, captures, cls.name, f"{cls.name} parameter")
        else:
            check_fields(value, [f.name for f in cls.fields], cls.name)
            for spec in cls.fields:
                if spec.name in value.children:
                    params[spec.name] = self._field(spec, value.children[spec.name], captures, cls.name,
                                                    f"{cls.name} {spec.name}")
                elif spec.required:
                    raise RuleError(f"{cls.name} needs '{spec.name}' ({spec.help})", value.loc)
        for spec in cls.extras:
            if spec.name in item.children:
                params[spec.name] = self._field(spec, item.children[spec.name], captures, cls.name, spec.name)
        op = cls(params, item.loc)
        op.check()
        return op

    def _structure(self, node: Node, patterns: tuple[Pattern, ...]) -> Structure:
        kinds = [k for k in STRUCTURE_NAMES if k in node.children]
        if len(kinds) > 1:
            raise RuleError(f"a rule has at most one of {', '.join(STRUCTURE_NAMES)} (found {', '.join(kinds)})",
                            node.loc)
        if not kinds:
            return Rename()
        kind, spec = kinds[0], node.children[kinds[0]]
        cls = STRUCTURES[kind]
        if not spec.is_map:  # `split: 0` is short for `split: {dim: 0}`, `dedup: l` for `dedup: {over: l}`
            if cls.shorthand == "over":
                return cls(over=_capture_name(spec, patterns[0], kind))
            return cls(dim=_int(spec, f"{kind} dim"))
        check_fields(spec, cls.fields, kind)
        c, captures = spec.children, patterns[0].captures
        return cls(
            dim=_int(c["dim"], f"{kind} dim") if "dim" in c else 0,
            sizes=tuple(self._param(i, captures, "split size") for i in (c["sizes"].items if c["sizes"].is_seq
                                                                          else (c["sizes"],)))
            if "sizes" in c else None,
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


def _check_arity(node: Node, structure: Structure, patterns: tuple[Pattern, ...], outputs: tuple[Output, ...]) -> None:
    """Each structure takes a fixed number of sources and targets; say which, at the rule's line."""
    if not structure.fits(len(patterns), len(outputs)):
        raise RuleError(structure.arity, node.loc)
    if structure.sizes is not None and len(structure.sizes) != len(outputs):
        raise RuleError(f"split has {len(structure.sizes)} sizes for {len(outputs)} targets", node.loc)
    if structure.index is not None and structure.index not in outputs[0].template.names:
        raise RuleError(f"unstack's target must use its index '{{{structure.index}}}'", node.loc)
