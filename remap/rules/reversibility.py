"""What a reverse conversion could not undo, rule by rule.

Used by ``remap lint`` (as notes) and by ``remap revert`` (which refuses a rule
file a blocker applies to, naming the rule and the reason). A reason is
``lossy`` when the inverse exists but is not byte-exact (a cast, a
weight-norm fold), and blocking otherwise. Drops are blocking only without
``--like``: the original checkpoint then supplies what was dropped.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from ..errors import Loc
from .expr import Expr
from .model import Rule, RuleSet
from .patterns import Template


@dataclass(frozen=True)
class Reason:
    loc: Loc
    subject: str  # "rule 'a.{n}.b'" or "init 'x'"
    why: str
    lossy: bool = False  # invertible, but not byte for byte
    needs_like: bool = False  # what it lost can come from --like ORIGINAL

    def __str__(self) -> str:
        return f"{self.subject} {self.why}"


def reasons(ruleset: RuleSet) -> list[Reason]:
    """Every rule and init a reverse conversion cannot undo exactly, in file order."""
    found: list[Reason] = []
    for rule in ruleset.rules:
        found += _rule_reasons(rule)
    for init in ruleset.inits:
        found.append(Reason(init.loc, f"init '{init.pattern.text}'", "has no source key; a reverse conversion "
                                                                      "would drop it", lossy=True))
    return found


def _rule_reasons(rule: Rule) -> list[Reason]:
    subject = f"rule '{rule.label}'"
    if rule.target is None:
        return [Reason(rule.loc, subject, "drops keys, so a reverse conversion cannot restore them",
                       needs_like=True)]
    if any(p.is_regex for p in rule.patterns):
        return [Reason(rule.loc, subject, "is a raw regex; its inverse cannot be derived")]
    found = []
    many = _many_to_one(rule)
    if many:
        found.append(Reason(rule.loc, subject, many))
    for why, lossy in rule.structure.blockers():
        found.append(Reason(rule.loc, subject, why, lossy=lossy))
    for op in (*rule.ops, *(o for out in rule.targets for o in out.ops)):
        why = op.why_not_reversible()
        if why:
            found.append(Reason(op.loc, subject, why))
        elif op.reversibility != "exact":
            found.append(Reason(op.loc, subject, f"uses {op}, {op.reversibility_note or 'not byte-invertible'}",
                                lossy=op.reversibility == "equivalent"))
    if rule.cast:
        found.append(Reason(rule.loc, subject, f"casts to {rule.cast}, which may lose precision", lossy=True))
    return found


def _many_to_one(rule: Rule) -> str:
    """Why the key mapping loses information, or '' when every source capture can be recovered."""
    if any("*" in p.text for p in rule.patterns):
        return "is many-to-one: its pattern has parts the target does not keep"
    grouped = {rule.structure.over} if rule.structure.over else set()
    for output in rule.targets:
        if any(name not in grouped and not _recoverable(name, output.template) and pinned(rule.when, name) is None
               for name in rule.pattern.captures):
            return "is many-to-one: its pattern has parts the target does not keep"
    return ""


def _recoverable(name: str, template: Template) -> bool:
    """Whether ``name``'s value follows from the rendered target: bare, ``a*name+b``, or both ``//c`` and ``%c``."""
    parts: dict[str, set[int]] = {"//": set(), "%": set()}
    for placeholder in template.placeholders:
        affine = placeholder.affine()
        if affine is not None and affine[0] == name:
            return True
        divmod_part = placeholder.divmod_part()
        if divmod_part is not None and divmod_part[0] == name:
            parts[divmod_part[1]].add(divmod_part[2])
    return bool(parts["//"] & parts["%"])


def pinned(when: Expr | None, name: str) -> Expr | None:
    """The expression a condition pins capture ``name`` to, as in ``b == n_enc + 2`` (alone, or one part of
    an ``and``), or None. A capture the target does not keep is then recovered from the config."""
    if when is None:
        return None
    body = when.tree.body
    parts = body.values if isinstance(body, ast.BoolOp) and isinstance(body.op, ast.And) else [body]
    for part in parts:
        if not (isinstance(part, ast.Compare) and len(part.ops) == 1 and isinstance(part.ops[0], ast.Eq)):
            continue
        for mine, other in ((part.left, part.comparators[0]), (part.comparators[0], part.left)):
            uses = {n.id for n in ast.walk(other) if isinstance(n, ast.Name)}
            if isinstance(mine, ast.Name) and mine.id == name and name not in uses:
                return Expr(ast.unparse(other), when.loc, frozenset(uses), ast.Expression(body=other))
    return None
