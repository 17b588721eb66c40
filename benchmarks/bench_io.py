"""Speed and memory of `remap apply` against `cp` and the hand-written script, measured in one run.

    python benchmarks/bench_io.py [--workdir DIR] [--repeat 3] [--skip-large]

Builds its own inputs (s3prl-layout distillers from s3prl's own model, and a
safetensors HuBERT-large with a 'hubert.' prefix), then times each job as a
child process (wall clock, and peak RSS from wait4). Every figure is the
median of --repeat runs. Ratios compare jobs measured here, in this run, so
a busy machine slows both sides. The page cache is warmed before each job.

"cold" runs have no target-shape cache (they import transformers); "warm"
runs reuse the cache a previous conversion of the same architecture left.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SMALL = {"encoder_layers": 2, "n_tasks": 3, "pred_layer_id": [4, 8, 12]}  # DistilHuBERT as published
LARGE = {"encoder_layers": 24, "encoder_embed_dim": 1024, "encoder_ffn_embed_dim": 4096,
         "encoder_attention_heads": 16, "n_tasks": 3, "final_dim": 256}
RENAME_RULES = ROOT / "benchmarks" / "hubert-large-prefix.yaml"


def input_paths(work: Path) -> dict[str, Path]:
    return {"small": work / "distilhubert.ckpt", "large": work / "distiller-24x1024.ckpt",
            "rename": work / "hubert-large-prefixed.safetensors"}


def build_inputs(work: Path, skip_large: bool) -> None:
    import torch

    from tests.reference import build_distiller, save_s3prl_checkpoint

    paths = input_paths(work)
    for name, config in (("small", SMALL), ("large", LARGE)):
        if name == "large" and skip_large:
            continue
        if not paths[name].exists():
            save_s3prl_checkpoint(build_distiller(config), config, paths[name], optimizer_state=False)
    if not skip_large and not paths["rename"].exists():
        from safetensors.torch import save_file
        from transformers import HubertConfig, HubertModel

        config = HubertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                              intermediate_size=4096, feat_extract_norm="layer", do_stable_layer_norm=True,
                              conv_bias=True)
        torch.manual_seed(0)
        state = {f"hubert.{k}": v.contiguous() for k, v in HubertModel(config).state_dict().items()}
        save_file(state, paths["rename"])


def measure(cmd: list[str], env: dict[str, str], out: Path | None, warm: list[Path]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one child process."""
    buffer = bytearray(1 << 20)  # small, so this process (whose pages a forked child starts with) stays small
    for path in warm:  # page cache: every job reads from memory, as cp's second run would
        with open(path, "rb") as f:
            while f.readinto(buffer):
                pass
    if out is not None and out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"benchmark job failed: {' '.join(cmd)}\n{err}")
    return wall, usage.ru_maxrss / 1024


def median_of(repeat: int, cmd: list[str], env: dict[str, str], out: Path | None, warm: list[Path],
              before: object | None = None) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        if callable(before):
            before()
        runs.append(measure(cmd, env, out, warm))
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "remap-bench")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true", help="only the small file (quick check)")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    if args.build_only:
        build_inputs(work, args.skip_large)
        return
    # Inputs are built in a child process so this one stays small: a forked child's peak RSS
    # (wait4's ru_maxrss) would otherwise include this process's torch pages until exec.
    build = [sys.executable, __file__, "--build-only", "--workdir", str(work)]
    subprocess.run(build + (["--skip-large"] if args.skip_large else []), check=True)
    inputs = {name: path for name, path in input_paths(work).items()
              if path.exists() and not (args.skip_large and name != "small")}
    cache = work / "cache"
    env = {**os.environ, "REMAP_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    remap = [sys.executable, "-m", "remap", "apply"]
    rules = str(ROOT / "rules" / "distilhubert.yaml")
    out = work / "out"
    results: dict[str, tuple[float, float]] = {}

    def clear_cache() -> None:
        shutil.rmtree(cache, ignore_errors=True)

    for name, path in inputs.items():
        rule_file = str(RENAME_RULES) if name == "rename" else rules
        results[f"cp {name}"] = median_of(args.repeat, ["cp", str(path), str(work / "copy")], env,
                                          work / "copy", [path])
        results[f"remap {name} cold"] = median_of(args.repeat, [*remap, rule_file, str(path), "-o", str(out)],
                                                  env, out, [path], before=clear_cache)
        results[f"remap {name} warm"] = median_of(args.repeat, [*remap, rule_file, str(path), "-o", str(out)],
                                                  env, out, [path])
        if name != "rename":
            results[f"script {name}"] = median_of(
                args.repeat, [sys.executable, str(ROOT / "benchmarks" / "baseline_script.py"), str(path), str(out)],
                env, out, [path])
    report(results, {k: v.stat().st_size for k, v in inputs.items()})


def report(results: dict[str, tuple[float, float]], sizes: dict[str, int]) -> None:
    print(f"{'job':<24}{'wall s':>9}{'peak RSS MiB':>14}")
    for job, (wall, rss) in results.items():
        print(f"{job:<24}{wall:>9.2f}{rss:>14.0f}")
    print()
    print("input sizes: " + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in sizes.items()))
    small = results["remap small cold"][0] / results["script small"][0]
    small_warm = results["remap small warm"][0] / results["script small"][0]
    print(f"small end to end vs hand-written script: cold {small:.2f}x, warm {small_warm:.2f}x (target <= 0.5x)")
    if "cp large" not in results:
        return
    cp_marginal = results["cp large"][0] - results["cp small"][0]
    for mode in ("cold", "warm"):
        marginal = results[f"remap large {mode}"][0] - results[f"remap small {mode}"][0]
        print(f"marginal time per byte, large - small ({mode}): {marginal / cp_marginal:.2f}x cp's (target <= 1.5x)")
        growth = results[f"remap large {mode}"][1] - results[f"remap small {mode}"][1]
        print(f"peak RSS growth small -> large ({mode}): {growth:+.0f} MiB (target <= 64); "
              f"large: {results[f'remap large {mode}'][1]:.0f} MiB (target <= 512)")
    for mode in ("cold", "warm"):
        ratio = results[f"remap rename {mode}"][0] / results["cp rename"][0]
        print(f"1.2 GB safetensors pure rename ({mode}): {ratio:.2f}x cp's wall, "
              f"{results[f'remap rename {mode}'][1]:.0f} MiB peak RSS")
    print(f"hand-written script, large: {results['script large'][0]:.1f} s, {results['script large'][1]:.0f} MiB")


if __name__ == "__main__":
    main()
