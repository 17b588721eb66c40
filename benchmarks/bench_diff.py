"""Speed and memory of `remap diff RULES SOURCE HF_DIR` against `cat SOURCE HF_DIR/model.safetensors > /dev/null`.

    python benchmarks/bench_diff.py [--workdir DIR] [--repeat 5] [--skip-large]

Builds a DistilHuBERT at published size (108 MB) and a distiller 24 layers deep and 1024 wide
(1.28 GB), both with s3prl's own model as benchmarks/bench_io.py does (in a child process, so this
one stays small), and converts each with `remap apply`. Then it times, as child processes with a warm
page cache (`measure`/`median_of` from bench_io.py), `remap diff` of each source against its converted
folder next to `cat` of the same two files: reading both files once is the floor for a comparison
that reads every byte. The workdir is shared with bench_io.py, so inputs built by one are reused.

Targets: the large diff <= 2x cat's wall time; peak RSS of the large diff within 64 MiB of the small's.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_io import LARGE, ROOT, SMALL, input_paths, measure, median_of  # noqa: E402 - after the path set-up

RULES = str(ROOT / "rules" / "distilhubert.yaml")
SIZES = {"small": SMALL, "large": LARGE}


def build(work: Path, names: list[str]) -> None:
    """The s3prl checkpoints (as bench_io builds them); runs in a child process (it imports torch)."""
    from tests.reference import build_distiller, save_s3prl_checkpoint

    paths = input_paths(work)
    for name in names:
        if not paths[name].exists():
            save_s3prl_checkpoint(build_distiller(SIZES[name]), SIZES[name], paths[name], optimizer_state=False)


def converted(work: Path, name: str, env: dict[str, str]) -> Path:
    out = work / f"diff-out-{name}"
    if not (out / "model.safetensors").exists():
        subprocess.run([sys.executable, "-m", "remap", "apply", RULES, str(input_paths(work)[name]), "-o", str(out),
                        "--force"], env=env, check=True, stdout=subprocess.DEVNULL)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "remap-bench")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-large", action="store_true", help="only the small model (quick check)")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    names = ["small"] if args.skip_large else ["small", "large"]
    if args.build_only:
        build(work, names)
        return
    subprocess.run([sys.executable, __file__, "--build-only", "--workdir", str(work),
                    *(["--skip-large"] if args.skip_large else [])], check=True)
    env = {**os.environ, "REMAP_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1",
           "PYTHONPYCACHEPREFIX": str(work / "pycache")}  # bytecode is cached, as in any installed package
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    results: dict[str, tuple[float, float]] = {}
    cpu: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for name in names:
        source = input_paths(work)[name]
        weights = converted(work, name, env) / "model.safetensors"
        sizes[name] = source.stat().st_size + weights.stat().st_size
        pair = [source, weights]
        timed(f"cat {name}", args.repeat, ["cat", str(source), str(weights)], env, pair, results, cpu)
        diff = [sys.executable, "-m", "remap", "diff", RULES, str(source), str(weights.parent)]
        measure(diff, env, None, pair)  # warm-up: writes the bytecode cache
        # measure() fails on a non-zero exit: every timed diff also found the folder identical.
        timed(f"remap diff {name}", args.repeat, diff, env, pair, results, cpu)
    report(results, cpu, sizes)


def timed(job: str, repeat: int, cmd: list[str], env: dict[str, str], warm: list[Path],
          results: dict[str, tuple[float, float]], cpu: dict[str, float]) -> None:
    """median_of's (wall, peak RSS) into ``results``; the mean CPU seconds (user + system) per run into ``cpu``.

    On a shared machine wall time includes waiting for a core; CPU time does not.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    results[job] = median_of(repeat, cmd, env, None, warm)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu[job] = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / repeat


def report(results: dict[str, tuple[float, float]], cpu: dict[str, float], sizes: dict[str, int]) -> None:
    print(f"{'job':<20}{'wall s':>9}{'CPU s':>9}{'peak RSS MiB':>14}")
    for job, (wall, rss) in results.items():
        print(f"{job:<20}{wall:>9.2f}{cpu[job]:>9.2f}{rss:>14.0f}")
    print()
    print("bytes read (source + converted weights): " + ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in sizes.items()))
    for name in sizes:
        ratio = results[f"remap diff {name}"][0] / results[f"cat {name}"][0]
        cpu_ratio = cpu[f"remap diff {name}"] / cpu[f"cat {name}"]
        print(f"remap diff {name}: {ratio:.2f}x cat's wall" + (" (target <= 2x)" if name == "large" else "")
              + f", {cpu_ratio:.2f}x its CPU time")
    fixed = results["remap diff small"][0] - results["cat small"][0]
    print(f"fixed cost (start-up, rule file, planning; about the small diff minus its cat): {fixed:.2f} s")
    if "large" not in sizes:
        return
    marginal = results["remap diff large"][0] - results["remap diff small"][0]
    cat_marginal = results["cat large"][0] - results["cat small"][0]
    cpu_marginal = (cpu["remap diff large"] - cpu["remap diff small"]) / (cpu["cat large"] - cpu["cat small"])
    print(f"marginal time per byte, large - small: {marginal / cat_marginal:.2f}x cat's wall, {cpu_marginal:.2f}x "
          "its CPU time (start-up excluded)")
    growth = results["remap diff large"][1] - results["remap diff small"][1]
    print(f"peak RSS growth small -> large: {growth:+.0f} MiB (target <= 64)")


if __name__ == "__main__":
    main()
