"""Cost of refusing each hostile input: wall time and peak RSS per case, against the issue's bounds.

    python benchmarks/bench_hostile.py [NAME_SUBSTRING]

Runs every case of tests/hostile/cases_*.py through ``python -m remap`` (as tests/test_hostile.py does)
and prints a table: case, exit code, wall, peak RSS, within bounds, and the first 90 characters of the
message. The bounds are 2 s and 300 MiB per bomb. For scale, the same table shows ``python -c pass``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hostile.runner import RSS_BOUND_MIB, TIME_BOUND_S, all_cases, run  # noqa: E402


def main() -> int:
    wanted = sys.argv[1] if len(sys.argv) > 1 else ""
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    print(f"baseline: python -c pass takes {time.monotonic() - start:.2f} s here")
    print(f"{'case':<44} {'exit':>4} {'wall s':>7} {'RSS MiB':>8}  bounds  message")
    failed = 0
    for case in all_cases():
        if wanted not in case.name:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "case"
            folder.mkdir()
            outcome = run(case.build(folder), folder, case.env)
        ok = not case.bounded or (outcome.wall_s < TIME_BOUND_S and outcome.peak_rss_mib < RSS_BOUND_MIB)
        failed += not ok
        message = outcome.stderr.strip().splitlines()[-1][:90] if outcome.stderr.strip() else "(none)"
        flag = ("ok" if ok else "MISSED") if case.bounded else "n/a"
        print(f"{case.name:<44} {outcome.code:>4} {outcome.wall_s:>7.2f} {outcome.peak_rss_mib:>8.0f}  "
              f"{flag:<6}  {message}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
