"""``remap suggest``: draft a rule file from a checkpoint and a target model class.

1. Numeric components become slots (``layers.3.fc1`` -> ``layers.{}.fc1``);
   a slot whose value never varies stays literal (``conv_layers.{}.0.weight``).
2. Keys that share a template are one *group*; a group pairs with a target
   group only if both cover the same slot values with the same shapes.
3. Pairing is by shape first, then by name-token similarity: groups with
   the fewest compatible targets are paired first, each with its most
   similar remaining target.
4. Each pair becomes a rule with ``{n:int}`` captures and an example; what
   cannot be paired becomes a commented TODO.
"""

from __future__ import annotations

import difflib
import math
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Loc, SourceError
from ..io.source import Checkpoint, Record, StoredTensor
from ..rules.model import ConfigField
from ..target import build_target
from ..tensors import TensorInfo

_NUMBER = re.compile(r"^\d+$")


@dataclass(frozen=True)
class Group:
    """Keys sharing a template; ``members`` maps slot values to (key, shape)."""

    template: tuple[str | None, ...]  # None marks a slot
    members: Mapping[tuple[str, ...], tuple[str, tuple[int, ...]]]

    @property
    def name(self) -> str:
        return ".".join("{}" if part is None else part for part in self.template)

    def signature(self) -> frozenset[tuple[tuple[str, ...], tuple[int, ...]]]:
        return frozenset((values, shape) for values, (_, shape) in self.members.items())


def group_keys(tensors: Mapping[str, TensorInfo]) -> list[Group]:
    """Group keys by template, keeping slots whose value never varies literal."""
    raw: dict[tuple[str | None, ...], dict[tuple[str, ...], tuple[str, tuple[int, ...]]]] = defaultdict(dict)
    for key, info in tensors.items():
        parts = key.split(".")
        template = tuple(None if _NUMBER.match(p) else p for p in parts)
        raw[template][tuple(p for p in parts if _NUMBER.match(p))] = (key, tuple(info.shape))
    groups: dict[tuple[str | None, ...], dict[tuple[str, ...], tuple[str, tuple[int, ...]]]] = defaultdict(dict)
    pending = list(raw.items())
    while pending:
        template, members = pending.pop()
        fixed = _fix_slot(template, members)
        if fixed is None:
            groups[template].update(members)
        else:
            for sub_template, sub_members in fixed.items():
                pending.append((sub_template, sub_members))
    return [Group(t, dict(m)) for t, m in sorted(groups.items(), key=lambda kv: str(kv[0]))]


def _fix_slot(template: tuple[str | None, ...], members: dict[tuple[str, ...], tuple[str, tuple[int, ...]]]
              ) -> dict[tuple[str | None, ...], dict[tuple[str, ...], tuple[str, tuple[int, ...]]]] | None:
    """Make one slot literal when it never varies, or when the slots do not form a grid.

    ``conv_layers.{}.{}.weight`` holding (0..6, 0) and (0, 2) is two kinds of key:
    split on the slot with the fewest values into ``conv_layers.{}.0.weight`` and
    ``conv_layers.{}.2.weight``, and so on until every group is a full grid.
    """
    slots = [i for i, p in enumerate(template) if p is None]
    if not slots:
        return None
    values = [sorted({v[n] for v in members}) for n in range(len(slots))]
    constant = [n for n, vals in enumerate(values) if len(vals) == 1]
    if constant:
        n = constant[0]
    elif math.prod(len(v) for v in values) != len(members):
        n = min(range(len(slots)), key=lambda k: (len(values[k]), k))
    else:
        return None
    split: dict[tuple[str | None, ...], dict[tuple[str, ...], tuple[str, tuple[int, ...]]]] = defaultdict(dict)
    for vals, member in members.items():
        fixed = list(template)
        fixed[slots[n]] = vals[n]
        split[tuple(fixed)][vals[:n] + vals[n + 1:]] = member
    return split


def _tokens(name: str) -> set[str]:
    return {t for t in re.split(r"[._]|\{\}", name) if t and not t.isdigit()}


def similarity(a: str, b: str) -> float:
    ta, tb = _tokens(a), _tokens(b)
    jaccard = len(ta & tb) / len(ta | tb) if ta | tb else 0.0
    last = difflib.SequenceMatcher(None, a.rsplit(".", maxsplit=1)[-1], b.rsplit(".", maxsplit=1)[-1]).ratio()
    return jaccard + 0.5 * difflib.SequenceMatcher(None, a, b).ratio() + 0.25 * last


