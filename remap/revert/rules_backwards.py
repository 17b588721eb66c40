"""The source keys and shapes a transformers folder was converted from, read off the rules backwards.

Without ``--like``, a reverse conversion has no original checkpoint to list its keys. Each rule's
targets are templates: matching every HF_DIR key against them gives the captures, and rendering
the rule's source patterns with those captures gives the source keys. Arithmetic placeholders are
solved (``{b - 1}`` gives b; ``{i // 3}`` with ``{i % 3}`` gives i). Shapes come from each op's
inverse applied to the target's shape.

The listing is a hypothesis: `from_rules` plans it forward again and insists that the plan gives
exactly HF_DIR's keys and shapes, so a wrong inversion is refused, never written. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import RemapError
from ..ops import ShapeError
from ..rules.model import Rule, RuleSet
from ..rules.patterns import Placeholder, Template
from ..rules.reversibility import pinned
from ..tensors import TensorInfo

_TOKEN = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^{}]*)?\}")


def synthesize(ruleset: RuleSet, hf: Mapping[str, TensorInfo], env: Mapping[str, Any]) -> dict[str, TensorInfo]:
    """Every source key (with shape and dtype) that the rules would turn into HF_DIR's keys.

    Two rules that would make the same target from differently named sources leave the original's
    names unknown: that is refused, naming both rules (their ``when`` conditions must tell them apart).
    """
    listing: dict[str, TensorInfo] = {}
    hf = {key: info for key, info in hf.items() if not _initialised(ruleset, key, env)}
    claimed: dict[str, tuple[Rule, frozenset[str]]] = {}
    for rule in ruleset.rules:
        if rule.target is None:
            continue
        for found, members in _instances(rule, hf).items():
            captures = _pin(rule, dict(found), env)
            sources = {key: info for key, info in _sources(rule, captures, members, env).items()
                       if _fires(rule, key, info, env)}
            if not sources:
                continue
            _claim(claimed, rule, {member[0] for member in members.values()}, frozenset(sources))
            for key, info in sources.items():
                if key in listing and listing[key] != info:
                    raise RemapError(f"rule '{rule.label}' ({rule.loc}) and another rule disagree about source key "
                                     f"'{key}'; this rule file cannot be reversed without --like")
                listing[key] = info
    return listing


def _pin(rule: Rule, captures: dict[str, str], env: Mapping[str, Any]) -> dict[str, str]:
    """Captures the targets do not keep, taken from the condition that pins them (``b == n_enc + 2``)."""
    for name in rule.pattern.captures:
        pin = pinned(rule.when, name) if name not in captures else None
        if pin is not None:
            captures[name] = str(pin.evaluate({**env, **rule.pattern.typed(captures)}))
    return captures


def _claim(claimed: dict[str, tuple[Rule, frozenset[str]]], rule: Rule, made: set[str],
           sources: frozenset[str]) -> None:
    for target in sorted(made):
        other = claimed.setdefault(target, (rule, sources))
        if other[1] != sources:
            raise RemapError(f"'{target}' could come from {sorted(other[1])[0]} (rule '{other[0].label}', "
                             f"{other[0].loc}) or from {sorted(sources)[0]} (rule '{rule.label}', {rule.loc}); the "
                             "rules read backwards cannot tell which names the original had; pass --like a "
                             "checkpoint of the same architecture")


def _initialised(ruleset: RuleSet, key: str, env: Mapping[str, Any]) -> bool:
    """Whether an ``init`` entry makes this target key (so no source tensor did)."""
    for init in ruleset.inits:
        captures = init.pattern.match(key)
        if captures is not None and (init.when is None or init.when.evaluate({**env, **init.pattern.typed(captures)})):
            return True
    return False


def _fires(rule: Rule, key: str, info: TensorInfo, env: Mapping[str, Any]) -> bool:
    """Whether the rule's ``when`` holds for a source key it would be given (the forward plan checks again)."""
    if rule.when is None:
        return True
    for pattern in rule.patterns:
        captures = pattern.match(key)
        if captures is not None:
            names = {**env, "shape": tuple(info.shape), "dtype": info.dtype, **pattern.typed(captures)}
            return bool(rule.when.evaluate(names))
    return True


