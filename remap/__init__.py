"""remap: convert model checkpoints between frameworks with YAML key-mapping rules.

The pipeline, one module per stage:

    rule file (YAML) --compiler--> RuleSet            (rules.py: frozen rule objects; dispatch.py: rule index)
    checkpoint ------readers-----> Checkpoint/Source  (source.py: keys, shapes, dtypes, where the bytes are)
    RuleSet + Source + Target ---planner--> Plan      (pure: key strings and shapes only)
    Plan ---materialize + writer---> output folder    (the only stages that touch tensor data)

Supporting modules: ``yamlnode`` (YAML with line numbers), ``patterns``
(``{capture}`` key patterns), ``expr`` (safe expressions), ``target`` (the
transformers model on the meta device, cached), ``pipeline`` (prepare/write),
``hub`` (default checkpoint download), ``report`` and ``cli`` (the command).

Authoring tools: ``examples`` (inline rule tests; ``pytest_plugin``),
``explain`` (why a rule did not apply), ``lint``, ``suggest`` (draft rules).
``verify`` compares a conversion with the original implementation, which
``adapters/`` provide per rule file: the only model-specific Python.

Library use::

    import remap
    rules = remap.compile_file("rules/distilhubert.yaml")
    prepared = remap.prepare(rules, "states.ckpt")   # reads, plans and checks; writes nothing
    remap.write(prepared, "out/")                       # strict, atomic
"""

from __future__ import annotations

__version__ = "0.1.0"

from .compiler import compile_file, compile_text
from .pipeline import Prepared, Summary, convert, prepare, write
from .errors import ConfigError, FetchError, OutputError, PlanError, RemapError, RuleError, SourceError
from .examples import run_examples
from .planner import Plan, TensorInfo, plan
from .rules import RuleSet

__all__ = [
    "ConfigError", "FetchError", "OutputError", "Plan", "PlanError", "Prepared", "RemapError", "RuleError",
    "RuleSet", "SourceError", "Summary", "TensorInfo", "compile_file", "compile_text", "convert", "plan",
    "prepare", "run_examples", "write",
]
