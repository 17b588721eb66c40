"""Readers: every format gives the same tensors, bit for bit, and hostile or broken files never run code."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from remap import SourceError
from remap.io.readers import read_checkpoint
from remap.io.source import Record, StoredTensor
from tests.conftest import EXAMPLE, RULES

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int16,
          torch.int8, torch.uint8, torch.bool, torch.float8_e4m3fn, torch.float8_e5m2]


def random_tensor(dtype: torch.dtype, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    size = torch.empty((), dtype=dtype).element_size()
    raw = torch.randint(0, 256, (*shape, size), generator=g, dtype=torch.uint8)
    return (raw[..., 0] % 2 == 1) if dtype == torch.bool else raw.view(dtype).reshape(shape)


def bits(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def tensor_bits(leaf: StoredTensor) -> bytes:
    return leaf.read().tobytes()


tensor_specs = st.lists(st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(0, 4), max_size=3),
                                  st.integers(0, 2**16), st.sampled_from(["plain", "transpose", "slice", "share"])),
                        min_size=1, max_size=5)


def build(specs: list[Any]) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for i, (dtype, shape, seed, kind) in enumerate(specs):
        t = random_tensor(dtype, tuple(shape), seed)
        if kind == "transpose" and t.dim() >= 2:
            t = t.transpose(0, -1)
        elif kind == "slice" and t.dim() >= 1 and t.shape[0] > 1:
            t = t[1:]
        elif kind == "share" and t.numel() > 1:
            tensors[f"t{i}_whole"] = t
            t = t.reshape(-1)[1:]  # a view into the same storage at an offset
        tensors[f"t{i}"] = t
    return tensors


@settings(max_examples=30, deadline=None)
@given(tensor_specs, st.sampled_from(["zip", "legacy"]))
def test_pytorch_files_read_back_bit_exact(tmp_path_factory, specs, fmt: str) -> None:
    tensors = build(specs)
    path = tmp_path_factory.mktemp("rt") / "x.pt"
    torch.save({"model": tensors, "step": 3}, path, _use_new_zipfile_serialization=(fmt == "zip"))
    tree = read_checkpoint(path).tree
    assert tree["step"] == 3
    for key, t in tensors.items():
        leaf = tree["model"][key]
        assert leaf.info.shape == tuple(t.shape) and leaf.info.dtype == str(t.dtype).removeprefix("torch.")
        assert tensor_bits(leaf) == bits(t), key
        loaded = leaf.load()
        assert loaded.dtype == t.dtype and loaded.shape == t.shape and bits(loaded) == bits(t)


@settings(max_examples=20, deadline=None)
@given(tensor_specs)
def test_safetensors_files_read_back_bit_exact(tmp_path_factory, specs) -> None:
    tensors = {k: v.contiguous().clone() for k, v in build(specs).items()}
    path = tmp_path_factory.mktemp("st") / "x.safetensors"
    save_file(tensors, path)
    tree = read_checkpoint(path).tree
    assert set(tree) == set(tensors)
    for key, t in tensors.items():
        assert tensor_bits(tree[key]) == bits(t)


def test_legacy_format_converts_identically_to_zip(make_ckpt, cli, tmp_path: Path) -> None:
    from tests.conftest import TINY

    zip_ckpt, _ = make_ckpt(TINY)
    states = torch.load(zip_ckpt, weights_only=False)
    legacy = tmp_path / "legacy.ckpt"
    torch.save(states, legacy, _use_new_zipfile_serialization=False)
    assert cli("apply", RULES, zip_ckpt, "-o", tmp_path / "a").code == 0
    result = cli("apply", RULES, legacy, "-o", tmp_path / "b")
    assert result.code == 0, result.err
    a = (tmp_path / "a" / "model.safetensors").read_bytes()
    b = (tmp_path / "b" / "model.safetensors").read_bytes()
    assert a.replace(b"states.ckpt", b"") == b.replace(b"legacy.ckpt", b"")


def test_reduce_payload_is_never_called(tmp_path: Path) -> None:
    marker = tmp_path / "created-by-pickle"

    class Payload:
        def __reduce__(self):
            return (subprocess.call, (["touch", str(marker)],))

    class Exec:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    path = tmp_path / "hostile.pt"
    torch.save({"a": Payload(), "b": [Exec()], "w": torch.ones(2)}, path)
    tree = read_checkpoint(path).tree
    assert not marker.exists()
    assert tree["a"] == Record("subprocess.call", {"args": (["touch", str(marker)],)})
    assert tree["b"][0].class_name == "builtins.exec"
    assert isinstance(tree["w"], StoredTensor)


class Outer:
    def __init__(self) -> None:
        self.inner = Inner()
        self.name = "outer"


class Inner:
    def __init__(self) -> None:
        self.values = [1, 2.5, "x"]


def test_nested_unknown_classes_become_inert_records(tmp_path: Path) -> None:
    path = tmp_path / "nested.pt"
    torch.save({"obj": Outer(), "ns": argparse.Namespace(lr=0.1, layers=[4, 8])}, path)
    tree = read_checkpoint(path).tree
    assert tree["obj"] == Record(f"{__name__}.Outer", {"inner": Record(f"{__name__}.Inner", {"values": [1, 2.5, "x"]}),
                                                       "name": "outer"})
    assert tree["ns"] == Record("argparse.Namespace", {"lr": 0.1, "layers": [4, 8]})


def _fairseq_stand_ins() -> dict[str, type]:
    """Classes whose module path is fairseq's, as fairseq would pickle them (fairseq is not installed)."""
    module = types.ModuleType("fairseq.data.dictionary")

    class Dictionary:
        def __init__(self) -> None:
            self.bos_word, self.unk_word, self.pad_word, self.eos_word = "<s>", "<unk>", "<pad>", "</s>"
            self.symbols = ["<s>", "<pad>", "</s>", "<unk>", "A", "B"]
            self.count = [1, 1, 1, 1, 10, 7]
            self.indices = {s: i for i, s in enumerate(self.symbols)}
            self.nspecial = 4

    Dictionary.__module__, Dictionary.__qualname__ = module.__name__, "Dictionary"
    module.Dictionary = Dictionary  # type: ignore[attr-defined]
    return {"fairseq": types.ModuleType("fairseq"), "fairseq.data": types.ModuleType("fairseq.data"),
            "fairseq.data.dictionary": module}


