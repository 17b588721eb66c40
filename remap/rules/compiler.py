"""Compile a YAML rule file into a frozen `RuleSet`, checking everything up front.

Every schema problem (unknown field, bad pattern, unknown capture in a target,
bad expression) raises `RuleError` with the ``file:line`` of the offending
value, before any checkpoint is opened.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from ..errors import RuleError
from ..tensors import TensorInfo
from .compile_rule import RuleCompiler
from .compile_target import TargetCompiler, compile_reverse
from .expr import Expr, compile_expr
from .model import (
    DTYPES,
    FILLS,
    TENSORS,
    Allow,
    Example,
    Expect,
    Init,
    Layout,
    Requirement,
    Rule,
    RuleSet,
    SourceSpec,
    TargetSpec,
)
from .patterns import Pattern, compile_pattern, compile_regex
from .schema import check_fields, seq, string
from .yamlnode import Node, load_yaml

FORMAT_VERSION: Final = 1
TOP_FIELDS: Final = ("remap", "name", "description", "source", "let", "requires", "target",
                     "rules", "init", "allow_missing", "examples", "example_config", "reverse")
SOURCE_FIELDS: Final = ("state_dict", "config", "layouts", "defaults", "fetch")
LAYOUT_FIELDS: Final = ("name", "detect", "absent", "state_dict", "config")
INIT_FIELDS: Final = ("key", "fill", "when", "dtype", "reason")
ALLOW_FIELDS: Final = ("key", "when", "reason")
EXAMPLE_FIELDS: Final = ("key", "to", "drop", "unmatched", "error", "config", "shape", "shapes", "dtype")
TENSOR_NAMES: Final = frozenset({"shape", "dtype"})


def compile_file(path: str | Path) -> RuleSet:
    """Read and compile a rule file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RuleError(f"cannot read rule file: {exc.strerror}", str(path)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RuleError("rule file is not UTF-8 text", str(path)) from None
    return compile_text(text, str(path), hashlib.sha256(data).hexdigest())


def compile_text(text: str, filename: str = "<rules>", sha256: str | None = None) -> RuleSet:
    """Compile rule-file text; ``filename`` is used in error locations."""
    root = load_yaml(text, filename)
    digest = sha256 or hashlib.sha256(text.encode("utf-8")).hexdigest()
    return _Compiler(filename).ruleset(root, digest)


class _Compiler:
    """Holds the file name and the names expressions may use while compiling."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.names: frozenset[str] = frozenset()
        self.defaults: frozenset[str] = frozenset()

    def ruleset(self, root: Node, digest: str) -> RuleSet:
        check_fields(root, TOP_FIELDS, "the rule file")
        self._version(root)
        for required in ("name", "source", "target", "rules"):
            if required not in root.children:
                raise RuleError(f"missing required field '{required}'", root.loc)
        source = self._source(root.children["source"])
        if TENSORS in source.defaults:
            raise RuleError(f"'{TENSORS}' is reserved (expressions read source shapes through it); rename that "
                            "default", root.children["source"].loc)
        self.defaults = frozenset(source.defaults)
        self.names = self.defaults | {TENSORS}
        lets = self._lets(root.children.get("let"))
        requires = tuple(self._requirement(n) for n in seq(root.children.get("requires"), "requires"))
        rules_with_examples = [self._rule(n) for n in seq(root.children["rules"], "rules")]
        rules = tuple(rule for rule, _ in rules_with_examples)
        examples = [ex for _, exs in rules_with_examples for ex in exs]
        examples += [self._example(n, None) for n in seq(root.children.get("examples"), "examples")]
        example_config = self._config_values(root.children.get("example_config"), "example_config")
        description = root.children.get("description")
        return RuleSet(
            name=string(root.children["name"], "name"), path=self.filename, sha256=digest,
            source=source, lets=lets, requires=requires,
            target=self._target(root.children["target"]), rules=rules,
            inits=tuple(self._init(n) for n in seq(root.children.get("init"), "init")),
            allows=tuple(self._allow(n) for n in seq(root.children.get("allow_missing"), "allow_missing")),
            examples=tuple(examples),
            description=string(description, "description") if description is not None else "",
            example_config=MappingProxyType(example_config),
            reverse=compile_reverse(root.children["reverse"], tuple(lay.name for lay in source.layouts))
            if "reverse" in root.children else None)

    def _version(self, root: Node) -> None:
        node = root.children.get("remap")
        if node is None:
            raise RuleError(f"missing 'remap: {FORMAT_VERSION}' (the rule format version)", root.loc)
        if node.value != FORMAT_VERSION:
            raise RuleError(f"unsupported rule format version {node.value!r}; this remap reads "
                            f"version {FORMAT_VERSION}", node.loc)

    def _source(self, node: Node) -> SourceSpec:
        check_fields(node, SOURCE_FIELDS, "source")
        c = node.children
        if ("state_dict" in c) == ("layouts" in c):
            raise RuleError("source needs either 'state_dict' (the path of the weights in the checkpoint; '' "
                            "for a plain state dict) or 'layouts'", node.loc)
        defaults_node = c.get("defaults")
        defaults = defaults_node.value if defaults_node is not None else {}
        if not isinstance(defaults, dict):
            raise RuleError("source.defaults must be a mapping", defaults_node.loc)  # type: ignore[union-attr]
        repo = file = None
        if "fetch" in c:
            check_fields(c["fetch"], ("repo", "file"), "source.fetch")
            repo = string(c["fetch"].children.get("repo", c["fetch"]), "source.fetch.repo")
            file = string(c["fetch"].children.get("file", c["fetch"]), "source.fetch.file")
        if "layouts" in c:
            layouts = tuple(self._layout(n, required=True) for n in seq(c["layouts"], "source.layouts"))
            if not layouts:
                raise RuleError("source.layouts must list at least one layout", c["layouts"].loc)
            names = [layout.name for layout in layouts]
            if len(set(names)) != len(names):
                raise RuleError("source.layouts has duplicate names", c["layouts"].loc)
        else:
            layouts = (self._layout(node, required=False),)
        return SourceSpec(layouts, MappingProxyType(dict(defaults)), repo, file)

    def _layout(self, node: Node, required: bool) -> Layout:
        if required:
            check_fields(node, LAYOUT_FIELDS, "a layout")
            for field in ("name", "detect", "state_dict"):
                if field not in node.children:
                    raise RuleError(f"a layout needs '{field}'", node.loc)
        c = node.children
        sd = c["state_dict"].value
        if not isinstance(sd, str):
            raise RuleError("state_dict must be a string", c["state_dict"].loc)
        config = c["config"].value if "config" in c else None
        if isinstance(config, list) and config and all(isinstance(p, str) and p for p in config):
            config = tuple(config)
        elif config is not None and not isinstance(config, str):
            raise RuleError("config must be an entry path, or a list of them (merged in order, later wins)",
                            c["config"].loc)
        detect: tuple[str, ...] = ()
        if required:
            detect_node = c["detect"]
            if not detect_node.is_seq or not detect_node.value or not all(
                    isinstance(v, str) and v for v in detect_node.value):
                raise RuleError("detect must be a non-empty list of entry paths", detect_node.loc)
            detect = tuple(detect_node.value)
        absent: tuple[str, ...] = ()
        if "absent" in c:
            absent_node = c["absent"]
            if not absent_node.is_seq or not all(isinstance(v, str) and v for v in absent_node.value):
                raise RuleError("absent must be a list of entry paths", absent_node.loc)
            absent = tuple(absent_node.value)
        name = string(c["name"], "layout name") if required else "default"
        return Layout(name, detect, sd, config, node.loc, absent)

    def _lets(self, node: Node | None) -> tuple[tuple[str, Expr], ...]:
        if node is None:
            return ()
        if not node.is_map:
            raise RuleError("let must be a mapping of name: expression", node.loc)
        lets = []
        for name, child in node.children.items():
            if not name.isidentifier():
                raise RuleError(f"invalid let name '{name}'", node.key_locs[name])
            lets.append((name, compile_expr(child.value, child.loc, self.names, f"let '{name}'")))
            self.names = self.names | {name}
        return tuple(lets)

    def _requirement(self, node: Node) -> Requirement:
        check_fields(node, ("check", "message"), "a requirement")
        if "check" not in node.children or "message" not in node.children:
            raise RuleError("a requirement needs 'check' and 'message'", node.loc)
        check = node.children["check"]
        return Requirement(node.loc, compile_expr(check.value, check.loc, self.names, "check"),
                           string(node.children["message"], "message"))

    def _target(self, node: Node) -> TargetSpec:
        return TargetCompiler(self.names).target(node)

    def _pattern(self, node: Node, regex: bool = False) -> Pattern:
        return compile_regex(node.value, node.loc) if regex else compile_pattern(node.value, node.loc)

    def _when(self, node: Node | None, captures: Iterable[str] = ()) -> Expr | None:
        """A condition sees config names, the pattern's captures, and the tensor's shape and dtype."""
        if node is None:
            return None
        return compile_expr(node.value, node.loc, self.names | frozenset(captures) | TENSOR_NAMES, "condition")

    def _rule(self, node: Node) -> tuple[Rule, list[Example]]:
        rules = RuleCompiler(self.names)
        if node.is_map and isinstance(node.value.get("drop"), str):
            rule = rules.drop_shorthand(node)
        else:
            rule = rules.rule(node)
        return rule, [self._example(n, rule) for n in seq(node.children.get("examples"), "examples")]

    def _init(self, node: Node) -> Init:
        check_fields(node, INIT_FIELDS, "an init entry")
        c = node.children
        if "key" not in c or "fill" not in c:
            raise RuleError("an init entry needs 'key' and 'fill'", node.loc)
        fill = c["fill"].value
        if isinstance(fill, bool) or (fill not in FILLS and not isinstance(fill, (int, float))):
            raise RuleError(f"unknown fill '{fill}' (allowed: {', '.join(sorted(FILLS))}, or a number)",
                            c["fill"].loc)
        dtype = c["dtype"].value if "dtype" in c else None
        if dtype is not None and dtype not in DTYPES:
            raise RuleError(f"unknown dtype '{dtype}'", c["dtype"].loc)
        pattern = self._pattern(c["key"])
        return Init(node.loc, pattern, fill, self._when(c.get("when"), pattern.captures), dtype,
                    str(c["reason"].value) if "reason" in c else "")

    def _allow(self, node: Node) -> Allow:
        if isinstance(node.value, str):
            return Allow(node.loc, self._pattern(node))
        check_fields(node, ALLOW_FIELDS, "an allow_missing entry")
        if "key" not in node.children:
            raise RuleError("an allow_missing entry needs 'key'", node.loc)
        pattern = self._pattern(node.children["key"])
        return Allow(node.loc, pattern, self._when(node.children.get("when"), pattern.captures),
                     str(node.children["reason"].value) if "reason" in node.children else "")

    def _config_values(self, node: Node | None, what: str) -> dict[str, Any]:
        """Source config values for examples: a mapping of names declared in source.defaults."""
        if node is None:
            return {}
        if not node.is_map:
            raise RuleError(f"{what} must be a mapping", node.loc)
        for name in node.children:
            if name not in self.defaults:
                raise RuleError(f"{what} sets unknown name '{name}' (declare it in source.defaults)",
                                node.key_locs[name])
        return dict(node.value)

    def _example(self, node: Node, rule: Rule | None) -> Example:
        if node.is_map and len(node.children) == 1 and "key" not in node.children:
            (key, target_node), = node.children.items()
            targets = _example_targets(target_node, allow_null=True)
            expect: Expect = "drop" if targets is None else "to"
            return Example(node.loc, key, expect, targets[0] if targets else None, MappingProxyType({}), rule,
                           targets=targets or ())
        check_fields(node, EXAMPLE_FIELDS, "an example")
        c = node.children
        keys = _example_keys(c.get("key", node))
        outcomes = [k for k in ("to", "drop", "unmatched", "error") if k in c]
        if len(outcomes) != 1:
            raise RuleError("an example needs exactly one of 'to', 'drop: true', 'unmatched: true' or "
                            "'error: TEXT'", node.loc)
        expect = outcomes[0]
        targets = _example_targets(c["to"], allow_null=False) if expect == "to" else None
        target = targets[0] if targets else (string(c[expect], "example error") if expect == "error" else None)
        if expect in ("drop", "unmatched") and c[expect].value is not True:
            raise RuleError(f"'{expect}' must be true", c[expect].loc)
        config = self._config_values(c.get("config"), "example config")
        dtype = c["dtype"].value if "dtype" in c else "float32"
        if dtype not in DTYPES:
            raise RuleError(f"unknown dtype '{dtype}'", c["dtype"].loc)
        infos = _example_shapes(c.get("shape"), len(keys), dtype)
        shapes = _shape_list(c["shapes"], "example shapes") if "shapes" in c else None
        if shapes is not None and (infos is None or expect != "to"):
            raise RuleError("example 'shapes' (the expected output shapes) needs 'to' and input 'shape'",
                            c["shapes"].loc)
        return Example(node.loc, keys[0], expect, target, MappingProxyType(dict(config)), rule,
                       infos[0] if infos else None, targets=targets or (),
                       inputs=tuple(zip(keys[1:], infos[1:], strict=True)) if infos else (),
                       shapes=tuple(shapes) if shapes is not None else None)


def _example_keys(node: Node) -> list[str]:
    """One source key, or (for a rule with several source patterns) the list of its group's keys."""
    if node.is_seq:
        if not node.value or not all(isinstance(k, str) and k for k in node.value):
            raise RuleError("example key must be a key string, or a list of them", node.loc)
        return list(node.value)
    return [string(node, "example key")]


def _example_targets(node: Node, allow_null: bool) -> tuple[str, ...] | None:
    value = node.value
    if value is None and allow_null:
        return None
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list) and value and all(isinstance(t, str) and t for t in value):
        return tuple(value)
    null = ", or null for a drop" if allow_null else ""
    raise RuleError(f"example target must be a key string or a list of them{null}", node.loc)


def _shape_list(node: Node, what: str) -> list[tuple[int, ...]]:
    value = node.value
    if not isinstance(value, list) or not all(
            isinstance(s, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in s) for s in value):
        raise RuleError(f"{what} must be a list of shapes (lists of integers)", node.loc)
    return [tuple(s) for s in value]


def _example_shapes(node: Node | None, count: int, dtype: str) -> list[TensorInfo] | None:
    """The input shapes: ``shape: [768, 512]`` for one key, a list of shapes for a list of keys."""
    if node is None:
        return None
    if count == 1:
        value = node.value
        if not (isinstance(value, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in value)):
            raise RuleError("example shape must be a list of integers", node.loc)
        return [TensorInfo(tuple(value), dtype)]
    shapes = _shape_list(node, "example shape (one per key)")
    if len(shapes) != count:
        raise RuleError(f"example has {count} keys but {len(shapes)} shapes", node.loc)
    return [TensorInfo(s, dtype) for s in shapes]
