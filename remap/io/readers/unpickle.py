"""A restricted unpickler for PyTorch checkpoints that never runs code from the file.

`find_class` resolves only a closed set of names: safe builtin containers,
PyTorch's tensor-rebuild functions (replaced by our own, which record where
the bytes are), storage classes and dtypes. Every other global (argparse,
omegaconf, fairseq, optimisers, ``os.system``...) resolves to a fresh inert
stand-in class, so REDUCE/NEWOBJ/BUILD only record arguments and state.
After loading, stand-ins become `Record`s, and omegaconf containers become
plain dicts and lists so that config values stay readable.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import pickle
from collections.abc import Callable
from typing import IO, Any, Final

from ...tensors import DTYPES, STORAGE_CLASSES, TensorInfo
from ..source import Record, Storage, StoredTensor

SAFE_BUILTINS: Final[dict[str, Any]] = {
    "dict": dict, "list": list, "tuple": tuple, "set": set, "frozenset": frozenset, "int": int,
    "float": float, "complex": complex, "bool": bool, "str": str, "bytes": bytes, "bytearray": bytearray,
    "slice": slice, "range": range,
}


class StorageKey:
    """What a persistent id names: a storage (by key) of a dtype, before its bytes are located."""

    def __init__(self, key: str, dtype: str | None, numel: int, view: tuple[str, int, int] | None = None) -> None:
        self.key, self.dtype, self.numel, self.view = key, dtype, numel, view


class PendingTensor:
    """A tensor whose storage is known by key only; resolved to a StoredTensor after loading."""

    def __init__(self, storage: StorageKey, offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                 dtype: str | None) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)
        self.dtype = dtype or storage.dtype


class _DType(str):
    """A pickled ``torch.<dtype>`` reference: just its name."""


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
        self.__dict__["_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["_entries"][key] = value

    def append(self, value: Any) -> None:
        self.__dict__["_items"].append(value)

    def extend(self, values: Any) -> None:
        self.__dict__["_items"].extend(values)


def _stand_in(name: str) -> type[Inert]:
    return type("Inert", (Inert,), {"_remap_name": name})


def _rebuild_tensor(storage: Any, offset: int, size: Any, stride: Any, *rest: Any) -> Any:
    if not isinstance(storage, StorageKey):
        return _stand_in("torch._utils._rebuild_tensor")(storage, offset, size, stride, *rest)
    return PendingTensor(storage, offset, size, stride, None)


def _rebuild_tensor_v3(storage: Any, offset: int, size: Any, stride: Any, requires_grad: Any, hooks: Any,
                       dtype: Any, *rest: Any) -> Any:
    if not isinstance(storage, StorageKey) or not isinstance(dtype, _DType):
        return _stand_in("torch._utils._rebuild_tensor_v3")(storage, offset, size, stride, dtype)
    return PendingTensor(storage, offset, size, stride, str(dtype))


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    return data


def _reconstructor(cls: Any, base: Any, state: Any = None) -> Any:
    """copyreg._reconstructor: build an instance of an (inert) class without calling base.__new__."""
    if isinstance(cls, type) and issubclass(cls, Inert):
        obj = cls.__new__(cls)
        if state is not None:
            obj.__dict__["_args"] = (state,)
        return obj
    return _stand_in("copyreg._reconstructor")(cls, base, state)


class _Dict(dict):  # type: ignore[type-arg]
    """OrderedDict/defaultdict stand-in: a dict that accepts BUILD state (a state dict's _metadata)."""


def _ordered_dict(*args: Any) -> dict[Any, Any]:
    return _Dict(*args)


def _default_dict(*args: Any) -> dict[Any, Any]:
    return _Dict()  # the default factory is dropped, so it can never be called


TORCH: Final[dict[tuple[str, str], Any]] = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): _ordered_dict,
    ("collections", "defaultdict"): _default_dict,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("_codecs", "encode"): codecs.encode,
    ("torch", "Size"): tuple,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a checkpoint's object graph; storages are resolved by ``persistent_load``."""

    def __init__(self, file: IO[bytes], persistent: Callable[[Any], Any] | None = None) -> None:
        super().__init__(file)
        self._persistent = persistent
        self._stand_ins: dict[str, type[Inert]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module == "builtins" and name in SAFE_BUILTINS:
            return SAFE_BUILTINS[name]
        if (module, name) in TORCH:
            return TORCH[(module, name)]
        if module == "torch" and name in STORAGE_CLASSES:
            return _DType(STORAGE_CLASSES[name])
        if module == "torch" and name in DTYPES:
            return _DType(name)
        if (module, name) == ("torch.storage", "UntypedStorage"):
            return _DType("")
        full = f"{module}.{name}"
        if full not in self._stand_ins:
            self._stand_ins[full] = _stand_in(full)
        return self._stand_ins[full]

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise pickle.UnpicklingError("unexpected persistent id in a plain pickle")
        return self._persistent(pid)


# What a malformed or hostile pickle can make the unpickler raise; each becomes a one-line SourceError.
PICKLE_ERRORS: Final = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
                        KeyError, RecursionError, UnicodeDecodeError)


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
    if not isinstance(pid, tuple) or len(pid) < 5:
        raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
    kind = pid[0].decode() if isinstance(pid[0], bytes) else pid[0]
    if kind != "storage":
        raise pickle.UnpicklingError(f"unsupported persistent id type '{kind}' (a pickled nn.Module?)")
    storage_type, key, _location, numel = pid[1:5]
    view = pid[5] if len(pid) > 5 else None
    dtype = str(storage_type) if isinstance(storage_type, _DType) and str(storage_type) else None
    if not isinstance(storage_type, _DType):  # an unknown storage class (e.g. ComplexDoubleStorage)
        dtype = None
    return StorageKey(str(key), dtype, int(numel), tuple(view) if view else None)