def test_fairseq_layout_loads_without_fairseq_and_keeps_config_readable(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    modules = _fairseq_stand_ins()
    sys.modules.update(modules)
    try:
        cfg = OmegaConf.create({"model": {"_name": "hubert", "encoder_layers": 12, "dropout": 0.1,
                                          "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4",
                                          "label_rate": None},
                                "task": {"_name": "hubert_pretraining", "labels": ["km"], "sample_rate": 16000}})
        dictionary = modules["fairseq.data.dictionary"].Dictionary()
        ckpt = {"cfg": cfg, "model": {"encoder.layers.0.fc1.weight": torch.ones(3, 2)},
                "task_state": {"dictionaries": [dictionary]},
                "optimizer_history": [{"criterion_name": "HubertCriterion", "num_updates": 400000}],
                "extra_state": {"epoch": 3}}
        path = tmp_path / "checkpoint_best.pt"
        torch.save(ckpt, path)
    finally:
        for name in modules:
            del sys.modules[name]
    code = ("import sys, json\n"
            "from remap.io.readers import read_checkpoint\n"
            f"c = read_checkpoint({str(path)!r})\n"
            "d = c.select('task_state.dictionaries', 'x')[0]\n"
            "print(json.dumps({'model': c.select('cfg.model', 'x'), 'task': c.select('cfg.task', 'x'),\n"
            "                  'dict': [d.class_name, d.state['symbols']],\n"
            "                  'shape': list(c.select('model', 'x')['encoder.layers.0.fc1.weight'].info.shape),\n"
            "                  'loaded': sorted(m for m in ('fairseq', 'omegaconf', 'torch') if m in sys.modules)}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "model": {"_name": "hubert", "encoder_layers": 12, "dropout": 0.1,
                  "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4", "label_rate": None},
        "task": {"_name": "hubert_pretraining", "labels": ["km"], "sample_rate": 16000},
        "dict": ["fairseq.data.dictionary.Dictionary", ["<s>", "<pad>", "</s>", "<unk>", "A", "B"]],
        "shape": [3, 2],
        "loaded": [],
    }


def _cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


@pytest.mark.parametrize("fraction", [0.0001, 0.3, 0.9, 0.999])
def test_truncated_zip_checkpoint_is_a_one_line_error(cli, tmp_path: Path, fraction: float) -> None:
    bad = tmp_path / "cut.ckpt"
    bad.write_bytes(_cut(EXAMPLE.read_bytes(), fraction))
    result = cli("apply", RULES, bad, "-o", tmp_path / "out")
    assert result.code == 1 and result.err.count("\n") == 1 and result.err.startswith(f"error: {bad}: ")
    assert not (tmp_path / "out").exists()


