"""A restricted unpickler for PyTorch checkpoints that never runs code from the file.

`find_class` resolves only a closed set of names: builtin containers and scalars, PyTorch's
tensor-rebuild functions (replaced by our own, which record where the bytes are), storage classes and
dtypes. Every other global (argparse, omegaconf, fairseq, optimisers, ``os.system``, ``range``...)
resolves to a fresh inert stand-in class, so REDUCE/NEWOBJ/BUILD only record arguments and state.

The names that do resolve are wrappers, not the builtins themselves: each accepts only arguments that
are data already in the file (``list(range(10**8))``, ``bytes(10**10)`` and a codec other than latin1
are refused) and charges what it builds to a `Budget` that grows with the pickle's size. No object the
unpickler can reach accepts ``BUILD`` state by copying it (which would let one shared state dict be
copied a million times). Before unpickling, `picklescan.scan` refuses memo and nesting bombs.
`finish` (in `finish.py`) then turns the result into plain data.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
from collections.abc import Callable
from typing import IO, Any, Final

from ...tensors import DTYPES, STORAGE_CLASSES
from .limits import allocation_budget, is_plain_int
from .picklescan import MAX_RISKY_KEYS, PickleRefused, scan

# What a malformed or hostile pickle can make the unpickler raise; each becomes a one-line SourceError.
PICKLE_ERRORS: Final = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, LookupError,
                        RecursionError, UnicodeDecodeError, OverflowError, MemoryError)


class Budget:
    """How many elements the pickle's constructor calls may still build, and hash with collidable hashes."""

    def __init__(self, limit: int) -> None:
        self.limit, self.left, self.risky = limit, limit, 0

    def charge(self, count: int, name: str) -> None:
        self.left -= count
        if self.left < 0:
            raise PickleRefused(f"the checkpoint's pickle builds more than {self.limit} elements through calls "
                                f"such as {name}() (a pickle bomb); refusing it")

    def hashed(self, keys: Any, name: str) -> None:
        """Count the keys a call hashes whose hashes could be chosen to collide (see picklescan)."""
        self.risky += sum(1 for key in keys if type(key) in (float, complex, tuple, frozenset)
                          or (type(key) is int and not 0 <= key < 2**60))
        if self.risky > MAX_RISKY_KEYS:
            raise PickleRefused(f"the checkpoint's pickle hashes more than {MAX_RISKY_KEYS} floats, tuples or large "
                                f"integers through calls such as {name}() (a hash-collision bomb?); refusing it")


class StorageKey:
    """What a persistent id names: a storage (by key) of a dtype, before its bytes are located."""

    __slots__ = ("dtype", "key", "numel", "view")

    def __init__(self, key: str, dtype: str | None, numel: int, view: tuple[str, int, int] | None = None) -> None:
        self.key, self.dtype, self.numel, self.view = key, dtype, numel, view

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("BUILD on a storage")


class PendingTensor:
    """A tensor whose storage is known by key only; checked and resolved to a StoredTensor by `finish`.

    Offset, size and stride are kept exactly as the pickle gave them (never iterated here).
    """

    __slots__ = ("dtype", "offset", "size", "storage", "stride")

    def __init__(self, storage: StorageKey, offset: Any, size: Any, stride: Any, dtype: str | None) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.dtype = dtype or storage.dtype

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("BUILD on a tensor")


class DType(str):
    """A pickled ``torch.<dtype>`` or storage class reference: just its dtype name ("" if untyped)."""

    __slots__ = ()


class Inert:
    """Base of the stand-in classes for unknown globals: records, never acts."""

    _remap_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        obj = super().__new__(cls)
        obj.__dict__.update(_args=args, _kwargs=kwargs, _state=None, _items=[], _entries={})
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__.update(_args=args, _kwargs=kwargs)

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state  # a reference, never a copy

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["_entries"][key] = value

    def append(self, value: Any) -> None:
        self.__dict__["_items"].append(value)

    def extend(self, values: Any) -> None:
        self.__dict__["_items"].extend(values)


def stand_in(name: str) -> type[Inert]:
    return type("Inert", (Inert,), {"_remap_name": name})


class PlainDict(dict):  # type: ignore[type-arg]
    """OrderedDict/defaultdict stand-in: a dict whose BUILD state (a state dict's _metadata) is dropped."""

    def __setstate__(self, state: Any) -> None:
        pass


class Call:
    """A callable the pickle may name; ``fn(budget, *args)`` does the work. Accepts no BUILD state."""

    __slots__ = ("budget", "fn", "name")

    def __init__(self, name: str, fn: Callable[..., Any], budget: Budget) -> None:
        self.name, self.fn, self.budget = name, fn, budget

    def __call__(self, *args: Any) -> Any:
        return self.fn(self.budget, self.name, *args)

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError(f"BUILD on {self.name}")


