"""``remap diff``: check a conversion weight by weight, or two checkpoints, without running a model.

`compare` takes either RULES SOURCE HF_DIR or two checkpoints A B:

- **RULES SOURCE HF_DIR**: SOURCE is mapped through the rules (ops included) and planned against
  HF_DIR's own keys and shapes, read from its safetensors headers. transformers is never imported,
  and torch only for a numeric op (a weight-norm fold, a cast). Each planned tensor is produced
  (`remap.io.execute.produce`, `remap.io.fills.init_tensor`) and compared with HF_DIR's tensor.
  Plan problems (an unmapped source key, a shape mismatch) are reported as differences.
- **A B**: the tensor leaves of two checkpoints, by dotted key (nested state dicts flattened), in
  any format remap reads.

Weight norm has two spellings in saved folders, ``X.weight_g``/``X.weight_v`` and
``X.parametrizations.weight.original0``/``original1``. They are one tensor (`WEIGHT_NORM_SPELLINGS`).

Each tensor pair streams through two small reused buffers: bytes first (a memcmp), then, only for
a pair whose bytes differ or whose dtypes differ, numbers with numpy (bfloat16 as the upper half of
a float32; float8 through torch, or "bytes differ" when torch is missing). Memory is one tensor at
most, for a reference that an op computes in memory.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal

from . import catalog
from .diagnostics import Diagnostic
from .errors import RemapError, SourceError
from .expand import problem
from .io.execute import produce
from .io.fills import init_tensor
from .io.load import load_source
from .io.readers import read_checkpoint
from .io.source import Checkpoint, Source, StoredTensor
from .io.writer import FileSpan, Parts
from .planner import Plan, plan
from .tensors import TensorInfo, itemsize

CHUNK: Final = 256 * 1024  # bytes per read; a multiple of every itemsize, and two buffers stay in the CPU cache
# (legacy torch.nn.utils.weight_norm name, torch.nn.utils.parametrizations.weight_norm name): the same tensor.
WEIGHT_NORM_SPELLINGS: Final = ((".weight_g", ".parametrizations.weight.original0"),
                                (".weight_v", ".parametrizations.weight.original1"))
NUMPY_DTYPES: Final = frozenset({"float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64",
                                 "uint32", "uint16", "uint8", "bool", "complex64"})
Status = Literal["identical", "close", "differs"]


@dataclass(frozen=True)
class TensorDiff:
    """One compared pair. ``max_abs``/``relative`` are None when only bytes could be compared."""

    key: str
    status: Status
    shape: tuple[int, ...]
    dtype: str  # the reference's (what the mapping produces, or A's)
    other_dtype: str  # HF_DIR's, or B's
    max_abs: float | None = 0.0
    relative: float | None = 0.0  # max |diff| / max |reference|
    note: str = ""
    other_key: str = ""  # the key in HF_DIR (or B) when it spells the tensor differently

    def line(self) -> str:
        figures = [] if self.dtype == self.other_dtype else [f"dtype {self.dtype} -> {self.other_dtype}"]
        if self.max_abs is not None and self.relative is not None:
            figures.append(f"max |diff| {self.max_abs:.3g}, relative {self.relative:.3g}")
        figures += [self.note] if self.note else []
        figures += [f"saved as '{self.other_key}'"] if self.other_key else []
        what = "within tolerance" if self.status == "close" else self.status
        return f"{self.key}: {what}: {'; '.join(figures)}"

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "status": self.status, "shape": list(self.shape), "dtype": self.dtype,
                "other_dtype": self.other_dtype, "max_abs_diff": _number(self.max_abs),
                "relative_error": _number(self.relative), "other_key": self.other_key or None,
                "note": self.note or None}


@dataclass(frozen=True)
class Missing:
    """A key the reference has (the mapping produces it, or A holds it) and the other side lacks."""

    key: str
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    """What `compare` found; ``ok`` when every tensor matches and no key is missing, extra or in trouble."""

    mode: Literal["conversion", "checkpoints"]
    reference: str
    candidate: str
    tolerance: float
    tensors: tuple[TensorDiff, ...]
    missing: tuple[Missing, ...] = ()
    extra: tuple[str, ...] = ()
    problems: tuple[Diagnostic, ...] = ()
    not_compared: tuple[str, ...] = ()  # HF_DIR keys the rule file lets the model initialise (allow_missing)

    def counts(self) -> dict[str, int]:
        status = [t.status for t in self.tensors]
        return {"identical": status.count("identical"), "close": status.count("close"),
                "differ": status.count("differs"), "missing": len(self.missing), "extra": len(self.extra),
                "problems": len(self.problems), "not_compared": len(self.not_compared)}

    @property
    def ok(self) -> bool:
        c = self.counts()
        return not (c["differ"] or c["missing"] or c["extra"] or c["problems"])

    def lines(self) -> list[str]:
        """One line per difference, sorted by key, then the summary."""
        found = [(t.key, t.line()) for t in self.tensors if t.status != "identical"]
        for m in self.missing:
            made = " (made from " + ", ".join("'" + s + "'" for s in m.sources) + ")" if m.sources else ""
            found.append((m.key, f"{m.key}: missing from {self.candidate}{made}"))
        why = "nothing produces it" if self.mode == "conversion" else f"not in {self.reference}"
        found += [(key, f"{key}: extra in {self.candidate} ({why})") for key in self.extra]
        found += [(p.key, str(p)) for p in self.problems]
        return [line for _, line in sorted(found)] + [self.summary()]

    def summary(self) -> str:
        c = self.counts()
        text = f"{c['identical']} identical, " + (f"{c['close']} within tolerance, " if c["close"] else "")
        text += f"{c['differ']} differ, {c['missing']} missing, {c['extra']} extra"
        text += f", {c['problems']} plan problems" if c["problems"] else ""
        return text + (f", {c['not_compared']} not compared (allow_missing)" if c["not_compared"] else "")

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "mode": self.mode, "reference": self.reference, "candidate": self.candidate,
                "tolerance": self.tolerance, "summary": self.counts(),
                "tensors": [t.to_json() for t in self.tensors],
                "missing": [{"key": m.key, "sources": list(m.sources)} for m in self.missing],
                "extra": list(self.extra), "not_compared": list(self.not_compared),
                "problems": [p.to_json() for p in self.problems]}


def _number(value: float | None) -> float | str | None:
    """JSON has no infinity: a non-finite figure is the string 'inf' or 'nan'."""
    return value if value is None or math.isfinite(value) else str(value)


def compare(paths: Sequence[str | Path], *, tolerance: float = 0.0,
            source_config: str | Path | None = None) -> Report:
    """Compare RULES SOURCE HF_DIR (a conversion) or A B (two checkpoints); see the module docstring."""
    if not tolerance >= 0:  # also refuses NaN
        raise RemapError(f"--tolerance must be a number >= 0, got {tolerance}")
    if len(paths) == 3:
        return _conversion(paths[0], paths[1], paths[2], tolerance, source_config)
    if len(paths) != 2:
        raise RemapError("diff takes RULES SOURCE HF_DIR, or two checkpoints A B")
    rules = next((str(p) for p in paths if str(p).endswith((".yaml", ".yml"))), None)
    if rules is not None:
        raise RemapError(f"'{rules}' is a rule file: a conversion is checked with RULES SOURCE HF_DIR")
    if source_config is not None:
        raise RemapError("--source-config applies to RULES SOURCE HF_DIR, not to two checkpoints A B")
    return _checkpoints(paths[0], paths[1], tolerance)


def _checkpoints(a: str | Path, b: str | Path, tolerance: float) -> Report:
    first, second = tensor_leaves(read_checkpoint(a)), tensor_leaves(read_checkpoint(b))
    second, spelled = match_spellings(first, second)
    with _Reader() as reader:
        diffs = [compare_pair(key, first[key], first[key].info, second[key], reader, tolerance, spelled.get(key, ""))
                 for key in sorted(first) if key in second]
    return Report("checkpoints", str(a), str(b), tolerance, tuple(diffs),
                  tuple(Missing(key) for key in sorted(set(first) - set(second))),
                  tuple(sorted(set(second) - set(first))))


def _conversion(rules: str | Path, source_path: str | Path, hf_dir: str | Path, tolerance: float,
                source_config: str | Path | None) -> Report:
    ruleset = catalog.load(rules)
    source = load_source(ruleset.source, source_path, source_config)
    env = ruleset.environment(source.config, {key: tuple(info.shape) for key, info in source.infos.items()})
    found = tensor_leaves(read_checkpoint(hf_dir))
    names = {"source_name": str(source_path), "target_name": str(hf_dir)}

    def plan_for(target: Mapping[str, TensorInfo]) -> Plan:
        return plan(ruleset, source.infos, env, target, **names)

    first = plan_for(_infos(found))  # the entries do not depend on the target: this gives the produced keys
    found, spelled = match_spellings({e.target for e in first.entries}, found)
    made = {e.target: e.info for e in first.entries if e.target not in found}
    result = plan_for({**_infos(found), **made}) if spelled or made else first
    extra = set(found) - {e.target for e in result.entries} - {i.target for i in result.inits} - {
        key for key, _ in result.allowed_missing}
    if extra:  # not targets of this plan: reported as extra keys, not as plan problems
        result = plan_for({key: info for key, info in {**_infos(found), **made}.items() if key not in extra})
    diffs, failures = _compare_planned(result, source, found, spelled, set(made), tolerance)
    return Report("conversion", str(source_path), str(hf_dir), tolerance, tuple(sorted(diffs, key=lambda t: t.key)),
                  tuple(Missing(e.target, e.sources) for e in result.entries if e.target in made),
                  tuple(sorted(extra)), tuple(sorted({*result.problems, *failures}, key=Diagnostic.by_key)),
                  tuple(sorted(key for key, _ in result.allowed_missing)))


def _compare_planned(result: Plan, source: Source, found: Mapping[str, StoredTensor], spelled: Mapping[str, str],
                     missing: Collection[str], tolerance: float) -> tuple[list[TensorDiff], list[Diagnostic]]:
    """Each planned tensor (mapped or initialised) that HF_DIR holds and no plan problem is about."""
    troubled = {p.key for p in result.problems}
    jobs: list[tuple[str, TensorInfo, Callable[[], Any]]] = [
        (e.target, e.info, partial(produce, e.recipe, source.tensors)) for e in result.entries
        if e.target not in missing and not troubled.intersection((e.target, *e.sources))]
    jobs += [(i.target, i.info, partial(init_tensor, i.target, i.info, i.init.fill)) for i in result.inits
             if i.info is not None and i.target in found and i.target not in troubled]
    diffs: list[TensorDiff] = []
    failures: list[Diagnostic] = []
    with _Reader() as reader:
        for key, info, make in jobs:
            try:
                reference = make()
            except RemapError as exc:  # e.g. a dedup whose copies differ
                failures.append(problem(key, exc.where or source.name, f"cannot make '{key}': {exc.message}"))
                continue
            diffs.append(compare_pair(key, reference, info, found[key], reader, tolerance, spelled.get(key, "")))
    return diffs, failures


def _infos(tensors: Mapping[str, StoredTensor]) -> dict[str, TensorInfo]:
    return {key: t.info for key, t in tensors.items()}


def tensor_leaves(checkpoint: Checkpoint) -> dict[str, StoredTensor]:
    """Every tensor of a checkpoint by dotted key (nested state dicts flattened), each checked against its file."""
    found: dict[str, StoredTensor] = {}
    for key, value in checkpoint.walk():
        if not isinstance(value, StoredTensor):
            continue
        if key in found:
            raise SourceError(f"two tensors are both '{key}' once nested keys are joined with dots; save them "
                              "under distinct keys", checkpoint.path.name)
        value.check_bounds(key)
        found[key] = value
    if not found:
        raise SourceError("holds no tensors to compare; pass a checkpoint or a model folder", str(checkpoint.path))
    return found


def other_spelling(key: str) -> str | None:
    """The same weight-norm tensor under its other name, or None for any other key."""
    for legacy, current in WEIGHT_NORM_SPELLINGS:
        if key.endswith(legacy):
            return key[: -len(legacy)] + current
        if key.endswith(current):
            return key[: -len(current)] + legacy
    return None


def match_spellings(wanted: Collection[str], found: Mapping[str, StoredTensor]
                    ) -> tuple[dict[str, StoredTensor], dict[str, str]]:
    """``found`` with each key renamed to the spelling ``wanted`` uses; and {wanted spelling: found spelling}."""
    renamed: dict[str, StoredTensor] = {}
    spelled: dict[str, str] = {}
    for key, tensor in found.items():
        other = other_spelling(key)
        if key not in wanted and other is not None and other in wanted and other not in found:
            renamed[other], spelled[other] = tensor, key
        else:
            renamed[key] = tensor
    return renamed, spelled


def compare_pair(key: str, reference: Any, info: TensorInfo, other: StoredTensor, reader: _Reader,
                 tolerance: float, other_key: str = "") -> TensorDiff:
    """Compare a reference payload (FileSpan, Parts, array, StoredTensor) of ``info`` with a stored tensor."""
    shape, dtype = tuple(info.shape), info.dtype
    same = TensorDiff(key, "identical", shape, dtype, other.info.dtype, other_key=other_key)
    if shape != tuple(other.info.shape):
        return replace(same, status="differs", max_abs=None, relative=None,
                       note=f"shape {list(shape)} -> {list(other.info.shape)}")
    a, b = _Bytes(_segments(reference), reader), _Bytes(_segments(other), reader)
    if dtype == other.info.dtype and reader.same_bytes(a, b):
        return same
    numbers = reader.numbers(a, dtype, b, other.info.dtype, math.prod(shape))
    if numbers is None:
        return replace(same, status="differs", max_abs=None, relative=None,
                       note=f"bytes differ (no numeric view of {dtype}/{other.info.dtype} without torch)")
    worst, top = numbers
    relative = worst / top if top > 0 else (0.0 if worst == 0 else math.inf)
    equal = "" if worst or dtype != other.info.dtype else "bytes differ, values equal (signed zeros or NaN payloads)"
    status: Status = "close" if tolerance > 0 and worst <= tolerance else "differs"
    return replace(same, status=status, max_abs=worst, relative=relative, note=equal)


Segment = tuple[Path, int, int] | memoryview  # (file, first byte, length), or bytes in memory


def _segments(payload: Any) -> list[Segment]:
    """A payload's bytes in C order, as file spans and in-memory pieces."""
    if isinstance(payload, FileSpan):
        return [(payload.path, payload.start, payload.length)]
    if isinstance(payload, Parts):
        return [(span.path, span.start, span.length) for span in payload.spans]
    if isinstance(payload, StoredTensor):
        span = payload.contiguous_span()
        return [(payload.storage.path, *span)] if span is not None else [payload.read().data]
    import numpy as np

    if not isinstance(payload, np.ndarray):  # a torch tensor: init_tensor's dtypes numpy lacks
        import torch

        payload = payload.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    return [np.ascontiguousarray(payload).reshape(-1).view(np.uint8).data]