def test_truncated_zip_names_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "cut.ckpt"
    bad.write_bytes(_cut(EXAMPLE.read_bytes(), 0.9))
    with pytest.raises(SourceError) as caught:
        read_checkpoint(bad)
    assert str(caught.value) == f"{bad}: zip archive without its central directory (truncated download?)"


@pytest.mark.parametrize("fraction", [0.3, 0.9, 0.999])
def test_truncated_legacy_checkpoint_is_a_one_line_error(cli, tmp_path: Path, fraction: float) -> None:
    legacy = tmp_path / "legacy.ckpt"
    torch.save({"Distiller": {"w": torch.ones(1000)}}, legacy, _use_new_zipfile_serialization=False)
    bad = tmp_path / "cut.ckpt"
    bad.write_bytes(_cut(legacy.read_bytes(), fraction))
    result = cli("inspect", bad)
    assert result.code == 1 and result.err.count("\n") == 1 and result.err.startswith(f"error: {bad}: ")


def test_truncated_safetensors_is_a_one_line_error(cli, tmp_path: Path) -> None:
    good = tmp_path / "good.safetensors"
    save_file({"a": torch.ones(100), "b": torch.zeros(50)}, good)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(good.read_bytes()[:-10])
    result = cli("inspect", bad)
    assert result.err == f"error: {bad}: tensor 'b' has a byte range that does not fit the file (truncated?)\n"


def test_tensor_reaching_past_its_storage_is_caught_when_selected(tmp_path: Path) -> None:
    from remap.errors import SourceError as Err

    path = tmp_path / "x.pt"
    torch.save({"sd": {"w": torch.ones(4)}}, path)
    ckpt = read_checkpoint(path)
    leaf = ckpt.tree["sd"]["w"]
    broken = StoredTensor(leaf.info._replace(shape=(40,)), leaf.storage)
    with pytest.raises(Err, match="tensor 'w' reaches past its stored data"):
        broken.check_bounds("w")


def test_folder_and_sharded_indexes_resolve(tmp_path: Path) -> None:
    a, b = torch.arange(6.0).view(2, 3), torch.ones(4, dtype=torch.float16)
    st_dir = tmp_path / "st"
    st_dir.mkdir()
    save_file({"a": a}, st_dir / "model-00001-of-00002.safetensors")
    save_file({"b": b}, st_dir / "model-00002-of-00002.safetensors")
    (st_dir / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                        "b": "model-00002-of-00002.safetensors"}}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    torch.save({"a": a}, bin_dir / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": b}, bin_dir / "pytorch_model-00002-of-00002.bin")
    (bin_dir / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"weight_map": {"a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}}))
    for folder in (st_dir, bin_dir):
        tree = read_checkpoint(folder).tree
        assert sorted(tree) == ["a", "b"]
        assert tensor_bits(tree["a"]) == bits(a) and tensor_bits(tree["b"]) == bits(b)


def test_folder_without_a_clear_checkpoint_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x.pt").write_bytes(b"")
    (tmp_path / "y.pt").write_bytes(b"")
    with pytest.raises(SourceError) as caught:
        read_checkpoint(tmp_path)
    assert str(caught.value) == (f"{tmp_path}: cannot tell which checkpoint to read in this folder "
                                 "(found: x.pt, y.pt); pass the file")


def test_index_with_a_missing_shard_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "gone.safetensors"}}))
    with pytest.raises(SourceError, match=r"shard 'gone\.safetensors' listed in the index is missing"):
        read_checkpoint(tmp_path)


