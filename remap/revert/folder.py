"""The transformers folder a reverse conversion starts from, read as ``from_pretrained`` reads it.

Its tensors by key (a weight-norm parameter saved under either of its names is found under both),
its config.json as data, and the tied keys the folder leaves out, filled from their source as the
model class says (Whisper's ``proj_out.weight`` is the token embedding).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from ..diagnostics import Diagnostic
from ..errors import SourceError
from ..io.readers import read_checkpoint
from ..io.source import StoredTensor
from ..rules.model import RuleSet
from ..tensors import TensorInfo

IGNORED_CONFIG: Final = frozenset({"architectures", "transformers_version", "_name_or_path"})
# transformers writes weight-norm parameters under either name, depending on its version and the model
WEIGHT_NORM_ALIASES: Final = (("parametrizations.weight.original0", "weight_g"),
                              ("parametrizations.weight.original1", "weight_v"))


def hf_tensors(hf_dir: str | Path, wanted: set[str] | None = None) -> dict[str, StoredTensor]:
    """HF_DIR's tensors by key; a weight-norm parameter saved under its other name is found under both."""
    checkpoint = read_checkpoint(hf_dir)
    tree = checkpoint.tree
    if not isinstance(tree, Mapping) or not all(isinstance(v, StoredTensor) for v in tree.values()):
        raise SourceError("not a transformers model folder (expected a state dict of tensors)", str(hf_dir))
    tensors: dict[str, StoredTensor] = dict(tree)
    for new, old in WEIGHT_NORM_ALIASES:
        for key in list(tensors):
            for a, b in ((new, old), (old, new)):
                if key.endswith("." + a):
                    alias = key[: -len(a)] + b
                    if alias not in tensors and (wanted is None or alias in wanted):
                        tensors[alias] = tensors[key]
    return tensors


def hf_folder(ruleset: RuleSet, hf_dir: str | Path) -> dict[str, StoredTensor]:
    """HF_DIR's tensors as from_pretrained sees them: a tied key the folder leaves out is its source's tensor.

    save_pretrained writes one copy of tied weights (Whisper's ``proj_out.weight`` is the decoder's token
    embedding); which keys are tied is the model class's knowledge, so the class is built from the folder's
    config on the meta device (no weights), after checking the folder holds the rule file's model class.
    """
    from ..target import build_target, check_target_size

    tensors = hf_tensors(hf_dir)
    config = hf_config(hf_dir)
    where = str(Path(hf_dir) / "config.json")
    wanted = ruleset.target.model_class
    if config.get("architectures", [wanted]) != [wanted]:
        named = json.dumps(config.get("architectures"))
        raise SourceError(f"'architectures' is {named[:80]}, but this rule file converts to [\"{wanted}\"]; "
                          "use the rule file of that model", where)
    values = {k: v for k, v in config.items() if k not in IGNORED_CONFIG}
    check_target_size(values, (t.info for t in tensors.values()), where)
    for key, source in build_target(wanted, (), values, where).tied.items():
        if key not in tensors and source in tensors:
            tensors[key] = tensors[source]
    return tensors

def alias_only(problem: Diagnostic, hf: Mapping[str, TensorInfo]) -> bool:
    """A target key HF_DIR also holds under its alias is not really missing."""
    return "is not produced by any rule" in problem.message and any(
        problem.key.endswith("." + a) and (problem.key[: -len(a)] + b) in hf
        for pair in WEIGHT_NORM_ALIASES for a, b in (pair, pair[::-1]))

def hf_config(hf_dir: str | Path) -> dict[str, Any]:
    """HF_DIR's config.json, read as data."""
    path = Path(hf_dir) / "config.json"
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise SourceError(f"cannot read the transformers config: {exc}", str(path)) from None
    if not isinstance(value, dict):
        raise SourceError("config.json is not a JSON object", str(path))
    return value
