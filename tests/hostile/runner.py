"""Run one hostile case through ``python -m remap`` and measure it (wall clock and peak RSS via wait4)."""

from __future__ import annotations

import importlib
import os
import pkgutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Bounds from issue 9: each bomb fails in under 2 s with peak RSS under 300 MiB. The test suite asserts
# GENEROUS multiples of the time bound (the machine is shared); the benchmark prints the real figures.
TIME_BOUND_S = 2.0
RSS_BOUND_MIB = 300.0
GENEROUS_TIME_S = 20.0
KILL_AFTER_S = 120.0


@dataclass(frozen=True)
class Case:
    """A hostile input and what remap must do with it.

    ``build(folder)`` writes the input files into an empty ``folder`` and returns the ``remap``
    arguments (relative paths resolve in ``folder``, which is the working directory). ``message`` is a
    regular expression the single stderr line must match (``re.search``). ``marker`` names a file that
    must not exist afterwards (a code-execution payload writes it). ``keep`` lists the names that may
    be in ``folder`` afterwards besides what ``build`` created (default: nothing new may appear).
    ``bounded`` says whether the cost bounds apply (a bomb) or only the outcome does.
    """

    name: str
    build: Callable[[Path], Sequence[str]]
    message: str
    code: int = 1
    marker: str | None = None
    keep: tuple[str, ...] = ()
    bounded: bool = True
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_mib: float


def run(args: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> Outcome:
    """``python -m remap ARGS`` in ``cwd``; killed after KILL_AFTER_S (then the code is -9)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "REMAP_CACHE": str(cwd.parent / f".{cwd.name}-cache"),
                **(env or {})}
    out_path, err_path = cwd.parent / f".{cwd.name}.out", cwd.parent / f".{cwd.name}.err"
    with open(out_path, "w+b") as out, open(err_path, "w+b") as err:
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "remap", *args], cwd=cwd, env=full_env, stdout=out,
                                stderr=err)
        deadline = start + KILL_AFTER_S
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.send_signal(signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    out_path.unlink()
    err_path.unlink()
    return Outcome(proc.returncode, stdout, stderr, wall, usage.ru_maxrss / 1024)


def all_cases() -> list[Case]:
    """Every case of every ``tests/hostile/cases_*.py`` module, in module and list order."""
    import tests.hostile as package

    cases: list[Case] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("cases_"):
            cases += importlib.import_module(f"tests.hostile.{info.name}").CASES
    names = [c.name for c in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"duplicate hostile case names: {duplicates}"
    return cases