def test_pickled_module_becomes_an_inert_record(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    tree = read_checkpoint(path).tree
    assert isinstance(tree, Record) and tree.class_name == "torch.nn.modules.linear.Linear"


def test_unsupported_tensor_kinds_stay_visible_but_are_not_convertible(tmp_path: Path) -> None:
    path = tmp_path / "odd.pt"
    torch.save({"sd": {"c": torch.zeros(2, dtype=torch.complex128), "s": torch.eye(2).to_sparse()}}, path)
    ckpt = read_checkpoint(path)
    assert ckpt.tree["sd"]["c"] == Record("torch.Tensor", {"dtype": "unsupported", "shape": (2,)})
    assert ckpt.tree["sd"]["s"].class_name == "torch._utils._rebuild_sparse_tensor"
    with pytest.raises(SourceError, match=r"state dict entry 'c' is a torch\.Tensor, not a tensor"):
        ckpt.source("sd", None)


def _zip_checkpoint(path: Path, pickle_bytes: bytes) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        archive.writestr("archive/version", "3\n")
    return path


@pytest.mark.parametrize("payload, message", [
    (b"\x80\x02garbage", "cannot parse the checkpoint's pickle: UnpicklingError"),
    (b"\x80\x02" + b"(" * 200_000 + b"l" * 200_000 + b".", "the checkpoint's object graph is nested too deeply"),
    (b"\x80\x02X\x07\x00\x00\x00storageQ.", "cannot parse the checkpoint's pickle: UnpicklingError: unsupported "
                                              "persistent id 'storage'"),
])
def test_malformed_pickle_inside_a_valid_zip_is_a_one_line_error(cli, tmp_path: Path, payload: bytes,
                                                                 message: str) -> None:
    path = _zip_checkpoint(tmp_path / "bad.pt", payload)
    result = cli("inspect", path)
    assert result.code == 1 and result.err.count("\n") == 1
    assert result.err.startswith(f"error: {path}: {message}")


def test_nested_dicts_in_a_state_dict_become_dotted_keys(tmp_path: Path) -> None:
    path = tmp_path / "ema.pt"
    torch.save({"model": {"w": torch.ones(2), "_ema": {"layers.0.w": torch.zeros(3), "inner": {"b": torch.ones(1)}}}},
               path)
    source = read_checkpoint(path).source("model", None)
    assert sorted(source.tensors) == ["_ema.inner.b", "_ema.layers.0.w", "w"]


# ---- hostile-input hardening (issue 9): unit checks beside the end-to-end corpus in tests/hostile ----

pickle_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner) | st.dictionaries(st.text(max_size=4), inner,
                                                                                          max_size=4)
    | st.frozensets(st.integers(0, 9), max_size=3),
    max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(pickle_values, st.integers(0, 5))
def test_the_opcode_scan_accepts_every_real_pickle_and_finds_its_end(value: Any, protocol: int) -> None:
    import pickle

    from remap.io.readers.picklescan import scan

    data = pickle.dumps(value, protocol=protocol)
    assert scan(data) == len(data)
    assert scan(data + data, len(data)) == 2 * len(data)


def test_a_legacy_pickle_longer_than_the_first_read_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "big.pt"
    torch.save({"sd": {"w": torch.arange(6.0)}, "log": list(range(400_000))}, path,
               _use_new_zipfile_serialization=False)
    tree = read_checkpoint(path).tree
    assert tree["log"][-1] == 399_999 and tensor_bits(tree["sd"]["w"]) == bits(torch.arange(6.0))


def test_a_compressed_data_pkl_within_bounds_still_reads(tmp_path: Path) -> None:
    import zipfile

    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(3)}, plain)
    packed = tmp_path / "packed.pt"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(packed, "w") as dst:
        for info in src.infolist():
            kind = zipfile.ZIP_DEFLATED if info.filename.endswith("data.pkl") else zipfile.ZIP_STORED
            dst.writestr(info.filename, src.read(info), compress_type=kind)
    assert tensor_bits(read_checkpoint(packed).tree["w"]) == bits(torch.ones(3))


def test_links_inside_the_folder_and_the_hugging_face_cache_layout_are_followed(tmp_path: Path) -> None:
    import os

    folder = tmp_path / "local"
    (folder / "blobs").mkdir(parents=True)
    save_file({"a": torch.ones(2)}, folder / "blobs" / "x")
    os.symlink("blobs/x", folder / "model.safetensors")
    assert sorted(read_checkpoint(folder).tree) == ["a"]
    # huggingface_hub's cache: every file of a snapshot is a link into the repository's blobs/
    repo = tmp_path / "hub" / "models--org--name"
    snapshot = repo / "snapshots" / "0123abc"
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    save_file({"a": torch.ones(2)}, repo / "blobs" / "1111")
    (repo / "blobs" / "2222").write_text(json.dumps({"weight_map": {"a": "model-00001-of-00001.safetensors"}}))
    os.symlink("../../blobs/1111", snapshot / "model-00001-of-00001.safetensors")
    os.symlink("../../blobs/2222", snapshot / "model.safetensors.index.json")
    assert tensor_bits(read_checkpoint(snapshot).tree["a"]) == bits(torch.ones(2))
    (repo / "blobs" / "2222").write_text(json.dumps({"weight_map": {"a": "../../../x.safetensors"}}))
    with pytest.raises(SourceError, match=r"shard '\.\./\.\./\.\./x\.safetensors' listed in the index is outside"):
        read_checkpoint(snapshot)


