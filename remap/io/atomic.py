"""Two filesystem steps the output folder needs to be atomic: a rename that never replaces, and a
stretch of code that SIGINT and SIGTERM cannot cut short."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def rename_noreplace(src: Path, dst: Path) -> None:
    """rename(2) that raises FileExistsError instead of replacing ``dst`` (atomically where the kernel can)."""
    renameat2 = _renameat2()
    if renameat2 is not None:
        import ctypes

        if renameat2(-100, os.fsencode(src), -100, os.fsencode(dst), 1) == 0:  # AT_FDCWD, RENAME_NOREPLACE
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(src), None, str(dst))
    if os.path.lexists(dst):  # no renameat2 here: a check, then the rename
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


_RENAMEAT2: list[Callable[..., int] | None] = []


def _renameat2() -> Callable[..., int] | None:
    """glibc's renameat2, or None (another C library, or not Linux)."""
    if not _RENAMEAT2:
        import ctypes

        try:
            function = ctypes.CDLL(None, use_errno=True).renameat2
        except (AttributeError, OSError):
            _RENAMEAT2.append(None)
        else:
            function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            function.restype = ctypes.c_int
            _RENAMEAT2.append(function)
    return _RENAMEAT2[0]


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block ends, so a swap or a clean-up runs to completion.

    The Python-level handlers are swapped for one that only records the signal, which is then raised
    again at the end. (Masking the signal would not do: the kernel may deliver it to another thread,
    and Python still runs the handler in the main thread.) Off the main thread, nothing is swapped:
    handlers never run there.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    swapped: dict[int, Any] = {}
    try:
        for held in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(held)
            if handler is not None:  # None: not installed from Python; leave it alone
                swapped[held] = handler
                signal.signal(held, lambda signum, frame: caught.append(signum))
        yield
    finally:
        for number, handler in swapped.items():
            signal.signal(number, handler)
        for number in dict.fromkeys(caught):
            signal.raise_signal(number)
