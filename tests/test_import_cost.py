"""torch is imported only to transform tensors, transformers only to learn the target's shapes.

Each check runs a fresh interpreter and lists which heavy modules got imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLE, ROOT, RULES

HEAVY = ("torch", "transformers")


def imported_after(args: list[str], cache: Path, expect_code: int = 0) -> list[str]:
    code = ("import sys, contextlib, io\n"
            "from remap.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            f"        code = main({args!r})\n"
            "    except SystemExit as exc:\n"
            "        code = exc.code\n"
            f"print(code, sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    env = {**os.environ, "REMAP_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    status, modules = proc.stdout.strip().split(" ", 1)
    assert int(status) == expect_code, proc.stderr
    return json.loads(modules.replace("'", '"'))


def test_help_test_and_inspect_import_neither(tmp_path: Path) -> None:
    assert imported_after(["--help"], tmp_path) == []
    assert imported_after(["test", str(RULES)], tmp_path) == []
    assert imported_after(["inspect", str(EXAMPLE)], tmp_path) == []


def test_plan_without_target_imports_neither(tmp_path: Path) -> None:
    assert imported_after(["plan", "--no-target", str(RULES), str(EXAMPLE)], tmp_path) == []


def test_repeat_conversion_imports_neither(tmp_path: Path) -> None:
    """The first run learns the target's shapes from transformers; later runs reuse them and need no torch."""
    cache = tmp_path / "cache"
    first = imported_after(["apply", str(RULES), str(EXAMPLE), "-o", str(tmp_path / "a")], cache)
    assert "transformers" in first
    assert imported_after(["apply", str(RULES), str(EXAMPLE), "-o", str(tmp_path / "b")], cache) == []
    assert imported_after(["plan", str(RULES), str(EXAMPLE)], cache) == []
    a, b = (tmp_path / "a" / "config.json").read_text(), (tmp_path / "b" / "config.json").read_text()
    assert a == b
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_corrupt_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    imported_after(["apply", str(RULES), str(EXAMPLE), "-o", str(tmp_path / "a")], cache)
    for entry in (cache / "targets").iterdir():
        entry.write_text("{not json")
    assert "transformers" in imported_after(["apply", str(RULES), str(EXAMPLE), "-o", str(tmp_path / "b")], cache)
    assert (tmp_path / "b" / "model.safetensors").read_bytes() == (tmp_path / "a" / "model.safetensors").read_bytes()
