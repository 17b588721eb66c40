"""Shared by the adapters: s3prl's config helper, which cannot be imported from s3prl here."""

from __future__ import annotations

import copy
from dataclasses import fields
from typing import Any


def merge_with_parent(dc: Any, cfg: dict[str, Any]) -> Any:
    """s3prl.upstream.utils.merge_with_parent: drop unknown keys, then build the dataclass.

    Re-stated because ``s3prl.upstream.utils`` cannot be imported here: it imports
    ``s3prl.util.download`` (``requests``; it exists to download) and
    ``s3prl.util.pseudo_data``, which imports torchaudio at module level, and the
    torchaudio on offer breaks transformers' imports. Values are not coerced, as in s3prl.
    """
    known = {f.name for f in fields(dc)}
    kept = {k: v for k, v in copy.deepcopy(dict(cfg)).items() if k in known}
    assert kept, "the checkpoint's config has none of the model's fields"
    return dc(**kept)
