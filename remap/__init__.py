"""remap: convert model checkpoints between frameworks with YAML key-mapping rules.

The package, by stage. Imports point one way, down this list; IO sits beside
planning and never imports it (``tests/test_layers.py`` checks this):

    cli.py          the ``remap`` command: argument parsing and printing, nothing else
    pipeline.py     prepare() = read + plan + check; write(); convert() = both, atomically
    revert/         revert(): a transformers folder back into the original checkpoint (the reverse stage:
                    the folder read, the rules read backwards, planning backwards, the original format)
    compare.py      compare(): weight by weight, a conversion against its source, or two checkpoints
    provenance.py   remap-provenance.json: what each output tensor was made from
    tokenizers.py   the tokenizer a rule file declares, written with transformers' classes
    authoring/      tools for rule-file authors: examples (+ pytest plugin), explain, lint, suggest
    verify/         the original implementation vs the converted model; adapters/ per rule file
    catalog.py      rule files by name: bundled (rules/ -> remap._rules) and rule packs (entry points)
    report.py       plan tables, inspect listings, rule-file lists
    planner.py      plan(): a pure function of keys, shapes and config -> Plan with diagnostics;
      resolve.py      which rule applies to one key
      expand.py       fired rules -> output Entries, each with the Recipe that makes it
    target.py       the transformers class on the meta device (config.json, keys, shapes), cached
    io/             checkpoints in (readers, source), safetensors folders out (execute, writer, shards, outdir)
    rules/          the rule language: YAML -> frozen RuleSet (compiler, patterns, expr, model, dispatch)
    ops/            tensor ops, one module each (schema, shapes, bytes, inverse, docs); Recipe  } leaves
    tensors.py      TensorInfo and dtype facts                                            }
    diagnostics.py  the one Diagnostic type; escape()                                     }
    errors.py       RemapError and its kinds; Loc                                         }

Data flow::

    rule file --rules.compile_file--> RuleSet
    checkpoint --io.read_checkpoint--> Checkpoint --select_source--> Source (keys, shapes, where bytes are)
    RuleSet + Source + Target --planner.plan--> Plan (entries with recipes)
    Plan + Source --pipeline.write (io.execute, io.writer, io.outdir)--> output folder

Library use::

    import remap
    rules = remap.load_rules("distilhubert")        # a bundled name, a pack's name, or a path
    prepared = remap.prepare(rules, "states.ckpt")   # reads, plans and checks; writes nothing
    remap.write(prepared, "out/")                    # strict, atomic
    remap.revert(rules, "out/", "back.ckpt", like="states.ckpt")   # and back again
    remap.diff(["distilhubert", "states.ckpt", "out/"]).ok          # weight by weight
"""

from __future__ import annotations

from .authoring.examples import run_examples
from .catalog import available as available_rules
from .catalog import load as load_rules
from .compare import compare as diff
from .diagnostics import Diagnostic
from .errors import ConfigError, FetchError, OutputError, PlanError, RemapError, RuleError, SourceError
from .pipeline import Prepared, Summary, convert, prepare, write
from .planner import Plan, plan
from .revert import RevertSummary, revert
from .rules import RuleSet, compile_file, compile_text
from .tensors import TensorInfo
from .version import __version__

__all__ = [
    "ConfigError", "Diagnostic", "FetchError", "OutputError", "Plan", "PlanError", "Prepared", "RemapError",
    "RevertSummary", "RuleError", "RuleSet", "SourceError", "Summary", "TensorInfo", "__version__", "available_rules",
    "compile_file", "compile_text", "convert", "diff", "load_rules", "plan", "prepare", "revert", "run_examples",
    "write",
]
