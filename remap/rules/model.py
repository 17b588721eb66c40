"""Frozen rule objects: what a compiled rule file is.

`remap.compiler` builds these from YAML once; the planner and the example
runner only read them. Nothing here touches tensors or files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final, Literal

from ..errors import ConfigError, Loc
from ..tensors import TensorInfo
from .dispatch import RuleIndex
from .expr import Expr
from .ops import ShapeOp, Structure
from .patterns import Pattern, Template

DTYPES: Final = frozenset({
    "float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2",
    "int64", "int32", "int16", "int8", "uint8", "bool",
})
FILLS: Final = frozenset({"zeros", "ones", "eye", "uniform"})


@dataclass(frozen=True)
class Output:
    """One target of a rule, with the shape ops that apply to it alone."""

    template: Template
    ops: tuple[ShapeOp, ...] = ()


@dataclass(frozen=True)
class Rule:
    """Source keys matching ``pattern`` (and ``when``) go to ``target``, or are dropped.

    A rule with tensor ops also has: several source patterns (``sources``, in the order its
    structure takes them; ``pattern`` is the first), several targets (``outputs``; ``target`` is
    the first), ``ops`` applied to every output, and a `Structure` (split, concat, ...).
    """

    loc: Loc
    pattern: Pattern
    target: Template | None  # None means drop
    when: Expr | None = None
    cast: str | None = None
    reason: str = ""
    sources: tuple[Pattern, ...] = ()  # empty: just ``pattern``
    source_ops: tuple[tuple[ShapeOp, ...], ...] = ()  # per source pattern, before the structure; empty: none
    outputs: tuple[Output, ...] = ()  # empty: just ``target`` (or nothing, for a drop)
    ops: tuple[ShapeOp, ...] = ()
    structure: Structure = field(default_factory=Structure)

    @property
    def label(self) -> str:
        return " + ".join(p.text for p in self.patterns)

    @property
    def drops(self) -> bool:
        return self.target is None

    @property
    def patterns(self) -> tuple[Pattern, ...]:
        return self.sources or (self.pattern,)

    @property
    def targets(self) -> tuple[Output, ...]:
        if self.outputs:
            return self.outputs
        return () if self.target is None else (Output(self.target),)

    @property
    def exact(self) -> bool:
        """Whether every output's bytes are source bytes rearranged (no arithmetic, no cast)."""
        return self.structure.exact and self.cast is None

    def render_targets(self, captures: Mapping[str, str]) -> list[str]:
        """The target keys for one key's captures (an unstack's index is shown as ``{name}``)."""
        index = self.structure.index
        values = {**captures, index: f"{{{index}}}"} if index else captures
        return [t.template.render(values) if not index else _render_text(t.template, values) for t in self.targets]


def _render_text(template: Template, values: Mapping[str, str]) -> str:
    """Render, leaving placeholders whose value is not a number as text (examples, explain)."""
    try:
        return template.render(values)
    except (ValueError, KeyError):
        return template.text


@dataclass(frozen=True)
class Init:
    """A target key the source lacks, filled with ``fill`` (shape from the target model)."""

    loc: Loc
    pattern: Pattern
    fill: str | float  # zeros, ones, eye, uniform, or a constant
    when: Expr | None = None
    dtype: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class Allow:
    """Target keys that may stay missing from the output (the target initialises them)."""

    loc: Loc
    pattern: Pattern
    when: Expr | None = None
    reason: str = ""


@dataclass(frozen=True)
class Requirement:
    """A check on the source config; conversion stops with ``message`` when it is false."""

    loc: Loc
    check: Expr
    message: str


@dataclass(frozen=True)
class ConfigField:
    """One target config field: a literal, or an expression over the source config."""

    name: str
    loc: Loc
    expr: Expr | None
    literal: Any = None

    def value(self, env: Mapping[str, Any]) -> Any:
        return self.literal if self.expr is None else self.expr.evaluate(env)


@dataclass(frozen=True)
class Matcher:
    """One source pattern of a rule: what dispatch indexes. ``position`` is its place in ``rule.sources``."""

    pattern: Pattern
    rule: Rule
    position: int