_TEXT_CODECS: Final = frozenset({"utf8", "latin1", "iso88591", "ascii"})
_SCALARS: Final = (str, bytes, int, float, bool, complex, type(None))
_COPYABLE: Final = (list, tuple, set, frozenset, dict, str, bytes, bytearray)


def _refuse(name: str, args: tuple[Any, ...]) -> PickleRefused:
    kinds = ", ".join(type(a)._remap_name if isinstance(a, Inert) else type(a).__name__ for a in args)
    return PickleRefused(f"the checkpoint's pickle calls {name}({kinds}); only copies of data in the file are "
                         "allowed, so this could allocate without bound (a pickle bomb?); refusing it")


def _codec_name(name: Any) -> str:
    return name.lower().replace("-", "").replace("_", "") if isinstance(name, str) else ""


def _copy(kind: Callable[..., Any]) -> Callable[..., Any]:
    """list/tuple/set/frozenset/dict/bytearray(x): x must already be a container from the file."""

    def build(budget: Budget, name: str, *args: Any) -> Any:
        if not args:
            return kind()
        if len(args) > 1 or not isinstance(args[0], _COPYABLE):
            raise _refuse(name, args)
        budget.charge(len(args[0]), name)
        if kind in (set, frozenset, dict):  # counted before they are hashed
            budget.hashed(_keys(kind, args[0]), name)
        result = kind(args[0])
        if kind is tuple and any(type(item) is tuple for item in result):  # see picklescan: one level only
            raise _refuse(name, args)
        return result

    return build


def _keys(kind: Any, source: Any) -> Any:
    """What ``kind(source)`` will hash: the items, or for a dict built from pairs, their first elements."""
    if kind is dict and not isinstance(source, dict):
        return (pair[0] for pair in source if type(pair) in (tuple, list) and pair)
    return source


def _scalar(kind: Callable[..., Any]) -> Callable[..., Any]:
    """int/float/complex/bool/str/bytes(...) of scalars; an encoding must be a plain text codec."""

    def build(budget: Budget, name: str, *args: Any) -> Any:
        if len(args) > 3 or not all(isinstance(a, _SCALARS) for a in args):
            raise _refuse(name, args)
        if kind is bytes and args and isinstance(args[0], int):  # bytes(n): n zero bytes
            raise _refuse(name, args)
        if kind in (str, bytes) and len(args) > 1 and _codec_name(args[1]) not in _TEXT_CODECS:
            raise PickleRefused(f"the checkpoint's pickle asks {name}() for the codec {str(args[1])[:40]!r}; only "
                                "utf-8, latin1 and ascii are allowed")
        budget.charge(sum(len(a) if isinstance(a, (str, bytes)) else a.bit_length() // 8 if type(a) is int else 1
                          for a in args), name)
        return kind(*args)

    return build


def _encode(budget: Budget, name: str, text: Any = None, encoding: Any = "utf-8", *rest: Any) -> bytes:
    """``_codecs.encode(str, 'latin1')``: how protocol 2 stores ``bytes``. Nothing else is allowed."""
    if not isinstance(text, str) or rest:
        raise _refuse(name, (text, encoding, *rest))
    if _codec_name(encoding) not in ("latin1", "iso88591"):
        raise PickleRefused(f"the checkpoint's pickle asks _codecs.encode for the codec {str(encoding)[:40]!r}; "
                            "only latin1 (how pickle stores bytes) is allowed")
    budget.charge(len(text), name)
    return text.encode("latin1")


def _ordered_dict(budget: Budget, name: str, *args: Any) -> dict[Any, Any]:
    result = PlainDict()
    if args:
        result.update(_copy(dict)(budget, name, *args))
    return result


def _default_dict(budget: Budget, name: str, *args: Any) -> dict[Any, Any]:
    return PlainDict()  # the default factory is dropped, so it can never be called


def _size(budget: Budget, name: str, *args: Any) -> tuple[int, ...]:
    if len(args) != 1 or type(args[0]) not in (tuple, list) or not all(is_plain_int(n) for n in args[0]):
        raise _refuse(name, args)
    budget.charge(len(args[0]), name)
    return tuple(args[0])


def _rebuild_tensor(budget: Budget, name: str, storage: Any = None, offset: Any = None, size: Any = None,
                    stride: Any = None, *rest: Any) -> Any:
    if not isinstance(storage, StorageKey):
        return stand_in(name)(storage, offset, size, stride, *rest)
    return PendingTensor(storage, offset, size, stride, None)


