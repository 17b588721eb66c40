"""``remap revert --like ORIGINAL``: ORIGINAL's checkpoint again, with the tensors rebuilt from the folder.

1. plan the forward conversion of ORIGINAL against HF_DIR's own keys and shapes (so a folder of
   another architecture is refused before anything is written);
2. read each source tensor's reverse recipe off that plan (`plan.plan_back`);
3. write ORIGINAL's file again with only those tensors' bytes replaced: every non-tensor entry
   (configs, ``argparse.Namespace``, optimizer state, step counters) and every tensor the forward
   conversion dropped (distillation heads, EMA teacher) is kept exactly as it was.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ..errors import SourceError
from ..io.load import load_source
from ..rules.model import RuleSet
from .folder import hf_folder
from .original_format import atomic_file, is_zip, rewrite_safetensors, rewrite_zip
from .plan import RevertSummary, plan_back, unchanged


def revert_like(ruleset: RuleSet, hf_dir: str | Path, out: Path, like: str | Path, *, force: bool,
                source_config: str | Path | None = None) -> RevertSummary:
    hf = hf_folder(ruleset, hf_dir)
    original = load_source(ruleset.source, like, source_config)
    reversed_, summary, entries = plan_back(ruleset, original, hf, str(hf_dir))
    kept_bytes = unchanged(entries, summary.lossy, original.tensors, hf)
    reversed_ = {k: r for k, r in reversed_.items() if k not in kept_bytes}
    lossy = [k for k in summary.lossy if k not in kept_bytes]
    if original.path is None:
        raise SourceError("--like must be a checkpoint file", str(like))
    writer = rewrite_zip if is_zip(original.path) else rewrite_safetensors
    atomic_file(out, force, partial(writer, original, reversed_, hf))
    return RevertSummary(out, summary.rebuilt, summary.kept, [], lossy, summary.left)

