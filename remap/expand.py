"""From fired rules to output tensors: group multi-source matches, render targets, resolve ops.

A rename gives one `Entry` per source key. A structural rule groups the keys that
fired it (listed sources sharing captures, or every value of an ``over`` capture),
checks the group is complete, and gives one Entry per target, each with the
`Recipe` (remap.ops.recipe) that makes it and the shape it will have. Pure: no
tensor data is read. Every problem is collected, at the rule's ``file:line``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .diagnostics import Diagnostic
from .errors import Loc, RuleError
from .ops import Recipe, ShapeError, Single, Step, TensorOp, output_info
from .ops.base import info_after
from .ops.cast import Cast
from .ops.rename import Rename
from .rules.model import Rule
from .tensors import DTYPES, TensorInfo


@dataclass(frozen=True)
class Entry:
    """One output tensor: the source keys it is made from, the rule, and the recipe."""

    sources: tuple[str, ...]
    target: str
    info: TensorInfo  # the output's shape and dtype
    rule: Rule
    recipe: Recipe

    @property
    def source(self) -> str:
        """The first source key (the only one, for a rename)."""
        return self.sources[0]

    @property
    def cast(self) -> str | None:
        return self.rule.cast


def problem(key: str, where: str | Loc, message: str) -> Diagnostic:
    """A plan problem about ``key``, located at a rule (``file:line``) or a file."""
    if isinstance(where, Loc):
        return Diagnostic(where.file, message, "error", key, where.line)
    return Diagnostic(where, message, "error", key)


@dataclass(frozen=True)
class Match:
    """A source key that fired ``rule`` through its source pattern number ``position``."""

    key: str
    captures: dict[str, str]
    position: int


@dataclass(frozen=True)
class Group:
    """The keys one rule instance takes, in input order, and the captures its targets render from."""

    keys: tuple[str, ...]
    captures: dict[str, str]


def expand(rule: Rule, matches: list[Match], infos: Mapping[str, TensorInfo], env: Mapping[str, Any],
           problems: list[Diagnostic]) -> list[Entry]:
    """Every output of ``rule`` for the source keys that fired it."""
    if _plain(rule):
        return _renames(rule, matches, infos, problems)
    entries: list[Entry] = []
    for group in _groups(rule, matches, problems):
        unstorable = [k for k in group.keys if (rule.cast or infos[k].dtype) not in DTYPES]
        if unstorable:
            problems.append(_unstorable(rule, unstorable[0], infos[unstorable[0]]))
            continue
        try:
            entries += _outputs(rule, group, [infos[k] for k in group.keys], env)
        except (ShapeError, RuleError) as exc:
            problems.append(_cannot(rule, group.keys, exc.message if isinstance(exc, RuleError) else str(exc)))
    return entries


def _unstorable(rule: Rule, key: str, info: TensorInfo) -> Diagnostic:
    return problem(key, rule.loc, f"'{key}' has dtype {info.dtype}, which safetensors cannot store; add a cast")


def _cannot(rule: Rule, keys: tuple[str, ...] | list[str], message: str) -> Diagnostic:
    listed = ", ".join(f"'{k}'" for k in keys)
    return problem(keys[0], rule.loc, f"rule '{rule.label}' cannot make its targets from {listed}: {message}")


def _plain(rule: Rule) -> bool:
    """A rename: one source, one target, no ops (most rules; planned without building shapes step by step)."""
    return not rule.sources and not rule.outputs and isinstance(rule.structure, Rename) and rule.target is not None


def _renames(rule: Rule, matches: list[Match], infos: Mapping[str, TensorInfo],
             problems: list[Diagnostic]) -> list[Entry]:
    assert rule.target is not None
    entries = []
    for m in matches:
        info = infos[m.key]
        if (rule.cast or info.dtype) not in DTYPES:
            problems.append(_unstorable(rule, m.key, info))
            continue
        try:
            target = rule.target.render(m.captures)
        except RuleError as exc:
            problems.append(_cannot(rule, [m.key], exc.message))
            continue
        cast = rule.cast if rule.cast is not None and rule.cast != info.dtype else None
        recipe = Recipe((m.key,), Single(), (Cast(cast),) if cast else ())
        entries.append(Entry((m.key,), target, TensorInfo(tuple(info.shape), cast or info.dtype), rule, recipe))
    return entries


def _groups(rule: Rule, matches: list[Match], problems: list[Diagnostic]) -> list[Group]:
    structure = rule.structure
    if structure.over is not None:
        return _groups_over(rule, structure.over, matches, problems)
    if len(rule.patterns) > 1:
        return _groups_listed(rule, matches, problems)
    return [Group((m.key,), m.captures) for m in matches]


def _groups_listed(rule: Rule, matches: list[Match], problems: list[Diagnostic]) -> list[Group]:
    """Keys of listed source patterns that share their captures form one group, in pattern order."""
    by_captures: dict[tuple[tuple[str, str], ...], dict[int, list[str]]] = {}
    for m in matches:
        by_captures.setdefault(tuple(sorted(m.captures.items())), {}).setdefault(m.position, []).append(m.key)
    groups = []
    for captures, slots in sorted(by_captures.items()):
        doubled = [keys for keys in slots.values() if len(keys) > 1]
        missing = [p.text for i, p in enumerate(rule.patterns) if i not in slots]
        first = next(iter(slots.values()))[0]
        if doubled:
            problems.append(problem(first, rule.loc, f"rule '{rule.label}': keys {sorted(doubled[0])} both fill "
                                                     "one source slot; make the pattern more specific"))
        elif missing:
            problems.append(problem(first, rule.loc, f"rule '{rule.label}': '{first}' has no partner for "
                                                     f"{', '.join(repr(t) for t in missing)} (with "
                                                     f"{dict(captures)})"))
        else:
            groups.append(Group(tuple(slots[i][0] for i in range(len(rule.patterns))), dict(captures)))
    return groups


def _groups_over(rule: Rule, over: str, matches: list[Match], problems: list[Diagnostic]) -> list[Group]:
    """Keys that differ only in the ``over`` capture form one group, in index order 0..n-1."""
    by_rest: dict[tuple[tuple[str, str], ...], dict[int, list[str]]] = {}
    for m in matches:
        rest = tuple(sorted((k, v) for k, v in m.captures.items() if k != over))
        by_rest.setdefault(rest, {}).setdefault(int(m.captures[over]), []).append(m.key)
    groups = []
    for rest, members in sorted(by_rest.items()):
        indices = sorted(members)
        first = members[indices[0]][0]
        doubled = [keys for keys in members.values() if len(keys) > 1]
        if doubled:
            problems.append(problem(first, rule.loc, f"rule '{rule.label}': keys {sorted(doubled[0])} have the "
                                                     f"same index '{over}'"))
        elif indices != list(range(len(indices))):
            gaps = sorted(set(range(indices[-1] + 1)) - set(indices))
            problems.append(problem(first, rule.loc, f"rule '{rule.label}': the '{over}' indices are not "
                                                     f"0..{indices[-1]} without gaps (missing {gaps[:5]}; "
                                                     f"first key '{first}')"))
        else:
            groups.append(Group(tuple(members[i][0] for i in indices), dict(rest)))
    return groups


def _outputs(rule: Rule, group: Group, infos: list[TensorInfo], env: Mapping[str, Any]) -> list[Entry]:
    structure, captures = rule.structure, group.captures
    names = {**env, **_typed(rule, captures)}
    combine = structure.combine()
    structure.check_group(group.keys, names)
    prep = tuple(tuple(_shape_steps(ops, names, info)) for ops, info in
                 zip(rule.source_ops or [()] * len(infos), infos, strict=True))
    prepped = [info_after(own, info) for own, info in zip(prep, infos, strict=True)]
    combined = TensorInfo(combine.shape([tuple(p.shape) for p in prepped]), combine.dtype(prepped[0].dtype))
    entries = []
    for out in structure.outputs(len(rule.targets), names, combined):
        output = rule.targets[out.slot]
        steps = [*out.steps, *_shape_steps(rule.ops + output.ops, names, info_after(out.steps, combined))]
        if rule.cast is not None and rule.cast != infos[0].dtype:
            steps.append(Cast(rule.cast))
        recipe = Recipe(group.keys, combine, tuple(steps), prep if any(prep) else ())
        info = output_info(recipe, infos)
        if info.dtype not in DTYPES:
            raise ShapeError(f"dtype {info.dtype} cannot be stored in safetensors; add a cast")
        target = output.template.render({**captures, **out.captures})
        entries.append(Entry(group.keys, target, info, rule, recipe))
    return entries


def _typed(rule: Rule, captures: Mapping[str, str]) -> dict[str, Any]:
    ints = rule.pattern.int_captures
    return {k: int(v) if k in ints else v for k, v in captures.items()}


def _shape_steps(ops: tuple[TensorOp, ...], names: Mapping[str, Any], info: TensorInfo) -> list[Step]:
    """Resolve tensor ops in order; each sees the shape and dtype its input will have."""
    steps: list[Step] = []
    for op in ops:
        for step in op.steps(names, info):
            info = step.info(info)
            steps.append(step)
    return steps
