"""Rule files and config values that cost more than their size: YAML alias bombs, deep nesting,
expressions whose results explode (``%`` and f-string widths, ``**``, comprehensions), and conv specs
from checkpoints that ``list_expr`` must refuse without quadratic work or a RecursionError.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.hostile.runner import Case

DISTILHUBERT = Path(__file__).resolve().parents[2] / "rules" / "distilhubert.yaml"
HEAD = """\
remap: 1
name: bomb
source:
  state_dict: ""
  defaults: {width: 5, text: "x"}
target: {class: HubertModel}
rules:
  - from: a.{n:int}
    to: b.{n}
"""


def _weights(folder: Path) -> None:
    """A one-key safetensors file, so that ``plan`` gets as far as the rule file's ``let:`` values."""
    header = json.dumps({"a.0": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (folder / "w.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)


def _let_bomb(expression: str) -> Callable[[Path], Sequence[str]]:
    """A rule file whose one ``let`` value is ``expression``, planned against a tiny checkpoint."""
    def build(folder: Path) -> Sequence[str]:
        (folder / "bomb.yaml").write_text(HEAD + f"let:\n  big: {json.dumps(expression)}\n")
        _weights(folder)
        return ["plan", "bomb.yaml", "w.safetensors", "--no-target"]
    return build


def _expression_case(name: str, expression: str, message: str) -> Case:
    return Case(name, _let_bomb(expression), message=r"^error: bomb\.yaml:11: expression `.*` failed: " + message)


def _billion_laughs(folder: Path) -> Sequence[str]:
    lines = [HEAD.rstrip("\n"), "let:", '  l0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  l{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    (folder / "bomb.yaml").write_text("\n".join(lines) + "\n")
    assert len((folder / "bomb.yaml").read_bytes()) < 1024
    return ["test", "bomb.yaml"]


def _merge_laughs(folder: Path) -> Sequence[str]:
    """The same multiplication through merge keys: each mapping merges the previous one nine times."""
    lines = [HEAD.rstrip("\n"), "let:", "  m0: &m0 {k0: 1}"]
    lines += [f"  m{i}: &m{i} {{k{i}: [" + ", ".join([f"*m{i - 1}"] * 9) + f"], <<: *m{i - 1}}}" for i in range(1, 10)]
    (folder / "bomb.yaml").write_text("\n".join(lines) + "\n")
    return ["test", "bomb.yaml"]


def _alias_cycle(folder: Path) -> Sequence[str]:
    (folder / "bomb.yaml").write_text(HEAD + "let:\n  loop: &loop [*loop]\n")
    return ["test", "bomb.yaml"]


def _deep_flow(folder: Path) -> Sequence[str]:
    (folder / "bomb.yaml").write_text(HEAD + "let:\n  deep: " + "[" * 50_000 + "]" * 50_000 + "\n")
    return ["test", "bomb.yaml"]


def _distiller(config: dict[str, object]) -> Callable[[Path], Sequence[str]]:
    """A DistilHuBERT checkpoint whose config holds ``config``, planned with the bundled rule file (named by
    path: finding it by name compiles every bundled file, which would dominate the measured time).

    torch.save runs in a child process: importing torch here would add its memory to every later
    case's measured peak RSS (a forked child starts with its parent's).
    """
    def build(folder: Path) -> Sequence[str]:
        script = ("import json, sys, torch; torch.save({'Distiller': {'decoder.weight': torch.zeros(1)}, "
                  "'Config': {'distiller': json.load(sys.stdin)}}, sys.argv[1])")
        subprocess.run([sys.executable, "-c", script, str(folder / "ckpt.pt")], input=json.dumps(config),
                       text=True, check=True)
        return ["plan", str(DISTILHUBERT), "ckpt.pt", "--no-target"]
    return build


BIG_INT = 'int("1" * 99999, 2)'  # 99,999 bits; before issue 9, 9999 products of two took minutes
CONV = r"expression `list_expr\(str\(extractor_conv_feature_layers\)\)` failed: ValueError: "
PLUS_CHAIN = " + ".join(["[(512,10,5)]"] * 50_000)  # 750 kB; joining it pairwise took 49 s
DEEP_CHAIN = "[(512,10,5)]" + " * 1" * 2_000  # a left-leaning tree 2,000 deep: RecursionError
LONG_SUM = " + ".join(["[(1,2,3)] * 99999"] * 500)  # 10 kB; 50 million tuples, joined pairwise (quadratic)
REPEATED = "[[(1,2,3)] * 9999] * 9999"  # 9999 references to one list, 400 million elements once printed

CASES = [
    Case("rules-yaml-billion-laughs", _billion_laughs,
         message=r"^error: bomb\.yaml:1[0-9]: YAML aliases expand the file to more than \d+ values"),
    Case("rules-yaml-merge-key-laughs", _merge_laughs,
         message=r"^error: bomb\.yaml:1[0-9]: YAML aliases expand the file to more than \d+ values"),
    Case("rules-yaml-alias-cycle", _alias_cycle,
         message=r"^error: bomb\.yaml:11: a YAML alias refers to a value that contains it"),
    Case("rules-yaml-deep-flow-nesting", _deep_flow,
         message=r"^error: bomb\.yaml:11: YAML syntax error: values nest deeper than 100 levels"),
    _expression_case("rules-expr-percent-width", '"%0999999999d" % width',
                     "IterableTooLong: a format width or precision of 999999999 is more than 100000"),
    _expression_case("rules-expr-percent-star-width", '"%*d" % (999999999, width)',
                     r"IterableTooLong: '\*' widths and parentheses in keys are not supported"),
    _expression_case("rules-expr-fstring-width", 'f"{width:>999999999}"',
                     "IterableTooLong: a format width or precision of 999999999 is more than 100000"),
    _expression_case("rules-expr-power", "4000000 ** 4000000",
                     "NumberTooHigh: the result would have more than 4096 bits"),
    _expression_case("rules-expr-comprehension-growth", '[(text * 99999) + c for c in text * 9999]',
                     "IterableTooLong: the expression builds more than 32 MiB of values"),
    _expression_case("rules-expr-repeated-percent-key", '"%(a)s" * 19999 % {"a": text * 49999}',
                     "IterableTooLong: % formatting would build more than 100000 characters"),
    _expression_case("rules-expr-big-int-arithmetic", f"[{BIG_INT} * {BIG_INT} for c in text * 9999]",
                     r"ValueError: int\(\) of a string longer than 5000 characters"),
    Case("rules-expr-nested-too-deeply", _let_bomb("-" * 5_000 + "width"),
         message=r"^error: bomb\.yaml:11: let 'big' `-----.*` nests deeper than 100 levels"),
    Case("rules-config-conv-spec-plus-chain", _distiller({"extractor_conv_feature_layers": PLUS_CHAIN}),
         message=CONV + r"list expression is too long: \d+ characters, at most 10000$"),
    Case("rules-config-conv-spec-deep-chain", _distiller({"extractor_conv_feature_layers": DEEP_CHAIN}),
         message=CONV + r"list expression nests deeper than 16 levels"),
    Case("rules-config-conv-spec-long-sum", _distiller({"extractor_conv_feature_layers": LONG_SUM}),
         message=CONV + r"list expression is too long: more than 100000 elements"),
    Case("rules-config-conv-spec-repeated", _distiller({"extractor_conv_feature_layers": REPEATED}),
         message=CONV + r"list expression is too long: more than 100000 elements"),
    Case("rules-config-huge-value-to-text", _distiller({"extractor_mode": list(range(60_000))}),
         message=r"expression `str\(extractor_mode\).*` failed: IterableTooLong: the text of this value would be "
                 r"longer than 100000 characters$"),
]
