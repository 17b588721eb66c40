"""YAML loading that keeps line numbers.

PyYAML composes the document into nodes that carry marks; we turn those into a
small tree of `Node` objects so the rule compiler can point at ``file:line``
for every value. Duplicate mapping keys are an error (PyYAML silently keeps
the last one, which hides typos in rule files).

Rule files may come from strangers, so their cost is bounded: values nest at
most `MAX_DEPTH` levels, and anchors and aliases (``&a``/``*a``, also through
``<<:`` merge keys) may not expand the document beyond `node_budget` values,
which refuses a "billion laughs" file in a few milliseconds. An alias shares
the converted `Node` of its anchor instead of converting it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from ..errors import Loc, RuleError

MAX_DEPTH: Final = 100  # mappings and sequences within each other; rule files stay under 10
MERGE_TAG: Final = "tag:yaml.org,2002:merge"


def node_budget(text: str) -> int:
    """How many values a document may hold once every alias is expanded.

    Without aliases a document holds fewer values than it has characters (each
    needs at least a character and a separator), so this only ever refuses
    aliases that multiply the document; the constant leaves room for small files
    that share rule bodies through merge keys.
    """
    return 10_000 + len(text)


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


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting early: PyYAML's composer recurses once per level, and its
    scanner looks up to 1024 characters ahead at every level of ``[[[...`` (quadratic)."""

    _depth = 0

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise yaml.scanner.ScannerError(None, None, f"values nest deeper than {MAX_DEPTH} levels",
                                            self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"values nest deeper than {MAX_DEPTH} levels",
                                              self.peek_event().start_mark)  # type: ignore[no-untyped-call]
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str, filename: str) -> Node:
    """Parse one YAML document into a Node tree; raise RuleError with file:line."""
    try:
        root = yaml.compose(text, Loader=_Loader)
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
    return _Converter(filename, node_budget(text)).convert(root, 1, Loc(filename, 1))


class _Converter:
    """Turns composed nodes into `Node`s once each, counting values as if every alias were expanded."""

    def __init__(self, filename: str, budget: int) -> None:
        self.filename, self.budget, self.count = filename, budget, 0
        self.loader = yaml.SafeLoader("")
        self.done: dict[int, tuple[Node, int, int]] = {}  # id(yaml node) -> (Node, expanded size, height)
        self.active: set[int] = set()  # being converted: an alias to one of these is a cycle
        self.explicit: dict[int, set[int]] = {}  # id(mapping) -> ids of the key nodes it states itself

    def convert(self, node: yaml.Node, depth: int, where: Loc) -> Node:
        """The Node for ``node`` at nesting ``depth``; ``where`` is the line that refers to it (for errors)."""
        known = self.done.get(id(node))
        if known is not None:  # an alias: reuse the Node, but charge its expanded size and height
            converted, size, height = known
            self._spend(size, depth + height - 1, where)
            return converted
        if id(node) in self.active:
            raise RuleError("a YAML alias refers to a value that contains it", where)
        self._spend(1, depth, where)
        before = self.count
        self.active.add(id(node))
        converted, height = self._build(node, depth)
        self.active.discard(id(node))
        self.done[id(node)] = (converted, self.count - before + 1, height)
        return converted

    def _spend(self, size: int, depth: int, where: Loc) -> None:
        self.count += size
        if self.count > self.budget:
            raise RuleError(f"YAML aliases expand the file to more than {self.budget} values "
                            "(an alias bomb?)", where)
        if depth > MAX_DEPTH:
            raise RuleError(f"values nest deeper than {MAX_DEPTH} levels through YAML aliases", where)

    def _child(self, node: yaml.Node, depth: int, where: Loc) -> tuple[Node, int]:
        """Convert a child value; also return its height (levels of nesting, 1 for a scalar)."""
        converted = self.convert(node, depth, where)
        return converted, self.done[id(node)][2]

    def _build(self, node: yaml.Node, depth: int) -> tuple[Node, int]:
        loc = Loc(self.filename, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._build_map(node, depth, loc)
        if isinstance(node, yaml.SequenceNode):
            pairs = [self._child(item, depth + 1, loc if id(item) in self.done else self._loc(item))
                     for item in node.value]
            items = tuple(item for item, _ in pairs)
            return Node([i.value for i in items], loc, items=items), 1 + max((h for _, h in pairs), default=0)
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise RuleError(f"YAML error: {exc.problem}", loc) from None
        return Node(value, loc), 1

    def _loc(self, node: yaml.Node) -> Loc:
        return Loc(self.filename, node.start_mark.line + 1)

    def _build_map(self, node: yaml.MappingNode, depth: int, loc: Loc) -> tuple[Node, int]:
        children: dict[str, Node] = {}
        key_locs: dict[str, Loc] = {}
        self._note_explicit(node)
        explicit = self.explicit[id(node)]
        merged: set[str] = set()
        height = 1
        try:
            self.loader.flatten_mapping(node)  # resolve YAML merge keys (<<: *anchor); merged pairs come first
        except yaml.constructor.ConstructorError as exc:
            raise RuleError(f"YAML error: {exc.problem}", loc) from None
        for key_node, value_node in node.value:
            key_loc = self._loc(key_node)
            key = self._key(key_node, key_loc)
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
            children[key], child_height = self._child(value_node, depth + 1, key_loc)
            key_locs[key] = key_loc
            height = max(height, 1 + child_height)
        value = {k: child.value for k, child in children.items()}
        return Node(value, loc, children=children, key_locs=key_locs), height

    def _key(self, key_node: yaml.Node, key_loc: Loc) -> str:
        if not isinstance(key_node, yaml.ScalarNode):
            raise RuleError("mapping keys must be plain strings", key_loc)
        try:
            key = self.loader.construct_object(key_node)
        except yaml.constructor.ConstructorError as exc:
            raise RuleError(f"YAML error: {exc.problem}", key_loc) from None
        if key is None or isinstance(key, (dict, list)):
            raise RuleError("mapping keys must be plain strings", key_loc)
        return str(key)

    def _note_explicit(self, node: yaml.MappingNode) -> None:
        """Record the keys each mapping states itself, before flatten_mapping mixes merged pairs into it.

        PyYAML flattens the mappings a merge key names in place, and they may be converted later
        through another alias; so this walks the merge sources too, once each.
        """
        stack = [node]
        while stack:
            current = stack.pop()
            if id(current) in self.explicit:
                continue
            self.explicit[id(current)] = {id(key) for key, _ in current.value}
            for key, value in current.value:
                if key.tag == MERGE_TAG:
                    sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
                    stack.extend(s for s in sources if isinstance(s, yaml.MappingNode))