def assign(sources: list[Any], targets: list[Any], signature: Callable[[Any], Any],
           name: Callable[[Any], str]) -> dict[int, Any]:
    """Pair items with equal signatures: forced pairs (one candidate) first, then most similar names first."""
    compatible = {id(s): [t for t in targets if signature(t) == signature(s)] for s in sources}
    pairs: dict[int, Any] = {}
    taken: set[int] = set()
    for s in sources:
        only = compatible[id(s)]
        if len(only) == 1 and id(only[0]) not in taken:
            pairs[id(s)] = only[0]
            taken.add(id(only[0]))
    scored = sorted(((similarity(name(s), name(t)), name(s), name(t), s, t) for s in sources if id(s) not in pairs
                     for t in compatible[id(s)]), key=lambda x: (-x[0], x[1], x[2]))
    for _, _, _, s, t in scored:
        if id(s) not in pairs and id(t) not in taken:
            pairs[id(s)] = t
            taken.add(id(t))
    return pairs


@dataclass(frozen=True)
class Stem:
    """Groups that differ only in their last part (``fc1.weight``, ``fc1.bias``): one module."""

    template: tuple[str | None, ...]
    params: Mapping[str, Group]

    @property
    def name(self) -> str:
        return ".".join("{}" if part is None else part for part in self.template)

    def signature(self) -> frozenset[tuple[str, Any]]:
        return frozenset((param, group.signature()) for param, group in self.params.items())


def stems(groups: list[Group]) -> list[Stem]:
    by_stem: dict[tuple[str | None, ...], dict[str, Group]] = defaultdict(dict)
    for group in groups:
        if len(group.template) > 1 and group.template[-1] is not None:
            by_stem[group.template[:-1]][group.template[-1]] = group
    return [Stem(t, p) for t, p in sorted(by_stem.items(), key=lambda kv: str(kv[0])) if len(p) > 1]


def _render(template: tuple[str | None, ...], slots: list[str], typed: bool) -> str:
    it = iter(slots)
    return ".".join((f"{{{next(it)}:int}}" if typed else f"{{{next(it)}}}") if part is None else part
                    for part in template)


def _slot_names(template: tuple[str | None, ...]) -> list[str]:
    count = template.count(None)
    return ["n", "m", "k", "j"][:count] if count <= 4 else [f"i{n}" for n in range(count)]


def _rule(source: Group, target: Group, src_text: str, dst_text: str) -> list[str]:
    values, (key, _) = sorted(source.members.items())[0]
    example = f"      - {key}: {target.members[values][0]}"
    return [f"  - from: {src_text}", f"    to: {dst_text}", "    examples:", example]


def draft(source: Mapping[str, TensorInfo], target: Mapping[str, TensorInfo], *, name: str, state_dict: str,
          model_class: str) -> tuple[str, dict[str, str]]:
    """The YAML draft, and the source-key -> target-key mapping it encodes."""
    src_groups, dst_groups = group_keys(source), group_keys(target)
    src_stems, dst_stems = stems(src_groups), stems(dst_groups)
    stem_pairs = assign(src_stems, dst_stems, Stem.signature, lambda x: x.name)
    pairs: list[tuple[Group, Group]] = []
    rules: list[list[str]] = []
    mapping_parts: dict[str, list[str]] = {}
    for stem in src_stems:
        other = stem_pairs.get(id(stem))
        if other is None:
            continue
        slots = _slot_names(stem.template)
        options = "|".join(sorted(stem.params))
        first = sorted(stem.params)[0]
        rules.append(_rule(stem.params[first], other.params[first],
                           _render(stem.template, slots, True) + f".{{param:{options}}}",
                           _render(other.template, slots, False) + ".{param}"))
        pairs += [(stem.params[p], other.params[p]) for p in stem.params]
    paired_src = {id(s) for s, _ in pairs}
    paired_dst = {id(t) for _, t in pairs}
    rest_src = [g for g in src_groups if id(g) not in paired_src]
    rest_dst = [g for g in dst_groups if id(g) not in paired_dst]
    group_pairs = assign(rest_src, rest_dst, Group.signature, lambda x: x.name)
    free = [g for g in rest_dst if id(g) not in {id(t) for t in group_pairs.values()}]
    todo: list[str] = []
    for group in rest_src:
        other = group_pairs.get(id(group))
        slots = _slot_names(group.template)
        parts = _split_parts(group, free) if other is None else None
        if parts is not None:
            rules.append(_split_rule(group, parts, slots))
            free = [g for g in free if all(g is not p for p in parts)]
            mapping_parts.update({key: [p.members[values][0] for p in parts]
                                  for values, (key, _) in group.members.items()})
            continue
        if other is None:
            todo += [f"  # TODO: no target for '{group.name}' {_shapes(group)}; map it, or drop it:",
                     f"  # - drop: {_render(group.template, slots, True)}"]
            continue
        rules.append(_rule(group, other, _render(group.template, slots, True), _render(other.template, slots, False)))
        pairs.append((group, other))
    mapping = {key: t.members[values][0] for s, t in pairs for values, (key, _) in s.members.items()}
    produced = set(mapping.values()) | {t for targets in mapping_parts.values() for t in targets}
    mapping.update({key: ", ".join(targets) for key, targets in mapping_parts.items()})
    missing = sorted(set(target) - produced)
    lines = ["# Draft written by `remap suggest`: check every rule, then run `remap test` and `remap lint`.",
             "remap: 1", f"name: {name}", "source:", f"  state_dict: {_quote(state_dict)}",
             "  # config: <path of the model config in the checkpoint>", "  # defaults: {}",
             "target:", f"  class: {model_class}", "  # config: <map source config values to the target config>",
             "rules:"]
    lines += [line for rule in sorted(rules, key=lambda r: r[0]) for line in rule] + todo
    if missing:
        lines += ["# TODO: target keys no source key was paired with; map, init or allow them:"]
        lines += [f"#   {key} {list(target[key].shape)}" for key in missing]
    return "\n".join(lines) + "\n", mapping


