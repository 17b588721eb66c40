"""``remap revert``: a transformers folder back into its original framework's checkpoint, from the same rules.

With ``--like ORIGINAL`` (a checkpoint of the same architecture, usually the one that was converted):

1. plan the forward conversion of ORIGINAL against HF_DIR's own keys and shapes (so a folder of
   another architecture is refused before anything is written);
2. read each source tensor's reverse recipe off that plan (remap.reverse);
3. write ORIGINAL's file again with only those tensors' bytes replaced: every non-tensor entry
   (configs, ``argparse.Namespace``, optimizer state, step counters) and every tensor the forward
   conversion dropped (distillation heads, EMA teacher) is kept exactly as it was.

The output has ORIGINAL's format: a torch zip checkpoint is rewritten member by member (the object
graph ``data.pkl`` byte for byte), a safetensors file key by key. Without ``--like``, the rule file's
``target.reverse`` section builds a new checkpoint (remap.revert_new). Writes are atomic and stream
one tensor at a time.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

from . import catalog
from .diagnostics import Diagnostic
from .errors import OutputError, RemapError, SourceError
from .expand import Entry
from .io.execute import produce
from .io.readers import read_checkpoint
from .io.source import Source, StoredTensor
from .io.torchzip import ZipWriter, member_data
from .io.writer import OutTensor, open_empty, write_safetensors
from .pipeline import load_source
from .planner import InitEntry, plan
from .reverse import Reverse, reverse
from .rules.model import RuleSet
from .tensors import TensorInfo, itemsize

# config.json entries that describe the file rather than the model
IGNORED_CONFIG: Final = frozenset({"architectures", "transformers_version", "_name_or_path"})
# transformers writes weight-norm parameters under either name, depending on its version and the model
WEIGHT_NORM_ALIASES: Final = (("parametrizations.weight.original0", "weight_g"),
                              ("parametrizations.weight.original1", "weight_v"))


@dataclass(frozen=True)
class RevertSummary:
    out: Path
    rebuilt: int  # source tensors rebuilt from HF_DIR
    kept: list[str] = field(default_factory=list)  # tensors taken back from --like unchanged
    absent: list[str] = field(default_factory=list)  # dropped by the forward conversion, not restored
    lossy: list[str] = field(default_factory=list)  # rebuilt by a numeric inverse (equivalent, not the same bytes)
    left: list[str] = field(default_factory=list)  # randomly initialised by the conversion: the original has none


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
    from .target import build_target, check_target_size

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


def revert(rules: RuleSet | str | Path, hf_dir: str | Path, out: str | Path, *, like: str | Path | None = None,
           force: bool = False, source_config: str | Path | None = None) -> RevertSummary:
    """Write HF_DIR back as the original framework's checkpoint at ``out`` (strict; atomic)."""
    ruleset = catalog.load(rules)
    out = Path(out)
    check_output_file(out, force, [Path(hf_dir), *([Path(like)] if like else [])])
    if like is None:
        from .revert_new import revert_without_like

        return revert_without_like(ruleset, hf_dir, out, force=force, source_config=source_config)
    hf = hf_folder(ruleset, hf_dir)
    original = load_source(ruleset, like, source_config)
    reversed_, summary, entries = plan_back(ruleset, original, hf, str(hf_dir))
    kept_bytes = unchanged(entries, summary.lossy, original.tensors, hf)
    reversed_ = {k: r for k, r in reversed_.items() if k not in kept_bytes}
    lossy = [k for k in summary.lossy if k not in kept_bytes]
    if original.path is None:
        raise SourceError("--like must be a checkpoint file", str(like))
    writer = _rewrite_zip if _is_zip(original.path) else _rewrite_safetensors
    atomic_file(out, force, partial(writer, original, reversed_, hf))
    return RevertSummary(out, summary.rebuilt, summary.kept, [], lossy, summary.left)