Expect = Literal["to", "drop", "unmatched", "error"]


@dataclass(frozen=True)
class Example:
    """An inline example: ``key`` (under ``config``) maps to ``target``, drops, matches nothing, or fails.

    For ``expect == "error"``, ``target`` holds text the error message must contain.
    """

    loc: Loc
    key: str
    expect: Expect
    target: str | None
    config: Mapping[str, Any]
    rule: Rule | None  # the rule that declared it, which must be the one that fires
    info: TensorInfo | None = None  # shape and dtype, when the example gives a shape
    targets: tuple[str, ...] = ()  # every expected target (``target`` is the first)
    inputs: tuple[tuple[str, TensorInfo], ...] = ()  # the other source keys of a multi-source rule's group
    shapes: tuple[tuple[int, ...], ...] | None = None  # the expected output shapes, in target order


@dataclass(frozen=True)
class Layout:
    """One way a checkpoint can be organised: detected by the entries it has."""

    name: str
    detect: tuple[str, ...]  # dotted paths that must all exist; empty matches anything
    state_dict: str
    config: str | tuple[str, ...] | None  # several paths are merged in order, later wins
    loc: Loc | None = None
    absent: tuple[str, ...] = ()  # dotted paths that must not exist (or be None)

    def describe(self) -> str:
        """What this layout needs, for error messages: ``fairseq needs cfg, model (and no args)``."""
        text = f"{self.name} needs {', '.join(self.detect) or 'nothing'}"
        return text + (f" (and no {', '.join(self.absent)})" if self.absent else "")


@dataclass(frozen=True)
class SourceSpec:
    """Where weights and config live inside a checkpoint (per layout), and config defaults."""

    layouts: tuple[Layout, ...]
    defaults: Mapping[str, Any]
    fetch_repo: str | None = None
    fetch_file: str | None = None

    @property
    def state_dict(self) -> str:
        """The first layout's state dict path (what single-layout files declare)."""
        return self.layouts[0].state_dict

    @property
    def config(self) -> str | tuple[str, ...] | None:
        return self.layouts[0].config


@dataclass(frozen=True)
class TargetSpec:
    """The transformers model class and the files written beside the weights."""

    model_class: str
    config: tuple[ConfigField, ...]
    preprocessor: tuple[ConfigField, ...] | None
    class_loc: Loc | None = None


@dataclass(frozen=True)
class RuleSet:
    """A compiled rule file."""

    name: str
    path: str
    sha256: str
    source: SourceSpec
    lets: tuple[tuple[str, Expr], ...]
    requires: tuple[Requirement, ...]
    target: TargetSpec
    rules: tuple[Rule, ...]
    inits: tuple[Init, ...]
    allows: tuple[Allow, ...]
    examples: tuple[Example, ...]
    description: str = ""
    example_config: Mapping[str, Any] = field(default_factory=dict)  # under every inline example

    @cached_property
    def index(self) -> RuleIndex[Matcher]:
        """Dispatch structure over every source pattern of every rule (built on first use)."""
        return RuleIndex(tuple(Matcher(p, r, i) for r in self.rules for i, p in enumerate(r.patterns)))

    def environment(self, source_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Names visible to expressions: defaults, overlaid by the source config, then ``let``s."""
        env: dict[str, Any] = dict(self.source.defaults)
        for key, value in (source_config or {}).items():
            if key in env:
                env[key] = value
        for name, expr in self.lets:
            env[name] = expr.evaluate(env)
        for req in self.requires:
            if not req.check.evaluate(env):
                raise ConfigError(f"unsupported source: {req.message} (check `{req.check.text}`)", req.loc)
        return env

    def target_config(self, env: Mapping[str, Any]) -> dict[str, Any]:
        """The target model's config fields, computed from the environment."""
        return {field.name: field.value(env) for field in self.target.config}

    def preprocessor_config(self, env: Mapping[str, Any]) -> dict[str, Any] | None:
        """What preprocessor_config.json holds, or None when the rule file declares none."""
        if self.target.preprocessor is None:
            return None
        return {field.name: field.value(env) for field in self.target.preprocessor}
