"""Tensor ops in rules: each op against torch's own operation, round trips, streaming, and plan problems.

Every op is checked against the torch operation it stands for (torch.split, torch.cat, Tensor.permute,
torch._weight_norm...), never against remap's own output. Round trips run the forward plan, write it,
then run the plan backwards (remap.revert.plan) on the written file and compare bytes with the source.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from remap import compile_text, prepare
from remap.io.execute import produce
from remap.io.readers import read_checkpoint
from remap.io.writer import FileSpan, Parts, write_safetensors
from remap.pipeline import output_tensors
from remap.revert.plan import reverse

HEAD = """\
remap: 1
name: ops
source:
  state_dict: ""
  defaults: {heads: 2, width: 4}
target: {class: HubertModel}
rules:
"""


def rope(x: torch.Tensor, heads: int) -> torch.Tensor:
    """transformers' permutation for rotary q/k rows (interleaved pairs -> two halves per head)."""
    n, rest = x.shape[0], x.shape[1:]
    return x.view(heads, n // heads // 2, 2, *rest).transpose(1, 2).reshape(n, *rest)


def convert(tmp_path: Path, rules: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Plan (no target model) and write; returns what safetensors reads back."""
    src, out = tmp_path / "src.safetensors", tmp_path / "out.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, src)
    (tmp_path / "rules.yaml").write_text(HEAD + rules)
    prepared = prepare(tmp_path / "rules.yaml", src, with_target=False)
    assert [str(p) for p in prepared.plan.problems] == []
    write_safetensors(out, output_tensors(prepared), {})
    return load_file(out)


def r(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


OPS: list[tuple[str, str, dict[str, torch.Tensor], Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]]] = [
    ("split-equal-parts", """\
  - from: l.{i:int}.in_proj_{p:weight|bias}
    split: 0
    to: ["l.{i}.q.{p}", "l.{i}.k.{p}", "l.{i}.v.{p}"]
""", {"l.0.in_proj_weight": r(12, 4), "l.0.in_proj_bias": r(12)},
     lambda t: dict(zip(["l.0.q.weight", "l.0.k.weight", "l.0.v.weight"], t["l.0.in_proj_weight"].split(4),
                        strict=True)) | {"l.0.v.bias": t["l.0.in_proj_bias"][8:]}),
    ("split-sizes-from-config-along-dim-1", """\
  - from: fused
    split: {dim: 1, sizes: [width, "shape[1] - width"]}
    to: [a, b]
""", {"fused": r(3, 10)}, lambda t: dict(zip(["a", "b"], t["fused"].split([4, 6], dim=1), strict=True))),
    ("rope-on-one-target-of-a-split", """\
  - from: qkv
    split: 0
    to:
      - key: q
        ops: [{rope_permute: heads}]
      - k
      - v
""", {"qkv": r(24, 3)}, lambda t: {"q": rope(t["qkv"][:8], 2), "k": t["qkv"][8:16]}),
    ("concat-listed-sources-with-index-arithmetic", """\
  - from: ["blk.{b:int}.a", "blk.{b:int}.b"]
    concat: 1
    to: merged.{b - 1}
""", {"blk.1.a": r(2, 3), "blk.1.b": r(2, 5), "blk.2.a": r(2, 3, seed=1), "blk.2.b": r(2, 5, seed=2)},
     lambda t: {"merged.0": torch.cat([t["blk.1.a"], t["blk.1.b"]], 1),
                "merged.1": torch.cat([t["blk.2.a"], t["blk.2.b"]], 1)}),
    ("stack-over-an-int-capture-in-index-order", """\
  - from: cb.{c:int}.w
    stack: {dim: 1, over: c}
    to: codebook
""", {f"cb.{c}.w": r(3, seed=c) for c in (2, 0, 1)},
     lambda t: {"codebook": torch.stack([t["cb.0.w"], t["cb.1.w"], t["cb.2.w"]], 1)}),
    ("unstack-one-target-per-index", """\
  - from: table
    unstack: {dim: 1, index: k}
    to: rows.{k}
""", {"table": r(2, 3)}, lambda t: {f"rows.{k}": t["table"][:, k] for k in range(3)}),
    ("tie-one-source-two-targets", """\
  - from: emb
    to: [tok, proj]
""", {"emb": r(5, 2)}, lambda t: {"tok": t["emb"], "proj": t["emb"]}),
    ("dedup-identical-copies", """\
  - from: rot.{l:int}.inv
    dedup: {over: l, count: 3}
    to: rot
""", {f"rot.{i}.inv": torch.arange(4.0) for i in range(3)}, lambda t: {"rot": t["rot.0.inv"]}),
    ("fold-weight-norm", """\
  - from: [wn.g, wn.v]
    fold_weight_norm: 0
    to: wn.weight
""", {"wn.g": r(3, 1, 1).abs(), "wn.v": r(3, 2, 4)},
     lambda t: {"wn.weight": torch._weight_norm(t["wn.v"], t["wn.g"], 0)}),
    ("fold-weight-norm-dim-2-as-positional-convs", """\
  - from: [pos.weight_g, pos.weight_v]
    fold_weight_norm: 2
    to: pos.weight
""", {"pos.weight_g": r(1, 1, 5).abs(), "pos.weight_v": r(4, 2, 5)},
     lambda t: {"pos.weight": torch._weight_norm(t["pos.weight_v"], t["pos.weight_g"], 2)}),
    ("unfold-weight-norm", """\
  - from: w
    unfold_weight_norm: 0
    to: [w_g, w_v]
""", {"w": r(3, 2, 4)}, lambda t: {"w_g": torch.norm_except_dim(t["w"], 2, 0), "w_v": t["w"]}),
    ("squeeze-a-k1-conv-into-a-linear-and-transpose", """\
  - from: conv.w
    to: lin.w
    ops: [{squeeze: -1}, {transpose: [0, 1]}]
""", {"conv.w": r(3, 6, 1)}, lambda t: {"lin.w": t["conv.w"].squeeze(-1).T}),
    ("permute-reshape-unsqueeze", """\
  - from: k
    to: out
    ops: [{permute: [2, 0, 1]}, {reshape: ["shape[0]", -1]}, {unsqueeze: 0}]
""", {"k": r(2, 3, 4)}, lambda t: {"out": t["k"].permute(2, 0, 1).reshape(4, -1).unsqueeze(0)}),
    ("rope-unpermute-inverts-rope-permute", """\
  - from: q
    to: q2
    ops: [{rope_permute: heads}, {rope_unpermute: heads}]
""", {"q": r(8, 3)}, lambda t: {"q2": t["q"]}),
    ("cast-after-a-split", """\
  - from: w
    split: 0
    to: [a, b]
    cast: bfloat16
""", {"w": r(4, 2)}, lambda t: {"a": t["w"][:2].bfloat16(), "b": t["w"][2:].bfloat16()}),
]


@pytest.mark.parametrize("rules, tensors, expected", [c[1:] for c in OPS], ids=[c[0] for c in OPS])
def test_each_op_gives_what_torch_gives(tmp_path: Path, rules: str, tensors: dict[str, torch.Tensor],
                                       expected: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> None:
    out = convert(tmp_path, rules, tensors)
    for key, want in expected(tensors).items():
        assert out[key].dtype == want.dtype and torch.equal(out[key], want), key


@pytest.mark.parametrize("rules, tensors", [c[1:3] for c in OPS if "weight-norm" not in c[0] and "cast" not in c[0]],
                         ids=[c[0] for c in OPS if "weight-norm" not in c[0] and "cast" not in c[0]])
def test_plan_run_backwards_rebuilds_every_source_tensor_bit_for_bit(tmp_path: Path, rules: str,
                                                                    tensors: dict[str, torch.Tensor]) -> None:
    convert(tmp_path, rules, tensors)
    prepared = prepare(tmp_path / "rules.yaml", tmp_path / "src.safetensors", with_target=False)
    written = read_checkpoint(tmp_path / "out.safetensors").tree
    rebuilt = reverse(prepared.plan.entries, prepared.source.infos)
    assert sorted(r.source for r in rebuilt) == sorted(tensors)
    for item in rebuilt:
        assert item.exact
        assert payload_bytes(produce(item.recipe, written)) == prepared.source.tensors[item.source].read().tobytes()


def payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, (FileSpan, Parts)):
        spans = payload.spans if isinstance(payload, Parts) else (payload,)
        data = b""
        for span in spans:
            with open(span.path, "rb") as f:
                f.seek(span.start)
                data += f.read(span.length)
        return data
    if isinstance(payload, torch.Tensor):
        return payload.contiguous().view(torch.uint8).numpy().tobytes()
    return np.asarray(payload).tobytes()


def test_fold_run_backwards_gives_an_equivalent_weight_norm_not_the_same_bytes(tmp_path: Path) -> None:
    rules, tensors = next(c[1:3] for c in OPS if c[0] == "fold-weight-norm")
    convert(tmp_path, rules, tensors)
    prepared = prepare(tmp_path / "rules.yaml", tmp_path / "src.safetensors", with_target=False)
    written = read_checkpoint(tmp_path / "out.safetensors").tree
    rebuilt = {r.source: r for r in reverse(prepared.plan.entries, prepared.source.infos)}
    assert not rebuilt["wn.g"].exact and not rebuilt["wn.v"].exact
    g = torch.frombuffer(bytearray(payload_bytes(produce(rebuilt["wn.g"].recipe, written))), dtype=torch.float32)
    v = torch.frombuffer(bytearray(payload_bytes(produce(rebuilt["wn.v"].recipe, written))), dtype=torch.float32)
    refolded = torch._weight_norm(v.reshape(3, 2, 4), g.reshape(3, 1, 1), 0)
    assert torch.allclose(refolded, torch._weight_norm(tensors["wn.v"], tensors["wn.g"], 0), atol=1e-6)


def test_split_and_concat_along_dim_0_stream_file_spans_without_loading(tmp_path: Path) -> None:
    rules = """\
  - from: fused
    split: 0
    to: [a, b]
  - from: [x, y]
    concat: 0
    to: xy
"""
    convert(tmp_path, rules, {"fused": r(6, 4), "x": r(2, 3), "y": r(5, 3)})
    prepared = prepare(tmp_path / "rules.yaml", tmp_path / "src.safetensors", with_target=False)
    payloads = {e.target: produce(e.recipe, prepared.source.tensors) for e in prepared.plan.entries}
    assert isinstance(payloads["a"], FileSpan) and isinstance(payloads["b"], FileSpan)
    assert isinstance(payloads["xy"], Parts) and len(payloads["xy"].spans) == 2


DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int8,
          torch.uint8, torch.bool, torch.float8_e4m3fn]


def random_bits(dtype: torch.dtype, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    size = torch.empty((), dtype=dtype).element_size()
    raw = torch.randint(0, 256, (*shape, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    return (raw[..., 0] % 2 == 1) if dtype == torch.bool else raw.view(dtype).reshape(shape)


def _shape_rule(draw: Any, shape: tuple[int, ...]) -> str:
    """A random byte-exact rule for a tensor of ``shape``: shape ops, a split, an unstack or a tie."""
    ndim = len(shape)
    kind = draw(st.sampled_from(["ops", "split", "unstack", "tie"]))
    dim = draw(st.integers(0, ndim - 1))
    if kind == "split" and shape[dim] % 2 == 0:
        return f"  - from: t\n    split: {dim}\n    to: [a, b]\n"
    if kind == "unstack":
        return f"  - from: t\n    unstack: {{dim: {dim}, index: k}}\n    to: u.{{k}}\n"
    if kind == "tie":
        return "  - from: t\n    to: [a, b]\n"
    perm = draw(st.permutations(range(ndim)))
    ops = [f"{{permute: [{', '.join(map(str, perm))}]}}", "{unsqueeze: 0}", "{squeeze: 0}",
           f"{{reshape: [-1], back: [{', '.join(str(shape[p]) for p in perm)}]}}"]
    if shape[0] % 2 == 0:
        ops.append(f"{{rope_permute: {draw(st.sampled_from([d for d in (1, 2) if shape[0] % (2 * d) == 0]))}}}")
    return f"  - from: t\n    to: out\n    ops: [{', '.join(ops)}]\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), dtype=st.sampled_from(DTYPES), shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       seed=st.integers(0, 2**16))
def test_any_byte_exact_op_and_its_inverse_are_bit_identical_for_every_dtype(
        tmp_path_factory: pytest.TempPathFactory, data: Any, dtype: torch.dtype, shape: list[int], seed: int) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    tensor = random_bits(dtype, tuple(shape), seed)
    rules = _shape_rule(data.draw, tuple(shape))
    save_file({"t": tensor}, tmp / "src.safetensors")
    (tmp / "rules.yaml").write_text(HEAD + rules)
    prepared = prepare(tmp / "rules.yaml", tmp / "src.safetensors", with_target=False)
    assert not prepared.plan.problems, prepared.plan.problems
    write_safetensors(tmp / "out.safetensors", output_tensors(prepared), {})
    written = read_checkpoint(tmp / "out.safetensors").tree
    assert {info.dtype for info in (e.info for e in prepared.plan.entries)} == {str(dtype).removeprefix("torch.")}
    (item,) = reverse(prepared.plan.entries, prepared.source.infos)
    assert payload_bytes(produce(item.recipe, written)) == payload_bytes(tensor)


PROBLEMS = [
    ("split 10 rows in 3", "  - from: t\n    split: 0\n    to: [a, b, c]\n", {"t": r(10, 2)},
     "ops.yaml:8: rule 't' cannot make its targets from 't': cannot split dim 0 of size 10 into 3 equal parts"),
    ("a gap in the stacked indices", "  - from: c.{i:int}\n    stack: {dim: 0, over: i}\n    to: all\n",
     {"c.0": r(2), "c.2": r(2)}, "ops.yaml:8: rule 'c.{i:int}': the 'i' indices are not 0..2 without gaps "
                                 "(missing [1]; first key 'c.0')"),
    ("two keys with one index", "  - from: c.{i:int}\n    stack: {dim: 0, over: i}\n    to: all\n",
     {"c.0": r(2), "c.00": r(2)}, "ops.yaml:8: rule 'c.{i:int}': keys ['c.0', 'c.00'] have the same index 'i'"),
    ("a source without its partner", '  - from: ["a.{n}", "b.{n}"]\n    concat: 0\n    to: ab.{n}\n',
     {"a.x": r(2), "a.y": r(2), "b.x": r(2)},
     "ops.yaml:8: rule 'a.{n} + b.{n}': 'a.y' has no partner for 'b.{n}' (with {'n': 'y'})"),
    ("a negative index", "  - from: l.{i:int}\n    to: m.{i - 1}\n", {"l.0": r(2)},
     "ops.yaml:8: rule 'l.{i:int}' cannot make its targets from 'l.0': target index {i - 1} is -1, which is "
     "negative"),
    ("squeezing a dim that is not 1", "  - from: t\n    to: u\n    ops: [{squeeze: 0}]\n", {"t": r(3, 2)},
     "ops.yaml:8: rule 't' cannot make its targets from 't': cannot squeeze dim 0 of [3, 2]: its size is not 1"),
    ("rope rows that do not split into heads", "  - from: t\n    to: u\n    ops: [{rope_permute: 4}]\n",
     {"t": r(6, 2)}, "ops.yaml:8: rule 't' cannot make its targets from 't': rope permutation: 6 rows do not "
                     "split into 4 heads of pairs"),
    ("copies that differ", "  - from: r.{l:int}\n    dedup: l\n    to: rot\n", {"r.0": r(3), "r.1": r(3, seed=1)},
     "ops.yaml:8: 'r.1' differs from 'r.0', but rule 'r.{l:int}' keeps one copy of them (dedup); the copies "
     "must be identical"),
    ("the wrong number of copies", "  - from: r.{l:int}\n    dedup: {over: l, count: heads}\n    to: rot\n",
     {"r.0": r(3), "r.1": r(3), "r.2": r(3)}, "ops.yaml:8: rule 'r.{l:int}' cannot make its targets from 'r.0', "
                                               "'r.1', 'r.2': dedup expects 2 copies (count: heads), found 3"),
]


@pytest.mark.parametrize("rules, tensors, message", [p[1:] for p in PROBLEMS], ids=[p[0] for p in PROBLEMS])
def test_inputs_that_do_not_fit_an_op_are_plan_problems_at_the_rule(tmp_path: Path, rules: str,
                                                                    tensors: dict[str, torch.Tensor],
                                                                    message: str) -> None:
    save_file(tensors, tmp_path / "src.safetensors")
    ruleset = compile_text(HEAD + rules, "ops.yaml")
    prepared = prepare(ruleset, tmp_path / "src.safetensors", with_target=False)
    assert [str(p) for p in prepared.plan.problems] == [message]


def test_inline_examples_check_output_keys_and_shapes() -> None:
    from remap import run_examples

    text = HEAD + """\
  - from: l.{i:int}.in_proj_weight
    split: 0
    to: ["l.{i}.q", "l.{i}.k", "l.{i}.v"]
    examples:
      - l.0.in_proj_weight: [l.0.q, l.0.k, l.0.v]
      - key: l.3.in_proj_weight
        shape: [12, 4]
        to: [l.3.q, l.3.k, l.3.v]
        shapes: [[4, 4], [4, 4], [4, 4]]
      - key: l.3.in_proj_weight
        shape: [12, 4]
        to: [l.3.q, l.3.k, l.3.v]
        shapes: [[4, 4], [4, 4], [4, 3]]
  - from: ["a.{n:int}", "b.{n:int}"]
    concat: 0
    to: ab.{n}
    examples:
      - key: [a.1, b.1]
        shape: [[2, 3], [5, 3]]
        to: ab.1
        shapes: [[7, 3]]
"""
    failures = [str(f) for f in run_examples(compile_text(text, "ops.yaml"))]
    assert failures == ["ops.yaml:17: example 'l.3.in_proj_weight': expected shapes [[4, 4], [4, 4], [4, 3]], "
                        "got [[4, 4], [4, 4], [4, 4]] from rule 'l.{i:int}.in_proj_weight' (ops.yaml:8)"]
