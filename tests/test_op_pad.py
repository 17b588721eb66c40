"""The `pad` and `slice` ops: rows added to or cut from a dim, against torch, backwards, and in a real model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from remap import compile_text, prepare
from remap.io.execute import produce
from remap.io.readers import read_checkpoint
from remap.io.writer import write_safetensors
from remap.pipeline import output_tensors
from remap.revert.plan import reverse
from remap.rules.reversibility import reasons
from tests.test_ops import DTYPES, HEAD, convert, payload_bytes, r, random_bits


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64])
@pytest.mark.parametrize("dim", [0, 1])
def test_pad_gives_what_torch_pad_gives(tmp_path: Path, dtype: torch.dtype, dim: int) -> None:
    tensor = (r(5, 3) * 10).to(dtype)
    out = convert(tmp_path, f"  - from: t\n    to: u\n    ops: [{{pad: {{dim: {dim}, to: 8, value: 2}}}}]\n",
                  {"t": tensor})
    widths = (0, 0, 0, 8 - tensor.shape[0]) if dim == 0 else (0, 8 - tensor.shape[1])
    want = torch.nn.functional.pad(tensor, widths, value=2)
    assert out["u"].dtype == dtype and torch.equal(out["u"], want)


def test_slice_gives_what_narrow_gives(tmp_path: Path) -> None:
    tensor = r(4, 9)
    out = convert(tmp_path, "  - from: t\n    to: u\n    ops: [{slice: {dim: 1, start: 2, stop: 7}}]\n", {"t": tensor})
    assert torch.equal(out["u"], tensor.narrow(1, 2, 5))


def _round_trip(tmp: Path, rules: str, tensor: torch.Tensor) -> tuple[Any, bytes]:
    save_file({"t": tensor}, tmp / "src.safetensors")
    (tmp / "rules.yaml").write_text(HEAD + rules)
    prepared = prepare(tmp / "rules.yaml", tmp / "src.safetensors", with_target=False)
    assert not prepared.plan.problems, prepared.plan.problems
    write_safetensors(tmp / "out.safetensors", output_tensors(prepared), {})
    (item,) = reverse(prepared.plan.entries, prepared.source.infos)
    return item, payload_bytes(produce(item.recipe, read_checkpoint(tmp / "out.safetensors").tree))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from(DTYPES), rows=st.integers(1, 6), extra=st.integers(0, 5), seed=st.integers(0, 2**16))
def test_pad_then_its_inverse_is_bit_identical(tmp_path_factory: pytest.TempPathFactory, dtype: torch.dtype,
                                              rows: int, extra: int, seed: int) -> None:
    tensor = random_bits(dtype, (rows, 3), seed)
    item, back = _round_trip(tmp_path_factory.mktemp("pad"), f"  - from: t\n    to: u\n    ops: [{{pad: {{to: {rows + extra}}}}}]\n",
                             tensor)
    assert item.exact and back == payload_bytes(tensor)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 6), cut=st.integers(0, 4), seed=st.integers(0, 2**16))
def test_a_slice_with_fill_comes_back_padded_with_the_fill(tmp_path_factory: pytest.TempPathFactory, rows: int,
                                                          cut: int, seed: int) -> None:
    tensor = torch.cat([r(rows, 2, seed=seed), torch.full((cut, 2), 7.0)])
    item, back = _round_trip(tmp_path_factory.mktemp("slice"),
                             f"  - from: t\n    to: u\n    ops: [{{slice: {{stop: {rows}, fill: 7}}}}]\n", tensor)
    assert item.reversibility == "equivalent"  # the cut rows are declared padding, not known to be
    assert back == payload_bytes(tensor)


def test_a_slice_without_fill_cannot_be_run_backwards(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cuts rows that a reverse conversion cannot restore"):
        _round_trip(tmp_path, "  - from: t\n    to: u\n    ops: [{slice: {stop: 2}}]\n", r(4, 2))
    ruleset = compile_text(HEAD + "  - from: t\n    to: u\n    ops: [{slice: {stop: 2}}]\n", "t.yaml")
    assert [str(x) for x in reasons(ruleset)] == [
        "rule 't' has a slice without 'fill:', so the rows it cuts cannot be restored"]


def test_reading_rules_backwards_needs_the_size_before_a_pad() -> None:
    without = compile_text(HEAD + "  - from: t\n    to: u\n    ops: [{pad: {to: 8}}]\n", "t.yaml")
    assert [x.why for x in reasons(without)] == [
        "has a pad without 'back:', so reading the rules backwards does not know the size before it"]
    with_back = compile_text(HEAD + "  - from: t\n    to: u\n    ops: [{pad: {to: 8}, back: width}]\n", "t.yaml")
    assert reasons(with_back) == []


def test_pad_refuses_to_shrink_and_names_the_rule(tmp_path: Path) -> None:
    save_file({"t": r(6, 2)}, tmp_path / "src.safetensors")
    prepared = prepare(compile_text(HEAD + "  - from: t\n    to: u\n    ops: [{pad: {to: 4}}]\n", "ops.yaml"),
                       tmp_path / "src.safetensors", with_target=False)
    assert [str(p) for p in prepared.plan.problems] == [
        "ops.yaml:8: rule 't' cannot make its targets from 't': pad to 4: dim 0 already has 6 rows (use slice to "
        "cut rows)"]


NANOGPT = """\
remap: 1
name: nanogpt-vocab
source: {state_dict: model, defaults: {vocab_size: 50}}
target:
  class: GPT2LMHeadModel
  config: {vocab_size: vocab_size, n_embd: 16, n_layer: 1, n_head: 2, n_positions: 32, tie_word_embeddings: false,
           bos_token_id: 0, eos_token_id: 0}
