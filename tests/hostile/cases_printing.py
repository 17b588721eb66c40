"""Terminal injection: keys, paths and values from files are printed escaped, so one line is one line."""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path

from tests.hostile.runner import Case

EVIL_KEY = "w\x1b]0;pwned\x07\x1b[2J\nerror: fake second line\u202e"


def _safetensors(path: Path, keys: Sequence[str]) -> None:
    header = {key: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i, key in enumerate(keys)}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * (4 * len(keys)))


def _escaped_key_in_layout_error(folder: Path) -> Sequence[str]:
    _safetensors(folder / "evil.safetensors", [EVIL_KEY])
    return ["plan", "distilhubert", "evil.safetensors", "--no-target"]


CASES = [
    Case("ansi-and-newline-in-a-key", _escaped_key_in_layout_error,
         message=r"found: w\\x1b\]0;pwned\\x07\\x1b\[2J\\nerror: fake second line\\u202e\)$", bounded=True),
]
