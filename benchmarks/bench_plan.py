"""Planning speed: 100,000 keys against 300 rules, with the rule index and with the naive loop.

    python benchmarks/bench_plan.py [--keys 100000] [--rules 300]

Both run in this process on the same keys, so the ratio holds on a busy
machine. Target: the indexed plan takes <= 1 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from remap import TensorInfo, compile_text, plan
from remap.resolve import Fired, Resolution


def make_rules(n_rules: int) -> str:
    lines = ["remap: 1", "name: bench", "source: {state_dict: ''}", "target: {class: HubertModel}", "rules:"]
    for i in range(n_rules):
        lines += [f"  - from: model.blocks.{{n:int}}.op{i}.{{param:weight|bias}}",
                  f"    to: encoder.layers.{{n}}.module{i}.{{param}}"]
    return "\n".join(lines) + "\n"


def make_keys(n_keys: int, n_rules: int) -> dict[str, TensorInfo]:
    keys: dict[str, TensorInfo] = {}
    layer = 0
    while len(keys) < n_keys:
        for i in range(n_rules):
            for param in ("weight", "bias"):
                keys[f"model.blocks.{layer}.op{i}.{param}"] = TensorInfo((4,), "float32")
        layer += 1
    return dict(list(keys.items())[:n_keys])


def naive_plan_seconds(ruleset, keys) -> float:
    """The loop every hand-written converter does: try every rule on every key."""
    start = time.perf_counter()
    for key in keys:
        fired = [Fired(r, c) for r in ruleset.rules if (c := r.pattern.match(key)) is not None]
        Resolution(tuple(fired), ())
        for f in fired:
            f.rule.render_targets(f.captures)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--rules", type=int, default=300)
    args = parser.parse_args()
    ruleset = compile_text(make_rules(args.rules), "bench.yaml")
    keys = make_keys(args.keys, args.rules)
    start = time.perf_counter()
    result = plan(ruleset, keys, ruleset.environment({}))
    indexed = time.perf_counter() - start
    assert result.ok and len(result.entries) == len(keys), result.problems[:3]
    naive = naive_plan_seconds(ruleset, keys)
    print(f"{len(keys)} keys, {len(ruleset.rules)} rules")
    print(f"indexed plan (full accounting): {indexed:.2f} s (target <= 1 s)")
    print(f"naive loop (matching only):     {naive:.2f} s")
    print(f"naive / indexed: {naive / indexed:.1f}x")


if __name__ == "__main__":
    main()
