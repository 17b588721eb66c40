"""A lock on one output destination, held for a whole conversion.

The lock is ``fcntl.flock`` on a hidden file beside the destination,
``.NAME.remap-lock``. It is taken without waiting: a second remap aimed at the
same destination fails at once, naming the holder's pid (which the holder
writes into the file). The kernel drops a flock when its holder dies, so a
SIGKILLed run never leaves a lock that blocks the next one.

Lifetime of the file: the holder removes it when it lets go (after success,
failure or SIGTERM), while still holding the lock, and only if the name still
refers to the file it locked. Removal cannot race: a run that opened the old
file just before the removal, and locks it just after the holder closes it,
then holds a lock on a file that no longer has the name. So every run, once it
holds the lock, checks that the name still refers to the very file it locked
(same device and inode), and otherwise starts again with whatever the name
refers to now. Only a SIGKILL leaves the file behind; it is empty of meaning
(no process holds it) and the next run for the same destination reuses it and
then removes it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Final

from ..errors import OutputError

LOCK_SUFFIX: Final = ".remap-lock"
_ATTEMPTS: Final = 20  # each retry means another run removed or replaced the file meanwhile
_UNSUPPORTED: Final = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS})


def lock_path(out_dir: Path) -> Path:
    """Where the lock of ``out_dir`` lives: ``.NAME.remap-lock`` beside it."""
    return out_dir.absolute().parent / f".{out_dir.name}{LOCK_SUFFIX}"


class DestinationLock:
    """A held lock; `release()` removes the lock file and lets go (idempotent)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            if _names(self._fd, self.path):  # never remove a file that is not the one we locked
                os.unlink(self.path)
        except OSError:
            pass  # left behind: harmless, the next run reuses it
        finally:
            os.close(self._fd)
            self._fd = -1


def acquire(out_dir: Path, ensure_parent: Callable[[], object]) -> DestinationLock:
    """Lock ``out_dir`` or raise `OutputError` at once (another run holds it, or locking is unsupported).

    ``ensure_parent`` recreates the parent folder when a concurrent run's clean-up removed it.
    """
    try_lock = _flock_function(out_dir)
    path = lock_path(out_dir)
    for _ in range(_ATTEMPTS):
        opened = _open(path, out_dir)
        if opened is None:
            ensure_parent()
            continue
        fd, created = opened
        try:
            try_lock(fd)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)  # the holder's file: never removed by us
            raise OutputError(f"another remap is writing this output folder (pid {holder}); wait for it to "
                              "finish, or stop it", str(out_dir)) from None
        except OSError as exc:
            _abandon(fd, path, created)
            raise _lock_error(exc, out_dir) from None
        except BaseException:
            _abandon(fd, path, created)
            raise
        if _names(fd, path):
            return _claim(fd, path, out_dir)
        os.close(fd)  # the file was removed or replaced after we opened it: start again
    raise OutputError(f"the lock file {path.name} keeps changing; try again", str(out_dir))


def _lock_error(exc: OSError, out_dir: Path) -> OutputError:
    if exc.errno in _UNSUPPORTED:
        return OutputError(f"cannot lock the output folder: this filesystem does not support file locking "
                           f"({exc.strerror}); choose a folder on a local disk", str(out_dir))
    return OutputError(f"cannot lock the output folder: {exc.strerror}", str(out_dir))


def _claim(fd: int, path: Path, out_dir: Path) -> DestinationLock:
    """Write this run's pid into the lock file it now holds (for the message a second run prints)."""
    lock = DestinationLock(path, fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException as exc:
        lock.release()
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write the lock file {path.name}: {exc.strerror}", str(out_dir)) from None
        raise
    return lock


def _abandon(fd: int, path: Path, remove: bool) -> None:
    """Close ``fd``; with ``remove``, also unlink the file this run created (if the name still refers to it)."""
    try:
        if remove and _names(fd, path):
            os.unlink(path)
    except OSError:
        pass
    finally:
        os.close(fd)


def _flock_function(out_dir: Path) -> Callable[[int], None]:
    """``flock(fd, LOCK_EX | LOCK_NB)``: it raises BlockingIOError when another process holds the lock."""
    try:
        import fcntl
    except ImportError:
        raise OutputError("remap needs POSIX file locking (fcntl) to write an output folder, and this "
                          "platform has none; use Linux or macOS", str(out_dir)) from None
    return lambda fd: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _open(path: Path, out_dir: Path) -> tuple[int, bool] | None:
    """Open the lock file, never through a symlink: (fd, whether this call created it), or None if the
    parent folder vanished (a concurrent run's clean-up removed it)."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        try:
            fd, created = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            fd, created = os.open(path, flags), False
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise OutputError(f"{path.name} is not remap's lock file; remove it", str(out_dir)) from None
        raise OutputError(f"cannot create the lock file {path.name} in {path.parent}: {exc.strerror}",
                          str(out_dir)) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:  # a hard link would let us truncate another file
        os.close(fd)
        raise OutputError(f"{path.name} is not remap's lock file; remove it", str(out_dir))
    return fd, created


def _holder(fd: int) -> str:
    """The pid the holder wrote into the lock file, or 'unknown' if it has not written it yet."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def _names(fd: int, path: Path) -> bool:
    """Whether ``path`` still refers to the open file ``fd`` (same device and inode)."""
    try:
        now = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)