class _Bytes:
    """One tensor's bytes, read at any position from its segments."""

    def __init__(self, segments: list[Segment], reader: _Reader) -> None:
        self.segments, self.reader = segments, reader
        self.sizes = [len(s) if isinstance(s, memoryview) else s[2] for s in segments]
        self.starts = [0]
        for size in self.sizes:
            self.starts.append(self.starts[-1] + size)
        self.length = self.starts.pop()
        self.file = segments[0] if len(segments) == 1 and not isinstance(segments[0], memoryview) else None

    def fill(self, pos: int, out: memoryview) -> None:
        """``out`` <- bytes ``pos`` to ``pos + len(out)``."""
        if self.file is not None:  # the common case: one run of one file
            self.reader.pread(self.file[0], self.file[1] + pos, out)
            return
        done, index = 0, bisect.bisect_right(self.starts, pos) - 1
        while done < len(out):
            segment, offset = self.segments[index], pos + done - self.starts[index]
            n = min(len(out) - done, self.sizes[index] - offset)
            if isinstance(segment, memoryview):
                out[done:done + n] = segment[offset:offset + n]
            else:
                self.reader.pread(segment[0], segment[1] + offset, out[done:done + n])
            done, index = done + n, index + 1


class _Reader:
    """Open files and the two read buffers of one comparison."""

    def __init__(self) -> None:
        self._fds: dict[Path, int] = {}
        self.buffers = (bytearray(CHUNK), bytearray(CHUNK))
        self.views = (memoryview(self.buffers[0]), memoryview(self.buffers[1]))

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def pread(self, path: Path, offset: int, out: memoryview) -> None:
        fd = self._fds.get(path)
        if fd is None:
            try:
                fd = self._fds[path] = os.open(path, os.O_RDONLY)
            except OSError as exc:
                raise SourceError(f"cannot read: {exc.strerror}", str(path)) from None
        done = os.preadv(fd, [out], offset)
        while done < len(out):
            n = os.preadv(fd, [out[done:]], offset + done)
            if n == 0:
                raise SourceError("file ended before a tensor's data (truncated?)", str(path))
            done += n

    def same_bytes(self, a: _Bytes, b: _Bytes) -> bool:
        if a.length != b.length:
            return False
        first, second = self.views
        for pos in range(0, a.length, CHUNK):
            n = min(CHUNK, a.length - pos)
            a.fill(pos, first[:n])
            b.fill(pos, second[:n])
            same = self.buffers[0] == self.buffers[1] if n == CHUNK else first[:n].tobytes() == second[:n].tobytes()
            if not same:
                return False
        return True

    def numbers(self, a: _Bytes, a_dtype: str, b: _Bytes, b_dtype: str, count: int) -> tuple[float, float] | None:
        """(max |a - b|, max |a|) over ``count`` elements; None when a dtype has no numeric view here."""
        decode_a, decode_b = _decoder(a_dtype), _decoder(b_dtype)
        if decode_a is None or decode_b is None:
            return None
        size_a, size_b = itemsize(a_dtype), itemsize(b_dtype)
        step = CHUNK // max(size_a, size_b)
        worst = top = 0.0
        for first in range(0, count, step):
            n = min(step, count - first)
            a.fill(first * size_a, self.views[0][:n * size_a])
            b.fill(first * size_b, self.views[1][:n * size_b])
            diff, ref = _stats(decode_a(self.views[0][:n * size_a]), decode_b(self.views[1][:n * size_b]))
            worst, top = max(worst, diff), max(top, ref)
        return worst, top


