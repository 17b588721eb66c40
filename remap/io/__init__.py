"""Everything that touches files and bytes: checkpoints in, safetensors folders out.

    source       the source interface: Checkpoint, Source, StoredTensor (where bytes are), Record;
                 select_source() picks a rule file's layout
    readers/     file -> Checkpoint without torch: restricted unpickler, zip + legacy, safetensors, indexes
    execute      one output tensor's bytes from its recipe: file spans, views, raw elements, numbers
    fills        initialised tensors (identity, zeros, seeded uniform...)
    writer       the safetensors format, streamed one tensor at a time (file-to-file copies)
    shards       numbered shards plus model.safetensors.index.json
    outdir       the output folder: destination policy, atomic swap into place
    hub          a rule file's default checkpoint through huggingface_hub's cache

IO sits beside planning: it never imports the planner, the target or the
pipeline. The pipeline joins a plan to these functions.
"""

from __future__ import annotations

from .readers import read_checkpoint
from .source import Checkpoint, Record, Source, StoredTensor, select_source

__all__ = ["Checkpoint", "Record", "Source", "StoredTensor", "read_checkpoint", "select_source"]
