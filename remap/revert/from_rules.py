"""``remap revert`` without ``--like``: a new checkpoint from the rule file's ``reverse`` section.

The original config comes from the transformers config through ``reverse.entries``; the source keys
and shapes from the rules read backwards (rules_backwards), checked by planning them forward again: the
plan must give exactly HF_DIR's keys and shapes, or nothing is written. What the forward conversion
dropped is then absent from the output, and the summary says which rules dropped it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import RemapError
from ..io.configfile import read_config_file
from ..io.source import Record
from ..planner import plan
from ..rules.model import Layout, Namespace, ReverseSpec, RuleSet
from ..rules.reversibility import reasons
from ..tensors import TensorInfo
from .folder import alias_only, hf_config, hf_folder
from .original_format import atomic_file, write_new_safetensors, write_torch
from .plan import RevertSummary, check_inits, reverse
from .rules_backwards import synthesize


def revert_without_like(ruleset: RuleSet, hf_dir: str | Path, out: Path, *, force: bool,
                        source_config: str | Path | None = None) -> RevertSummary:
    """``source_config`` is the original's config where its files keep none (a codec's --source-config)."""
    spec = _spec(ruleset)
    hf = hf_folder(ruleset, hf_dir)
    hf_infos = {k: t.info for k, t in hf.items()}
    entries = _entries(spec, hf_dir, hf_infos)
    layout = _layout(ruleset, spec)
    config = {**_config(layout, entries), **(read_config_file(source_config) if source_config else {})}
    listing = synthesize(ruleset, hf_infos, ruleset.environment(config))
    env = ruleset.environment(config, {k: tuple(i.shape) for k, i in listing.items()})
    result = plan(ruleset, listing, env, hf_infos, source_name="the rules read backwards", target_name=str(hf_dir))
    problems = [p for p in result.problems if not alias_only(p, hf_infos)]
    if problems:
        first, more = problems[0], len(problems) - 1
        raise RemapError(f"reading the rules backwards did not give back {hf_dir}: {first.where}: {first.message}"
                         f"{f' (and {more} more problems)' if more else ''}; pass --like a checkpoint of the same "
                         "architecture")
    left = check_inits(result.inits, hf, str(hf_dir))
    steps = {r.source: r for r in reverse(result.entries, listing)}
    write = write_new_safetensors if spec.format == "safetensors" else write_torch
    atomic_file(out, force, partial(write, layout=layout, entries=entries, steps=steps, hf=hf, name=out.stem))
    dropped = sorted({f"{r.label} ({r.reason or 'dropped'})" for r in ruleset.rules if r.target is None})
    return RevertSummary(out, len(steps), [], dropped, sorted(k for k, r in steps.items() if not r.exact), left)


def _spec(ruleset: RuleSet) -> ReverseSpec:
    """The rule file's reverse section, if nothing in the rules needs --like."""
    if ruleset.reverse is None:
        raise RemapError("this rule file has no 'reverse' section, so the original config is unknown; pass --like "
                         "a checkpoint of the same architecture (its config and dropped tensors are kept)",
                         ruleset.path)
    blocking = [r for r in reasons(ruleset) if not r.lossy and not r.needs_like]
    if blocking:
        raise RemapError(f"cannot revert without --like: {blocking[0]} ({blocking[0].loc})", ruleset.path)
    return ruleset.reverse


def _entries(spec: ReverseSpec, hf_dir: str | Path, hf: Mapping[str, TensorInfo]) -> dict[str, Any]:
    """The checkpoint's non-tensor entries, computed from HF_DIR's config.json and its tensors' shapes."""
    names = {"config": hf_config(hf_dir), "tensors": {k: tuple(i.shape) for k, i in hf.items()}}
    entries = {}
    for path, value in spec.entries:
        try:
            entries[path] = _plain(value.value(names))
        except RemapError as exc:
            raise RemapError(f"cannot compute the original's '{path}' from this config.json ({exc.message}, at "
                             f"{exc.where}); is it the config of a model this rule file converts?",
                             str(Path(hf_dir) / "config.json")) from None
    return entries


def _layout(ruleset: RuleSet, spec: ReverseSpec) -> Layout:
    layouts = {layout.name: layout for layout in ruleset.source.layouts}
    return layouts[spec.layout] if spec.layout else ruleset.source.layouts[0]


def _plain(value: Any) -> Any:
    if isinstance(value, Namespace):
        return Record("argparse.Namespace", _plain(value.fields))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _config(layout: Layout, entries: Mapping[str, Any]) -> dict[str, Any]:
    """The source config as the layout reads it, from the entries the reverse section writes."""
    paths = [layout.config] if isinstance(layout.config, str) else list(layout.config or ())
    config: dict[str, Any] = {}
    for path in paths:
        value = _at(entries, path)
        value = value.state if isinstance(value, Record) else value
        if isinstance(value, Mapping):
            config.update(value)
    return config


def _at(entries: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, looking into the entries' own values (``Config`` holds ``Config.distiller``)."""
    if path in entries:
        return entries[path]
    for prefix, value in entries.items():
        if path.startswith(prefix + "."):
            node = value
            for part in path[len(prefix) + 1:].split("."):
                node = node.state if isinstance(node, Record) else node
                node = node.get(part) if isinstance(node, Mapping) else None
            return node
    return None
