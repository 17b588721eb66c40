"""Rule files compile into frozen objects; every schema error names file:line and the fix."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from remap import RuleError, SourceError, compile_file, compile_text
from tests.conftest import RULES

CASES = yaml.safe_load((Path(__file__).parent / "cases" / "compile_errors.yaml").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_rule_file_is_rejected_with_its_line(case: dict[str, str]) -> None:
    with pytest.raises(RuleError) as caught:
        compile_text(case["rules"], "case.yaml")
    assert str(caught.value) == case["error"]


def test_shipped_ruleset_compiles_to_frozen_objects() -> None:
    ruleset = compile_file(RULES)
    assert ruleset.name == "distilhubert"
    with pytest.raises(dataclasses.FrozenInstanceError):
        ruleset.rules[0].cast = "float16"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ruleset.source.defaults["conv_pos"] = 3  # type: ignore[index]


def test_rule_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError):
        compile_text("remap: 1\nname: [", "x.yaml")


def test_missing_rule_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match=r"nope\.yaml: cannot read rule file: No such file or directory"):
        compile_file(tmp_path / "nope.yaml")


def test_errors_come_before_any_checkpoint_is_read(tmp_path: Path, cli) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("remap: 1\nname: t\nsource: {state_dict: sd}\ntarget: {class: HubertModel}\n"
                   "rules:\n  - from: a.{n}\n    to: b.{m}\n")
    result = cli("apply", bad, tmp_path / "does-not-exist.ckpt", "-o", tmp_path / "out")
    assert result.code == 1
    assert result.err.startswith(f"error: {bad}:7: target 'b.{{m}}' uses capture 'm'")
    assert not (tmp_path / "out").exists()


def test_yaml_merge_keys_are_supported() -> None:
    ruleset = compile_text("remap: 1\nname: t\nsource: {state_dict: sd}\ntarget: {class: HubertModel}\n"
                           "rules:\n  - &r\n    from: a.{n}\n    to: b.{n}\n  - <<: *r\n    from: c.{n}\n", "m.yaml")
    assert [(r.pattern.text, r.target.text) for r in ruleset.rules] == [("a.{n}", "b.{n}"), ("c.{n}", "b.{n}")]


def test_bad_merge_is_a_rule_error() -> None:
    with pytest.raises(RuleError, match=r"m\.yaml:6: YAML error: expected a mapping or list of mappings for merging"):
        compile_text("remap: 1\nname: t\nsource: {state_dict: sd}\ntarget: {class: HubertModel}\n"
                     "rules:\n  - <<: 3\n", "m.yaml")


LAYOUTS = """\
remap: 1
name: multi
source:
  layouts:
    - {name: fairseq, detect: [cfg, model], state_dict: model, config: cfg.model}
    - {name: s3prl, detect: [model_cfg, model_weight], state_dict: model_weight, config: model_cfg}
  defaults: {encoder_layers: 12}
target: {class: HubertModel}
rules:
  - drop: "**"
