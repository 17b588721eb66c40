"""Initialised tensors: exact values in every dtype, deterministic random fills."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from remap.io import fills
from remap.tensors import TensorInfo


def init_tensor(spec: tuple[str, TensorInfo, str | float]) -> object:
    return fills.init_tensor(*spec)


def entry(fill: str | float, shape: tuple[int, ...], dtype: str, key: str = "k") -> tuple[str, TensorInfo, str | float]:
    return key, TensorInfo(shape, dtype), fill


def as_torch(value: object, dtype: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    array = np.asarray(value)
    if dtype == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64", "float8_e4m3fn"])
@pytest.mark.parametrize("fill, reference", [("eye", lambda d: torch.eye(3, 3, dtype=d)),
                                             ("zeros", lambda d: torch.zeros(3, 3, dtype=d)),
                                             ("ones", lambda d: torch.ones(3, 3, dtype=d))])
def test_fills_are_exact_in_every_dtype(dtype: str, fill: str, reference) -> None:
    got = as_torch(init_tensor(entry(fill, (3, 3), dtype)), dtype)
    want = reference(getattr(torch, dtype))
    assert got.dtype == want.dtype
    assert torch.equal(got.view(torch.uint8), want.view(torch.uint8))


def test_uniform_fill_is_deterministic_per_key_and_in_range() -> None:
    a = np.asarray(init_tensor(entry("uniform", (768,), "float32", key="masked_spec_embed")))
    b = np.asarray(init_tensor(entry("uniform", (768,), "float32", key="masked_spec_embed")))
    c = np.asarray(init_tensor(entry("uniform", (768,), "float32", key="other")))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0.0 and a.max() < 1.0 and 0.45 < a.mean() < 0.55


def test_bfloat16_uniform_matches_torch_rounding() -> None:
    got = as_torch(init_tensor(entry("uniform", (1000,), "bfloat16")), "bfloat16")
    f32 = torch.from_numpy(np.asarray(init_tensor(entry("uniform", (1000,), "float32"))))
    assert torch.equal(got, f32.to(torch.bfloat16))


def test_constant_fill() -> None:
    got = as_torch(init_tensor(entry(-2.0, (2, 3), "bfloat16")), "bfloat16")  # type: ignore[arg-type]
    assert torch.equal(got, torch.full((2, 3), -2.0, dtype=torch.bfloat16))
