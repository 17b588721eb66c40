"""Planning: a pure function from key strings, shapes and config to a mapping.

`plan()` never reads a tensor or a file. It applies the rules to every source
key, checks the result against the target model's keys and shapes (when
given), and collects *every* problem rather than stopping at the first.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .diagnostics import Diagnostic
from .errors import RuleError
from .expand import Entry, Match, expand, problem
from .resolve import holds, resolve, tensor_names
from .rules.model import Allow, Init, Rule, RuleSet
from .tensors import TensorInfo


@dataclass(frozen=True)
class Drop:
    source: str
    rule: Rule


@dataclass(frozen=True)
class InitEntry:
    """One output tensor created from nothing (identity, zeros...)."""

    target: str
    info: TensorInfo | None  # None when planning without a target model
    init: Init


@dataclass(frozen=True)
class Plan:
    entries: tuple[Entry, ...]
    drops: tuple[Drop, ...]
    inits: tuple[InitEntry, ...]
    allowed_missing: tuple[tuple[str, str], ...]  # (target key, where)
    problems: tuple[Diagnostic, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


def plan(ruleset: RuleSet, source: Mapping[str, TensorInfo], env: Mapping[str, Any],
         target: Mapping[str, TensorInfo] | None = None, *, source_name: str = "source",
         target_name: str = "target") -> Plan:
    """Map every source key; check the result against ``target`` when it is given."""
    problems: list[Diagnostic] = []
    entries, drops = _map_sources(ruleset, source, env, problems, source_name)
    _check_duplicates(entries, problems)
    inits: list[InitEntry] = []
    allowed: list[tuple[str, str]] = []
    if target is not None:
        _check_against_target(entries, target, problems, target_name)
        produced = {e.target for e in entries}
        dtype = _main_float_dtype(entries)
        for key in sorted(set(target) - produced):
            _fill_missing(ruleset, key, target[key], dtype, env, inits, allowed, problems, target_name)
        _check_inits_exist(ruleset, env, target, produced, problems, target_name)
    else:
        inits = _literal_inits(ruleset, env)
    return Plan(tuple(sorted(entries, key=lambda e: e.target)), tuple(sorted(drops, key=lambda d: d.source)),
                tuple(inits), tuple(allowed), tuple(sorted(set(problems), key=Diagnostic.by_key)))


def _map_sources(ruleset: RuleSet, source: Mapping[str, TensorInfo], env: Mapping[str, Any],
                 problems: list[Diagnostic], source_name: str) -> tuple[list[Entry], list[Drop]]:
    """Each source key fires exactly one rule (or is dropped); then each rule makes its outputs."""
    drops: list[Drop] = []
    fired: dict[int, tuple[Rule, list[Match]]] = {}
    for key, info in source.items():
        try:
            res = resolve(ruleset, key, env, info)
        except RuleError as exc:
            problems.append(problem(key, exc.loc or exc.where or source_name, exc.message))
            continue
        if len(res.fired) > 1:
            where = " and ".join(f"'{f.rule.label}' ({f.rule.loc})" for f in res.fired)
            problems.append(problem(key, source_name, f"source key '{key}' matches {len(res.fired)} rules: "
                                                      f"{where}; make their patterns or conditions exclusive"))
        elif not res.fired:
            problems.append(problem(key, source_name, _unmapped_message(key, res.blocked)))
        elif res.fired[0].rule.target is None:
            drops.append(Drop(key, res.fired[0].rule))
        else:
            f = res.fired[0]
            fired.setdefault(id(f.rule), (f.rule, []))[1].append(Match(key, f.captures, f.position))
    entries: list[Entry] = []
    for rule, matches in fired.values():
        entries += expand(rule, matches, source, env, problems)
    return entries, drops


def _unmapped_message(key: str, blocked: tuple[Rule, ...]) -> str:
    msg = f"source key '{key}' is not mapped by any rule; add a rule for it, or drop it explicitly"
    if blocked:
        conds = "; ".join(f"'{r.label}' ({r.loc}) matched but `{r.when.text}` is false"  # type: ignore[union-attr]
                          for r in blocked)
        msg += f" ({conds})"
    return msg


def _check_duplicates(entries: list[Entry], problems: list[Diagnostic]) -> None:
    by_target: dict[str, list[Entry]] = {}
    for entry in entries:
        by_target.setdefault(entry.target, []).append(entry)
    for key, group in by_target.items():
        if len(group) > 1:
            ordered = sorted(group, key=lambda e: e.sources)
            sources = ", ".join(f"'{' + '.join(e.sources)}' ({e.rule.loc})" for e in ordered)
            problems.append(problem(key, group[0].rule.loc,
                                    f"{len(group)} source keys map to target '{key}': {sources}"))


def _check_against_target(entries: list[Entry], target: Mapping[str, TensorInfo], problems: list[Diagnostic],
                          target_name: str) -> None:
    for e in entries:
        expected = target.get(e.target)
        made = f"'{e.source}'" if e.recipe.describe() == "copy" else f"'{e.target}' (made from '{e.source}')"
        if expected is None:
            close = difflib.get_close_matches(e.target, list(target), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(problem(e.source, e.rule.loc,
                                    f"'{e.source}' maps to '{e.target}', which {target_name} does not have{hint}"))
        elif tuple(expected.shape) != tuple(e.info.shape):
            problems.append(problem(e.source, e.rule.loc,
                                    f"shape mismatch: {made} is {list(e.info.shape)} but {target_name} "
                                    f"expects {list(expected.shape)} for '{e.target}'"))
        elif _kind(expected.dtype) != _kind(e.info.dtype):
            problems.append(problem(e.source, e.rule.loc,
                                    f"dtype mismatch: {made} is {e.info.dtype} but {target_name} expects "
                                    f"a {_kind(expected.dtype)} tensor ({expected.dtype}) for '{e.target}'"))


def _main_float_dtype(entries: list[Entry]) -> str | None:
    """The most common floating dtype of the output: what initialised tensors get by default."""
    counts = Counter(e.info.dtype for e in entries if e.info.dtype.startswith(("float", "bfloat")))
    return counts.most_common(1)[0][0] if counts else None


def _active(entries: tuple[Init, ...] | tuple[Allow, ...], key: str, env: Mapping[str, Any],
            info: TensorInfo) -> list[Any]:
    found = []
    for entry in entries:
        captures = entry.pattern.match(key)
        names = {**env, **tensor_names(info), **entry.pattern.typed(captures)} if captures is not None else {}
        if captures is not None and holds(entry.when, names, key, f"entry '{entry.pattern.text}' at {entry.loc}"):
            found.append(entry)
    return found


def _kind(dtype: str) -> str:
    if dtype.startswith(("float", "bfloat")):
        return "floating-point"
    if dtype.startswith("complex"):
        return "complex"
    return "boolean" if dtype == "bool" else "integer"


def _fill_missing(ruleset: RuleSet, key: str, info: TensorInfo, dtype: str | None, env: Mapping[str, Any],
                  inits: list[InitEntry], allowed: list[tuple[str, str]], problems: list[Diagnostic],
                  target_name: str) -> None:
    """A target key no rule produces: exactly one active init or allow_missing entry must cover it."""
    try:
        covering = _active(ruleset.inits, key, env, info) + _active(ruleset.allows, key, env, info)
    except RuleError as exc:
        problems.append(problem(key, exc.loc or exc.where or target_name, exc.message))
        return
    if len(covering) > 1:
        where = " and ".join(f"'{c.pattern.text}' ({c.loc})" for c in covering)
        problems.append(problem(key, covering[0].loc, f"{target_name} key '{key}' is covered by "
                                                           f"{len(covering)} init/allow_missing entries: {where}; "
                                                           "make them exclusive"))
    elif covering and isinstance(covering[0], Init):
        init = covering[0]
        if init.fill == "eye" and (len(info.shape) != 2 or info.shape[0] != info.shape[1]):
            problems.append(problem(key, init.loc, f"cannot fill '{key}' with eye: its shape "
                                                        f"{list(info.shape)} is not square"))
        inits.append(InitEntry(key, TensorInfo(info.shape, init.dtype or dtype or info.dtype), init))
    elif covering:
        allowed.append((key, str(covering[0].loc)))
    else:
        problems.append(problem(key, ruleset.target.class_loc or ruleset.path,
                                f"{target_name} key '{key}' {list(info.shape)} is not produced by any rule; map a "
                                "source key to it, or declare it under 'init' or 'allow_missing'"))


def _check_inits_exist(ruleset: RuleSet, env: Mapping[str, Any], target: Mapping[str, TensorInfo],
                       produced: set[str], problems: list[Diagnostic], target_name: str) -> None:
    """An active init must name a real target key that no rule already produces."""
    for init in ruleset.inits:
        if not _literal(init):
            continue
        try:
            if not holds(init.when, env, init.pattern.text, f"init '{init.pattern.text}' at {init.loc}"):
                continue
        except RuleError as exc:
            problems.append(problem(init.pattern.text, exc.loc or init.loc, exc.message))
            continue
        key = init.pattern.text
        if key not in target:
            problems.append(problem(key, init.loc, f"init key '{key}' is not in {target_name}"))
        elif key in produced:
            problems.append(problem(key, init.loc, f"init key '{key}' is also produced by a rule; "
                                                        "remove one of them"))


def _literal_inits(ruleset: RuleSet, env: Mapping[str, Any]) -> list[InitEntry]:
    return [InitEntry(i.pattern.text, None, i) for i in ruleset.inits
            if _literal(i) and holds(i.when, env, i.pattern.text, f"init '{i.pattern.text}' at {i.loc}")]


def _literal(init: Init) -> bool:
    return init.pattern.prefix == init.pattern.text
