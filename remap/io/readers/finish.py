"""From the unpickled object graph to a checkpoint tree: plain data, `Record`s and checked `StoredTensor`s.

The graph may share objects (the pickle's memo) and may refer to itself. `finish` visits every object
once, and measures as it goes what the tree weighs once every shared reference is expanded (its
*weight*: one per node, more for long strings and integers) and how deep it is. A graph whose expanded
tree is out of proportion to the pickle (a "billion laughs" of shared lists), or deeper than
`MAX_DEPTH`, is refused, so everything downstream (flattening, ``inspect``, expressions) stays cheap.

A reference back to an enclosing stand-in object (omegaconf's ``_parent``) becomes a placeholder
record; a container that contains itself is refused. Every tensor's metadata is checked here, where its
dotted path is known: shape and strides are lists of plain non-negative integers, the offset too, the
dtype is known, and the view lies inside its storage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ...errors import SourceError
from ...tensors import DTYPES, TensorInfo, itemsize
from ..source import Record, Storage, StoredTensor
from .limits import MAX_DEPTH, MAX_DIM, MAX_DIMS, MAX_INT_BITS, is_plain_int
from .unpickle import Call, DType, Inert, PendingTensor, StorageKey


class BadStorage(Exception):
    """`locate` found a storage id that does not match the file; the message says why."""


Locate = Callable[[StorageKey], Storage]
_PLAIN_KEYS: Final = (str, int, float, bool, type(None))
_SORTABLE_WEIGHT: Final = 256  # set members heavier than this are not ordered by their repr
_MAX_KEY_WEIGHT: Final = 1024
_OMEGACONF: Final = ("omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig",
                     "omegaconf.tupleconfig.TupleConfig")

Node = tuple[Any, int, int]  # (finished value, weight, height)


def finish(raw: Any, locate: Locate, budget: int, where: str) -> Any:
    """Replace PendingTensors by StoredTensors, stand-ins by Records, omegaconf by plain data."""
    return _Finisher(locate, budget, where).visit(raw)[0]


class _Finisher:
    def __init__(self, locate: Locate, budget: int, where: str) -> None:
        self.locate, self.budget, self.where = locate, budget, where
        self.memo: dict[int, Node] = {}
        self.active: set[int] = set()
        self.path: list[str] = []
        self.depth = 0
        self.key_text: dict[int, str] = {}

    def error(self, message: str) -> SourceError:
        return SourceError(message, self.where)

    def here(self) -> str:
        path = ".".join(self.path) or "the top level"
        return path if len(path) <= 120 else f"{path[:50]}...{path[-67:]}"

    def visit(self, obj: Any) -> Node:
        kind = type(obj)
        if kind in (str, bytes, bytearray):
            return obj, 1 + len(obj) // 32, 0
        if kind is int:
            return obj, self.integer(obj), 0
        if kind in (float, bool, complex, type(None)):
            return obj, 1, 0
        key = id(obj)
        if key in self.memo:
            return self.memo[key]
        if key in self.active:
            return self.cycle(obj)
        if self.depth >= MAX_DEPTH:
            raise self.too_deep()
        self.active.add(key)
        self.depth += 1
        try:
            node = self.build(obj)
        finally:
            self.active.discard(key)
            self.depth -= 1
        if node[1] > self.budget:
            raise self.error(f"the checkpoint's object graph expands to more than {self.budget} entries at "
                             f"'{self.here()}' (shared references repeated out of proportion to the file's size: a "
                             "pickle bomb?); refusing it")
        if node[2] > MAX_DEPTH:
            raise self.too_deep()
        self.memo[key] = node
        return node

    def too_deep(self) -> SourceError:
        return self.error(f"the checkpoint's object graph is nested too deeply (more than {MAX_DEPTH} levels, at "
                          f"'{self.here()}')")

    def integer(self, value: int) -> int:
        bits = value.bit_length()
        if bits > MAX_INT_BITS:
            raise self.error(f"the checkpoint holds an integer of {bits} bits at '{self.here()}'; integers are "
                             f"limited to {MAX_INT_BITS} bits (corrupt or hostile file)")
        return 1 + bits // 128

    def cycle(self, obj: Any) -> Node:
        if isinstance(obj, Inert):  # e.g. omegaconf's `_parent`: kept as a placeholder
            return Record(f"{type(obj)._remap_name} (a reference back to an enclosing object)"), 1, 0
        raise self.error(f"the checkpoint's object graph contains itself at '{self.here()}' (a container that "
                         "holds itself); refusing it")

    def build(self, obj: Any) -> Node:  # noqa: PLR0911 - one return per kind of object
        if isinstance(obj, PendingTensor):
            return self.tensor(obj), 1, 0
        if isinstance(obj, Inert):
            return self.record(obj)
        if isinstance(obj, dict):
            return self.mapping(obj)
        if isinstance(obj, (list, tuple)):
            items, weight, height = self.items(enumerate(obj))
            return (items if isinstance(obj, list) else tuple(items)), weight, height
        if isinstance(obj, (set, frozenset)):
            return self.members(obj)
        if isinstance(obj, DType):
            return (f"torch.{obj}" if str(obj) else "torch.UntypedStorage"), 1, 0
        if isinstance(obj, StorageKey):
            return Record("torch.storage", {"dtype": obj.dtype or "untyped", "numel": obj.numel}), 1, 0
        if isinstance(obj, type) and issubclass(obj, Inert):
            return Record(f"class {obj._remap_name}"), 1, 0
        if isinstance(obj, Call):
            return Record(f"function {obj.name}"), 1, 0
        return Record(f"object {type(obj).__name__}"), 1, 0

    def items(self, pairs: Any) -> tuple[list[Any], int, int]:
        out: list[Any] = []
        weight, height = 1, 0
        for index, value in pairs:
            self.path.append(str(index))
            result, w, h = self.visit(value)
            self.path.pop()
            out.append(result)
            weight, height = weight + w, max(height, h + 1)
        return out, weight, height

    def mapping(self, obj: dict[Any, Any]) -> Node:
        out: dict[Any, Any] = {}
        weight, height = 1, 0
        for raw_key, value in obj.items():
            key, key_weight = self.key(raw_key)
            self.path.append(str(key))
            result, w, h = self.visit(value)
            self.path.pop()
            out[key] = result
            weight, height = weight + key_weight + w, max(height, h + 1)
        return out, weight, height

    def key(self, raw: Any) -> tuple[Any, int]:
        """A plain key stays; any other becomes its repr (only for small keys: a repr costs its weight)."""
        if type(raw) in _PLAIN_KEYS:
            return raw, self.visit(raw)[1]
        if id(raw) not in self.key_text:
            value, weight, _ = self.visit(raw)
            if weight > _MAX_KEY_WEIGHT:
                raise self.error(f"a dict key at '{self.here()}' is too large ({weight} entries); refusing it")
            self.key_text[id(raw)] = repr(value)
        text = self.key_text[id(raw)]
        return text, 1 + len(text) // 32

    def members(self, obj: set[Any] | frozenset[Any]) -> Node:
        nodes = [self.visit(value) for value in obj]
        order = sorted(nodes, key=lambda n: repr(n[0]) if n[1] <= _SORTABLE_WEIGHT else "")
        return ([n[0] for n in order], 1 + sum(n[1] for n in nodes),
                1 + max((n[2] for n in nodes), default=-1))

    def record(self, obj: Inert) -> Node:
        name, d = type(obj)._remap_name, obj.__dict__
        state, weight, height = self.visit(d["_state"])
        if isinstance(state, tuple) and len(state) == 2 and all(isinstance(s, (dict, type(None))) for s in state):
            state = {**(state[0] or {}), **(state[1] or {})}  # (dict state, slot state)
        fields: dict[str, Any] = dict(state) if isinstance(state, dict) else {}
        if state is not None and not isinstance(state, dict):
            fields["state"] = state
        for field in ("_args", "_kwargs", "_items", "_entries"):
            if d[field]:
                self.path.append(field[1:])
                fields[field[1:]], w, h = self.visit(d[field])
                self.path.pop()
                weight, height = weight + w, max(height, h)
        if name in _OMEGACONF:  # nodes inside were already reduced to their values; None or "???" stay
            return fields.get("_content"), weight, height
        if name.startswith("omegaconf.nodes.") and "_val" in fields:
            return fields["_val"], weight, height
        return Record(name, fields), weight + 1, height + 2

    def tensor(self, obj: PendingTensor) -> Any:
        shape = self.dims(obj.size, "shape")
        if obj.dtype is None:  # e.g. complex128: kept visible, not convertible
            return Record("torch.Tensor", {"dtype": "unsupported", "shape": shape})
        if obj.dtype not in DTYPES:
            raise self.error(f"tensor '{self.here()}' has the dtype '{obj.dtype[:40]}', which is not a tensor dtype "
                             "(corrupt file)")
        if not is_plain_int(obj.offset):
            what = "a negative" if type(obj.offset) is int and obj.offset < 0 else "an invalid"
            raise self.error(f"tensor '{self.here()}' has {what} storage offset ({_brief(obj.offset)}); offsets are "
                             "non-negative integers")
        stride = self.dims(obj.stride, "stride")
        if len(stride) != len(shape):
            raise self.error(f"tensor '{self.here()}' has {len(stride)} strides for {len(shape)} dimensions")
        try:
            storage = self.locate(obj.storage)
        except BadStorage as exc:
            raise self.error(f"tensor '{self.here()}': {exc}") from None
        tensor = StoredTensor(TensorInfo(shape, obj.dtype), storage, obj.offset, stride)
        first, count = tensor.span()
        if count and (first + count) * itemsize(obj.dtype) > storage.nbytes:  # an empty view reads nothing
            raise self.error(f"tensor '{self.here()}' reaches past its storage (its shape and strides need "
                             f"{(first + count) * itemsize(obj.dtype)} bytes, the storage has {storage.nbytes})")
        return tensor

    def dims(self, value: Any, what: str) -> tuple[int, ...]:
        if type(value) is tuple and len(value) <= MAX_DIMS and all(type(n) is int and 0 <= n < MAX_DIM for n in value):
            return value  # the common case, checked at once
        if type(value) not in (tuple, list) or len(value) > MAX_DIMS:
            raise self.error(f"tensor '{self.here()}' has a {what} that is not a list of at most {MAX_DIMS} "
                             f"integers ({_brief(value)})")
        for n in value:
            if not is_plain_int(n):
                raise self.error(f"tensor '{self.here()}' has a {what} holding {_brief(n)}; each entry must be a "
                                 "non-negative integer (not a bool or a float)")
        return tuple(value)


def _brief(value: Any) -> str:
    """A short, cheap description of any value (never the repr of a large object)."""
    if type(value) is int and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, (int, float, bool, complex)) or value is None:
        return repr(value)
    if isinstance(value, (str, bytes)):
        return repr(value[:40])
    if isinstance(value, Inert):
        return f"a {type(value)._remap_name}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} entries"
    return f"a {type(value).__name__}"
