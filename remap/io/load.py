"""A rule file's source: the checkpoint read, its layout selected, a ``--source-config`` file laid over.

What apply, plan, diff, lint, verify and revert --like all start from.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..rules.model import SourceSpec
from .configfile import read_config_file
from .readers import read_checkpoint
from .source import Source, select_source


def load_source(spec: SourceSpec, path: str | Path, source_config: str | Path | None = None) -> Source:
    """The checkpoint's state dict and config, as the rule file's layout selects them, with the overlay."""
    source = select_source(read_checkpoint(path), spec)
    if source_config is None:
        return source
    return replace(source, config={**source.config, **read_config_file(source_config)})
