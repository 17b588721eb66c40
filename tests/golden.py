"""Golden outputs: every file the test suite leaves in its temporary folders, hashed, to compare two runs.

A refactoring that must not change any output (every shipped rule file x every test fixture gives
byte-identical files) is checked by running the suite before and after it with
``REMAP_GOLDEN_LOG=FILE`` and comparing the two logs with ``python scripts/golden_diff.py A B``.
Keys are paths under pytest's base temporary folder (test names plus file names), so the same test
gives the same key in both runs. Run without xdist: workers would split the folder names.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    log = os.environ.get("REMAP_GOLDEN_LOG")
    factory = getattr(session.config, "_tmp_path_factory", None)
    if not log or factory is None:
        return
    root = factory.getbasetemp()
    found: dict[str, str] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(root))] = _digest(path)
    Path(log).write_text(json.dumps(found, indent=0, sort_keys=True) + "\n")
