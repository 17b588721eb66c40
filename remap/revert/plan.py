"""Planning backwards: for every source tensor, the recipe that rebuilds it from the targets.

The forward plan already knows everything with concrete numbers: which source keys
went into which targets, through which combine and steps, with every shape. So the
reverse of each forward group is read off it, step by step, each step inverted
next to its definition here:

    permute(p)  <-> permute(argsort p)        reshape(new) <-> reshape(old shape)
    squeeze(d)  <-> unsqueeze(d)              cast(t)      <-> cast(old dtype)   (lossy)
    split (slices of one input)    <-> concat of the parts
    unstack (selects)              <-> stack
    tie (identical copies)         <-> dedup (copies must be identical)
    concat / stack / dedup         <-> slice / select / copy of the one target
    fold_weight_norm(g, v)         <-> unfold: g = norm_except(w), v = w      (numeric)

Each reverse recipe says whether it is exact. `plan_back` plans the forward conversion of an original
checkpoint against a transformers folder and reads the way back off that plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RemapError
from ..expand import Entry
from ..io.execute import materialize, produce
from ..io.source import Source, StoredTensor
from ..planner import InitEntry, plan
from ..recipes import Recipe, ShapeError, Step, step_shape
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

PARTS = ("slice", "select", "norm_except")  # a forward step that takes part of its input (only ever first)


@dataclass(frozen=True)
class Reverse:
    """One source tensor rebuilt from targets: its key, shape and dtype, and the recipe.

    ``exact`` is False when the forward recipe was numeric (a weight-norm fold, a cast):
    the rebuilt tensor is then equivalent (the same model), not the same bytes.
    """

    source: str
    info: TensorInfo
    recipe: Recipe
    exact: bool = True


def invert_steps(steps: Sequence[Step], info: TensorInfo) -> tuple[Step, ...]:
    """Steps that take a tensor from after ``steps`` back to ``info`` (its shape and dtype before them)."""
    shapes, dtypes = [tuple(info.shape)], [info.dtype]
    for step in steps:
        shapes.append(step_shape(step, shapes[-1]))
        dtypes.append(str(step.args[0]) if step.kind == "cast" else dtypes[-1])
    undo = []
    for i in reversed(range(len(steps))):
        undo.append(_undo(steps[i], shapes[i], shapes[i + 1], dtypes[i]))
    return tuple(undo)


def _undo(step: Step, before: tuple[int, ...], after: tuple[int, ...], dtype: str) -> Step:
    args = [int(a) for a in step.args] if step.kind != "cast" else []
    if step.kind == "permute":
        dims = [a % len(before) for a in args]
        return Step("permute", tuple(dims.index(i) for i in range(len(dims))))
    if step.kind == "reshape":
        return Step("reshape", before)
    if step.kind == "squeeze":
        return Step("unsqueeze", (args[0] % len(before),))
    if step.kind == "unsqueeze":
        return Step("squeeze", (args[0] % len(after),))
    if step.kind == "cast":
        return Step("cast", (dtype,))
    raise ShapeError(f"{step} takes part of its input; only a split, unstack or unfold can start with it")


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
        prepped = [_after(recipe.input_steps(i), info) for i, info in enumerate(infos)]
        if recipe.combine.kind == "single":
            combined = _one_input(group, prepped[0])
            undo = invert_steps(recipe.input_steps(0), infos[0])
            exact = all(e.recipe.exact for e in group)
            found.append(Reverse(recipe.inputs[0], infos[0], _then(combined, undo), exact))
        else:
            found += _many_inputs(group[0], infos, prepped)
    return sorted(found, key=lambda r: r.source)


def _after(steps: Sequence[Step], info: TensorInfo) -> TensorInfo:
    shape, dtype = tuple(info.shape), info.dtype
    for step in steps:
        shape = step_shape(step, shape)
        dtype = str(step.args[0]) if step.kind == "cast" else dtype
    return TensorInfo(shape, dtype)


def _then(recipe: Recipe, steps: tuple[Step, ...]) -> Recipe:
    return Recipe(recipe.inputs, recipe.combine, recipe.steps + steps, recipe.prep)


def _one_input(group: list[Entry], combined: TensorInfo) -> Recipe:
    """The one tensor a group of outputs came from: a copy, a tie, a split, an unstack or an unfold."""
    heads = {e.recipe.steps[0].kind for e in group if e.recipe.steps and e.recipe.steps[0].kind in PARTS}
    if not heads:  # a rename, or identical copies (a tie): any copy will do, but they must agree
        undo = tuple(invert_steps(e.recipe.steps, combined) for e in group)
        combine = Step("dedup") if len(group) > 1 else Step("single")
        return Recipe(tuple(e.target for e in group), combine, (), undo if any(undo) else ())
    parts = [_Part(e, e.recipe.steps[0], e.recipe.steps[1:]) for e in group if e.recipe.steps]
    if heads == {"norm_except"} and len(group) == 2:
        (g,), (v,) = parts, [e for e in group if not e.recipe.steps or e.recipe.steps[0].kind not in PARTS]
        undo_v = invert_steps(v.recipe.steps, combined)
        return Recipe((g.entry.target, v.target), Step("fold_weight_norm", (int(g.head.args[0]),)), (),
                      (g.undo(combined), undo_v))
    if heads in ({"slice"}, {"select"}) and len(parts) == len(group):
        parts.sort(key=lambda p: int(p.head.args[1]))
        combine = Step("concat" if heads == {"slice"} else "stack", (int(parts[0].head.args[0]),))
        return Recipe(tuple(p.entry.target for p in parts), combine, (), tuple(p.undo(combined) for p in parts))
    raise ShapeError(f"outputs {[e.target for e in group]} were made from '{group[0].source}' in a way that "
                     "cannot be undone")


@dataclass(frozen=True)
class _Part:
    """An output made from part of its input (a slice, a selection, a norm), then ``tail`` steps."""

    entry: Entry
    head: Step
    tail: tuple[Step, ...]

    def undo(self, combined: TensorInfo) -> tuple[Step, ...]:
        return invert_steps(self.tail, TensorInfo(step_shape(self.head, tuple(combined.shape)), combined.dtype))


def _many_inputs(entry: Entry, infos: list[TensorInfo], prepped: list[TensorInfo]) -> list[Reverse]:
    """Each input of a concat, stack, dedup or fold, taken back out of its one target."""
    recipe, kind = entry.recipe, entry.recipe.combine.kind
    combined = _combined(recipe, prepped)
    undo = invert_steps(recipe.steps, combined)
    found = []
    offset = 0
    for i, (key, info, mid) in enumerate(zip(recipe.inputs, infos, prepped, strict=True)):
        own = invert_steps(recipe.input_steps(i), info)
        dim = int(recipe.combine.args[0]) % len(combined.shape) if recipe.combine.args else 0
        if kind == "concat":
            part: tuple[Step, ...] = (Step("slice", (dim, offset, offset + mid.shape[dim])),)
            offset += mid.shape[dim]
        elif kind == "stack":
            part = (Step("select", (dim, i)),)
        elif kind == "fold_weight_norm":
            part = (Step("norm_except", (dim,)),) if i == 0 else ()
        else:  # dedup: every input was the same tensor
            part = ()
        found.append(Reverse(key, info, Recipe((entry.target,), Step("single"), undo + part + own),
                             recipe.exact))
    return found


def _combined(recipe: Recipe, prepped: list[TensorInfo]) -> TensorInfo:
    from ..recipes import combine_shape

    return TensorInfo(combine_shape(recipe.combine, [tuple(p.shape) for p in prepped]), prepped[0].dtype)


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
