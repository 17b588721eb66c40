"""``remap diff``: a conversion checked weight by weight against a folder, and two checkpoints against each other.

Every corruption is made on the file's bytes, at offsets computed here from the safetensors header
(or from the torch file's storage offsets), never through remap's writer. Expected figures come from
torch or from the bytes written, never from remap's own comparison.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file

import remap.compare
from remap import convert
from remap.compare import Report, compare, other_spelling
from remap.io.readers import read_checkpoint
from tests.conftest import EXAMPLE, ROOT

RULES = ROOT / "rules" / "distilhubert.yaml"


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled example converted once for this module (tests copy it before corrupting it)."""
    out = tmp_path_factory.mktemp("diff") / "out"
    convert("distilhubert", EXAMPLE, out)
    return out


def copy_of(folder: Path, tmp_path: Path, name: str = "copy") -> Path:
    return Path(shutil.copytree(folder, tmp_path / name))


def header(path: Path) -> tuple[int, dict[str, Any]]:
    """(where the data region starts, the header's tensor entries), read with struct and json."""
    raw = path.read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    entries = json.loads(raw[8:8 + size])
    entries.pop("__metadata__", None)
    return 8 + size, entries


def byte_range(path: Path, key: str) -> tuple[int, int]:
    base, entries = header(path)
    start, stop = entries[key]["data_offsets"]
    return base + start, stop - start


def flip(path: Path, offset: int, bit: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        value = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([value ^ (1 << bit)]))


def diff(*paths: Path | str, tolerance: float = 0.0) -> Report:
    return compare([str(p) for p in paths], tolerance=tolerance)


def not_identical(report: Report) -> list[str]:
    return [t.key for t in report.tensors if t.status != "identical"]