def _instances(rule: Rule, hf: Mapping[str, TensorInfo]) -> dict[tuple[tuple[str, str], ...], dict[int, Any]]:
    """HF keys a rule's targets match, grouped by the source captures they give: {captures: {output: (key, info)}}."""
    regexes = [(o, rule.target_regex(out.template), out.template) for o, out in enumerate(rule.targets)]
    index = rule.structure.index
    found: dict[tuple[tuple[str, str], ...], dict[int, Any]] = {}
    for key, info in hf.items():
        for o, regex, template in regexes:
            match = regex.fullmatch(key)
            if match is None:
                continue
            captures = _solve(rule, template, match)
            slot: Any = o
            if index is not None:
                slot = int(captures.pop(index))
            found.setdefault(tuple(sorted(captures.items())), {})[slot] = (key, info)
    return found


def _solve(rule: Rule, template: Template, match: re.Match[str]) -> dict[str, str]:
    """Source captures from one matched target key (arithmetic placeholders solved back)."""
    values: dict[str, str] = {}
    divmods: dict[str, dict[str, tuple[int, int]]] = {}
    for n, part in enumerate(template.parts):
        if not isinstance(part, Placeholder):
            continue
        if part.tree is None:
            _agree(values, part.text, match.group(f"c_{part.text}_{n}"), rule)
            continue
        number = int(match.group(f"p_{n}"))
        affine, dm = part.affine(), part.divmod_part()
        if affine is not None:
            name, a, b = affine
            if (number - b) % a:
                raise RemapError(f"target index {{{part.text}}} = {number} has no integer source index (rule "
                                 f"'{rule.label}', {rule.loc})")
            _agree(values, name, str((number - b) // a), rule)
        elif dm is not None:
            divmods.setdefault(dm[0], {})[dm[1]] = (dm[2], number)
    for name, parts in divmods.items():
        if set(parts) == {"//", "%"} and parts["//"][0] == parts["%"][0]:
            _agree(values, name, str(parts["//"][0] * parts["//"][1] + parts["%"][1]), rule)
    return values


def _agree(values: dict[str, str], name: str, value: str, rule: Rule) -> None:
    """Record a capture's value; two placeholders of one target must give it the same value."""
    old = values.get(name)
    if old is not None and (int(old) != int(value) if old.isdigit() and value.isdigit() else old != value):
        raise RemapError(f"rule '{rule.label}' ({rule.loc}): a target gives '{name}' two values")
    values.setdefault(name, value)


def _render(pattern_text: str, captures: Mapping[str, str], rule: Rule) -> str:
    if "*" in pattern_text:
        raise RemapError(f"rule '{rule.label}' ({rule.loc}) has a wildcard, so its source keys cannot be named "
                         "without --like")
    try:
        return _TOKEN.sub(lambda m: captures[m.group(1)], pattern_text)
    except KeyError as exc:
        raise RemapError(f"rule '{rule.label}' ({rule.loc}) does not keep capture {exc} in its targets, so its "
                         "source keys cannot be named without --like") from None


def _sources(rule: Rule, captures: dict[str, str], members: dict[int, Any],
             env: Mapping[str, Any]) -> dict[str, TensorInfo]:
    """The source keys and shapes of one rule instance, from the HF tensors it produced."""
    structure = rule.structure
    names = {**env, **{k: int(v) if k in rule.pattern.int_captures else v for k, v in captures.items()}}
    wanted = set(members) if structure.index is not None else set(range(len(rule.targets)))
    if set(members) != wanted:
        missing = sorted(wanted - set(members))
        raise RemapError(f"rule '{rule.label}' ({rule.loc}): HF_DIR lacks some of its targets (output {missing}) "
                         f"for {captures}")
    try:
        parts = [_undo_ops(rule, slot, members[slot][1], names) for slot in sorted(members)]
        combined = structure.combined_from(parts)
        if structure.over is not None:
            n, shape = structure.over_sources(combined, names)
            return {_render(rule.pattern.text, {**captures, structure.over: str(i)}, rule): TensorInfo(shape,
                                                                                                      combined.dtype)
                    for i in range(n)}
        shapes = structure.source_shapes(combined, len(rule.patterns), names)
    except ShapeError as exc:
        raise RemapError(f"rule '{rule.label}' ({rule.loc}) {exc}") from None
    keys = [_render(p.text, captures, rule) for p in rule.patterns]
    return {key: TensorInfo(shape, combined.dtype) for key, shape in zip(keys, shapes, strict=True)}


def _undo_ops(rule: Rule, slot: int, info: TensorInfo, names: Mapping[str, Any]) -> TensorInfo:
    """A target's shape before its own ops and the rule's ops (inverses applied last-first)."""
    output = rule.targets[0 if rule.structure.index is not None else slot]
    for op in reversed((*rule.ops, *output.ops)):
        inverse = op.inverse()
        if inverse is None:
            raise ShapeError(op.why_not_reversible())
        for step in inverse.steps(names, info):
            info = step.info(info)
    return info
