"""Provenance: what every output tensor was made from, written beside the weights.

``remap-provenance.json`` records, for each output tensor, the source key(s), the rule's
``file:line`` (by the rule file's name, so the record does not depend on where it was run), the
ops (the recipe), whether the bytes are exactly the source's, and a digest of each source tensor's
bytes; and for the whole conversion the source file's name, size and SHA-256, the rule file's name
and SHA-256, the layout, and remap's version. No timestamps or absolute paths: converting twice
gives identical files. ``remap inspect DIR`` shows it; ``remap diff`` checks a folder against it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from .expand import Entry
from .io.digest import file_digest, tensor_digest
from .io.source import Source
from .planner import Plan
from .rules.model import RuleSet
from .version import __version__

FILE_NAME: Final = "remap-provenance.json"
FORMAT: Final = 1


class Digests:
    """Source file and tensor digests, computed in a thread while the writer copies (hashing frees the GIL)."""

    def __init__(self, source: Source, keys: list[str]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="remap-digest")
        self._tensors: dict[str, Future[str]] = {k: self._pool.submit(tensor_digest, source.tensors[k]) for k in keys}
        self._file: Future[str] | None = self._pool.submit(file_digest, source.path) if source.path else None

    def results(self) -> tuple[str | None, dict[str, str]]:
        try:
            return (self._file.result() if self._file else None), {k: f.result() for k, f in self._tensors.items()}
        finally:
            self._pool.shutdown()

    def cancel(self) -> None:
        for future in self._tensors.values():
            future.cancel()
        self._pool.shutdown(cancel_futures=True)


def used_sources(plan: Plan) -> list[str]:
    return sorted({key for entry in plan.entries for key in entry.sources})


def record(ruleset: RuleSet, source: Source, plan: Plan, file_sha256: str | None,
           digests: Mapping[str, str]) -> dict[str, Any]:
    """The provenance record (plain data, deterministic)."""
    rules_name = Path(ruleset.path).name
    tensors: dict[str, Any] = {e.target: _entry(e, rules_name, digests) for e in plan.entries}
    for init in plan.inits:
        tensors[init.target] = {"init": init.init.fill, "rule": f"{rules_name}:{init.init.loc.line}"}
    size = source.path.stat().st_size if source.path else None
    return {
        "format": FORMAT,
        "remap": __version__,
        "rules": {"name": ruleset.name, "file": rules_name, "sha256": ruleset.sha256},
        "source": {"file": source.name, "size": size, "sha256": file_sha256, "layout": source.layout},
        "dropped": {d.source: f"{rules_name}:{d.rule.loc.line}" for d in plan.drops},
        "tensors": tensors,
    }


def _entry(entry: Entry, rules_name: str, digests: Mapping[str, str]) -> dict[str, Any]:
    return {"sources": list(entry.sources), "rule": f"{rules_name}:{entry.rule.loc.line}",
            "ops": entry.recipe.describe(), "exact": entry.recipe.exact,
            "sha256": {key: digests[key] for key in entry.sources}}


def dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=True) + "\n"
