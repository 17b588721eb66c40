"""`remap explain`: the rule that maps a key, and for every other rule the part that failed."""

from __future__ import annotations

from pathlib import Path

from remap import compile_file
from tests.conftest import RULES, line_of


def test_explain_names_the_rule_and_the_closest_misses(cli) -> None:
    result = cli("explain", RULES, "feature_extractor.conv_layers.3.2.1.weight", "--config", "extractor_mode=layer_norm")
    assert result.code == 0
    lines = result.out.splitlines()
    ln = line_of(RULES, "  - from: feature_extractor.conv_layers.{i:int}.2.1.")
    gn = line_of(RULES, "  - from: feature_extractor.conv_layers.{i:int}.2.{param")
    assert lines[:4] == [
        "feature_extractor.conv_layers.3.2.1.weight -> feature_extractor.conv_layers.3.layer_norm.weight",
        f"  by rule 'feature_extractor.conv_layers.{{i:int}}.2.1.{{param:weight|bias}}' ({RULES}:{ln})",
        "other rules, closest first:",
        f"  'feature_extractor.conv_layers.{{i:int}}.2.{{param:weight|bias}}' ({RULES}:{gn}): pattern part "
        "'{param:weight|bias}' does not match '1' (after 'feature_extractor.conv_layers.3.2')"]
    assert len(lines) == 3 + len(compile_file(RULES).rules) - 1  # every other rule is accounted for


def test_explain_a_blocked_condition(cli) -> None:
    result = cli("explain", RULES, "feature_extractor.conv_layers.3.2.1.weight")
    assert result.code == 1
    ln = line_of(RULES, "  - from: feature_extractor.conv_layers.{i:int}.2.1.")
    assert result.out.splitlines()[:3] == [
        "feature_extractor.conv_layers.3.2.1.weight: no rule applies",
        "other rules, closest first:",
        f"  'feature_extractor.conv_layers.{{i:int}}.2.1.{{param:weight|bias}}' ({RULES}:{ln}): condition "
        "`not group_norm` is false (with i=3, param='weight')"]


def test_explain_a_drop(cli) -> None:
    result = cli("explain", RULES, "output_layer.0.weight")
    assert result.code == 0
    assert result.out.splitlines()[:3] == [
        "output_layer.0.weight dropped", f"  by rule 'output_layer.**' ({RULES}:{line_of(RULES, '  - drop: output_layer.**')})",
        "  reason: distillation prediction heads, unused after pretraining"]


def test_explain_rejects_unknown_config_names(cli) -> None:
    result = cli("explain", RULES, "x", "--config", "extractor_mod=layer_norm")
    assert result.code == 1
    assert result.err.startswith("error: --config extractor_mod: not a source config value of this rule file (known: ")


def test_explain_with_a_shape_shows_each_output_of_an_op(cli, tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text("remap: 1\nname: r\nsource: {state_dict: ''}\ntarget: {class: HubertModel}\nrules:\n"
                     "  - from: l.{i:int}.in_proj\n    split: 0\n    to: ['l.{i}.q', 'l.{i}.k']\n")
    result = cli("explain", rules, "l.3.in_proj", "--shape", "6,2")
    assert result.out.splitlines()[:4] == [
        "l.3.in_proj -> l.3.q, l.3.k", f"  by rule 'l.{{i:int}}.in_proj' ({rules}:6)",
        "  l.3.q: [3, 2] by slice(0, 0, 3)", "  l.3.k: [3, 2] by slice(0, 3, 6)"]
    odd = cli("explain", rules, "l.3.in_proj", "--shape", "5,2")
    assert odd.out.splitlines()[2] == ("  cannot apply its ops to shape [5, 2]: rule 'l.{i:int}.in_proj' cannot make "
                                       "its targets from 'l.3.in_proj': cannot split dim 0 of size 5 into 2 equal "
                                       "parts")
