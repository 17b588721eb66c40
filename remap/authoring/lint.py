"""``remap lint``: dead rules, overlapping rules, unreachable target keys, non-invertible rules.

Overlaps are found statically: each capture pattern is a regular language, and
two rules overlap when the intersection of their automata (interegular) is not
empty. The shortest key in the intersection is the witness; the rules'
conditions are then evaluated on it under every config the file exercises
(defaults, example configs, SOURCE's config). Raw-regex rules that interegular
cannot parse fall back to the keys of the examples and of SOURCE.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Iterable, Mapping
from typing import Any

from ..diagnostics import Diagnostic, Severity
from ..errors import Loc, RemapError
from ..io import read_checkpoint, select_source
from ..io.configfile import read_config_file
from ..resolve import resolve
from ..rules.model import Rule, RuleSet
from ..rules.reversibility import reasons
from ..target import build_target
from ..tensors import TensorInfo


def _finding(where: Loc | str, severity: Severity, message: str, key: str = "") -> Diagnostic:
    """A lint finding: a warning (exit code 1) or a note, at a rule's ``file:line`` or a file."""
    if isinstance(where, Loc):
        return Diagnostic(where.file, message, severity, key, where.line)
    return Diagnostic(where, message, severity, key)


def _order(finding: Diagnostic) -> tuple[int, str, str, str]:
    return finding.line, finding.where, finding.severity, finding.message


def _automaton(rule: Rule) -> Any:
    """The language of every source key a rule's patterns match (their union)."""
    return _regex_automaton("|".join(f"(?:{p.regex.pattern})" for p in rule.patterns))


@functools.lru_cache(maxsize=1024)
def _regex_automaton(regex: str) -> Any:
    """Built once per regex: overlaps() and static_pairs() both need it."""
    import interegular

    try:
        return interegular.parse_pattern(regex).to_fsm()
    except Exception:  # noqa: BLE001 - a regex feature interegular lacks: no static answer
        return None


def _witness(fsm: Any) -> str | None:
    """The shortest string the automaton accepts (breadth-first), or None if it accepts nothing."""
    import interegular

    by_index: dict[int, str] = {}
    symbols = sorted((s for s in fsm.alphabet if s is not interegular.fsm.anything_else), key=str)
    for symbol in symbols:  # a readable representative per transition: a letter or digit when there is one
        index, current = fsm.alphabet[symbol], by_index.get(fsm.alphabet[symbol])
        if current is None or (symbol.isalnum() and not current.isalnum()):
            by_index[index] = symbol
    spare = next(c for c in "xyzqjkw0123456789" if c not in fsm.alphabet)
    queue, seen = collections.deque([(fsm.initial, "")]), {fsm.initial}
    while queue:
        state, text = queue.popleft()
        if state in fsm.finals:
            return text
        for index, nxt in sorted(fsm.map.get(state, {}).items()):
            if nxt not in seen:
                seen.add(nxt)
                queue.append((nxt, text + by_index.get(index, spare)))
    return None


