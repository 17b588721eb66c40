"""The streaming safetensors writer produces files the safetensors library reads back bit for bit."""

from __future__ import annotations

from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from remap.io.writer import OutTensor, write_safetensors
from remap.tensors import TensorInfo

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int16,
          torch.int8, torch.uint8, torch.bool, torch.float8_e4m3fn, torch.float8_e5m2]


def make(dtype: torch.dtype, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    raw = torch.randint(0, 256, (*shape, torch.empty((), dtype=dtype).element_size()), generator=g,
                        dtype=torch.uint8)
    if dtype == torch.bool:
        return raw[..., 0] % 2 == 1
    return raw.view(dtype).reshape(shape)


def out(key: str, tensor: torch.Tensor) -> OutTensor:
    info = TensorInfo(tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."))
    return OutTensor(key, info, lambda: tensor)


def read_back(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(path, "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def bits(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(0, 5), max_size=3),
                          st.integers(0, 2**16), st.booleans()), min_size=1, max_size=6))
def test_any_dtype_and_shape_round_trips_bit_exact(tmp_path_factory, specs) -> None:
    tensors = {}
    for i, (dtype, shape, seed, transpose) in enumerate(specs):
        t = make(dtype, tuple(shape), seed)
        tensors[f"t{i}"] = t.transpose(0, -1) if transpose and t.dim() >= 2 else t  # non-contiguous views too
    path = tmp_path_factory.mktemp("st") / "m.safetensors"
    write_safetensors(path, [out(k, v) for k, v in tensors.items()], {"format": "pt"})
    back, meta = read_back(path)
    assert meta == {"format": "pt"}
    assert set(back) == set(tensors)
    for key, tensor in tensors.items():
        assert back[key].dtype == tensor.dtype and back[key].shape == tensor.shape
        assert bits(back[key]) == bits(tensor)


def test_views_sharing_one_storage_are_written_independently(tmp_path: Path) -> None:
    base = torch.arange(24, dtype=torch.float32)
    views = {"a": base[:12].view(3, 4), "b": base[12:].view(4, 3).t(), "c": base.view(2, 12)}
    path = tmp_path / "m.safetensors"
    write_safetensors(path, [out(k, v) for k, v in views.items()], {})
    back, _ = read_back(path)
    for key, view in views.items():
        assert torch.equal(back[key], view)
    assert path.stat().st_size < 1024  # each view is stored once, at its own size


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(0, 6), max_size=3), st.integers(0, 2**16)),
                min_size=1, max_size=8),
       st.integers(1, 400))
def test_any_shard_size_round_trips_through_the_index(tmp_path_factory, specs, max_bytes: int) -> None:
    import json

    from remap.io.readers import read_checkpoint
    from remap.io.shards import write_weights

    tensors = {f"t{i}": make(dtype, tuple(shape), seed) for i, (dtype, shape, seed) in enumerate(specs)}
    folder = tmp_path_factory.mktemp("shards")
    write_weights(folder, [out(k, v) for k, v in sorted(tensors.items())], {"format": "pt"}, max_bytes)
    if (folder / "model.safetensors.index.json").exists():
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        assert set(index["weight_map"]) == set(tensors)
        assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
    tree = read_checkpoint(folder).tree
    assert set(tree) == set(tensors)
    for key, tensor in tensors.items():
        assert tree[key].read().tobytes() == bits(tensor)


def test_a_file_already_there_is_replaced_whole_with_no_stale_tail(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"\xff" * 100_000)  # longer than what is written over it
    tensor = torch.arange(6, dtype=torch.float32)
    written = write_safetensors(path, [out("t", tensor)], {})
    assert path.stat().st_size == written
    back, _ = read_back(path)
    assert torch.equal(back["t"], tensor)