def finish(obj: Any, locate: Callable[[StorageKey], Storage], memo: dict[int, Any] | None = None) -> Any:
    """Replace PendingTensors by StoredTensors, stand-ins by Records, omegaconf by plain data."""
    memo = {} if memo is None else memo
    if id(obj) in memo:
        return memo[id(obj)]
    result: Any
    if isinstance(obj, PendingTensor) and obj.dtype is None:  # e.g. complex128: kept visible, not convertible
        result = Record("torch.Tensor", {"dtype": "unsupported", "shape": obj.size})
    elif isinstance(obj, PendingTensor):
        stride = obj.stride if obj.size else ()
        result = StoredTensor(TensorInfo(obj.size, str(obj.dtype)), locate(obj.storage), obj.offset, stride)
    elif isinstance(obj, Inert):
        result = _record(obj, locate, memo)
    elif isinstance(obj, dict):
        memo[id(obj)] = result = {}
        result.update({_key(k): finish(v, locate, memo) for k, v in obj.items()})
    elif isinstance(obj, list):
        memo[id(obj)] = result = []
        result.extend(finish(v, locate, memo) for v in obj)
    elif isinstance(obj, tuple):
        result = tuple(finish(v, locate, memo) for v in obj)
    elif isinstance(obj, _DType):
        result = f"torch.{obj}" if str(obj) else "torch.UntypedStorage"
    elif isinstance(obj, (set, frozenset)):
        result = sorted((finish(v, locate, memo) for v in obj), key=repr)
    else:
        result = obj
    memo[id(obj)] = result
    return result


def _key(key: Any) -> Any:
    return key if isinstance(key, (str, int, float, bool)) or key is None else repr(key)


def _record(obj: Inert, locate: Callable[[StorageKey], Storage], memo: dict[int, Any]) -> Any:
    name, d = type(obj)._remap_name, obj.__dict__
    state = finish(d["_state"], locate, memo)
    if isinstance(state, tuple) and len(state) == 2 and all(isinstance(s, (dict, type(None))) for s in state):
        state = {**(state[0] or {}), **(state[1] or {})}  # (dict state, slot state)
    fields: dict[str, Any] = dict(state) if isinstance(state, dict) else {}
    if state is not None and not isinstance(state, dict):
        fields["state"] = state
    if d["_args"]:
        fields["args"] = finish(d["_args"], locate, memo)
    if d["_kwargs"]:
        fields["kwargs"] = finish(d["_kwargs"], locate, memo)
    if d["_items"]:
        fields["items"] = finish(d["_items"], locate, memo)
    if d["_entries"]:
        fields["entries"] = finish(d["_entries"], locate, memo)
    return _plain_omegaconf(name, fields)


def _plain_omegaconf(name: str, fields: dict[str, Any]) -> Any:
    """omegaconf's DictConfig/ListConfig/value nodes hold their values under ``_content``/``_val``."""
    if name in ("omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig",
                "omegaconf.tupleconfig.TupleConfig"):
        content = fields.get("_content")
        return content  # nodes inside were already reduced to their values; None or "???" (missing) stay
    if name.startswith("omegaconf.nodes.") and "_val" in fields:
        return fields["_val"]
    return Record(name, fields)
