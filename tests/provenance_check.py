"""Every `remap apply` the suite runs through the `cli` fixture is checked against its own plan here.

The output's remap-provenance.json must name, for every output tensor, exactly the sources, the rule
line and the ops the plan has, and digests equal to SHA-256 computed here over the source tensors'
bytes and the whole source file (with hashlib over whole buffers, not remap's streaming digests).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any


def apply_args(argv: list[str]) -> argparse.Namespace | None:
    """The apply command's arguments, or None when ``argv`` is not an apply with a SOURCE."""
    if not argv or argv[0] != "apply":
        return None
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("rules")
    parser.add_argument("source", nargs="?")
    parser.add_argument("-o", "--output")
    parser.add_argument("--source-config")
    args, _ = parser.parse_known_args(argv[1:])
    return args if args.source else None


def check_provenance(argv: list[str]) -> None:
    args = apply_args(argv)
    if args is None:
        return
    from remap import prepare

    prepared = prepare(args.rules, args.source, source_config=args.source_config)
    record: dict[str, Any] = json.loads((Path(args.output) / "remap-provenance.json").read_text())
    rules_name = Path(prepared.ruleset.path).name
    assert record["rules"] == {"name": prepared.ruleset.name, "file": rules_name, "sha256": prepared.ruleset.sha256}
    source_path = prepared.source.path
    assert source_path is not None
    assert record["source"] == {"file": source_path.name, "size": source_path.stat().st_size,
                                "sha256": hashlib.sha256(source_path.read_bytes()).hexdigest(),
                                "layout": prepared.source.layout}
    expected: dict[str, Any] = {}
    for e in prepared.plan.entries:
        digests = {k: hashlib.sha256(prepared.source.tensors[k].read().tobytes()).hexdigest()[:16] for k in e.sources}
        expected[e.target] = {"sources": list(e.sources), "rule": f"{rules_name}:{e.rule.loc.line}",
                              "ops": e.recipe.describe(), "exact": e.recipe.exact, "sha256": digests}
    for i in prepared.plan.inits:
        expected[i.target] = {"init": i.init.fill, "rule": f"{rules_name}:{i.init.loc.line}"}
    assert record["tensors"] == expected
    assert record["dropped"] == {d.source: f"{rules_name}:{d.rule.loc.line}" for d in prepared.plan.drops}