def _rebuild_tensor_v3(budget: Budget, name: str, storage: Any = None, offset: Any = None, size: Any = None,
                       stride: Any = None, requires_grad: Any = None, hooks: Any = None, dtype: Any = None,
                       *rest: Any) -> Any:
    if not isinstance(storage, StorageKey) or not isinstance(dtype, DType):
        return stand_in(name)(storage, offset, size, stride, dtype)
    return PendingTensor(storage, offset, size, stride, str(dtype))


def _rebuild_parameter(budget: Budget, name: str, data: Any = None, *rest: Any) -> Any:
    return stand_in(name)(data, *rest) if type(data) is tuple else data  # see picklescan: no deep tuples


def _reconstructor(budget: Budget, name: str, cls: Any = None, base: Any = None, state: Any = None) -> Any:
    """copyreg._reconstructor: build an instance of an (inert) class without calling base.__new__."""
    if isinstance(cls, type) and issubclass(cls, Inert):
        obj = cls.__new__(cls)
        if state is not None:
            obj.__dict__["_args"] = (state,)
        return obj
    return stand_in(name)(cls, base, state)


BUILDERS: Final[dict[tuple[str, str], Callable[..., Any]]] = {
    **{("builtins", kind.__name__): _copy(kind) for kind in (list, tuple, set, frozenset, dict, bytearray)},
    **{("builtins", kind.__name__): _scalar(kind) for kind in (int, float, complex, bool, str, bytes)},
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): _ordered_dict,
    ("collections", "defaultdict"): _default_dict,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("_codecs", "encode"): _encode,
    ("torch", "Size"): _size,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a checkpoint's object graph; storages are resolved by ``persistent_load``."""

    def __init__(self, file: IO[bytes], persistent: Callable[[Any], Any] | None, budget: Budget) -> None:
        super().__init__(file)
        self._persistent = persistent
        self._budget = budget
        self._resolved: dict[str, Any] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full = f"{module}.{name}"
        if full not in self._resolved:
            self._resolved[full] = self._resolve(module, name, full)
        return self._resolved[full]

    def _resolve(self, module: str, name: str, full: str) -> Any:
        if (module, name) in BUILDERS:
            return Call(full, BUILDERS[(module, name)], self._budget)
        if module == "torch" and name in STORAGE_CLASSES:
            return DType(STORAGE_CLASSES[name])
        if module == "torch" and name in DTYPES:
            return DType(name)
        if (module, name) == ("torch.storage", "UntypedStorage"):
            return DType("")
        return stand_in(full)

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise pickle.UnpicklingError("unexpected persistent id in a plain pickle")
        return self._persistent(pid)


def load(data: bytes, start: int, persistent: Callable[[Any], Any] | None = None) -> tuple[Any, int]:
    """Unpickle the pickle at ``data[start:]`` once `scan` accepts it; return it and the offset after it.

    What its calls may build is bounded by the pickle's own size (`allocation_budget`). Raises
    `Truncated` when the pickle runs past ``data`` (the caller may read more and retry).
    """
    end = scan(data, start)
    stream = io.BytesIO(memoryview(data)[start:end])
    return RestrictedUnpickler(stream, persistent, Budget(allocation_budget(end - start))).load(), end


class StorageCollector:
    """The ``persistent_load`` of a checkpoint: decodes storage ids and remembers each storage."""

    def __init__(self) -> None:
        self.keys: dict[str, StorageKey] = {}

    def __call__(self, pid: Any) -> StorageKey:
        key = storage_key(pid)
        self.keys.setdefault(key.key, key)
        return key


def storage_key(pid: Any) -> StorageKey:
    """Decode ``('storage', storage_type, key, location, numel[, view_metadata])``."""
    if type(pid) is not tuple or len(pid) not in (5, 6):
        raise pickle.UnpicklingError(f"unsupported persistent id {_brief(pid)}")
    kind = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
    if kind != "storage":
        raise pickle.UnpicklingError(f"unsupported persistent id type {_brief(kind)} (a pickled nn.Module?)")
    storage_type, key, _location, numel = pid[1:5]
    view = pid[5] if len(pid) > 5 else None
    if type(key) not in (str, int) or not is_plain_int(numel):
        raise pickle.UnpicklingError("malformed storage id (its key must be a string, its size an integer)")
    if view is not None and (type(view) not in (tuple, list) or len(view) != 3 or type(view[0]) not in (str, int)
                             or not is_plain_int(view[1], -2**62) or not is_plain_int(view[2], -2**62)):
        raise pickle.UnpicklingError("malformed storage view id (expected: key, offset, size)")
    # an unknown storage class (e.g. ComplexDoubleStorage) is a stand-in, not a DType: no dtype
    dtype = str(storage_type) if isinstance(storage_type, DType) and str(storage_type) else None
    return StorageKey(str(key), dtype, numel, (str(view[0]), view[1], view[2]) if view else None)


def _brief(value: Any) -> str:
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return repr(value)[:60]
    return type(value).__name__
