"""The reverse stage: a transformers folder back into its original framework's checkpoint.

    folder            the transformers folder, read as from_pretrained reads it (tied keys, weight-norm names)
    rules_backwards   the source keys and shapes a folder was made from, read off the rules backwards
    plan              planning backwards: the recipe that rebuilds each source tensor from the targets
    from_original     with --like ORIGINAL: ORIGINAL's file again, its tensors rebuilt
    from_rules        without --like: a new checkpoint from the rule file's ``reverse`` section
    original_format   writing the original framework's format (torch zip or safetensors)
"""

from __future__ import annotations

from pathlib import Path

from .. import catalog
from ..rules.model import RuleSet
from .from_original import revert_like
from .from_rules import revert_without_like
from .original_format import check_output_file
from .plan import RevertSummary

__all__ = ["RevertSummary", "revert"]


def revert(rules: RuleSet | str | Path, hf_dir: str | Path, out: str | Path, *, like: str | Path | None = None,
           force: bool = False, source_config: str | Path | None = None) -> RevertSummary:
    """Write HF_DIR back as the original framework's checkpoint at ``out`` (strict; atomic).

    With ``like``, ORIGINAL's config, non-tensor entries and dropped tensors are kept and its format is
    used; without it, the rule file's ``reverse`` section says what the original checkpoint holds.
    """
    ruleset = catalog.load(rules)
    out = Path(out)
    check_output_file(out, force, [Path(hf_dir), *([Path(like)] if like else [])])
    if like is None:
        return revert_without_like(ruleset, hf_dir, out, force=force, source_config=source_config)
    return revert_like(ruleset, hf_dir, out, like, force=force, source_config=source_config)