def plan_back(ruleset: RuleSet, original: Source, hf: Mapping[str, StoredTensor],
              hf_name: str) -> tuple[dict[str, Reverse], RevertSummary, Sequence[Entry]]:
    """Forward-plan ORIGINAL against HF_DIR's keys and shapes, then read the way back off the plan."""
    env = ruleset.environment(original.config, {k: tuple(v.shape) for k, v in original.infos.items()})
    hf_infos = {k: t.info for k, t in hf.items()}
    result = plan(ruleset, original.infos, env, hf_infos, source_name=original.name, target_name=hf_name)
    problems = [p for p in result.problems if not alias_only(p, hf_infos)]
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise RemapError(f"{hf_name} is not a conversion of a checkpoint like {original.name}: "
                         f"{problems[0].where}: {problems[0].message}{more}; pass a checkpoint of the same "
                         "architecture as --like")
    try:
        steps = {r.source: r for r in reverse(result.entries, original.infos)}
    except ValueError as exc:
        raise RemapError(f"cannot run this conversion backwards: {exc}", hf_name) from None
    kept = sorted(d.source for d in result.drops)
    lossy = sorted(k for k, r in steps.items() if not r.exact)
    left = check_inits(result.inits, hf, hf_name)
    return steps, RevertSummary(Path(), len(steps), kept, [], lossy, left), result.entries


def check_inits(inits: Sequence[InitEntry], hf: Mapping[str, StoredTensor], hf_name: str) -> list[str]:
    """Refuse a folder in which a tensor the conversion initialised (an identity projection the original
    model does not have) was changed: the original cannot express the change. Random fills are only ever
    training-time parameters; they are returned, to be named as left behind."""
    from .io.fills import init_tensor

    left = []
    for init in inits:
        tensor = hf[init.target]
        if init.init.fill == "uniform":
            left.append(init.target)
            continue
        made = init_tensor(init.target, tensor.info, init.init.fill)
        if made.tobytes() != tensor.read().tobytes():
            raise RemapError(f"'{init.target}' is no longer the {init.init.fill} fill the conversion wrote "
                             f"({init.init.loc}); the original model has no such tensor, so this change cannot be "
                             "carried back", hf_name)
    return sorted(left)


def unchanged(entries: Sequence[Entry], lossy: Sequence[str], original: Mapping[str, StoredTensor],
              hf: Mapping[str, StoredTensor]) -> set[str]:
    """Sources only a numeric inverse could rebuild whose targets HF_DIR holds exactly as ORIGINAL converts.

    A weight-norm fold loses the split of ``w`` into ``g`` and ``v``; when the folded target is the same
    bytes ORIGINAL's own ``g`` and ``v`` give, those are kept, so an unchanged tensor round-trips exactly.
    """
    wanted = set(lossy)
    by_source: dict[str, list[Entry]] = {}
    for entry in entries:
        if wanted.intersection(entry.recipe.inputs):
            for key in entry.recipe.inputs:
                by_source.setdefault(key, []).append(entry)
    return {key for key in wanted if by_source.get(key) and all(_same(e, original, hf) for e in by_source[key])}


def _same(entry: Entry, original: Mapping[str, StoredTensor], hf: Mapping[str, StoredTensor]) -> bool:
    """Whether HF_DIR's target is byte for byte what the forward recipe makes of ORIGINAL."""
    made = _bytes_of(produce(entry.recipe, original), materialize=True)
    return bytes(memoryview(made).cast("B")) == hf[entry.target].read().tobytes()


def alias_only(problem: Diagnostic, hf: Mapping[str, TensorInfo]) -> bool:
    """A target key HF_DIR also holds under its alias is not really missing."""
    return "is not produced by any rule" in problem.message and any(
        problem.key.endswith("." + a) and (problem.key[: -len(a)] + b) in hf
        for pair in WEIGHT_NORM_ALIASES for a, b in (pair, pair[::-1]))


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _rewrite_zip(original: Source, steps: Mapping[str, Reverse], hf: Mapping[str, StoredTensor], tmp: Path) -> None:
    """ORIGINAL's zip again, member by member: storages of rebuilt tensors replaced, all else copied."""
    assert original.path is not None
    by_start: dict[int, list[tuple[str, StoredTensor]]] = {}
    for key, tensor in original.tensors.items():
        if key in steps:
            by_start.setdefault(tensor.storage.start, []).append((key, tensor))
    fd = open_empty(tmp)
    try:
        archive = ZipWriter(fd)
        for name, span in member_data(original.path):
            views = by_start.get(span.start)
            archive.add(name, span if views is None else _storage(span.length, views, steps, hf))
        archive.close()
    finally:
        os.close(fd)


