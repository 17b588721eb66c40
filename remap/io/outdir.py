"""The output folder: destination policy, and an atomic swap into place.

Everything is written into a hidden temporary folder next to the destination,
which is renamed into place at the end: a failure at any point leaves no
partial output. An existing folder is replaced only with ``force``, and only
when it holds nothing but remap's own output files.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

from ..errors import OutputError

OWN_FILES: Final = re.compile(r"(config\.json|preprocessor_config\.json|model\.safetensors(\.index\.json)?|"
                              r"model-\d{5}-of-\d{5}\.safetensors)\Z")


def check_destination(out_dir: Path, force: bool, source: Path | None = None) -> None:
    """Refuse an existing destination unless ``force``; even then, only replace remap's own output."""
    if out_dir.absolute().parent.is_dir():
        _remove_stale(out_dir.absolute().parent, out_dir.name)  # first: it may put a previous output back
    if out_dir.exists() and not force:
        raise OutputError("output folder already exists; pass --force to replace it", str(out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError("output path exists and is not a folder", str(out_dir))
    if source is not None and (source.resolve() == out_dir.resolve() or
                               out_dir.resolve() in source.resolve().parents):
        raise OutputError("the output folder contains the source checkpoint; choose another folder", str(out_dir))
    if out_dir.exists():
        foreign = sorted(p.name for p in out_dir.iterdir() if not OWN_FILES.match(p.name))
        if foreign:
            raise OutputError(f"refusing to replace a folder holding files remap did not write "
                              f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
                              "remove them or choose another folder", str(out_dir))
    for parent in out_dir.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{parent} is not a folder", str(out_dir))
            break


def _make_parents(out_dir: Path) -> list[Path]:
    """Create missing parent folders; return them (deepest first) so a failure can remove them."""
    missing = [p for p in out_dir.absolute().parents if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir()
    return missing


def write_folder(out_dir: Path, force: bool, fill: Callable[[Path], None], source: Path | None = None) -> None:
    """Run ``fill(tmp)`` on a fresh temporary folder, then move it to ``out_dir`` atomically."""
    check_destination(out_dir, force, source)
    parent = out_dir.absolute().parent
    try:
        created = _make_parents(out_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.remap-{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot create a temporary folder in {parent}: {exc.strerror}", str(out_dir)) from None
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)
        _swap_into_place(tmp, out_dir)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f"writing failed: {exc.strerror or exc}", str(out_dir)) from exc
        raise


def _remove_stale(parent: Path, name: str) -> None:
    """Clean up after a killed remap (its pid is gone) for this destination.

    Its temporary folder is removed. A previous output it had moved aside to
    replace (``-old``) is put back if the destination is missing, else removed.
    """
    for leftover in sorted(parent.glob(f".{name}.remap-*-*")):
        pid = leftover.name[len(f".{name}.remap-"):].split("-")[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if leftover.name.endswith("-old") and not (parent / name).exists():
            os.rename(leftover, parent / name)
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    old = out_dir.absolute().parent / f".{out_dir.name}.remap-{os.getpid()}-old"
    os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except OSError:
        os.rename(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)
