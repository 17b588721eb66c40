"""Rendering for the CLI: plan tables, inspect listings, rule-file lists, summaries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .catalog import RuleFile
from .io.source import Checkpoint, Record, StoredTensor
from .planner import Plan


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header).rstrip(), fmt.format(*("-" * w for w in widths)).rstrip()]
    lines += [fmt.format(*map(str, r)).rstrip() for r in rows]
    return lines


def shape_text(shape: Iterable[int] | None) -> str:
    return "?" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


def sources_text(sources: Sequence[str]) -> str:
    """One source key, ``a + b``, or ``first + 11 more`` for a long group."""
    return " + ".join(sources) if len(sources) <= 3 else f"{sources[0]} + {len(sources) - 1} more"


def plan_lines(p: Plan) -> list[str]:
    n = len(p.problems)
    lines = [f"summary: {len(p.entries)} mapped, {len(p.drops)} dropped, {len(p.inits)} initialised, "
             f"{len(p.allowed_missing)} allowed missing, {n} problem{'s' if n != 1 else ''}", ""]
    with_ops = any(e.recipe.describe() != "copy" for e in p.entries)
    rows = [(sources_text(e.sources), e.target, shape_text(e.info.shape),
             e.info.dtype + (" (cast)" if e.cast else ""), str(e.rule.loc),
             *([e.recipe.describe() if e.recipe.describe() != "copy" else ""] if with_ops else []))
            for e in p.entries]
    lines += table(rows, ("source", "target", "shape", "dtype", "rule", *(["ops"] if with_ops else [])))
    if p.drops:
        lines += ["", "dropped:"]
        lines += table([(d.source, str(d.rule.loc), d.rule.reason) for d in p.drops], ("source", "rule", "reason"))
    if p.inits:
        lines += ["", "initialised:"]
        lines += table([(i.target, shape_text(i.info.shape if i.info else None), str(i.init.fill), str(i.init.loc))
                        for i in p.inits], ("target", "shape", "fill", "rule"))
    if p.allowed_missing:
        lines += ["", "allowed missing:"]
        lines += [f"  {key}  ({where})" for key, where in p.allowed_missing]
    if p.problems:
        lines += ["", "problems:"]
        lines += [f"  {prob}" for prob in p.problems]
    return lines


def plan_json(p: Plan) -> dict[str, Any]:
    """The plan as data, for tools: same content as the table."""
    return {
        "summary": {"mapped": len(p.entries), "dropped": len(p.drops), "initialised": len(p.inits),
                    "allowed_missing": len(p.allowed_missing), "problems": len(p.problems)},
        "mapped": [{"source": e.source, "sources": list(e.sources), "target": e.target, "shape": list(e.info.shape),
                    "dtype": e.info.dtype, "cast": e.cast, "rule": str(e.rule.loc), "ops": e.recipe.describe(),
                    "exact": e.recipe.exact} for e in p.entries],
        "dropped": [{"source": d.source, "rule": str(d.rule.loc), "reason": d.rule.reason} for d in p.drops],
        "initialised": [{"target": i.target, "shape": list(i.info.shape) if i.info else None,
                         "dtype": i.info.dtype if i.info else None, "fill": i.init.fill, "rule": str(i.init.loc)}
                        for i in p.inits],
        "allowed_missing": [{"target": key, "rule": where} for key, where in p.allowed_missing],
        "problems": [x.to_json() for x in p.problems],
    }


def _value_text(value: Any, limit: int = 100) -> str:
    if isinstance(value, Record):
        inner = ", ".join(f"{k}={_value_text(v, 30)}" for k, v in value.state.items())
        text = f"{value.class_name}({inner})"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def inspect_lines(checkpoint: Checkpoint) -> list[str]:
    tensors: list[tuple[str, str, str]] = []
    others: list[str] = []
    total = 0
    for path, leaf in checkpoint.walk():
        if isinstance(leaf, StoredTensor):
            tensors.append((path, shape_text(leaf.info.shape), leaf.info.dtype))
            total += 1
        else:
            others.append(f"  {path or '<top level>'} = {_value_text(leaf)}")
    lines = [f"{checkpoint.path.name}: {total} tensors, {len(others)} other entries", ""]
    lines += table(tensors, ("key", "shape", "dtype")) if tensors else ["(no tensors)"]
    if others:
        lines += ["", "other entries:", *others]
    return lines


def rule_file_lines(files: Sequence[RuleFile]) -> list[str]:
    """``remap list``: one row per named rule file."""
    if not files:
        return ["no rule files found"]
    rows = [(f.name, f.pack, f.target or "-", f.description if not f.error else f"does not compile: {f.error}")
            for f in files]
    return table(rows, ("name", "pack", "target", "description"))


def rule_file_json(files: Sequence[RuleFile]) -> list[dict[str, Any]]:
    return [{"name": f.name, "pack": f.pack, "path": str(f.path), "target": f.target or None,
             "description": f.description, "error": f.error or None} for f in files]


def provenance_lines(record: Mapping[str, Any]) -> list[str]:
    """``remap inspect DIR`` on a converted folder: where the folder and each of its tensors came from."""
    source, rules = record.get("source", {}), record.get("rules", {})
    lines = [f"converted by remap {record.get('remap')} with rule file {rules.get('name')} "
             f"({rules.get('file')}, sha256 {str(rules.get('sha256'))[:16]})",
             f"from {source.get('file')} ({source.get('size')} bytes, sha256 {source.get('sha256')}, "
             f"layout {source.get('layout')})", ""]
    rows = []
    for target, entry in sorted(record.get("tensors", {}).items()):
        if "init" in entry:
            rows.append((target, f"init: {entry['init']}", entry.get("rule", ""), "", ""))
        else:
            digests = entry.get("sha256", {})
            rows.append((target, sources_text(entry.get("sources", [])), entry.get("rule", ""),
                         "" if entry.get("ops") == "copy" else str(entry.get("ops")),
                         " ".join(str(digests.get(k)) for k in entry.get("sources", []))))
    lines += table(rows, ("tensor", "from", "rule", "ops", "source sha256"))
    dropped = record.get("dropped", {})
    if dropped:
        lines += ["", f"dropped from the source: {len(dropped)} tensors"]
    return lines