def _storage(length: int, views: list[tuple[str, StoredTensor]], steps: Mapping[str, Reverse],
             hf: Mapping[str, StoredTensor]) -> Any:
    """One storage's new bytes: a rebuilt tensor that is the whole storage streams; else scatter into a copy."""
    import numpy as np
    from numpy.lib.stride_tricks import as_strided

    if len(views) == 1:
        key, tensor = views[0]
        if tensor.offset == 0 and tensor.nbytes == length and tensor.contiguous_span() is not None:
            return _bytes_of(produce(steps[key].recipe, hf))
    storage = views[0][1]
    data = np.frombuffer(bytearray(_read_span(storage.storage.path, storage.storage.start, length)), dtype=np.uint8)
    for key, tensor in views:
        size = itemsize(tensor.info.dtype)
        new = np.frombuffer(memoryview(_bytes_of(produce(steps[key].recipe, hf), materialize=True)).cast("B"),
                            dtype=np.uint8)
        target = as_strided(data[tensor.offset * size:], shape=(*tensor.info.shape, size),
                            strides=(*(s * size for s in tensor._strides()), 1))
        target[...] = new.reshape(*tensor.info.shape, size)
    return data


def _bytes_of(payload: Any, materialize: bool = False) -> Any:
    """A payload as the zip writer takes it (spans stay spans unless ``materialize``)."""
    from .io.writer import FileSpan, Parts

    if isinstance(payload, (FileSpan, Parts)):
        if not materialize:
            return payload
        spans = payload.spans if isinstance(payload, Parts) else (payload,)
        return bytearray(b"".join(_read_span(s.path, s.start, s.length) for s in spans))
    if type(payload).__module__.startswith("torch"):
        import torch

        return payload.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    return payload


def _read_span(path: Path, start: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, length, start)
    finally:
        os.close(fd)
    if len(data) != length:
        raise SourceError("file ended early (changed while converting?)", path.name)
    return data


def _rewrite_safetensors(original: Source, steps: Mapping[str, Reverse], hf: Mapping[str, StoredTensor],
                         tmp: Path) -> None:
    """ORIGINAL's safetensors keys in their order: rebuilt tensors from HF_DIR, dropped ones kept."""
    from .io.readers.safetensors import read_header
    from .io.writer import FileSpan

    assert original.path is not None
    stored, metadata = read_header(original.path)
    tensors = []
    for key, tensor in stored.items():
        if key in steps:
            tensors.append(OutTensor(key, tensor.info, partial(produce, steps[key].recipe, hf)))
        else:
            span = tensor.contiguous_span()
            assert span is not None
            tensors.append(OutTensor(key, tensor.info, partial(FileSpan, tensor.storage.path, span[0], span[1])))
    write_safetensors(tmp, tensors, metadata)


def check_output_file(out: Path, force: bool, inputs: list[Path]) -> None:
    """The reverted checkpoint goes to a file: refuse a folder, an existing file without force, or an input."""
    if out.is_dir():
        raise OutputError("the output is a folder; revert writes one checkpoint file, name it", str(out))
    if out.exists() and not force:
        raise OutputError("output file already exists; pass --force to replace it", str(out))
    for path in inputs:
        if path.exists() and out.exists() and os.path.samefile(path, out):
            raise OutputError("the output would replace an input; choose another file", str(out))
    if not out.absolute().parent.is_dir():
        raise OutputError(f"folder {out.absolute().parent} does not exist", str(out))


def atomic_file(out: Path, force: bool, fill: Callable[[Path], None]) -> None:
    """Run ``fill(tmp)`` on a temporary file beside ``out``, then rename it into place."""
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.remap-{os.getpid()}-", dir=out.absolute().parent)
    os.close(fd)
    tmp = Path(name)
    try:
        fill(tmp)
        os.chmod(tmp, 0o644)
        if out.exists() and not force:
            raise OutputError("output file appeared while writing; pass --force to replace it", str(out))
        os.replace(tmp, out)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f"writing failed: {exc.strerror or exc}", str(out)) from exc
        raise


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
