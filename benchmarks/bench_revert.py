"""Speed and memory of `remap revert` (a transformers folder back into the s3prl checkpoint) against `cp`.

    python benchmarks/bench_revert.py [--workdir DIR] [--repeat 3] [--skip-large]

Builds a DistilHuBERT at published size and a distiller 24 layers deep and 1024 wide (1.29 GB
checkpoint, 1.26 GB of safetensors once converted), both with s3prl's own model as
benchmarks/bench_io.py does (in a child process, so this one stays small), and converts each once with
`remap apply` (set-up, not timed; the folders are bench_diff.py's, so a shared workdir reuses them).
Then it times, as child processes (wall clock, CPU time, and peak RSS from wait4; `measure` from
bench_io.py), for each size:

- `cp` of the folder's model.safetensors to a new file: the floor for reading and writing every byte;
- `remap revert distilhubert HF_DIR -o OUT --like CKPT`: the original zip rewritten, tensors replaced;
- `remap revert distilhubert HF_DIR -o OUT`: a new checkpoint from the rule file's `reverse:` section.

Every figure is the median of --repeat runs, with a warm page cache, and warm: one untimed run of each
revert first fills the target-shape cache and the bytecode cache. Runs are interleaved (cp, revert
--like, revert, again) and each starts after a sync, so none pays for writing back another's bytes. The
machine is shared and noisy, so the targets are ratios of jobs measured here, in this run: a busy
machine slows both sides. Marginal time per byte (large minus small, which leaves out start-up and
planning) is compared to cp's over the same bytes. Targets (the issue): <= 1.5x cp's marginal time per
byte; peak RSS growth small -> large <= 64 MiB.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_diff import build, converted  # noqa: E402 - after the path set-up
from bench_io import input_paths, measure  # noqa: E402

RULES = "distilhubert"  # by name, as a user would: the bundled rules/distilhubert.yaml
TARGET_RATIO = 1.5  # marginal time per byte, times cp's
TARGET_GROWTH = 64  # MiB of peak RSS, small -> large
VARIANTS = ("revert --like", "revert")

Job = tuple[list[str], Path, list[Path]]  # command, output (removed before each run), files to warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="kept afterwards (default: a temporary folder, removed)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true", help="only the small model (quick check)")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = ["small"] if args.skip_large else ["small", "large"]
    if args.build_only:
        build(args.workdir, names)
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="remap-bench-revert-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(work, names, args.repeat)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def run(work: Path, names: list[str], repeat: int) -> None:
    subprocess.run([sys.executable, __file__, "--build-only", "--workdir", str(work),
                    *(["--skip-large"] if "large" not in names else [])], check=True)
    env = {**os.environ, "REMAP_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1"}
    env.setdefault("PYTHONPYCACHEPREFIX", str(work / "pycache"))  # bytecode is cached, as in any installed package
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    samples: dict[str, list[tuple[float, float, float]]] = {}
    sizes: dict[str, int] = {}
    outputs: dict[str, int] = {}
    for name in names:
        hf = converted(work, name, env)  # set-up: `remap apply`, once
        sizes[name] = (hf / "model.safetensors").stat().st_size
        table = jobs(work, name, hf)
        for job, (cmd, out, warm) in table.items():
            if job.startswith("revert"):
                measure(cmd, env, out, warm)  # warm-up, untimed: target-shape cache and bytecode
        for _ in range(repeat):  # interleaved, so a change in the machine's load falls on every job alike
            for job, (cmd, out, warm) in table.items():
                samples.setdefault(f"{job} {name}", []).append(sample(cmd, env, out, warm))
        outputs.update({f"{job} {name}": out.stat().st_size for job, (_, out, _) in table.items()
                        if job.startswith("revert")})
    results = {job: (statistics.median(s[0] for s in runs), statistics.median(s[1] for s in runs))
               for job, runs in samples.items()}
    cpu = {job: statistics.mean(s[2] for s in runs) for job, runs in samples.items()}
    report(results, cpu, sizes, outputs)


def jobs(work: Path, name: str, hf: Path) -> dict[str, Job]:
    """The timed commands for one size: cp of the folder's weights, then revert with and without --like."""
    ckpt = input_paths(work)[name]
    weights = hf / "model.safetensors"
    revert = [sys.executable, "-m", "remap", "revert", RULES, str(hf)]
    like_out, new_out = work / f"revert-like-{name}.ckpt", work / f"revert-new-{name}.ckpt"
    return {
        "cp": (["cp", str(weights), str(work / "copy.safetensors")], work / "copy.safetensors", [weights]),
        "revert --like": ([*revert, "-o", str(like_out), "--like", str(ckpt), "--force"], like_out,
                          [weights, ckpt]),
        "revert": ([*revert, "-o", str(new_out), "--force"], new_out, [weights]),
    }


