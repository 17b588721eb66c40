"""The `scale` op: every element times a constant, against torch's multiplication, and backwards."""

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
from remap.rules.reversibility import reasons
from tests.test_ops import HEAD, convert, payload_bytes, r

FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("factor", [0.125, 3.0, -0.7])
def test_scale_gives_what_torch_multiplication_gives(tmp_path: Path, dtype: torch.dtype, factor: float) -> None:
    tensor = r(6, 5).to(dtype)
    out = convert(tmp_path, f"  - from: t\n    to: u\n    ops: [{{scale: {factor}}}]\n", {"t": tensor})
    assert out["u"].dtype == dtype and torch.equal(out["u"], tensor * factor)


def _round_trip(tmp: Path, factor: float, tensor: torch.Tensor) -> tuple[str, torch.Tensor]:
    save_file({"t": tensor}, tmp / "src.safetensors")
    (tmp / "rules.yaml").write_text(HEAD + f"  - from: t\n    to: u\n    ops: [{{scale: {factor}}}]\n")
    prepared = prepare(tmp / "rules.yaml", tmp / "src.safetensors", with_target=False)
    write_safetensors(tmp / "out.safetensors", output_tensors(prepared), {})
    (item,) = reverse(prepared.plan.entries, prepared.source.infos)
    back = payload_bytes(produce(item.recipe, read_checkpoint(tmp / "out.safetensors").tree))
    return item.reversibility, torch.frombuffer(bytearray(back), dtype=tensor.dtype).reshape(tensor.shape)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from(FLOATS), power=st.integers(-6, 6), sign=st.sampled_from([1, -1]),
       seed=st.integers(0, 2**16))
def test_a_power_of_two_and_its_inverse_are_bit_identical(tmp_path_factory: pytest.TempPathFactory,
                                                          dtype: torch.dtype, power: int, sign: int, seed: int) -> None:
    tensor = r(4, 3, seed=seed).to(dtype)
    how, back = _round_trip(tmp_path_factory.mktemp("pow2"), sign * 2.0**power, tensor)
    assert how == "exact" and torch.equal(back.view(torch.uint8), tensor.view(torch.uint8))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(factor=st.floats(0.01, 100).filter(lambda f: f not in (0.5, 1.0, 2.0, 4.0)), seed=st.integers(0, 2**16))
def test_other_factors_come_back_equivalent_not_exact(tmp_path_factory: pytest.TempPathFactory, factor: float,
                                                      seed: int) -> None:
    tensor = r(4, 3, seed=seed)
    how, back = _round_trip(tmp_path_factory.mktemp("any"), factor, tensor)
    assert how in ("equivalent", "exact")
    assert torch.allclose(back, tensor, rtol=1e-6, atol=0)


def test_lint_says_a_scale_that_is_not_a_power_of_two_is_equivalent_only() -> None:
    assert reasons(compile_text(HEAD + "  - from: t\n    to: u\n    ops: [{scale: 0.25}]\n", "t.yaml")) == []
    (reason,) = reasons(compile_text(HEAD + "  - from: t\n    to: u\n    ops: [{scale: 0.3}]\n", "t.yaml"))
    assert reason.lossy and "undone exactly only for a power-of-two factor" in reason.why


def test_an_integer_tensor_cannot_be_scaled(tmp_path: Path) -> None:
    save_file({"t": torch.arange(4)}, tmp_path / "src.safetensors")
    prepared = prepare(compile_text(HEAD + "  - from: t\n    to: u\n    ops: [{scale: 2}]\n", "ops.yaml"),
                       tmp_path / "src.safetensors", with_target=False)
    assert [str(p) for p in prepared.plan.problems] == [
        "ops.yaml:8: rule 't' cannot make its targets from 't': scale needs a float64, float32, float16 or bfloat16 "
        "tensor, not int64"]


PRESCALED = """\
remap: 1
name: prescaled-query
source: {state_dict: "", defaults: {head_dim: 4}}
target: {class: HubertModel}
rules:
  - from: attn.q.{p:weight|bias}
    to: attn.q_proj.{p}
    ops: [{scale: "head_dim ** 0.5"}]
  - from: attn.k.{p:weight|bias}
    to: attn.k_proj.{p}
"""


def test_a_query_stored_with_the_attention_scale_folded_in_is_unfolded(tmp_path: Path) -> None:
    """Some implementations store q_proj pre-multiplied by head_dim ** -0.5; a target that scales at run time
    wants it back. Attention scores computed both ways agree."""
    head_dim, width = 4, 8
    q, k = torch.nn.Linear(width, width), torch.nn.Linear(width, width)
    scaling = head_dim ** -0.5
    tensors = {"attn.q.weight": q.weight.detach() * scaling, "attn.q.bias": q.bias.detach() * scaling,
               "attn.k.weight": k.weight.detach().clone(), "attn.k.bias": k.bias.detach().clone()}
    save_file(tensors, tmp_path / "src.safetensors")
    prepared = prepare(compile_text(PRESCALED, "p.yaml"), tmp_path / "src.safetensors", with_target=False)
    assert not prepared.plan.problems, prepared.plan.problems
    write_safetensors(tmp_path / "out.safetensors", output_tensors(prepared), {})
    out = load_file(tmp_path / "out.safetensors")
    x = torch.randn(3, width)
    folded = (x @ tensors["attn.q.weight"].T + tensors["attn.q.bias"]) @ (x @ tensors["attn.k.weight"].T).T
    runtime = scaling * (x @ out["attn.q_proj.weight"].T + out["attn.q_proj.bias"]) @ (x @ out["attn.k_proj.weight"].T).T
    assert torch.allclose(folded, runtime, atol=1e-6)
    assert torch.equal(out["attn.q_proj.weight"], tensors["attn.q.weight"] * head_dim ** 0.5)
