"""Frozen rule objects: what a compiled rule file is.

`remap.compiler` builds these from YAML once; the planner and the example
runner only read them. Nothing here touches tensors or files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Final, Literal

from ..errors import ConfigError, Loc
from ..ops import Structure, TensorOp
from ..ops.rename import Rename
from ..tensors import TensorInfo
from .dispatch import RuleIndex
from .expr import Expr
from .patterns import Pattern, Template

DTYPES: Final = frozenset({
    "float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2",
    "int64", "int32", "int16", "int8", "uint8", "bool",
})
FILLS: Final = frozenset({"zeros", "ones", "eye", "uniform"})
TENSORS: Final = "tensors"  # the name expressions read source shapes by: tensors["key"] -> shape


@dataclass(frozen=True)
class Output:
    """One target of a rule, with the shape ops that apply to it alone."""

    template: Template
    ops: tuple[TensorOp, ...] = ()


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
    source_ops: tuple[tuple[TensorOp, ...], ...] = ()  # per source pattern, before the structure; empty: none
    outputs: tuple[Output, ...] = ()  # empty: just ``target`` (or nothing, for a drop)
    ops: tuple[TensorOp, ...] = ()
    structure: Structure = field(default_factory=Rename)

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

    def target_regex(self, template: Template) -> re.Pattern[str]:
        """What ``template`` (one of this rule's targets) can render: each capture as this rule's pattern
        matches it (group ``c_NAME_N``), each arithmetic placeholder as digits (group ``p_N``)."""
        kinds = dict(zip(self.pattern.captures, self.pattern.capture_regexes or (".+",) * len(self.pattern.captures),
                         strict=True))
        parts = []
        for n, part in enumerate(template.parts):
            if isinstance(part, str):
                parts.append(re.escape(part))
            elif part.tree is None and part.text in kinds:
                parts.append(f"(?P<c_{part.text}_{n}>{kinds[part.text]})")
            else:
                parts.append(f"(?P<p_{n}>\\d+)")
        return re.compile("".join(parts))

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
class JsonValue:
    """A JSON value a rule file writes out: nested mappings, lists and scalars, with `Expr` leaves computed.

    ``template`` holds MappingProxyType / tuple containers (so the rule set stays frozen) and Expr leaves.
    """

    template: Any

    def value(self, env: Mapping[str, Any]) -> Any:
        return _computed(self.template, env)


@dataclass(frozen=True)
class Namespace:
    """``{namespace: {...}}`` in a reverse section: an ``argparse.Namespace`` with these fields (fairseq's args)."""

    fields: Any


def _computed(node: Any, env: Mapping[str, Any]) -> Any:
    if isinstance(node, Expr):
        return node.evaluate(env)
    if isinstance(node, Namespace):
        return Namespace(_computed(node.fields, env))
    if isinstance(node, Mapping):
        return {k: _computed(v, env) for k, v in node.items()}
    if isinstance(node, tuple):
        return [_computed(v, env) for v in node]
    return node


@dataclass(frozen=True)
class TokenizerSpec:
    """A tokenizer written beside the weights: a transformers tokenizer class, built from a vocabulary.

    The vocabulary is either ``vocab`` (a JSON mapping token -> id, computed from the source config) or a
    tiktoken BPE file shipped by an installed package (``tiktoken_package`` / ``tiktoken_path``).
    ``special_tokens`` are added after it, in order, then ``added_tokens`` (ordinary added tokens, which
    decoding keeps); ``options`` are the class's keyword arguments. ``when``, if given, says whether the
    source has what the tokenizer needs; when it is false no tokenizer is written, and the output's
    provenance says so.
    """

    class_name: str
    loc: Loc
    vocab: JsonValue | None = None
    tiktoken_package: str | None = None
    tiktoken_path: JsonValue | None = None
    special_tokens: JsonValue | None = None
    options: JsonValue = field(default_factory=lambda: JsonValue(MappingProxyType({})))
    added_tokens: JsonValue | None = None
    when: JsonValue | None = None


@dataclass(frozen=True)
class ReverseSpec:
    """How ``remap revert`` writes the original checkpoint without ``--like``.

    ``entries`` maps dotted entry paths of the checkpoint to their values, computed from the transformers
    config (the name ``config``) and the target tensors' shapes (``tensors``); the weights go where the
    layout ``layout`` keeps its state dict.
    """

    loc: Loc
    layout: str | None
    format: str  # "torch" or "safetensors"
    entries: tuple[tuple[str, JsonValue], ...]


@dataclass(frozen=True)
class TargetSpec:
    """The transformers model class and the files written beside the weights."""

    model_class: str
    config: tuple[ConfigField, ...]
    preprocessor: tuple[ConfigField, ...] | None
    class_loc: Loc | None = None
    files: tuple[tuple[str, JsonValue], ...] = ()  # extra JSON files: (file name, content)
    tokenizer: TokenizerSpec | None = None


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
    reverse: ReverseSpec | None = None

    @cached_property
    def index(self) -> RuleIndex[Matcher]:
        """Dispatch structure over every source pattern of every rule (built on first use)."""
        return RuleIndex(tuple(Matcher(p, r, i) for r in self.rules for i, p in enumerate(r.patterns)))

    def environment(self, source_config: Mapping[str, Any] | None = None,
                    tensors: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, Any]:
        """Names visible to expressions: defaults, overlaid by the source config, then ``let``s.

        ``tensors`` maps each source key to its shape (empty when there is no checkpoint, as for
        inline examples), so expressions can read a size the config does not hold.
        """
        env: dict[str, Any] = dict(self.source.defaults)
        for key, value in (source_config or {}).items():
            if key in env:
                env[key] = value
        env[TENSORS] = MappingProxyType(dict(tensors or {}))
        for name, expr in self.lets:
            env[name] = expr.evaluate(env)
        for req in self.requires:
            if not req.check.evaluate(env):
                raise ConfigError(f"unsupported source: {req.message} (check `{req.check.text}`)", req.loc)
        return env

    def target_config(self, env: Mapping[str, Any]) -> dict[str, Any]:
        """The target model's config fields, computed from the environment."""
        return {field.name: field.value(env) for field in self.target.config}

    def side_files(self, env: Mapping[str, Any]) -> dict[str, str]:
        """JSON files written beside config.json: preprocessor_config.json and ``target.files``."""
        import json

        files = {}
        pre = self.preprocessor_config(env)
        if pre is not None:
            files["preprocessor_config.json"] = json.dumps(pre, indent=2, sort_keys=True) + "\n"
        for name, content in self.target.files:
            files[name] = json.dumps(content.value(env), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        return files

    def preprocessor_config(self, env: Mapping[str, Any]) -> dict[str, Any] | None:
        """What preprocessor_config.json holds, or None when the rule file declares none."""
        if self.target.preprocessor is None:
            return None
        return {field.name: field.value(env) for field in self.target.preprocessor}
