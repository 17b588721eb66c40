"""Speed and memory of `remap apply` on audio codecs at released size, next to `cp` of the same file.

    python benchmarks/bench_codec.py [--workdir DIR] [--repeat 3] [--only mimi,dac,encodec] [--parity]

Builds its own inputs in a child process, from the original projects' code with random weights
(every parameter and buffer perturbed, as in the tests):

- Mimi as released (moshi's _mimi_config: 79M parameters plus the codebook buffers, the fused
  safetensors layout, 385 MB);
  a rename plus the q/k/v split with RoPE permutation of 16 attention layers;
- DAC 44 kHz (dac.DAC() defaults: 77M parameters, the {state_dict, metadata} layout, 307 MB);
  every conv weight-norm-folded (numeric: torch computes each weight);
- EnCodec 24 kHz (encodec_model_24khz: 15M parameters plus the codebook buffers, a bare state
  dict, 93 MB); pure renames.

Each job runs as a child process; wall clock and peak RSS come from wait4 (see bench_io.py's
`measure`, used here). Every figure is the median of --repeat runs, page cache warm. "cold" runs
have no target-shape cache (they import transformers); "warm" runs reuse it. --parity also runs
`remap verify`'s comparison on each converted folder (one second of seeded noise) in a child that
imports the reference packages as the tests do, and prints its figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_io import median_of  # noqa: E402  (the same measurement as bench_io.py)

CODECS = ("mimi", "dac", "encodec")


def input_path(work: Path, codec: str) -> Path:
    return work / {"mimi": "tokenizer-e351c8d8-checkpoint125.safetensors", "dac": "weights_44khz_8kbps.pth",
                   "encodec": "encodec_24khz-d7cc33bc.th"}[codec]


def build_inputs(work: Path, codecs: list[str]) -> None:
    import torch

    from tests import codec_fixtures as cf

    torch.set_num_threads(1)
    for codec in codecs:
        path = input_path(work, codec)
        if path.exists():
            continue
        if codec == "mimi":
            cf.save_mimi_released(cf.build_mimi(cf.mimi_released_config()), path)
        elif codec == "dac":
            cf.save_dac_released(cf.build_dac({}), {}, path)
        else:
            cf.save_encodec_released(cf.build_encodec("24khz"), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "remap-bench-codec")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=",".join(CODECS), help="comma-separated subset of mimi, dac, encodec")
    parser.add_argument("--parity", action="store_true", help="also run `remap verify` on each converted folder")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--verify-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    codecs = [c for c in args.only.split(",") if c]
    unknown = sorted(set(codecs) - set(CODECS))
    if unknown:
        raise SystemExit(f"unknown codec(s): {', '.join(unknown)}")
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    if args.build_only:
        build_inputs(work, codecs)
        return
    if args.verify_only:
        run_verify(work, codecs[0])
        return
    # built in a child so that this process stays small (a forked child starts with its pages)
    subprocess.run([sys.executable, __file__, "--build-only", "--workdir", str(work), "--only", ",".join(codecs)],
                   check=True)
    cache = work / "cache"
    env = {**os.environ, "REMAP_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    remap = [sys.executable, "-m", "remap"]
    results: dict[str, tuple[float, float]] = {}
    sizes: dict[str, int] = {}

    def clear_cache() -> None:
        shutil.rmtree(cache, ignore_errors=True)

    for codec in codecs:
        path = input_path(work, codec)
        sizes[codec] = path.stat().st_size
        out = work / f"out-{codec}"
        apply = [*remap, "apply", str(ROOT / "rules" / f"{codec}.yaml"), str(path), "-o", str(out)]
        results[f"cp {codec}"] = median_of(args.repeat, ["cp", str(path), str(work / "copy")], env, work / "copy",
                                           [path])
        results[f"remap {codec} cold"] = median_of(args.repeat, apply, env, out, [path], before=clear_cache)
        results[f"remap {codec} warm"] = median_of(args.repeat, apply, env, out, [path])
        if not out.exists():
            subprocess.run(apply, env=env, check=True, stdout=subprocess.DEVNULL)
    print(f"{'job':<22}{'wall s':>9}{'peak RSS MiB':>14}")
    for job, (wall, rss) in results.items():
        print(f"{job:<22}{wall:>9.2f}{rss:>14.0f}")
    print()
    print("input sizes: " + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in sizes.items()))
    for codec in codecs:
        cp = results[f"cp {codec}"][0]
        print(f"{codec}: warm {results[f'remap {codec} warm'][0] / cp:.1f}x cp's wall, "
              f"cold {results[f'remap {codec} cold'][0] / cp:.1f}x")
    if args.parity:
        print()
        for codec in codecs:
            subprocess.run([sys.executable, __file__, "--verify-only", "--workdir", str(work), "--only", codec],
                           env=env, check=True)


def run_verify(work: Path, codec: str) -> None:
    """`remap verify` in this process, with the reference package imported the way the tests import it
    (encodec and dac through the stand-ins of tests/standins, only while importing)."""
    import torch

    from remap import compile_file
    from remap.verify import verify
    from tests.codec_fixtures import reference_package

    torch.set_num_threads(1)
    reference_package({"mimi": "moshi.models.loaders"}.get(codec, codec))
    report = verify(compile_file(ROOT / "rules" / f"{codec}.yaml"), input_path(work, codec), work / f"out-{codec}")
    figures = ", ".join(f"{k} {v:.2g}" for k, v in report.diffs.items())
    print(f"parity {codec} (1 s of noise): {figures} -> {'OK' if report.ok else 'FAILED'}")


if __name__ == "__main__":
    main()
