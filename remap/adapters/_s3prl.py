"""Shared by the adapters: s3prl's config helper, which cannot be imported from s3prl here."""

from __future__ import annotations

import copy
from dataclasses import fields
from typing import Any


def merge_with_parent(dc: Any, cfg: dict[str, Any]) -> Any:
    """s3prl.upstream.utils.merge_with_parent: drop unknown keys, then build the dataclass.

    Re-stated because importing ``s3prl.upstream.utils`` imports ``s3prl.util.download``,
    which needs ``requests`` (and exists to download). Values are not coerced, as in s3prl.
    """
    known = {f.name for f in fields(dc)}
    kept = {k: v for k, v in copy.deepcopy(dict(cfg)).items() if k in known}
    assert kept, "the checkpoint's config has none of the model's fields"
    return dc(**kept)
