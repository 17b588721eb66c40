"""Hostile output paths: glob characters in -o, other destinations' leftovers, symlinks, a planted lock file.

These convert for real (a cold target-shape cache imports transformers), so the 2 s bound does not apply:
each is ``bounded=False``. A conversion that must succeed keeps its output folder (``keep``). The runner
only reports what is new on disk, so a case that must not touch a sibling's leftover is built so that
touching it changes the outcome: the old glob-based clean-up moved another destination's ``-old`` folder
into place, and the run then stopped with "already exists".
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.hostile.runner import Case

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "distilhubert-tiny.ckpt"
DEAD = 2**22 + 12345  # above the largest pid_max: no process has it


def _output(folder: Path) -> None:
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"old")


def _apply(folder: Path, out: str, *extra: str) -> list[str]:
    shutil.copy(EXAMPLE, folder / "tiny.ckpt")
    return ["apply", "distilhubert", "tiny.ckpt", "-o", out, *extra]


def _with_sibling_leftovers(out: str, sibling: str) -> Callable[[Path], Sequence[str]]:
    """``-o OUT`` beside a SIBLING output with a killed run's moved-aside folder and temporary folder."""
    def build(folder: Path) -> Sequence[str]:
        _output(folder / sibling)
        _output(folder / f".{sibling}.remap-{DEAD}-old")
        _output(folder / f".{sibling}.remap-{DEAD}-abcdefgh")
        return _apply(folder, out)
    return build


def _symlinked_destination(folder: Path) -> Sequence[str]:
    _output(folder / "real")
    (folder / "out").symlink_to("real")
    return _apply(folder, "out", "--force")


def _dangling_symlink_destination(folder: Path) -> Sequence[str]:
    (folder / "out").symlink_to("nowhere")
    return _apply(folder, "out")


def _planted_lock_symlink(folder: Path) -> Sequence[str]:
    (folder / "victim.txt").write_text("keep me")
    (folder / ".out.remap-lock").symlink_to("victim.txt")
    return _apply(folder, "out")


def _dot(folder: Path) -> Sequence[str]:
    return _apply(folder, ".", "--force")


CASES = [
    Case("output-name-with-brackets-is-literal", _with_sibling_leftovers("out[1]", "out1"),
         message=r"", code=0, keep=("out[1]",), bounded=False),
    Case("output-name-with-a-star-is-literal", _with_sibling_leftovers("out*", "outX"),
         message=r"", code=0, keep=("out*",), bounded=False),
    Case("output-name-sharing-a-leftover-prefix", _with_sibling_leftovers("a", f"a.remap-{DEAD}-x"),
         message=r"", code=0, keep=("a",), bounded=False),
    Case("force-over-a-symlinked-output", _symlinked_destination,
         message=r"^error: out: the output folder is a symbolic link \(to real\); give the folder it points to, or "
                 r"remove the link$", bounded=False),
    Case("dangling-symlink-as-output", _dangling_symlink_destination,
         message=r"^error: out: the output folder is a symbolic link \(to nowhere\)", bounded=False),
    Case("output-lock-file-planted-as-a-symlink", _planted_lock_symlink,
         message=r"^error: out: \.out\.remap-lock is not remap's lock file; remove it$", bounded=False),
    Case("dot-as-output-folder", _dot,
         message=r"^error: \.: the output must name a folder \(not '\.' or '\.\.'\)$", bounded=False),
]
