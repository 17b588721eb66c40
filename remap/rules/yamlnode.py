"""YAML loading that keeps line numbers.

PyYAML composes the document into nodes that carry marks; we turn those into a
small tree of `Node` objects so the rule compiler can point at ``file:line``
for every value. Duplicate mapping keys are an error (PyYAML silently keeps
the last one, which hides typos in rule files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import Loc, RuleError


@dataclass(frozen=True)
class Node:
    """One YAML value with its location.

    ``value`` is the plain Python value (dicts, lists, scalars). For mappings,
    ``children`` maps each key to its value's Node and ``key_locs`` gives each
    key's own line; for sequences, ``items`` lists the item Nodes.
    """

    value: Any
    loc: Loc
    children: dict[str, Node] = field(default_factory=dict)
    key_locs: dict[str, Loc] = field(default_factory=dict)
    items: tuple[Node, ...] = ()

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_seq(self) -> bool:
        return isinstance(self.value, list)


def load_yaml(text: str, filename: str) -> Node:
    """Parse one YAML document into a Node tree; raise RuleError with file:line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "invalid YAML"
        raise RuleError(f"YAML syntax error: {problem}", Loc(filename, line)) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text[: exc.position].count("\n") + 1
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        raise RuleError(f"YAML error: character #x{code:04x} is not allowed in YAML", Loc(filename, line)) from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuleError(f"YAML error: {first}", Loc(filename, 1)) from None
    if root is None:
        raise RuleError("the rule file is empty", Loc(filename, 1))
    return _convert(root, filename, yaml.SafeLoader(""))


def _convert(node: yaml.Node, filename: str, loader: yaml.SafeLoader) -> Node:
    loc = Loc(filename, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        return _convert_map(node, filename, loader, loc)
    if isinstance(node, yaml.SequenceNode):
        items = tuple(_convert(item, filename, loader) for item in node.value)
        return Node([i.value for i in items], loc, items=items)
    try:
        value = loader.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        raise RuleError(f"YAML error: {exc.problem}", loc) from None
    return Node(value, loc)


def _convert_map(node: yaml.MappingNode, filename: str, loader: yaml.SafeLoader, loc: Loc) -> Node:
    children: dict[str, Node] = {}
    key_locs: dict[str, Loc] = {}
    explicit = {id(key_node) for key_node, _ in node.value}
    merged: set[str] = set()
    try:
        loader.flatten_mapping(node)  # resolve YAML merge keys (<<: *anchor); merged pairs come first
    except yaml.constructor.ConstructorError as exc:
        raise RuleError(f"YAML error: {exc.problem}", loc) from None
    for key_node, value_node in node.value:
        key_loc = Loc(filename, key_node.start_mark.line + 1)
        if not isinstance(key_node, yaml.ScalarNode):
            raise RuleError("mapping keys must be plain strings", key_loc)
        try:
            key = loader.construct_object(key_node)
        except yaml.constructor.ConstructorError as exc:
            raise RuleError(f"YAML error: {exc.problem}", key_loc) from None
        if key is None or isinstance(key, (dict, list)):
            raise RuleError("mapping keys must be plain strings", key_loc)
        key = str(key)
        if id(key_node) not in explicit:
            if key in children:
                continue  # with several merged mappings, the first one wins
            merged.add(key)
        elif key in merged:  # an explicit key overrides a merged one
            merged.discard(key)
            del children[key]
        if key in children:
            first = key_locs[key].line
            raise RuleError(f"duplicate key '{key}' (first defined on line {first})", key_loc)
        children[key] = _convert(value_node, filename, loader)
        key_locs[key] = key_loc
    value = {k: child.value for k, child in children.items()}
    return Node(value, loc, children=children, key_locs=key_locs)
