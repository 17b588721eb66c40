"""The conversion pipeline: compile -> read -> plan -> check -> write.

`prepare()` does everything that can fail before a byte is written (reading
the checkpoint's header data, mapping the config, building the target on the
meta device, planning). `write()` then streams the tensors into an atomic
output folder. `convert()` is both in one call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .compiler import compile_file
from .errors import PlanError
from .materialize import copy_tensor, init_tensor
from .planner import Plan, plan
from .rules import RuleSet, SourceSpec
from .readers import read_checkpoint
from .errors import SourceError
from .source import Checkpoint, Source
from .target import Target, build_target
from .writer import OutTensor, check_destination, write_folder, write_weights


@dataclass(frozen=True)
class Prepared:
    ruleset: RuleSet
    source: Source
    env: dict[str, Any]
    target_config: dict[str, Any]
    target: Target | None
    plan: Plan


@dataclass(frozen=True)
class Summary:
    out_dir: Path
    mapped: int
    dropped: int
    initialised: int
    bytes_written: int


def prepare(rules: RuleSet | str | Path, source_path: str | Path, *, with_target: bool = True) -> Prepared:
    """Compile, read and plan; never writes. The plan may carry problems."""
    ruleset = rules if isinstance(rules, RuleSet) else compile_file(rules)
    source = select_source(read_checkpoint(source_path), ruleset.source)
    env = ruleset.environment(source.config)
    target_config = ruleset.target_config(env)
    target = None
    if with_target:
        where = str(ruleset.target.class_loc or ruleset.path)
        target = build_target(ruleset.target.model_class, ruleset.target.config, target_config, where)
    result = plan(ruleset, source.infos, env, target.tensors if target else None,
                  source_name=str(source_path), target_name=target.name if target else "target")
    return Prepared(ruleset, source, env, target_config, target, result)


def select_source(checkpoint: Checkpoint, spec: SourceSpec) -> Source:
    """The state dict and config of the first layout whose ``detect`` entries the checkpoint has."""
    for layout in spec.layouts:
        if all(checkpoint.has(path) for path in layout.detect):
            return checkpoint.source(layout.state_dict, layout.config, layout.name)
    wanted = "; ".join(f"{lay.name} needs {', '.join(lay.detect)}" for lay in spec.layouts)
    found = ", ".join(checkpoint.top_level()) or "nothing"
    raise SourceError(f"matches none of the rule file's layouts ({wanted}); its top-level entries are: {found}",
                      checkpoint.path.name)


def output_tensors(prepared: Prepared) -> list[OutTensor]:
    """Every tensor of the output, sorted by key, with a producer each."""
    out = [OutTensor(e.target, e.info, partial(copy_tensor, e, prepared.source)) for e in prepared.plan.entries]
    out += [OutTensor(i.target, i.info, partial(init_tensor, i)) for i in prepared.plan.inits if i.info]
    return sorted(out, key=lambda t: t.key)


def metadata(prepared: Prepared) -> dict[str, str]:
    return {"format": "pt", "remap.ruleset": prepared.ruleset.name, "remap.layout": prepared.source.layout,
            "remap.ruleset_sha256": prepared.ruleset.sha256, "remap.source": prepared.source.name}


def write(prepared: Prepared, out_dir: str | Path, *, force: bool = False, max_shard_bytes: int | None = None,
          on_tensor: Callable[[int], None] | None = None) -> Summary:
    """Write the output folder for a problem-free plan (sharded when ``max_shard_bytes`` is set)."""
    if prepared.plan.problems:
        raise PlanError([str(p) for p in prepared.plan.problems])
    if prepared.target is None:
        raise ValueError("write() needs a plan checked against the target model")
    out_dir = Path(out_dir)
    tensors = output_tensors(prepared)
    written = 0

    def fill(tmp: Path) -> None:
        nonlocal written
        written = write_weights(tmp, tensors, metadata(prepared), max_shard_bytes, on_tensor)
        assert prepared.target is not None
        (tmp / "config.json").write_text(prepared.target.config_json)
        written += len(prepared.target.config_json)
        pre = prepared.ruleset.preprocessor_config(prepared.env)
        if pre is not None:
            text = json.dumps(pre, indent=2, sort_keys=True) + "\n"
            (tmp / "preprocessor_config.json").write_text(text)
            written += len(text)

    write_folder(out_dir, force, fill, prepared.source.path)
    p = prepared.plan
    return Summary(out_dir, len(p.entries), len(p.drops), len(p.inits), written)


def convert(rules: RuleSet | str | Path, source_path: str | Path, out_dir: str | Path, *,
            force: bool = False, max_shard_bytes: int | None = None,
            on_tensor: Callable[[int], None] | None = None) -> Summary:
    """Convert ``source_path`` with ``rules`` into ``out_dir`` (strict; atomic)."""
    check_destination(Path(out_dir), force, Path(source_path))
    return write(prepare(rules, source_path), out_dir, force=force, max_shard_bytes=max_shard_bytes,
                 on_tensor=on_tensor)
