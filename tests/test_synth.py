"""Reading a rule file backwards (remap.revert.rules_backwards): the source keys a transformers folder was made from."""

from __future__ import annotations

import pytest

from remap import compile_text
from remap.errors import RemapError
from remap.revert.rules_backwards import synthesize
from remap.rules.reversibility import reasons
from remap.tensors import TensorInfo

HEAD = "remap: 1\nname: t\nsource: {state_dict: '', defaults: {n: 3}}\ntarget: {class: HubertModel}\n"


def info(*shape: int) -> TensorInfo:
    return TensorInfo(shape, "float32")


def listing(rules: str, hf: dict[str, TensorInfo]) -> dict[str, TensorInfo]:
    ruleset = compile_text(HEAD + rules, "t.yaml")
    return synthesize(ruleset, hf, ruleset.environment({}))


def test_two_rules_that_make_the_same_target_from_different_names_are_refused() -> None:
    rules = "rules:\n  - {from: 'conv.{i:int}.w', to: 'x.{i}.w'}\n  - {from: 'convtr.{i:int}.w', to: 'x.{i}.w'}\n"
    with pytest.raises(RemapError) as caught:
        listing(rules, {"x.0.w": info(2, 2)})
    assert str(caught.value) == ("'x.0.w' could come from conv.0.w (rule 'conv.{i:int}.w', t.yaml:6) or from "
                                 "convtr.0.w (rule 'convtr.{i:int}.w', t.yaml:7); the rules read backwards cannot "
                                 "tell which names the original had; pass --like a checkpoint of the same "
                                 "architecture")


def test_conditions_tell_such_rules_apart() -> None:
    rules = ("rules:\n  - {from: 'conv.{i:int}.w', to: 'x.{i}.w', when: 'i < 2'}\n"
             "  - {from: 'convtr.{i:int}.w', to: 'x.{i}.w', when: 'i >= 2'}\n")
    hf = {f"x.{i}.w": info(2, i + 1) for i in range(3)}
    assert listing(rules, hf) == {"conv.0.w": info(2, 1), "conv.1.w": info(2, 2), "convtr.2.w": info(2, 3)}


def test_a_capture_the_target_drops_is_recovered_from_the_condition_that_pins_it() -> None:
    rules = "rules:\n  - {from: 'block.{b:int}.w', to: last.w, when: 'b == n + 2 and n > 0'}\n"
    assert listing(rules, {"last.w": info(4)}) == {"block.5.w": info(4)}
    assert not reasons(compile_text(HEAD + rules, "t.yaml"))  # so lint does not call it many-to-one


def test_a_capture_nothing_recovers_is_many_to_one() -> None:
    rules = "rules:\n  - {from: 'block.{b:int}.w', to: last.w, when: 'b > n'}\n"
    assert [r.why for r in reasons(compile_text(HEAD + rules, "t.yaml"))] == [
        "is many-to-one: its pattern has parts the target does not keep"]


def test_a_target_an_init_makes_has_no_source() -> None:
    rules = ("rules:\n  - {from: 'p.{q}', to: 'proj.{q}'}\n"
             "init:\n  - {key: proj.weight, fill: eye, when: 'n == 3'}\n")
    assert listing(rules, {"proj.weight": info(3, 3)}) == {}
