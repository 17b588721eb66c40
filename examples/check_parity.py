"""Check a converted folder against s3prl's reference DistillerModel, layer by layer.

    python examples/check_parity.py CHECKPOINT CONVERTED_DIR [--tolerance 1e-5]

Rebuilds s3prl's model from CHECKPOINT, loads CONVERTED_DIR with
transformers (failing on any missing, unexpected or mismatched key), runs
both on the same seeded noise and prints max |diff| per layer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.reference import check_folder, load_reference


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("converted", type=Path)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()
    diffs = check_folder(load_reference(args.checkpoint), args.converted)
    for name, diff in diffs.items():
        print(f"{name:>10}  max|diff| = {diff:.3g}")
    worst = max(diffs.values())
    verdict = "PARITY OK" if worst <= args.tolerance else "PARITY FAILED"
    print(f"{verdict}: worst {worst:.3g} (tolerance {args.tolerance:g}), transformers load report clean")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