_QKV = {"q": 0, "query": 0, "k": 1, "key": 1, "v": 2, "value": 2}


def _split_parts(group: Group, free: list[Group]) -> list[Group] | None:
    """Target groups whose rows add up to ``group``'s (a fused q/k/v): the best such set, in order.

    Candidates cover the same slot values as ``group`` and match its shape outside dim 0; among the
    sets of 2 to 4 whose dim-0 sizes sum to the source's, the most similarly named set wins. Targets
    are ordered q, k, v when their names say so, else by name.
    """
    import itertools

    shapes = {shape for _, shape in group.members.values()}
    if len(shapes) != 1 or not next(iter(shapes)):
        return None
    rows, rest = next(iter(shapes))[0], next(iter(shapes))[1:]
    candidates = [g for g in free if set(g.members) == set(group.members)
                  and len({s for _, s in g.members.values()}) == 1
                  and next(iter(g.members.values()))[1][1:] == rest]
    best: tuple[float, list[Group]] | None = None
    for size in range(2, 5):
        for combo in itertools.combinations(candidates, size):
            if sum(next(iter(g.members.values()))[1][0] for g in combo) != rows:
                continue
            score = sum(similarity(group.name, g.name) for g in combo) / size
            if best is None or score > best[0]:
                best = (score, list(combo))
    if best is None:
        return None
    return sorted(best[1], key=lambda g: (min((_QKV.get(t, 9) for t in re.split(r"[._]", g.name)), default=9),
                                         g.name))


def _split_rule(group: Group, parts: list[Group], slots: list[str]) -> list[str]:
    values, (key, shape) = sorted(group.members.items())[0]
    sizes = " + ".join(str(next(iter(p.members.values()))[1][0]) for p in parts)
    targets = ", ".join(f'"{_render(p.template, slots, False)}"' for p in parts)
    example = ", ".join(p.members[values][0] for p in parts)
    return [f"  - from: {_render(group.template, slots, True)}",
            f"    split: 0  # rows {shape[0]} = {sizes}; check the order of the targets",
            f"    to: [{targets}]", "    examples:", f"      - {key}: [{example}]"]


def _shapes(group: Group) -> str:
    shapes = sorted({shape for _, shape in group.members.values()})
    return ", ".join(str(list(s)) for s in shapes[:3]) + (" ..." if len(shapes) > 3 else "")


def _quote(text: str) -> str:
    return f'"{text}"' if not text or any(c in text for c in ":#{}[]") else text


def find_state_dict(checkpoint: Checkpoint) -> str:
    """The dotted path of the mapping that holds the most tensors ('' for a plain state dict)."""
    best, best_count = "", _tensor_count(checkpoint.tree)
    tree = checkpoint.tree.state if isinstance(checkpoint.tree, Record) else checkpoint.tree
    for key, value in tree.items() if isinstance(tree, Mapping) else []:
        count = _tensor_count(value)
        if count > best_count:
            best, best_count = str(key), count
    if best_count == 0:
        raise SourceError("no mapping of tensors found; pass --state-dict", checkpoint.path.name)
    return best


def _tensor_count(node: Any) -> int:
    node = node.state if isinstance(node, Record) else node
    return sum(isinstance(v, StoredTensor) for v in node.values()) if isinstance(node, Mapping) else 0


def load_config(path: str) -> dict[str, Any]:
    import json

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot read the target config as JSON: {exc}", path) from None
    if not isinstance(data, dict):
        raise SourceError("the target config must be a JSON object", path)
    return data


def suggest_draft(checkpoint: Checkpoint, state_dict: str, model_class: str, values: Mapping[str, Any],
                  config_path: str = "--config") -> tuple[str, dict[str, str], int]:
    """Draft text, the mapping it encodes, and the number of source keys."""
    source = checkpoint.source(state_dict, None)
    fields = tuple(ConfigField(name, Loc(config_path, 1), None, value) for name, value in values.items())
    target = build_target(model_class, fields, values, "--target")
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", checkpoint.path.stem) or "draft"
    text, mapping = draft(source.infos, target.tensors, name=name, state_dict=state_dict, model_class=target.name)
    return text, mapping, len(source.infos)