def sample(cmd: list[str], env: dict[str, str], out: Path, warm: list[Path]) -> tuple[float, float, float]:
    """(wall s, peak RSS MiB, CPU s) of one run, which starts with no dirty pages left by the last.

    The output is removed first (bench_io.measure), so no job pays for replacing the last, and the
    disk is synced (untimed), so no job pays for writing back the one before. On a shared machine
    wall time includes waiting for a core; CPU time (user + system) does not.
    """
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, rss = measure(cmd, env, out, warm)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, rss, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def verdict(value: float, target: float) -> str:
    return "ok" if value <= target else "MISSED"


def report(results: dict[str, tuple[float, float]], cpu: dict[str, float], sizes: dict[str, int],
           outputs: dict[str, int]) -> None:
    print(f"{'job':<22}{'size MB':>9}{'wall s':>9}{'CPU s':>9}{'peak RSS MiB':>14}")
    for job, (wall, rss) in results.items():
        print(f"{job:<22}{sizes[job.rsplit(' ', 1)[1]] / 1e6:>9.0f}{wall:>9.2f}{cpu[job]:>9.2f}{rss:>14.0f}")
    print()
    print("size: the converted folder's model.safetensors (what cp copies and revert reads); checkpoints written: "
          + ", ".join(f"{job} {n / 1e6:.0f} MB" for job, n in outputs.items()))
    print("warm: one untimed run of each revert filled the target-shape cache and bytecode first; page cache warm;")
    print("runs interleaved (cp, revert --like, revert, again), each after a sync, so none writes back another's bytes")
    print("wall and peak RSS: median of the runs; CPU s (user + system): mean of the runs, so one slow run shows")
    fixed = results["revert small"][0] - results["cp small"][0]
    print(f"fixed cost of revert (start-up, rule file, planning; about the small revert minus its cp): {fixed:.2f} s")
    if "large" not in sizes:
        print("--skip-large: no ratios (they need the large model)")
        return
    cp_wall = (results["cp large"][0] - results["cp small"][0]) / (sizes["large"] - sizes["small"])
    cp_cpu = (cpu["cp large"] - cpu["cp small"]) / (sizes["large"] - sizes["small"])
    for variant in VARIANTS:
        large, small = results[f"{variant} large"], results[f"{variant} small"]
        per_byte = (large[0] - small[0]) / (sizes["large"] - sizes["small"])
        cpu_per_byte = (cpu[f"{variant} large"] - cpu[f"{variant} small"]) / (sizes["large"] - sizes["small"])
        ratio, growth = per_byte / cp_wall, large[1] - small[1]
        print(f"{variant}: marginal time per byte, large - small: {ratio:.2f}x cp's (target <= {TARGET_RATIO}x) "
              f"{verdict(ratio, TARGET_RATIO)}; {cpu_per_byte / cp_cpu:.2f}x its CPU time")
        print(f"{variant}: peak RSS growth small -> large: {growth:+.0f} MiB (target <= {TARGET_GROWTH}) "
              f"{verdict(growth, TARGET_GROWTH)}; large: {large[1]:.0f} MiB")


if __name__ == "__main__":
    main()