def _decoder(dtype: str) -> Callable[[memoryview], Any] | None:
    """Raw bytes -> a numpy array of the values; None for a dtype neither numpy nor an installed torch reads."""
    import numpy as np

    if dtype in NUMPY_DTYPES:
        return lambda raw: np.frombuffer(raw, dtype=dtype)
    if dtype == "bfloat16":  # the upper 16 bits of a float32
        return lambda raw: (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    try:
        import torch
    except ImportError:
        return None
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        return None
    return lambda raw: torch.frombuffer(bytearray(raw), dtype=torch_dtype).float().numpy()


def _stats(x: Any, y: Any) -> tuple[float, float]:
    """(max |x - y|, max |x|) for one chunk: equal values (and NaN against NaN) count 0, NaN against a number inf."""
    import numpy as np

    wide = np.complex128 if np.iscomplexobj(x) or np.iscomplexobj(y) else np.float64
    with np.errstate(invalid="ignore", over="ignore"):  # signalling NaNs, and inf - inf
        x, y = x.astype(wide), y.astype(wide)
        diff = np.abs(x - y)
    diff[(x == y) | (np.isnan(x) & np.isnan(y))] = 0.0
    diff[np.isnan(diff)] = np.inf
    ref = np.abs(x[~np.isnan(x)])
    return (float(diff.max()) if diff.size else 0.0), (float(ref.max()) if ref.size else 0.0)
