"""The conversion pipeline: rule file -> read -> plan -> check -> write.

`prepare()` does everything that can fail before a byte is written (reading
the checkpoint's header data, mapping the config, building the target on the
meta device, planning). `write()` then streams the tensors into an atomic
output folder. `convert()` is both in one call, and is what ``remap apply``
runs. The pipeline is where a plan meets IO: it pairs each planned tensor
with the function that produces its bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from . import catalog, provenance
from .diagnostics import Diagnostic
from .errors import PlanError
from .expand import problem
from .io.execute import first_difference, produce
from .io.fills import init_tensor
from .io.hub import fetch_default
from .io.load import load_source
from .io.outdir import Output, hold
from .io.shards import write_weights
from .io.source import Source
from .io.writer import OutTensor, nbytes
from .planner import Plan, plan
from .provenance import Digests, used_sources
from .rules.model import RuleSet
from .target import Target, build_target, check_target_size
from .tokenizers import wanted, write_tokenizer

Progress = Callable[[int, int], None]  # (bytes written so far, bytes to write in all)


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


def prepare(rules: RuleSet | str | Path, source_path: str | Path, *, with_target: bool = True,
            source_config: str | Path | None = None) -> Prepared:
    """Compile (``rules`` is a RuleSet, a path or a rule file name), read and plan; never writes.

    ``source_config`` is a JSON or YAML file whose mapping overlays the checkpoint's config (for
    checkpoints released without one). The plan may carry problems; `write()` refuses a plan that has any.
    """
    ruleset = catalog.load(rules)
    source = load_source(ruleset.source, source_path, source_config)
    env = ruleset.environment(source.config, {key: tuple(info.shape) for key, info in source.infos.items()})
    target_config = ruleset.target_config(env)
    target = None
    if with_target:
        where = str(ruleset.target.class_loc or ruleset.path)
        check_target_size(target_config, source.infos.values(), where)
        target = build_target(ruleset.target.model_class, ruleset.target.config, target_config, where)
    result = plan(ruleset, source.infos, env, target.tensors if target else None,
                  source_name=str(source_path), target_name=target.name if target else "target")
    return Prepared(ruleset, source, env, target_config, target, _check_copies(result, source))


def _check_copies(result: Plan, source: Source) -> Plan:
    """A dedup keeps one of several copies: they must be byte-identical (this reads those tensors)."""
    problems = []
    for entry in result.entries:
        if entry.recipe.combine.identical:
            differs = first_difference(entry.recipe, source.tensors)
            if differs is not None:
                problems.append(problem(differs, entry.rule.loc, f"'{differs}' differs from '{entry.source}', but "
                                                                 f"rule '{entry.rule.label}' keeps one copy of them "
                                                                 "(dedup); the copies must be identical"))
    if not problems:
        return result
    return replace(result, problems=tuple(sorted({*result.problems, *problems}, key=Diagnostic.by_key)))


def output_tensors(prepared: Prepared) -> list[OutTensor]:
    """Every tensor of the output, sorted by key, with a producer each."""
    tensors = prepared.source.tensors
    out = [OutTensor(e.target, e.info, partial(produce, e.recipe, tensors)) for e in prepared.plan.entries]
    out += [OutTensor(i.target, i.info, partial(init_tensor, i.target, i.info, i.init.fill))
            for i in prepared.plan.inits if i.info]
    return sorted(out, key=lambda t: t.key)


def metadata(prepared: Prepared) -> dict[str, str]:
    return {"format": "pt", "remap.ruleset": prepared.ruleset.name, "remap.layout": prepared.source.layout,
            "remap.ruleset_sha256": prepared.ruleset.sha256, "remap.source": prepared.source.name}


def _side_files(prepared: Prepared) -> dict[str, str]:
    """config.json, preprocessor_config.json and the other JSON files the rule file declares."""
    assert prepared.target is not None
    return {"config.json": prepared.target.config_json, **prepared.ruleset.side_files(prepared.env)}


def write(prepared: Prepared, out_dir: str | Path | Output, *, force: bool = False,
          max_shard_bytes: int | None = None, progress: Progress | None = None) -> Summary:
    """Write the output folder for a problem-free plan (sharded when ``max_shard_bytes`` is set).

    ``out_dir`` is a path, or an `Output` already held (locked) by `convert()`.
    """
    if prepared.plan.problems:
        raise PlanError(prepared.plan.problems)
    if prepared.target is None:
        raise ValueError("write() needs a plan checked against the target model")
    tensors = output_tensors(prepared)
    total = sum(nbytes(t.info) for t in tensors)
    done = 0
    written = 0

    def on_tensor(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    def fill(tmp: Path) -> None:
        nonlocal written
        digests = Digests(prepared.source, used_sources(prepared.plan))
        try:
            written = write_weights(tmp, tensors, metadata(prepared), max_shard_bytes, on_tensor)
        except BaseException:
            digests.cancel()
            raise
        files = _side_files(prepared)
        spec = prepared.ruleset.target.tokenizer
        tokenizer = spec if spec is not None and wanted(spec, prepared.env) else None
        if tokenizer is not None:
            write_tokenizer(tokenizer, prepared.env, tmp)
        record = provenance.record(prepared.ruleset, prepared.source, prepared.plan, *digests.results())
        record["tokenizer"] = tokenizer.class_name if tokenizer is not None else None
        record["files"] = sorted({*files, *(p.name for p in tmp.iterdir()), provenance.FILE_NAME})
        files[provenance.FILE_NAME] = provenance.dumps(record)
        for name, text in files.items():
            (tmp / name).write_text(text)
            written += len(text)

    if isinstance(out_dir, Output):
        out_dir.check(prepared.source.path)
        out_dir.write(fill)
        path = out_dir.out_dir
    else:
        path = Path(out_dir)
        with hold(path, force, prepared.source.path) as output:
            output.write(fill)
    p = prepared.plan
    return Summary(path, len(p.entries), len(p.drops), len(p.inits), written)


def convert(rules: RuleSet | str | Path, source_path: str | Path | None, out_dir: str | Path, *,
            force: bool = False, max_shard_bytes: int | None = None, progress: Progress | None = None,
            source_config: str | Path | None = None) -> Summary:
    """Convert ``source_path`` with ``rules`` into ``out_dir`` (strict; atomic).

    The destination is locked and checked before anything is read, and stays locked until the
    output is in place. With no ``source_path``, the rule file's default checkpoint is fetched
    (``source.fetch``).
    """
    with hold(out_dir, force, Path(source_path) if source_path is not None else None) as output:
        ruleset = catalog.load(rules)
        if source_path is None:
            source_path = fetch_default(ruleset.source, ruleset.path)
            output.check(Path(source_path))
        return write(prepare(ruleset, source_path, source_config=source_config), output,
                     max_shard_bytes=max_shard_bytes, progress=progress)