rules:
  - from: transformer.wte.weight
    to: transformer.wte.weight
    ops: [{slice: {stop: vocab_size, fill: 0}, back: "(vocab_size + 7) // 8 * 8"}]
  - from: lm_head.weight
    to: lm_head.weight
    ops: [{slice: {stop: vocab_size, fill: 0}, back: "(vocab_size + 7) // 8 * 8"}]
  - from: transformer.h.{i:int}.{block:attn|mlp}.{part:c_attn|c_proj|c_fc}.weight
    to: transformer.h.{i}.{block}.{part}.weight
    ops: [{transpose: [0, 1]}]
  - from: transformer.h.{i:int}.{block:attn|mlp}.{part:c_attn|c_proj|c_fc}.bias
    to: transformer.h.{i}.{block}.{part}.bias
  - from: transformer.h.{i:int}.{norm:ln_1|ln_2}.{p:weight|bias}
    to: transformer.h.{i}.{norm}.{p}
  - from: transformer.{name:wpe|ln_f}.{p:weight|bias}
    to: transformer.{name}.{p}
"""


def test_a_padded_vocabulary_is_trimmed_for_the_real_gpt2_class(tmp_path: Path) -> None:
    """nanoGPT pads GPT-2's vocabulary to a multiple of 64 (nn.Linear weights, [out, in]); transformers'
    GPT2LMHeadModel holds the real vocabulary size in Conv1D weights ([in, out])."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32, tie_word_embeddings=False,
                        bos_token_id=0, eos_token_id=0)
    reference = GPT2LMHeadModel(config).eval()
    state = {}
    for key, tensor in reference.state_dict().items():  # the nanoGPT layout: rows padded, linear weights [out, in]
        if key in ("transformer.wte.weight", "lm_head.weight"):
            state[key] = torch.cat([tensor, torch.randn(6, tensor.shape[1])])  # padding rows: never read
        elif key.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            state[key] = tensor.t().contiguous()
        else:
            state[key] = tensor.clone()
    torch.save({"model": state, "iter_num": 100}, tmp_path / "ckpt.pt")
    (tmp_path / "rules.yaml").write_text(NANOGPT)
    from remap import convert as apply

    apply(tmp_path / "rules.yaml", tmp_path / "ckpt.pt", tmp_path / "out")
    converted, info = GPT2LMHeadModel.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not any(info.values()), info
    tokens = torch.tensor([[1, 7, 49, 0, 23]])
    with torch.no_grad():
        assert torch.equal(converted(tokens).logits, reference(tokens).logits)
