"""The `index_select` op: rows in the order a list gives, against torch.index_select, and backwards."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from remap import compile_text, prepare
from remap.io.execute import produce
from remap.io.readers import read_checkpoint
from remap.io.writer import write_safetensors
from remap.pipeline import output_tensors
from remap.revert.plan import reverse
from tests.layouts import save_fairseq
from tests.test_ops import DTYPES, HEAD, convert, payload_bytes, r, random_bits


@pytest.mark.parametrize("dim", [0, 1])
def test_index_select_gives_what_torch_gives(tmp_path: Path, dim: int) -> None:
    tensor = r(5, 4)
    index = [3, 0, 0, 2] if dim == 0 else [1, 3]
    out = convert(tmp_path, f"  - from: t\n    to: u\n    ops: [{{index_select: {{dim: {dim}, index: {index}}}}}]\n",
                  {"t": tensor})
    assert torch.equal(out["u"], torch.index_select(tensor, dim, torch.tensor(index)))


def _round_trip(tmp: Path, index: list[int], tensor: torch.Tensor) -> tuple[bool, bytes]:
    save_file({"t": tensor}, tmp / "src.safetensors")
    (tmp / "rules.yaml").write_text(HEAD + f"  - from: t\n    to: u\n    ops: [{{index_select: {{index: {index}}}}}]\n")
    prepared = prepare(tmp / "rules.yaml", tmp / "src.safetensors", with_target=False)
    assert not prepared.plan.problems, prepared.plan.problems
    write_safetensors(tmp / "out.safetensors", output_tensors(prepared), {})
    (item,) = reverse(prepared.plan.entries, prepared.source.infos)
    return item.exact, payload_bytes(produce(item.recipe, read_checkpoint(tmp / "out.safetensors").tree))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), dtype=st.sampled_from(DTYPES), rows=st.integers(1, 7), seed=st.integers(0, 2**16))
def test_a_permutation_and_its_inverse_are_bit_identical(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject,
                                                         dtype: torch.dtype, rows: int, seed: int) -> None:
    index = data.draw(st.permutations(range(rows)))
    exact, back = _round_trip(tmp_path_factory.mktemp("perm"), list(index), random_bits(dtype, (rows, 3), seed))
    assert exact and back == payload_bytes(random_bits(dtype, (rows, 3), seed))


def test_a_list_that_repeats_rows_is_not_reversible(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="repeats or leaves out rows"):
        _round_trip(tmp_path, [0, 0, 1], r(3, 2))


def test_an_index_outside_the_dim_is_a_plan_problem(tmp_path: Path) -> None:
    save_file({"t": r(3, 2)}, tmp_path / "src.safetensors")
    ruleset = compile_text(HEAD + "  - from: t\n    to: u\n    ops: [{index_select: {index: [0, 3]}}]\n", "ops.yaml")
    prepared = prepare(ruleset, tmp_path / "src.safetensors", with_target=False)
    assert [str(p) for p in prepared.plan.problems] == [
        "ops.yaml:8: rule 't' cannot make its targets from 't': index_select: index 3 is outside dim 0 of size 3"]


CTC = """\
remap: 1
name: ctc-reorder
source:
  state_dict: model
  config: task_state
  defaults: {dictionaries: null}
let:
  symbols: dictionaries[0].state["symbols"]
  position: "{s: i for i, s in enumerate(symbols)}"
rules:
  - from: w2v_encoder.proj.{p:weight|bias}
    to: lm_head.{p}
    ops: [{index_select: {index: "[position[s] for s in sorted(symbols)]"}}]
target: {class: Wav2Vec2ForCTC}
"""


def test_a_ctc_head_is_reordered_from_the_dictionary_in_its_fairseq_checkpoint(tmp_path: Path) -> None:
    """fairseq numbers a CTC head's rows by its dictionary; a vocabulary that sorts the symbols wants them sorted."""
    symbols = ["<s>", "<pad>", "</s>", "<unk>", "|", "E", "T", "A"]
    head = {"w2v_encoder.proj.weight": r(len(symbols), 4), "w2v_encoder.proj.bias": r(len(symbols), seed=1)}
    save_fairseq(tmp_path / "ctc.pt", head, {"_name": "wav2vec_ctc"}, {"labels": "ltr"}, symbols=symbols)
    prepared = prepare(compile_text(CTC, "ctc.yaml"), tmp_path / "ctc.pt", with_target=False)
    assert not prepared.plan.problems
    write_safetensors(tmp_path / "out.safetensors", output_tensors(prepared), {})
    written = load_file(tmp_path / "out.safetensors")
    order = torch.tensor(sorted(range(len(symbols)), key=lambda i: symbols[i]))
    for p in ("weight", "bias"):
        assert torch.equal(written[f"lm_head.{p}"], torch.index_select(head[f"w2v_encoder.proj.{p}"], 0, order))