def test_apply_then_diff_says_every_tensor_is_identical(cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert cli("apply", "distilhubert", EXAMPLE, "-o", out).code == 0
    count = len(header(out / "model.safetensors")[1])
    result = cli("diff", "distilhubert", EXAMPLE, out)
    assert (result.code, result.out, result.err) == (0, f"{count} identical, 0 differ, 0 missing, 0 extra\n", "")


def test_a_flipped_bit_in_any_tensor_is_found_in_exactly_that_tensor(converted: Path, tmp_path: Path) -> None:
    folder = copy_of(converted, tmp_path)
    weights = folder / "model.safetensors"
    keys = sorted(header(weights)[1])
    rng = random.Random(14)
    for number, key in enumerate(keys):  # every tensor; the first and last byte of some, a random byte of the rest
        start, length = byte_range(weights, key)
        byte = (0, length - 1)[number % 2] if number % 3 == 0 else rng.randrange(length)
        bit = rng.randrange(8)
        flip(weights, start + byte, bit)
        report = diff(RULES, EXAMPLE, folder)
        flip(weights, start + byte, bit)
        assert not_identical(report) == [key], (key, byte, bit)
        assert report.counts()["identical"] == len(keys) - 1
        assert not report.ok
        assert report.lines()[0].startswith(f"{key}: differs: ")
    assert diff(RULES, EXAMPLE, folder).ok  # every flip was undone


def test_flips_are_found_when_reads_are_split_in_small_chunks(converted: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads cross chunk boundaries inside a tensor: a difference in any chunk is found."""
    monkeypatch.setattr(remap.compare, "CHUNK", 24)
    folder = copy_of(converted, tmp_path)
    weights = folder / "model.safetensors"
    key = "encoder.layers.1.feed_forward.intermediate_dense.weight"
    start, length = byte_range(weights, key)
    assert diff(RULES, EXAMPLE, folder).ok
    for byte in (0, 23, 24, length // 2, length - 1):
        flip(weights, start + byte, 3)
        assert not_identical(diff(RULES, EXAMPLE, folder)) == [key]
        flip(weights, start + byte, 3)


def test_two_swapped_layers_of_the_same_shape_are_both_named(cli, converted: Path, tmp_path: Path) -> None:
    folder = copy_of(converted, tmp_path)
    weights = folder / "model.safetensors"
    first, second = (f"encoder.layers.{i}.feed_forward.intermediate_dense.weight" for i in (0, 1))
    (a, n), (b, m) = byte_range(weights, first), byte_range(weights, second)
    assert n == m
    raw = bytearray(weights.read_bytes())
    assert raw[a:a + n] != raw[b:b + n]
    raw[a:a + n], raw[b:b + n] = raw[b:b + n], raw[a:a + n]
    weights.write_bytes(bytes(raw))
    result = cli("diff", "distilhubert", EXAMPLE, folder)
    lines = result.out.splitlines()
    assert result.code == 1
    assert [line.split(":")[0] for line in lines[:-1]] == [first, second]
    assert lines[-1] == "47 identical, 2 differ, 0 missing, 0 extra"


def test_a_dropped_tensor_is_missing_and_an_added_one_is_extra(cli, converted: Path, tmp_path: Path) -> None:
    folder = copy_of(converted, tmp_path)
    weights = folder / "model.safetensors"
    tensors = load_numpy(weights)
    del tensors["encoder.layers.0.attention.k_proj.weight"]
    tensors["encoder.layers.9.extra.weight"] = np.zeros(3, dtype=np.float32)
    save_numpy(tensors, weights)
    result = cli("diff", "distilhubert", EXAMPLE, folder)
    assert result.code == 1
    assert result.out.splitlines() == [
        f"encoder.layers.0.attention.k_proj.weight: missing from {folder} "
        "(made from 'encoder.layers.0.self_attn.k_proj.weight')",
        f"encoder.layers.9.extra.weight: extra in {folder} (nothing produces it)",
        "48 identical, 0 differ, 1 missing, 1 extra",
    ]


def test_plan_problems_are_differences_one_line_each(cli, converted: Path, tmp_path: Path) -> None:
    folder = copy_of(converted, tmp_path)
    weights = folder / "model.safetensors"
    tensors = load_numpy(weights)
    tensors["encoder.layer_norm.weight"] = tensors["encoder.layer_norm.weight"][:-1].copy()
    save_numpy(tensors, weights)
    rules = tmp_path / "no-drop.yaml"
    text = RULES.read_text()
    drop = text.index("  - drop: output_layer.**")
    rules.write_text(text[:drop] + text[text.index("\ninit:", drop) + 1:])
    result = cli("diff", rules, EXAMPLE, folder)
    lines = result.out.splitlines()
    assert result.code == 1
    assert len([line for line in lines if "is not mapped by any rule" in line]) == 4  # the 4 output_layer keys
    assert [line for line in lines if "shape mismatch" in line] == [
        f"{rules}:{line_of(rules, 'encoder.layer_norm.')}: shape mismatch: 'encoder.layer_norm.weight' is [32] "
        f"but {folder} expects [31] for 'encoder.layer_norm.weight'"]
    assert len(lines) == 6
    assert lines[-1] == "48 identical, 0 differ, 0 missing, 0 extra, 5 plan problems"  # the mismatch is not compared


def line_of(path: Path, needle: str) -> int:
    """The line of the rule whose ``from:`` (or ``to:``) names ``needle``."""
    lines = path.read_text().splitlines()
    found = next(i for i, line in enumerate(lines) if needle in line and "from:" in line)
    return next(i for i in range(found, -1, -1) if lines[i].lstrip().startswith("- from:")) + 1


def test_a_save_pretrained_folder_diffs_clean_whatever_weight_norm_names_it_writes(converted: Path,
                                                                                   tmp_path: Path) -> None:
    from transformers import HubertModel

    saved = tmp_path / "saved"
    HubertModel.from_pretrained(converted).save_pretrained(saved)
    keys = set(header(saved / "model.safetensors")[1])
    # transformers 5.24 writes the parametrization's names (the rule file's spelling) ...
    assert {"encoder.pos_conv_embed.conv.parametrizations.weight.original0",
            "encoder.pos_conv_embed.conv.parametrizations.weight.original1"} <= keys
    report = diff(RULES, EXAMPLE, saved)
    assert report.ok, report.lines()
    assert report.counts()["identical"] == len(keys)
    # ... and older versions write weight_g / weight_v: the same tensors under their legacy names.
    tensors = load_numpy(saved / "model.safetensors")
    legacy = {str(other_spelling(k)) if "parametrizations" in k else k: v for k, v in tensors.items()}
    assert "encoder.pos_conv_embed.conv.weight_g" in legacy
    save_numpy(legacy, saved / "model.safetensors", metadata={"format": "pt"})
    report = diff(RULES, EXAMPLE, saved)
    assert report.ok, report.lines()
    assert {t.key: t.other_key for t in report.tensors if t.other_key} == {
        "encoder.pos_conv_embed.conv.parametrizations.weight.original0": "encoder.pos_conv_embed.conv.weight_g",
        "encoder.pos_conv_embed.conv.parametrizations.weight.original1": "encoder.pos_conv_embed.conv.weight_v"}
    assert diff(converted, saved).ok  # two folders, one spelling each


def test_a_sharded_save_pretrained_folder_diffs_clean(converted: Path, tmp_path: Path) -> None:
    from transformers import HubertModel

    saved = tmp_path / "sharded"
    HubertModel.from_pretrained(converted).save_pretrained(saved, max_shard_size="40KB")
    assert (saved / "model.safetensors.index.json").is_file()
    report = diff(RULES, EXAMPLE, saved)
    assert report.ok, report.lines()
    assert report.counts()["identical"] == len(header(converted / "model.safetensors")[1])


def test_other_spelling_is_the_alias_table() -> None:
    assert other_spelling("a.conv.weight_g") == "a.conv.parametrizations.weight.original0"
    assert other_spelling("a.conv.parametrizations.weight.original1") == "a.conv.weight_v"
    assert other_spelling("a.conv.weight") is None
    assert other_spelling("a.weight_gate") is None


def storage_offset(path: Path, state_dict: str, key: str) -> int:
    """The file offset of a float32 torch checkpoint tensor's first byte (its zip member is stored uncompressed)."""
    tensor = read_checkpoint(path).tree[state_dict][key]
    return int(tensor.storage.start + tensor.offset * 4)


def test_two_checkpoints_one_tensor_changed(cli, tmp_path: Path) -> None:
    changed = tmp_path / "changed.ckpt"
    shutil.copyfile(EXAMPLE, changed)
    key = "Distiller.encoder.layers.0.fc1.weight"
    offset = storage_offset(changed, "Distiller", key.removeprefix("Distiller.")) + 4 * 5
    raw = bytearray(changed.read_bytes())
    before = struct.unpack("<f", raw[offset:offset + 4])[0]
    raw[offset:offset + 4] = struct.pack("<f", before + 1.0)
    changed.write_bytes(bytes(raw))
    report = diff(EXAMPLE, changed)
    assert not_identical(report) == [key]
    worst = next(t for t in report.tensors if t.key == key)
    assert worst.max_abs == pytest.approx(abs(np.float32(before + 1.0) - np.float32(before)))
    assert report.counts() == {"identical": 207, "close": 0, "differ": 1, "missing": 0, "extra": 0, "problems": 0,
                               "not_compared": 0}
    assert cli("diff", EXAMPLE, changed).code == 1
    same = cli("diff", EXAMPLE, EXAMPLE)
    assert (same.code, same.out) == (0, "208 identical, 0 differ, 0 missing, 0 extra\n")


def test_two_checkpoints_in_any_format_compare_their_flattened_leaves(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remap.compare, "CHUNK", 16)  # strided and multi-chunk reads
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 5, generator=g)
    nested = {"model": {"w": weight.t(), "deeper": {"b": torch.randn(7, generator=g)}, "steps": [torch.arange(3)]},
              "epoch": 3}
    torch.save(nested, tmp_path / "zip.pt")
    torch.save(nested, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    flat = {"model.w": weight.t().contiguous(), "model.deeper.b": nested["model"]["deeper"]["b"],
            "model.steps.0": torch.arange(3)}
    save_file(flat, tmp_path / "flat.safetensors")
    for a, b in (("zip.pt", "legacy.pt"), ("zip.pt", "flat.safetensors"), ("flat.safetensors", "legacy.pt")):
        report = diff(tmp_path / a, tmp_path / b)
        assert report.ok and report.counts()["identical"] == 3, (a, b, report.lines())
    flat["model.deeper.b"] = flat["model.deeper.b"] * 2
    del flat["model.steps.0"]
    flat["model.other"] = torch.zeros(1)
    save_file(flat, tmp_path / "flat.safetensors")
    report = diff(tmp_path / "legacy.pt", tmp_path / "flat.safetensors")
    assert report.lines() == [
        "model.deeper.b: differs: max |diff| "
        f"{float(nested['model']['deeper']['b'].abs().max()):.3g}, relative 1",
        f"model.other: extra in {tmp_path / 'flat.safetensors'} (not in {tmp_path / 'legacy.pt'})",
        f"model.steps.0: missing from {tmp_path / 'flat.safetensors'}",
        "1 identical, 1 differ, 1 missing, 1 extra"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8,
                                   torch.int64, torch.float8_e4m3fn])
def test_max_diff_and_relative_error_per_dtype_match_torch(tmp_path: Path, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(1)
    a = (torch.randn(40, generator=g) * 4).to(dtype)
    b = a.clone()
    b[[3, 17]] = (torch.tensor([9.0, -2.5]) + a[[3, 17]].double()).to(dtype)
    save_file({"t": a}, tmp_path / "a.safetensors")
    save_file({"t": b}, tmp_path / "b.safetensors")
    [found] = diff(tmp_path / "a.safetensors", tmp_path / "b.safetensors").tensors
    expected = float((a.double() - b.double()).abs().max())
    assert expected > 0
    assert found.status == "differs"
    assert found.max_abs == pytest.approx(expected)
    assert found.relative == pytest.approx(expected / float(a.double().abs().max()))


def test_nan_against_nan_counts_zero_and_nan_against_a_number_counts_infinity(tmp_path: Path) -> None:
    a = np.array([np.nan, 1.0, -np.inf, 0.0, 2.0], dtype=np.float32)
    b = a.copy()
    b[4] = 2.5
    quiet_nan_other_payload = np.array([0x7FC00001], dtype=np.uint32).view(np.float32)[0]
    b[0] = quiet_nan_other_payload
    save_numpy({"t": a}, tmp_path / "a.safetensors")
    save_numpy({"t": b}, tmp_path / "b.safetensors")
    [found] = diff(tmp_path / "a.safetensors", tmp_path / "b.safetensors").tensors
    assert (found.status, found.max_abs) == ("differs", 0.5)  # the NaNs (other payloads) and the infs agree
    b[1] = np.nan
    save_numpy({"t": b}, tmp_path / "b.safetensors")
    report = diff(tmp_path / "a.safetensors", tmp_path / "b.safetensors", tolerance=10.0)
    assert (report.tensors[0].status, report.tensors[0].max_abs, report.ok) == ("differs", float("inf"), False)
    assert report.to_json()["tensors"][0]["max_abs_diff"] == "inf"
    b[1], b[4] = 1.0, 2.0  # only the NaN payload differs: not byte-equal, yet no value differs
    save_numpy({"t": b}, tmp_path / "b.safetensors")
    exact = diff(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert exact.lines()[0] == "t: differs: max |diff| 0, relative 0; bytes differ, values equal (signed zeros or " \
                               "NaN payloads)"
    assert diff(tmp_path / "a.safetensors", tmp_path / "b.safetensors", tolerance=1e-9).ok


def test_without_torch_a_float8_difference_is_reported_as_bytes(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    a = torch.linspace(-2, 2, 9).to(torch.float8_e5m2)
    b = a.clone()
    b[4] = 1.0
    save_file({"t": a}, tmp_path / "a.safetensors")
    save_file({"t": b}, tmp_path / "b.safetensors")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails
    report = diff(tmp_path / "a.safetensors", tmp_path / "b.safetensors", tolerance=10.0)
    assert report.lines() == ["t: differs: bytes differ (no numeric view of float8_e5m2/float8_e5m2 without torch)",
                              "0 identical, 1 differ, 0 missing, 0 extra"]
    save_file({"t": a}, tmp_path / "b.safetensors")
    assert diff(tmp_path / "a.safetensors", tmp_path / "b.safetensors").ok  # equal bytes need no numbers


def test_two_checkpoints_with_a_shape_change(tmp_path: Path) -> None:
    save_file({"w": torch.zeros(2, 3), "b": torch.ones(2)}, tmp_path / "a.safetensors")
    save_file({"w": torch.zeros(3, 2), "b": torch.ones(2, dtype=torch.float16)}, tmp_path / "b.safetensors")
    assert diff(tmp_path / "a.safetensors", tmp_path / "b.safetensors").lines() == [
        "b: differs: dtype float32 -> float16; max |diff| 0, relative 0",
        "w: differs: shape [2, 3] -> [3, 2]",
        "0 identical, 2 differ, 0 missing, 0 extra"]


def test_a_dtype_change_is_reported_and_judged_by_the_tolerance(converted: Path, tmp_path: Path) -> None:
    folder = copy_of(converted, tmp_path)
    tensors = load_numpy(folder / "model.safetensors")
    key = "encoder.layers.0.attention.q_proj.weight"
    exact = tensors[key]
    tensors[key] = exact.astype(np.float16)
    save_numpy(tensors, folder / "model.safetensors")
    expected = float(np.abs(exact.astype(np.float64) - tensors[key].astype(np.float64)).max())
    strict = diff(RULES, EXAMPLE, folder)
    assert strict.lines()[0] == f"{key}: differs: dtype float32 -> float16; max |diff| {expected:.3g}, relative " \
                                f"{expected / float(np.abs(exact).max()):.3g}"
    assert not strict.ok
    loose = diff(RULES, EXAMPLE, folder, tolerance=1e-2)
    assert loose.ok
    assert [(t.key, t.status) for t in loose.tensors if t.status != "identical"] == [(key, "close")]
    assert loose.lines()[0].startswith(f"{key}: within tolerance: dtype float32 -> float16; ")


def test_tolerance_lets_a_tiny_change_pass_and_not_a_large_one(cli, converted: Path, tmp_path: Path) -> None:
    folder = copy_of(converted, tmp_path)
    weights = folder / "model.safetensors"
    key = "encoder.layers.1.attention.out_proj.bias"
    start, _ = byte_range(weights, key)
    raw = bytearray(weights.read_bytes())
    value = struct.unpack("<f", raw[start:start + 4])[0]
    raw[start:start + 4] = struct.pack("<f", value + 1e-5)
    weights.write_bytes(bytes(raw))
    strict = cli("diff", "distilhubert", EXAMPLE, folder)
    assert strict.code == 1
    assert strict.out.splitlines()[0].startswith(f"{key}: differs: max |diff| 1e-05")
    loose = cli("diff", "distilhubert", EXAMPLE, folder, "--tolerance", "1e-3")
    assert loose.code == 0
    assert loose.out.splitlines() == [loose.out.splitlines()[0], "48 identical, 1 within tolerance, 0 differ, "
                                                                 "0 missing, 0 extra"]
    assert loose.out.startswith(f"{key}: within tolerance: max |diff| 1e-05")
    raw[start:start + 4] = struct.pack("<f", value + 0.5)
    weights.write_bytes(bytes(raw))
    assert cli("diff", "distilhubert", EXAMPLE, folder, "--tolerance", "1e-3").code == 1
    negative = cli("diff", "distilhubert", EXAMPLE, folder, "--tolerance", "-1")
    assert (negative.code, negative.err) == (1, "error: --tolerance must be a number >= 0, got -1.0\n")


def test_json_output_shape(cli, converted: Path, tmp_path: Path) -> None:
    folder = copy_of(converted, tmp_path)
    weights = folder / "model.safetensors"
    key = "encoder.layers.0.final_layer_norm.weight"
    flip(weights, byte_range(weights, key)[0] + 2, 7)
    result = cli("diff", "distilhubert", EXAMPLE, folder, "--json")
    assert result.code == 1
    data = json.loads(result.out)
    assert set(data) == {"ok", "mode", "reference", "candidate", "tolerance", "summary", "tensors", "missing",
                         "extra", "not_compared", "problems"}
    assert (data["ok"], data["mode"], data["reference"], data["candidate"], data["tolerance"]) == (
        False, "conversion", str(EXAMPLE), str(folder), 0.0)
    assert data["summary"] == {"identical": 48, "close": 0, "differ": 1, "missing": 0, "extra": 0, "problems": 0,
                               "not_compared": 0}
    assert [t["key"] for t in data["tensors"]] == sorted(header(weights)[1])
    [bad] = [t for t in data["tensors"] if t["status"] != "identical"]
    assert set(bad) == {"key", "status", "shape", "dtype", "other_dtype", "max_abs_diff", "relative_error",
                        "other_key", "note"}
    assert (bad["key"], bad["status"], bad["shape"], bad["dtype"], bad["other_dtype"]) == (
        key, "differs", [32], "float32", "float32")
    assert bad["max_abs_diff"] > 0 and bad["relative_error"] > 0
    assert (data["missing"], data["extra"], data["problems"]) == ([], [], [])


OPS_RULES = """\
remap: 1
name: ops-diff
source:
  state_dict: ''
  defaults: {width: 32}
target:
  class: HubertModel
  config:
    hidden_size: width
    num_hidden_layers: 2
    num_attention_heads: 4
    intermediate_size: 64
    conv_dim: [16, 16]
    conv_kernel: [10, 3]
    conv_stride: [5, 2]
    num_conv_pos_embeddings: 16
    num_conv_pos_embedding_groups: 4
rules:
  - from: encoder.layers.{i:int}.attention.in_proj_{p:weight|bias}
    split: 0
    to:
      - encoder.layers.{i}.attention.q_proj.{p}
      - encoder.layers.{i}.attention.k_proj.{p}
      - encoder.layers.{i}.attention.v_proj.{p}
  - from: "{rest:path}.kernel"
    to: "{rest}.weight"
    ops: [{transpose: [0, 1]}]
  - from: ["encoder.layers.{i:int}.feed_forward.output_dense.bias_lo", "encoder.layers.{i:int}.feed_forward.output_dense.bias_hi"]
    concat: 0
    to: encoder.layers.{i}.feed_forward.output_dense.bias
  - from: "{rest:path}.{last}"
    to: "{rest}.{last}"
    when: last not in ["kernel", "bias_lo", "bias_hi"] and "in_proj_" not in last
  - from: masked_spec_embed
    to: masked_spec_embed
"""


def ops_source(path: Path) -> None:
    """A HubertModel's weights in another layout: fused q/k/v, [in, out] kernels, a bias in two halves."""
    from transformers import HubertConfig, HubertModel

    config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                          conv_dim=[16, 16], conv_kernel=[10, 3], conv_stride=[5, 2], num_conv_pos_embeddings=16,
                          num_conv_pos_embedding_groups=4)
    torch.manual_seed(0)
    state = HubertModel(config).state_dict()
    source: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        head, _, last = key.rpartition(".")
        if ".attention." in key and key.rsplit(".", 2)[-2] in ("q_proj", "k_proj", "v_proj"):
            layer = key.split(".attention.")[0]
            source[f"{layer}.attention.in_proj_{last}"] = torch.cat(
                [state[f"{layer}.attention.{p}_proj.{last}"] for p in "qkv"])
        elif ".feed_forward." in key and last == "weight":
            source[f"{head}.kernel"] = value.t().contiguous()
        elif key.endswith("output_dense.bias"):
            source[f"{key}_lo"], source[f"{key}_hi"] = value[:20].clone(), value[20:].clone()
        else:
            source[key] = value.contiguous()
    save_file(source, path)


@pytest.mark.parametrize("chunk", [remap.compare.CHUNK, 40])
def test_a_conversion_with_ops_diffs_clean_and_a_corrupted_part_is_found(cli, tmp_path: Path, chunk: int,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    rules, source, out = tmp_path / "ops.yaml", tmp_path / "src.safetensors", tmp_path / "out"
    rules.write_text(OPS_RULES)
    ops_source(source)
    assert cli("apply", rules, source, "-o", out).code == 0
    monkeypatch.setattr(remap.compare, "CHUNK", chunk)
    count = len(header(out / "model.safetensors")[1])
    clean = cli("diff", rules, source, out)
    assert (clean.code, clean.out) == (0, f"{count} identical, 0 differ, 0 missing, 0 extra\n")
    weights = out / "model.safetensors"
    for key in ("encoder.layers.1.attention.k_proj.weight", "encoder.layers.0.attention.v_proj.bias",
                "encoder.layers.1.feed_forward.intermediate_dense.weight",
                "encoder.layers.0.feed_forward.output_dense.bias"):
        start, length = byte_range(weights, key)
        flip(weights, start + length - 3, 6)
        report = diff(rules, source, out)
        flip(weights, start + length - 3, 6)
        assert not_identical(report) == [key]


def test_usage_errors_are_one_line(cli, converted: Path, tmp_path: Path) -> None:
    four = cli("diff", "a", "b", "c", "d")
    assert (four.code, four.err) == (1, "error: diff takes RULES SOURCE HF_DIR, or two checkpoints A B\n")
    yaml_pair = cli("diff", RULES, EXAMPLE)
    assert (yaml_pair.code, yaml_pair.err) == (
        1, f"error: '{RULES}' is a rule file: a conversion is checked with RULES SOURCE HF_DIR\n")
    nowhere = cli("diff", "distilhubert", EXAMPLE, tmp_path / "nowhere")
    assert (nowhere.code, nowhere.err) == (1, f"error: {tmp_path / 'nowhere'}: no such file\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("diff", "distilhubert", EXAMPLE, empty).code == 1


def test_diff_imports_neither_torch_nor_transformers(converted: Path) -> None:
    code = ("import sys\nfrom remap.compare import compare\n"
            f"assert compare([{str(RULES)!r}, {str(EXAMPLE)!r}, {str(converted)!r}]).ok\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout == "[]\n"