"""


def test_layouts_are_detected_by_their_entries(tmp_path: Path) -> None:
    import torch

    from remap.io import select_source
    from remap.io.readers import read_checkpoint

    ruleset = compile_text(LAYOUTS, "multi.yaml")
    fairseq, s3prl, other = tmp_path / "f.pt", tmp_path / "s.pt", tmp_path / "o.pt"
    torch.save({"cfg": {"model": {"encoder_layers": 2}}, "model": {"w": torch.ones(1)}}, fairseq)
    torch.save({"model_cfg": {"encoder_layers": 3}, "model_weight": {"w": torch.ones(1)}, "task_cfg": {}}, s3prl)
    torch.save({"state": {"w": torch.ones(1)}}, other)
    a, b = select_source(read_checkpoint(fairseq), ruleset.source), select_source(read_checkpoint(s3prl), ruleset.source)
    assert (a.layout, a.config, b.layout, b.config) == ("fairseq", {"encoder_layers": 2}, "s3prl", {"encoder_layers": 3})
    with pytest.raises(SourceError) as caught:
        select_source(read_checkpoint(other), ruleset.source)
    assert str(caught.value) == ("o.pt: matches none of the rule file's layouts (fairseq needs cfg, model; s3prl needs "
                                 "model_cfg, model_weight); its top-level entries are: state")


def test_a_layout_needs_detect() -> None:
    with pytest.raises(RuleError, match=r"multi\.yaml:5: a layout needs 'detect'"):
        compile_text(LAYOUTS.replace("detect: [cfg, model], ", ""), "multi.yaml")


def test_config_paths_merge_in_order_and_preprocessor_values_can_be_expressions(tmp_path: Path) -> None:
    import torch

    from remap.io import select_source
    from remap.io.readers import read_checkpoint

    text = LAYOUTS.replace("config: cfg.model}", "config: [cfg.task, cfg.model]}").replace(
        "  defaults: {encoder_layers: 12}", "  defaults: {encoder_layers: 12, normalize: false}").replace(
        "target: {class: HubertModel}", "target:\n  class: HubertModel\n  preprocessor:\n"
        "    feature_extractor_type: Wav2Vec2FeatureExtractor\n    do_normalize: {expr: bool(normalize)}")
    ruleset = compile_text(text, "multi.yaml")
    path = tmp_path / "f.pt"
    torch.save({"cfg": {"task": {"normalize": True, "encoder_layers": 1}, "model": {"encoder_layers": 2}},
                "model": {"w": torch.ones(1)}, "args": None}, path)
    source = select_source(read_checkpoint(path), ruleset.source)
    assert source.config == {"normalize": True, "encoder_layers": 2}
    env = ruleset.environment(source.config)
    assert ruleset.preprocessor_config(env) == {"feature_extractor_type": "Wav2Vec2FeatureExtractor",
                                                "do_normalize": True}


def _layouts_checkpoint(tmp_path: Path, tree: dict[str, Any]) -> Path:
    import torch

    path = tmp_path / "c.pt"
    torch.save(tree, path)
    return path


TWO_LAYOUTS = """\
remap: 1
name: t
source:
  layouts:
    - {name: pre, detect: [cfg, model], absent: [cfg.w2v_args], state_dict: model, config: cfg}
    - {name: fine, detect: [cfg.w2v_args, model], state_dict: model, config: cfg.w2v_args}
  defaults: {width: 1}
target: {class: HubertModel}
rules: [{drop: "**"}]
"""


def test_absent_entries_tell_two_layouts_apart(tmp_path: Path) -> None:
    import torch

    from remap.io import read_checkpoint, select_source

    ruleset = compile_text(TWO_LAYOUTS, "t.yaml")
    weights = {"w": torch.zeros(1)}
    pre = _layouts_checkpoint(tmp_path, {"cfg": {"width": 2}, "model": weights})
    fine = _layouts_checkpoint(tmp_path / "..", {"cfg": {"w2v_args": {"width": 3}}, "model": weights})
    assert select_source(read_checkpoint(pre), ruleset.source).layout == "pre"
    chosen = select_source(read_checkpoint(fine), ruleset.source)
    assert (chosen.layout, chosen.config) == ("fine", {"width": 3})


def test_a_checkpoint_matching_two_layouts_is_refused(tmp_path: Path) -> None:
    import torch

    from remap import SourceError
    from remap.io import read_checkpoint, select_source

    ruleset = compile_text(TWO_LAYOUTS.replace(", absent: [cfg.w2v_args]", ""), "t.yaml")
    path = _layouts_checkpoint(tmp_path, {"cfg": {"w2v_args": {"width": 3}}, "model": {"w": torch.zeros(1)}})
    with pytest.raises(SourceError, match=r"^c\.pt: matches several of the rule file's layouts \(pre and fine\)"):
        select_source(read_checkpoint(path), ruleset.source)


def test_a_config_without_any_declared_field_is_refused_not_defaulted(tmp_path: Path) -> None:
    """fairseq-trainer files keep the model section under cfg.model: reading cfg would default everything."""
    import torch

    from remap import SourceError
    from remap.io import read_checkpoint, select_source

    ruleset = compile_text(TWO_LAYOUTS, "t.yaml")
    path = _layouts_checkpoint(tmp_path, {"cfg": {"model": {"width": 2}, "task": {}}, "model": {"w": torch.zeros(1)}})
    with pytest.raises(SourceError) as caught:
        select_source(read_checkpoint(path), ruleset.source)
    assert str(caught.value) == ("c.pt: the config at 'cfg' holds none of the fields the rule file declares "
                                 "(expected some of: width); the model config is elsewhere in this file "
                                 "(layout 'pre')")
