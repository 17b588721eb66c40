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


LAUNCHER = Path(__file__).with_name("launch.py")


def run(args: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> Outcome:
    """``python -m remap ARGS`` in ``cwd``, through a small launcher that measures its peak RSS.

    Killed (with its launcher) after KILL_AFTER_S; the code is then -9.
    """
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "REMAP_CACHE": str(cwd.parent / f".{cwd.name}-cache"),
                **(env or {})}
    out_path, err_path = cwd.parent / f".{cwd.name}.out", cwd.parent / f".{cwd.name}.err"
    result_path = cwd.parent / f".{cwd.name}.result"
    with open(out_path, "w+b") as out, open(err_path, "w+b") as err:
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, str(LAUNCHER), str(result_path), sys.executable, "-m", "remap",
                                 *args], cwd=cwd, env=full_env, stdout=out, stderr=err, start_new_session=True)
        try:
            proc.wait(timeout=KILL_AFTER_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        wall = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    code, peak_kib = -9, 0
    if result_path.exists():
        code_text, peak_text = result_path.read_text().split()
        code, peak_kib = int(code_text), int(peak_text)
        result_path.unlink()
    out_path.unlink()
    err_path.unlink()
    return Outcome(code, stdout, stderr, wall, peak_kib / 1024)


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