def _configs(ruleset: RuleSet, source_config: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    base = dict(ruleset.example_config)
    tried: list[dict[str, Any]] = [{}, base] + [{**base, **ex.config} for ex in ruleset.examples if ex.config]
    if source_config is not None:
        tried.append(dict(source_config))
    envs = []
    for config in tried:
        try:
            envs.append(ruleset.environment(config))
        except RemapError:
            continue
    return envs


def _typed_match(rule: Rule, key: str) -> dict[str, Any]:
    """The typed captures of the first of ``rule``'s source patterns that matches ``key``."""
    for pattern in rule.patterns:
        captures = pattern.match(key)
        if captures is not None:
            return pattern.typed(captures)
    raise AssertionError(f"{key!r} matches no pattern of {rule.label}")


def _both_apply(a: Rule, b: Rule, key: str, envs: list[dict[str, Any]]) -> bool | None:
    """Do both rules apply to ``key`` in some config? None when a condition needs what we lack (shape)."""
    ca, cb = _typed_match(a, key), _typed_match(b, key)
    for env in envs:
        try:
            ok_a = a.when is None or a.when.evaluate({**env, **ca})
            ok_b = b.when is None or b.when.evaluate({**env, **cb})
        except RemapError:
            return None
        if ok_a and ok_b:
            return True
    return False


def static_pairs(ruleset: RuleSet) -> set[tuple[int, int]]:
    """Pairs of rule indexes whose overlap the automata decide (both patterns parse)."""
    ok = [i for i, r in enumerate(ruleset.rules) if _automaton(r) is not None]
    return {(i, j) for i in ok for j in ok if i < j}


def overlaps(ruleset: RuleSet, source_config: Mapping[str, Any] | None = None) -> list[Diagnostic]:
    envs = _configs(ruleset, source_config)
    fsms = [_automaton(r) for r in ruleset.rules]
    found = []
    for i, a in enumerate(ruleset.rules):
        for j in range(i + 1, len(ruleset.rules)):
            b = ruleset.rules[j]
            if fsms[i] is None or fsms[j] is None:
                continue
            key = _witness(fsms[i] & fsms[j])
            if key is None:
                continue
            both = _both_apply(a, b, key, envs)
            pair = f"rules '{a.label}' ({a.loc}) and '{b.label}' ({b.loc}) both match keys like '{key}'"
            if both is False:
                found.append(_finding(a.loc, "note", f"{pair}, but their conditions kept them "
                                                                     "apart in every config tried"))
            else:
                found.append(_finding(a.loc, "warning", f"{pair}; make the patterns or "
                                                                        "conditions exclusive"))
    return found


def _keys_fired(ruleset: RuleSet, keys: Iterable[tuple[str, TensorInfo | None, dict[str, Any], bool]]) -> tuple[
        set[int], list[Diagnostic]]:
    """Which rules real keys fire; overlaps the automata could not decide; unmapped SOURCE keys."""
    fired: set[int] = set()
    decided = static_pairs(ruleset)
    position = {id(rule): i for i, rule in enumerate(ruleset.rules)}
    findings = []
    for key, info, env, from_source in keys:
        try:
            res = resolve(ruleset, key, env, info)
        except RemapError:
            continue
        if from_source and not res.fired:
            findings.append(_finding("SOURCE", "warning", f"source key '{key}' is not mapped by any rule", key))
        fired.update(id(f.rule) for f in res.fired)
        indexes = sorted(position[id(f.rule)] for f in res.fired)
        if len(res.fired) > 1 and not all((a, b) in decided for a in indexes for b in indexes if a < b):
            rules = " and ".join(f"'{f.rule.label}' ({f.rule.loc})" for f in res.fired)
            first = res.fired[0].rule
            findings.append(_finding(first.loc, "warning", f"key '{key}' matches {rules}"))
    return fired, findings


def dead_and_dynamic(ruleset: RuleSet, source: Mapping[str, TensorInfo] | None,
                     source_config: Mapping[str, Any] | None) -> list[Diagnostic]:
    """Rules no example and no SOURCE key exercises; overlaps seen on real keys."""
    keys: list[tuple[str, TensorInfo | None, dict[str, Any], bool]] = []
    for ex in ruleset.examples:
        try:
            keys.append((ex.key, ex.info, ruleset.environment({**ruleset.example_config, **ex.config}), False))
        except RemapError:
            continue
    if source is not None:
        env = ruleset.environment(source_config or {})
        keys += [(key, info, env, True) for key, info in source.items()]
    fired, findings = _keys_fired(ruleset, keys)
    for rule in ruleset.rules:
        if id(rule) not in fired:
            what = "no example" + (" and no key of SOURCE" if source is not None else "")
            findings.append(_finding(rule.loc, "warning",
                                    f"rule '{rule.label}' is never exercised: {what} applies it"))
    return sorted(set(findings), key=_order)


def unreachable_targets(ruleset: RuleSet, target: Mapping[str, TensorInfo], env: Mapping[str, Any],
                        target_name: str) -> list[Diagnostic]:
    """Target keys that no rule template can render and no init/allow_missing entry covers."""
    templates = [rule.target_regex(output.template) for rule in ruleset.rules for output in rule.targets]
    patterns = [e.pattern for e in ruleset.inits] + [e.pattern for e in ruleset.allows]
    found = []
    for key in sorted(target):
        if any(t.fullmatch(key) for t in templates):
            continue
        if not any(p.match(key) is not None for p in patterns):
            found.append(_finding(ruleset.path, "warning", f"{target_name} key '{key}' can be produced by no "
                                                             "rule, init or allow_missing entry"))
    return found


def invertibility(ruleset: RuleSet) -> list[Diagnostic]:
    """What a reverse conversion could not undo (see remap.rules.reversibility)."""
    return [_finding(r.loc, "note", str(r)) for r in reasons(ruleset)]


def run_lint(ruleset: RuleSet, source_path: str | None = None, *, with_target: bool = True,
             source_config: str | None = None) -> list[Diagnostic]:
    """Every check, sorted by line; reads SOURCE's keys and config (with a --source-config overlay) when given."""
    source = config = None
    if source_path is not None:
        src = select_source(read_checkpoint(source_path), ruleset.source)
        source, config = src.infos, dict(src.config)
        if source_config is not None:
            config.update(read_config_file(source_config))
    findings = overlaps(ruleset, config) + dead_and_dynamic(ruleset, source, config) + invertibility(ruleset)
    if with_target:
        where = ruleset.target.class_loc or ruleset.path
        try:
            env = ruleset.environment(config or {})
            target = build_target(ruleset.target.model_class, ruleset.target.config, ruleset.target_config(env),
                                  str(where))
        except RemapError as exc:
            reason = "pass a SOURCE checkpoint" if source_path is None else "fix the error first"
            findings.append(_finding(where, "note", f"target check skipped: {exc.message}; {reason}"))
        else:
            findings += unreachable_targets(ruleset, target.tensors, env, target.name)
    return sorted(set(findings), key=_order)