def test_an_index_may_name_a_shard_through_a_link_or_a_subfolder_inside_its_folder(tmp_path: Path) -> None:
    import os

    (tmp_path / "parts").mkdir()
    save_file({"a": torch.ones(2)}, tmp_path / "parts" / "one.safetensors")
    os.symlink("parts/one.safetensors", tmp_path / "alias.safetensors")
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "parts/one.safetensors", "b": "alias.safetensors"}}))
    with pytest.raises(SourceError, match=r"tensor 'b' is listed in the index but not found in its shard"):
        read_checkpoint(tmp_path)  # both names are read (once), and 'b' is in neither
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "alias.safetensors"}}))
    assert tensor_bits(read_checkpoint(tmp_path).tree["a"]) == bits(torch.ones(2))


def test_outside_shards_get_one_message_whether_or_not_they_exist(tmp_path: Path) -> None:
    import os

    folder = tmp_path / "ckpt"
    folder.mkdir()
    save_file({"a": torch.ones(2)}, tmp_path / "secret.safetensors")
    messages = []
    for target in ("../secret.safetensors", "../nothing.safetensors"):
        (folder / "evil.safetensors").unlink(missing_ok=True)
        os.symlink(target, folder / "evil.safetensors")
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "evil.safetensors"}}))
        with pytest.raises(SourceError) as caught:
            read_checkpoint(folder)
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and str(tmp_path.resolve()) not in messages[0].replace(str(folder), "")


def test_a_legit_expanded_view_converts_and_an_oversized_broadcast_is_refused_only_when_selected(tmp_path: Path) -> None:
    path = tmp_path / "views.pt"
    ids = torch.arange(8).expand(1, -1)  # transformers' position_ids buffer: stride (0, 1), 8 of 8 elements
    torch.save({"sd": {"ids": ids}, "other": {"b": torch.ones(2).expand(4, 2)}}, path)
    ckpt = read_checkpoint(path)
    source = ckpt.source("sd", None)
    assert source.tensors["ids"].read().tobytes() == bits(ids)
    assert ckpt.tree["other"]["b"].info.shape == (4, 2)  # visible to inspect
    with pytest.raises(SourceError, match=r"tensor 'b' has 8 elements but its storage holds only 2 \(a broadcast view"):
        ckpt.source("other", None)


def test_walk_shows_a_shared_container_once_and_flatten_refuses_a_cycle(tmp_path: Path) -> None:
    from remap.io.source import Checkpoint

    path = tmp_path / "shared.pt"
    sd = {"w": torch.ones(2)}
    torch.save({"model": sd, "ema": sd}, path)
    walked = list(read_checkpoint(path).walk())
    assert [p for p, _ in walked] == ["model.w", "ema"]
    assert walked[1][1] == Record("<same object as 'model'>")
    loop: dict[str, Any] = {}
    loop["inner"] = {"again": loop}
    with pytest.raises(SourceError, match=r"state dict entry 'inner\.again' contains itself"):
        Checkpoint(path, {"sd": loop}).source("sd", None)


def test_omegaconf_parent_links_become_placeholders_not_errors(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    path = tmp_path / "cfg.pt"
    torch.save({"cfg": OmegaConf.create({"model": {"layers": [1, {"x": 2}]}})}, path)
    assert read_checkpoint(path).tree["cfg"] == {"model": {"layers": [1, {"x": 2}]}}


def _hostile_pickles() -> list[tuple[bytes, str]]:
    from tests.hostile import cases_readers as op

    return [
        (op.PROTO + op.tensor(op.ints(1), op.ints(1)) + op.EMPTY_DICT + op.BUILD + op.STOP, "BUILD on a tensor"),
        (op.PROTO + op.glob("builtins", "list") + op.EMPTY_DICT + op.BUILD + op.STOP, "BUILD on builtins.list"),
        (op.PROTO + op.glob("torch", "float32") + op.EMPTY_DICT + op.BUILD + op.STOP, "AttributeError"),
        (op.PROTO + op.NONE + b"r" + (10**6).to_bytes(4, "little") + op.STOP, "memo index 1000000"),
        (op.PROTO + op.call("builtins", "bytes", op.num(2**40)) + op.STOP, r"calls builtins\.bytes\(int\)"),
    ]


@pytest.mark.parametrize("payload, message", _hostile_pickles())
def test_pickle_tricks_are_refused_in_one_line(tmp_path: Path, payload: bytes, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        read_checkpoint(_zip_checkpoint(tmp_path / "bad.pt", payload))
