"""The output folder: destination policy, a lock for the whole conversion, and an atomic swap into place.

Everything is written into a hidden temporary folder next to the destination,
``.NAME.remap-PID-xxxxxxxx``, which is renamed into place at the end: a
failure at any point leaves no partial output. An existing folder is replaced
only with ``force``, only when it holds nothing but remap's own output files
(regular files with the names remap writes), and never when it holds the
source.

`hold()` takes the destination for a whole conversion: it creates missing
parent folders, locks the destination (`outlock`), cleans up after a killed
run for this destination, and checks the policy. ``Output.write(fill)`` checks
the policy again at the rename, under the lock, so a folder or file that
appeared meanwhile is never replaced without ``force`` and a file remap did
not write is never deleted. Leaving the ``with`` block removes the lock file,
and, unless the output was written, the temporary folder and the parent
folders remap created.

Paths are literal: leftovers are found by parsing the names in the parent
folder, never with a glob, so ``-o 'out[1]'`` or ``-o 'out*'`` touches no
other destination's files.

A symbolic link as the destination is refused, with or without ``force``. The
link is the user's own file, not remap's output: replacing it with a folder
would delete it, and writing through it would put the temporary folder and
the atomic rename somewhere other than the path the user named, where the
link could be re-aimed between the check and the rename. Links among the
parent folders are followed as usual.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final

from ..errors import OutputError
from .atomic import rename_noreplace, signals_deferred
from .outlock import DestinationLock, acquire

# The names remap writes: weights, configs, its provenance record, and what a tokenizer's save_pretrained
# writes. A folder holding anything else (or a non-regular file with one of these names) is not replaced.
OWN_FILES: Final = re.compile(
    r"(config\.json|preprocessor_config\.json|generation_config\.json|remap-provenance\.json|"
    r"model\.safetensors(\.index\.json)?|model-\d{5}-of-\d{5}\.safetensors|"
    r"tokenizer(_config)?\.json|special_tokens_map\.json|added_tokens\.json|vocab\.(json|txt)|merges\.txt|"
    r"normalizer\.json|tokenizer\.model|spiece\.model|chat_template\.(jinja|json))\Z")
# What follows ".NAME.remap-" in a leftover: the pid, then a temporary folder's random tag or "old".
_LEFTOVER: Final = re.compile(r"(?P<pid>\d+)-(?P<tag>old|[a-z0-9_]{8})")


def hold(out_dir: str | Path, force: bool, source: Path | None = None) -> Output:
    """Take ``out_dir`` for one conversion: ``with hold(out, force, src) as output: ... output.write(fill)``."""
    return Output(Path(out_dir), force, source)


def check_destination(out_dir: Path, force: bool, source: Path | None = None) -> None:
    """Refuse an existing destination unless ``force``; even then, only replace remap's own output.

    Also cleans up after a killed run for this destination. The lock is held only for the check:
    use `hold()` to keep it for a whole conversion.
    """
    with hold(out_dir, force, source):
        pass


def write_folder(out_dir: Path, force: bool, fill: Callable[[Path], None], source: Path | None = None) -> None:
    """Run ``fill(tmp)`` on a fresh temporary folder, then move it to ``out_dir`` atomically."""
    with hold(out_dir, force, source) as output:
        output.write(fill)


class Output:
    """A destination held (locked and checked) for one conversion; see `hold()`."""

    def __init__(self, out_dir: Path, force: bool, source: Path | None) -> None:
        self.out_dir = out_dir
        self.force = force
        self.source = source
        self._made = _Made()
        # A safety net: a SIGTERM can land at the very start of __exit__, before any clean-up code runs.
        # Then this runs once the Output is dropped (when the exception has been handled), or at exit.
        self._net = weakref.finalize(self, self._made.clean_up)

    def __enter__(self) -> Output:
        if self._made.lock is not None:
            raise RuntimeError("an Output is entered once; call hold() again")
        _check_name(self.out_dir)
        _check_parents(self.out_dir)
        made = self._made
        try:
            with signals_deferred():  # so everything made here is recorded, and released on SIGTERM
                made.parents = _make_parents(self.out_dir)
                made.lock = acquire(self.out_dir, lambda: made.parents.extend(_make_parents(self.out_dir)))
                _remove_stale(self.out_dir)
            _check(self.out_dir, self.force, self.source, late=False)
        except BaseException as exc:
            made.release()
            if isinstance(exc, OSError) and not isinstance(exc, OutputError):
                raise OutputError(f"cannot prepare the output folder: {exc.strerror or exc}", str(self.out_dir)) \
                    from exc
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._made.release()

    def check(self, source: Path | None = None) -> None:
        """Check the policy again, e.g. once the source is known (a fetched default checkpoint)."""
        self._require_lock()
        if source is not None:
            self.source = source
        _check(self.out_dir, self.force, self.source, late=False)

    def write(self, fill: Callable[[Path], None]) -> None:
        """Run ``fill(tmp)`` on a fresh temporary folder, check again, and rename it to the destination."""
        self._require_lock()
        made = self._made
        if made.written or made.tmp is not None:
            raise RuntimeError("Output.write() runs once per hold()")
        try:
            with signals_deferred():
                made.tmp = _make_temp(self.out_dir)
            fill(made.tmp)
            os.chmod(made.tmp, 0o755)
            with signals_deferred():
                _check(self.out_dir, self.force, self.source, late=True)
                kept = _place(made.tmp, self.out_dir, self.force)
                made.tmp, made.written = None, True
        except BaseException as exc:
            made.remove_tmp()
            if isinstance(exc, OSError) and not isinstance(exc, OutputError):
                raise OutputError(f"writing failed: {exc.strerror or exc}", str(self.out_dir)) from exc
            raise
        if kept is not None:
            raise OutputError(f"the new output is in place, but files appeared in the folder it replaced; they "
                              f"were kept in {kept}: move them and remove that folder", str(self.out_dir))

    def _require_lock(self) -> None:
        if self._made.lock is None or not self._made.lock.held:
            raise RuntimeError("use the Output inside `with hold(...) as output:`")


@dataclass
class _Made:
    """What one hold made, so that it can be undone: every clean-up step is idempotent."""

    lock: DestinationLock | None = None
    parents: list[Path] = field(default_factory=list)  # parent folders this run made, deepest first
    tmp: Path | None = None
    written: bool = False

    def release(self) -> None:
        try:
            with signals_deferred():
                self.clean_up()
        finally:
            self.clean_up()  # again (a no-op if done): an interrupt may land before the signals are held back

    def clean_up(self) -> None:
        """Remove the temporary folder, the lock file and, unless the output was written, the parents made."""
        self.remove_tmp()
        if self.lock is not None:
            self.lock.release()
        if not self.written:
            for folder in sorted(self.parents, key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if empty: another run may be using it by now
        self.parents = []

    def remove_tmp(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def _check_name(out_dir: Path) -> None:
    if out_dir.name in ("", ".", ".."):
        raise OutputError("the output must name a folder (not '.' or '..')", str(out_dir))


def _check_parents(out_dir: Path) -> None:
    for parent in out_dir.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{parent} is not a folder", str(out_dir))
            return


def _make_parents(out_dir: Path) -> list[Path]:
    """Create missing parent folders; return those this call made (deepest first) so they can be removed."""
    made: list[Path] = []
    for folder in reversed([p for p in out_dir.absolute().parents if not p.is_dir()]):
        try:
            folder.mkdir()
        except FileExistsError:
            continue  # a concurrent run made it: not ours to remove
        except OSError as exc:
            for done in made[::-1]:
                with contextlib.suppress(OSError):
                    done.rmdir()
            raise OutputError(f"cannot create the folder {folder}: {exc.strerror}", str(out_dir)) from None
        made.append(folder)
    return made[::-1]


def _make_temp(out_dir: Path) -> Path:
    parent = out_dir.absolute().parent
    while True:
        tmp = parent / f".{out_dir.name}.remap-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir(mode=0o700)
            return tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"cannot create a temporary folder in {parent}: {exc.strerror}",
                              str(out_dir)) from None


def _check(out_dir: Path, force: bool, source: Path | None, *, late: bool) -> None:
    """The destination policy. ``late``: at the rename, after the conversion (wording only)."""
    try:
        info = os.lstat(out_dir)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise OutputError(f"the output folder is a symbolic link (to {os.readlink(out_dir)}); give the folder it "
                          "points to, or remove the link", str(out_dir))
    if not force:
        if late:
            raise OutputError("the output folder appeared while remap was converting; nothing was replaced; "
                              "pass --force to replace it, or choose another folder", str(out_dir))
        raise OutputError("output folder already exists; pass --force to replace it", str(out_dir))
    if not stat.S_ISDIR(info.st_mode):
        raise OutputError("output path exists and is not a folder", str(out_dir))
    if source is not None and (source.resolve() == out_dir.resolve() or
                               out_dir.resolve() in source.resolve().parents):
        raise OutputError("the output folder contains the source checkpoint; choose another folder", str(out_dir))
    _refuse_foreign(out_dir, out_dir)


def _foreign(folder: Path) -> list[str]:
    """Entries of ``folder`` that are not remap's own output files (regular files with remap's names).

    Besides the names remap always writes, the files its provenance record lists (the files a rule file
    declares under ``target.files``, a tokenizer's files) are its own.
    """
    listed = _listed(folder)
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries
                      if not ((OWN_FILES.match(e.name) or e.name in listed) and e.is_file(follow_symlinks=False)))


def _listed(folder: Path) -> frozenset[str]:
    """The file names remap-provenance.json says remap wrote (nothing, if it is missing or unreadable)."""
    import json

    path = folder / "remap-provenance.json"
    try:
        if path.is_symlink() or path.stat().st_size > 64 * 1024 * 1024:
            return frozenset()
        files = json.loads(path.read_text()).get("files", [])
    except (OSError, ValueError, AttributeError, RecursionError):
        return frozenset()
    if not isinstance(files, list):
        return frozenset()
    return frozenset(f for f in files if isinstance(f, str) and "/" not in f and f not in (".", ".."))


def _refuse_foreign(folder: Path, out_dir: Path) -> None:
    foreign = _foreign(folder)
    if foreign:
        raise OutputError(f"refusing to replace a folder holding files remap did not write "
                          f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
                          "remove them or choose another folder", str(out_dir))


def _place(tmp: Path, out_dir: Path, force: bool) -> Path | None:
    """Rename ``tmp`` to ``out_dir``, moving a previous output aside and discarding it (``force``).

    Returns the moved-aside folder if files remap did not write appeared in it at the last moment
    (it is kept, never deleted), else None.
    """
    if not force or not os.path.lexists(out_dir):
        _rename_into_place(tmp, out_dir)
        return None
    old = out_dir.absolute().parent / f".{out_dir.name}.remap-{os.getpid()}-old"
    rename_noreplace(out_dir, old)
    try:
        _refuse_foreign(old, out_dir)  # anything added between the check and the move is still in it
        rename_noreplace(tmp, out_dir)
    except BaseException:
        rename_noreplace(old, out_dir)
        raise
    return None if _discard(old) else old


def _rename_into_place(tmp: Path, out_dir: Path) -> None:
    try:
        rename_noreplace(tmp, out_dir)
    except FileExistsError:
        raise OutputError("the output folder appeared at the last moment; nothing was replaced; run again",
                          str(out_dir)) from None


def _discard(folder: Path) -> bool:
    """Delete ``folder`` if it holds nothing but remap's own files; False (and left untouched) otherwise."""
    try:
        if _foreign(folder):
            return False
        with os.scandir(folder) as entries:
            for entry in entries:
                if OWN_FILES.match(entry.name) and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
        folder.rmdir()
    except OSError:
        return False
    return True


def _remove_stale(out_dir: Path) -> None:
    """Clean up after killed runs for this destination (called under its lock).

    A temporary folder is removed. A previous output moved aside by ``force`` (``-old``) is put back
    if the destination is missing (the kill came between the two renames), else its own files are
    deleted (the swap had completed), unless it holds anything else: then it is left alone.
    """
    for leftover, pid, aside in _leftovers(out_dir):
        if pid != os.getpid() and _alive(pid):
            continue  # a remap older than the lock may still be running
        if not aside:
            shutil.rmtree(leftover, ignore_errors=True)
        elif not os.path.lexists(out_dir):
            try:
                rename_noreplace(leftover, out_dir)
            except OSError as exc:
                raise OutputError(f"cannot put back the previous output {leftover.name}, moved aside by a "
                                  f"killed run: {exc.strerror}", str(out_dir)) from None
        else:
            _discard(leftover)


def _leftovers(out_dir: Path) -> list[tuple[Path, int, bool]]:
    """(path, pid, moved aside?) of every leftover folder of exactly this destination, by name."""
    parent = out_dir.absolute().parent
    prefix = f".{out_dir.name}.remap-"
    found = []
    with os.scandir(parent) as entries:
        for entry in entries:
            match = _LEFTOVER.fullmatch(entry.name[len(prefix):]) if entry.name.startswith(prefix) else None
            if match and entry.is_dir(follow_symlinks=False):
                found.append((Path(entry.path), int(match["pid"]), match["tag"] == "old"))
    return sorted(found)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
