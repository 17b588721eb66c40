"""Speed and memory of tensor ops in `remap apply`: a split and a transpose, against `cp`, in one run.

    python benchmarks/bench_ops.py [--workdir DIR] [--repeat 3]

Builds its own inputs from transformers' HubertModel (HuBERT-large width, 1024): 2 and 24 layers,
each saved twice with torch.save:

- "mha": q/k/v fused into nn.MultiheadAttention's in_proj_weight/in_proj_bias, converted with
  benchmarks/mha-split.yaml (a split along dim 0: still file-to-file copies);
- "transposed": every linear weight stored as a [in, out] kernel, converted with
  benchmarks/transposed.yaml (a transpose of every 2-D weight: gathered in memory, one at a time).

Each job runs as a child process (wall clock, peak RSS from wait4), median of --repeat, with a warm
page cache and a warm target-shape cache. Targets (issue 10): marginal time per byte (large minus
small) <= 1.5x cp's for the split, <= 3x for the transposes; peak RSS growth small -> large <= 64 MiB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_io import median_of  # noqa: E402

LAYERS = {"small": 2, "large": 24}
LINEARS = ("q_proj", "k_proj", "v_proj", "out_proj", "intermediate_dense", "output_dense", "projection")


def paths(work: Path) -> dict[str, Path]:
    return {f"{kind} {size}": work / f"hubert-{kind}-{size}.pt" for kind in ("mha", "transposed") for size in LAYERS}


def build(work: Path) -> None:
    import torch
    from transformers import HubertConfig, HubertModel

    for size, layers in LAYERS.items():
        targets = paths(work)
        if targets[f"mha {size}"].exists() and targets[f"transposed {size}"].exists():
            continue
        config = HubertConfig(hidden_size=1024, num_hidden_layers=layers, num_attention_heads=16,
                              intermediate_size=4096, feat_extract_norm="layer", do_stable_layer_norm=True,
                              conv_bias=True)
        torch.manual_seed(0)
        state = {k: v.detach().contiguous() for k, v in HubertModel(config).state_dict().items()}
        cfg = {"layers": layers}
        torch.save({"model": fuse_qkv(state, layers), "cfg": cfg}, targets[f"mha {size}"])
        kernels = {(k[: -len("weight")] + "kernel" if is_linear(k, v) else k): (v.T.contiguous() if is_linear(k, v)
                                                                               else v) for k, v in state.items()}
        torch.save({"model": kernels, "cfg": cfg}, targets[f"transposed {size}"])


def is_linear(key: str, value: object) -> bool:
    return key.endswith(".weight") and key.split(".")[-2] in LINEARS and getattr(value, "dim", lambda: 0)() == 2


def fuse_qkv(state: dict[str, object], layers: int) -> dict[str, object]:
    import torch

    fused = dict(state)
    for i in range(layers):
        for p in ("weight", "bias"):
            parts = [fused.pop(f"encoder.layers.{i}.attention.{proj}_proj.{p}") for proj in ("q", "k", "v")]
            fused[f"encoder.layers.{i}.attention.in_proj_{p}"] = torch.cat(parts)  # type: ignore[arg-type]
    return fused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "remap-bench-ops")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    if args.build_only:
        build(work)
        return
    subprocess.run([sys.executable, __file__, "--build-only", "--workdir", str(work)], check=True)
    env = {**os.environ, "REMAP_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1"}
    out = work / "out"
    results: dict[str, tuple[float, float]] = {}
    for name, path in paths(work).items():
        kind = name.split()[0]
        rules = ROOT / "benchmarks" / ("mha-split.yaml" if kind == "mha" else "transposed.yaml")
        cmd = [sys.executable, "-m", "remap", "apply", str(rules), str(path), "-o", str(out)]
        subprocess.run([*cmd, "--force"], env=env, check=True, capture_output=True)  # warm the target cache
        results[f"cp {name}"] = median_of(args.repeat, ["cp", str(path), str(work / "copy")], env, work / "copy",
                                          [path])
        results[f"remap {name}"] = median_of(args.repeat, cmd, env, out, [path])
    report(results, {name: path.stat().st_size for name, path in paths(work).items()})


def report(results: dict[str, tuple[float, float]], sizes: dict[str, int]) -> None:
    print(f"{'job':<26}{'wall s':>9}{'peak RSS MiB':>14}")
    for job, (wall, rss) in results.items():
        print(f"{job:<26}{wall:>9.2f}{rss:>14.0f}")
    print("input sizes: " + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in sizes.items()))
    for kind, target in (("mha", 1.5), ("transposed", 3.0)):
        cp = results[f"cp {kind} large"][0] - results[f"cp {kind} small"][0]
        marginal = results[f"remap {kind} large"][0] - results[f"remap {kind} small"][0]
        growth = results[f"remap {kind} large"][1] - results[f"remap {kind} small"][1]
        whole = results[f"remap {kind} large"][0] / results[f"cp {kind} large"][0]
        print(f"{kind}: marginal time per byte {marginal / cp:.2f}x cp's (target <= {target}x); whole large file "
              f"{whole:.2f}x cp; peak RSS growth small -> large {growth:+.0f} MiB (target <= 64)")


if __name__ == "__main__":
    main()
