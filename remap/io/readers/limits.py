"""The bounds every reader enforces, so that reading costs at most a small multiple of the input's size.

A hostile file may describe far more than it holds: a pickle that calls ``list(range(10**8))``, shares
one list a billion times through the memo, nests containers a million deep, or a header whose numbers do
not fit. Each bound here is relative to the bytes actually read (plus a constant for small files), and
each breach is refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from ...errors import SourceError

MAX_DEPTH: Final = 100  # containers within containers; real checkpoints stay under 20
MAX_DIMS: Final = 64  # dimensions of one tensor
MAX_DIM: Final = 2**62  # one size, stride or offset (torch's are int64)
MAX_INT_BITS: Final = 4096  # a larger integer cannot even be printed (Python's 4300-digit limit)
MAX_JSON: Final = 100 * 1024 * 1024  # a safetensors header or a shard index


def allocation_budget(pickle_bytes: int) -> int:
    """How many elements the pickle's constructor calls (``set(...)``, ``bytes(...)``...) may build in all."""
    return 2 * pickle_bytes + 65_536


def graph_budget(pickle_bytes: int) -> int:
    """How large the object tree may be once every shared reference is expanded (see `weight`)."""
    return 4 * pickle_bytes + 100_000


def inflate_budget(file_bytes: int) -> int:
    """How large a compressed ``data.pkl`` may inflate to."""
    return 8 * file_bytes + 1024 * 1024


class _DuplicateKey(ValueError):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def load_json(raw: bytes, what: str, where: str) -> Any:
    """Parse a JSON document; any defect, a repeated key, deep nesting or an oversized number is one SourceError."""
    try:
        return json.loads(raw, object_pairs_hook=_unique)
    except _DuplicateKey as exc:
        raise SourceError(f"{what} names '{str(exc)[:80]}' twice; refusing an ambiguous file", where) from None
    except RecursionError:
        raise SourceError(f"{what} is nested too deeply (corrupt or hostile file)", where) from None
    except UnicodeDecodeError:
        raise SourceError(f"{what} is not valid UTF-8 text", where) from None
    except json.JSONDecodeError as exc:
        raise SourceError(f"{what} is not valid JSON: {exc}", where) from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        first = str(exc).split(";")[0].split(":")[0]
        raise SourceError(f"{what} holds a number that cannot be read ({first})", where) from None


def read_json_file(path: Path, what: str) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_JSON:
            raise SourceError(f"{what} is {size} bytes, more than the {MAX_JSON} allowed", str(path))
        raw = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read {what}: {exc.strerror}", str(path)) from None
    return load_json(raw, what, str(path))


def is_plain_int(value: Any, low: int = 0, high: int = MAX_DIM) -> bool:
    """An ``int`` (not a bool, float or subclass) in ``[low, high)``."""
    return type(value) is int and low <= value < high
