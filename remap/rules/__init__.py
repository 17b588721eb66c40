"""The rule language: YAML rule files compiled once into frozen rule objects.

    yamlnode   YAML with a line number on every value; duplicate keys refused
    patterns   ``{capture}`` key patterns and target templates
    expr       safe expressions (conditions, ``let``, config mapping)
    dispatch   the rule index: each rule anchored on its rarest literal component
    model      the frozen objects a compiled file is made of (Rule, Init, RuleSet...)
    compiler   YAML -> RuleSet, every schema check with ``file:line``

Nothing here reads a checkpoint or touches tensor data.
"""

from __future__ import annotations

from .compiler import compile_file, compile_text
from .model import RuleSet

__all__ = ["RuleSet", "compile_file", "compile_text"]
