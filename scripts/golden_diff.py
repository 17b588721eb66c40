"""Compare two golden-output logs (tests/golden.py): which files differ, and how many are identical.

    python scripts/golden_diff.py before.json after.json [--only-outputs]

``--only-outputs`` counts only files remap writes: safetensors, JSON beside them, and reverted
checkpoints (files under a folder holding remap-provenance.json, or named *.ckpt/*.pt/*.bin/*.pth
that a test produced as a revert output). Exit 1 when a file present in both differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    only = "--only-outputs" in argv
    a_path, b_path = [a for a in argv if not a.startswith("--")]
    a, b = json.loads(Path(a_path).read_text()), json.loads(Path(b_path).read_text())
    outputs = {str(Path(k).parent) for k in {*a, *b} if k.endswith("remap-provenance.json")}

    def counted(key: str) -> bool:
        return not only or str(Path(key).parent) in outputs

    both = sorted(k for k in set(a) & set(b) if counted(k))
    differ = [k for k in both if a[k] != b[k]]
    for key in differ:
        print(f"differs: {key}")
    print(f"{len(both) - len(differ)} identical, {len(differ)} differ; only before: "
          f"{sum(counted(k) for k in set(a) - set(b))}, only after: {sum(counted(k) for k in set(b) - set(a))}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
