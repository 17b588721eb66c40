"""Planning backwards: for every source tensor, the recipe that rebuilds it from the targets.

The forward plan already knows everything with concrete numbers: which source keys went into which
targets, through which combine and steps, with every shape. So the reverse of each forward group is
read off it, and every op says how it is undone: each `Step` its own inverse steps, each `Combine`
how an input is taken back out of its output (a concatenation's slice), and each `Structure` how
its outputs go back together (a split's parts concatenated, a tie's copies kept once). Each reverse
recipe says how exact it is.

`plan_back` plans the forward conversion of an original checkpoint against a transformers folder
and reads the way back off that plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RemapError
from ..expand import Entry
from ..io.execute import materialize, produce
from ..io.source import Source, StoredTensor
from ..ops import Recipe, Reversibility, ShapeError, Single
from ..ops.base import info_after, undo_all
from ..planner import InitEntry, plan
from ..rules.model import RuleSet
from ..tensors import TensorInfo
from .folder import alias_only


@dataclass(frozen=True)
class RevertSummary:
    """What a reverse conversion wrote (or, from `plan_back`, will write)."""

    out: Path
    rebuilt: int  # source tensors rebuilt from HF_DIR
    kept: list[str] = field(default_factory=list)  # tensors taken back from --like unchanged
    absent: list[str] = field(default_factory=list)  # dropped by the forward conversion, not restored
    lossy: list[str] = field(default_factory=list)  # rebuilt by a numeric inverse (equivalent, not the same bytes)
    left: list[str] = field(default_factory=list)  # randomly initialised by the conversion: the original has none


@dataclass(frozen=True)
class Reverse:
    """One source tensor rebuilt from targets: its key, shape and dtype, and the recipe.

    ``reversibility`` is "equivalent" when the forward recipe computed (a weight-norm fold, a cast):
    the rebuilt tensor is then the same model, not the same bytes.
    """

    source: str
    info: TensorInfo
    recipe: Recipe
    reversibility: Reversibility = "exact"

    @property
    def exact(self) -> bool:
        return self.reversibility == "exact"


def reverse(entries: Sequence[Entry], sources: Mapping[str, TensorInfo]) -> list[Reverse]:
    """The reverse recipe of every source tensor the forward ``entries`` used, sorted by source key."""
    groups: dict[tuple[object, ...], list[Entry]] = {}
    for entry in entries:
        r = entry.recipe
        groups.setdefault((r.inputs, r.combine, r.prep), []).append(entry)
    found: list[Reverse] = []
    for group in groups.values():
        recipe = group[0].recipe
        infos = [sources[key] for key in recipe.inputs]
        prepped = [info_after(recipe.input_steps(i), info) for i, info in enumerate(infos)]
        if isinstance(recipe.combine, Single):
            found.append(_one_input(group, infos[0], prepped[0]))
        else:
            found += _many_inputs(group[0], infos, prepped)
    return sorted(found, key=lambda r: r.source)


def _one_input(group: list[Entry], info: TensorInfo, combined: TensorInfo) -> Reverse:
    """The one tensor a group of outputs came from: a copy, a tie, a split, an unstack or an unfold."""
    recipe = group[0].recipe
    targets, combine, undo = group[0].rule.structure.backwards([(e.target, e.recipe.steps) for e in group],
                                                               combined)
    own = undo_all(recipe.input_steps(0), info)
    back = Recipe(targets, combine, own, undo if any(undo) else ())
    return Reverse(recipe.inputs[0], info, back, _weakest(e.recipe.reversibility for e in group))


def _many_inputs(entry: Entry, infos: list[TensorInfo], prepped: list[TensorInfo]) -> list[Reverse]:
    """Each input of a concat, stack, dedup or fold, taken back out of its one target."""
    recipe = entry.recipe
    combined = TensorInfo(recipe.combine.shape([tuple(p.shape) for p in prepped]), prepped[0].dtype)
    undo = undo_all(recipe.steps, combined)
    found = []
    for i, (key, info) in enumerate(zip(recipe.inputs, infos, strict=True)):
        own = undo_all(recipe.input_steps(i), info)
        part = recipe.combine.part(i, prepped)
        found.append(Reverse(key, info, Recipe((entry.target,), Single(), undo + part + own), recipe.reversibility))
    return found


def _weakest(found: object) -> Reversibility:
    seen = set(found)  # type: ignore[call-overload]
    return "none" if "none" in seen else "equivalent" if "equivalent" in seen else "exact"


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
    except (ValueError, ShapeError) as exc:
        raise RemapError(f"cannot run this conversion backwards: {exc}", hf_name) from None
    kept = sorted(d.source for d in result.drops)
    lossy = sorted(k for k, r in steps.items() if not r.exact)
    left = check_inits(result.inits, hf, hf_name)
    return steps, RevertSummary(Path(), len(steps), kept, [], lossy, left), result.entries


def check_inits(inits: Sequence[InitEntry], hf: Mapping[str, StoredTensor], hf_name: str) -> list[str]:
    """Refuse a folder in which a tensor the conversion initialised (an identity projection the original
    model does not have) was changed: the original cannot express the change. Random fills are only ever
    training-time parameters; they are returned, to be named as left behind."""
    from ..io.fills import init_tensor

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
    return materialize(produce(entry.recipe, original)) == hf[entry.target].read().tobytes()
