"""Hostile checkpoints for the readers: escapes from the folder, cost bombs, and lying metadata.

Every file is built here from pickle opcodes, zip members and JSON (never by unpickling, never
committed). Each case is refused in one specific line, within the issue's bounds (2 s, 300 MiB).
"""

from __future__ import annotations

import json
import os
import struct
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.hostile.runner import Case

# ---- pickle opcodes (protocol 2, as torch.save writes them) ----
PROTO, STOP, MARK, TUPLE, TUPLE1, REDUCE, BUILD = b"\x80\x02", b".", b"(", b"t", b"\x85", b"R", b"b"
EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, SETITEM, SETITEMS, APPEND, APPENDS = b"}", b"]", b")", b"s", b"u", b"a", b"e"
NEWFALSE, BINPERSID, LIST, NONE, POP, DUP = b"\x89", b"Q", b"l", b"N", b"0", b"2"


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def text(value: str) -> bytes:
    raw = value.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def num(value: int) -> bytes:
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8b" + struct.pack("<i", len(raw)) + raw


def put(index: int) -> bytes:
    return b"r" + struct.pack("<I", index)


def get(index: int) -> bytes:
    return b"j" + struct.pack("<I", index)


def bget(index: int) -> bytes:
    return b"h" + bytes([index])


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def call(module: str, name: str, *args: bytes) -> bytes:
    return glob(module, name) + tup(*args) + REDUCE


def mapping(items: dict[str, bytes]) -> bytes:
    return EMPTY_DICT + (MARK + b"".join(text(k) + v for k, v in items.items()) + SETITEMS if items else b"")


def tensor(shape: bytes, stride: bytes, offset: bytes = b"J\x00\x00\x00\x00", key: str = "0", numel: int = 4,
           storage: str = "FloatStorage") -> bytes:
    """``torch._utils._rebuild_tensor_v2`` of storage ``key``, with raw opcodes for shape, stride, offset."""
    pid = tup(text("storage"), glob("torch", storage), text(key), text("cpu"), num(numel)) + BINPERSID
    return call("torch._utils", "_rebuild_tensor_v2", pid, offset, shape, stride, NEWFALSE,
                call("collections", "OrderedDict"))


def ints(*values: int) -> bytes:
    return tup(*(num(v) for v in values))


def zip_checkpoint(path: Path, pickle_bytes: bytes, storages: dict[str, bytes] | None = None,
                   compress: bool = False) -> None:
    kind = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("archive/data.pkl"), pickle_bytes, compress_type=kind)
        for key, data in (storages if storages is not None else {"0": b"\0" * 16}).items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")


def distiller(state: bytes) -> bytes:
    """A DistilHuBERT-layout top level: the state dict, and a config the rule file recognises."""
    return PROTO + mapping({"Distiller": state, "Config": mapping({"distiller": mapping({"encoder_layers":
                                                                                       num(2)})})}) + STOP


def safetensors(path: Path, header: str, data: bytes = b"\0" * 64) -> None:
    raw = header.encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


RULES = str(Path(__file__).resolve().parents[2] / "rules" / "distilhubert.yaml")  # by path: no catalog scan
PLAN = ["plan", RULES, "bomb.pt", "--no-target"]
INSPECT = ["inspect", "bomb.pt"]


def pickle_case(name: str, pickle_bytes: bytes, message: str, args: Sequence[str] = INSPECT, code: int = 1,
                storages: dict[str, bytes] | None = None) -> Case:
    def build(folder: Path) -> Sequence[str]:
        zip_checkpoint(folder / "bomb.pt", pickle_bytes, storages)
        return args

    return Case(f"reader-{name}", build, message, code=code)


def file_case(name: str, write: Callable[[Path], Sequence[str]], message: str, code: int = 1) -> Case:
    return Case(f"reader-{name}", write, message, code=code)


# ---- 1. containment: an index or a folder may name nothing outside its folder ----
OUTSIDE = ("^error: ckpt/model.safetensors.index.json: shard '{}' listed in the index is outside the index's "
           "folder; every shard must be a file in that folder$")


def _index(shard: str, secret: bool, link: str | None = None) -> Callable[[Path], Sequence[str]]:
    def build(folder: Path) -> Sequence[str]:
        (folder / "ckpt").mkdir()
        if secret:
            safetensors(folder / "secret.safetensors", json.dumps({"w": {"dtype": "F32", "shape": [1],
                                                                         "data_offsets": [0, 4]}}), b"\0" * 4)
        if link is not None:
            os.symlink(link, folder / "ckpt" / shard)
        weight_map = {"w": shard.replace("<abs>", str(folder / "secret.safetensors"))}
        (folder / "ckpt" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
        return ["inspect", "ckpt"]

    return build


def _folder_link(name: str) -> Callable[[Path], Sequence[str]]:
    def build(folder: Path) -> Sequence[str]:
        (folder / "ckpt").mkdir()
        safetensors(folder / "secret.safetensors", json.dumps({"w": {"dtype": "F32", "shape": [1],
                                                                     "data_offsets": [0, 4]}}), b"\0" * 4)
        os.symlink("../secret.safetensors", folder / "ckpt" / name)
        return ["inspect", "ckpt"]

    return build


def _index_text(content: str, shard_link: str | None = None) -> Callable[[Path], Sequence[str]]:
    def build(folder: Path) -> Sequence[str]:
        (folder / "model.safetensors.index.json").write_text(content)
        if shard_link:
            os.symlink("model.safetensors.index.json", folder / shard_link)
        return ["inspect", "."]

    return build


CONTAINMENT = [
    file_case("index-shard-parent-path", _index("../secret.safetensors", True), OUTSIDE.format(r"\.\./secret\.safetensors")),
    file_case("index-shard-parent-path-missing", _index("../secret.safetensors", False),
              OUTSIDE.format(r"\.\./secret\.safetensors")),
    file_case("index-shard-absolute-path", _index("<abs>", True), OUTSIDE.format(r"/[^']*/secret\.safetensors")),
    file_case("index-shard-symlink-out", _index("evil.safetensors", True, "../secret.safetensors"),
              OUTSIDE.format(r"evil\.safetensors")),
    file_case("index-shard-symlink-out-dangling", _index("evil.safetensors", False, "../secret.safetensors"),
              OUTSIDE.format(r"evil\.safetensors")),
    file_case("folder-symlink-out", _folder_link("model.safetensors"),
              r"^error: ckpt: 'model\.safetensors' in this folder links outside the folder"),
    file_case("folder-candidate-symlink-out", _folder_link("weights.pt"),
              r"^error: ckpt: 'weights\.pt' in this folder links outside the folder"),
    file_case("index-lists-itself", _index_text(json.dumps({"weight_map": {"w": "model.safetensors.index.json"}})),
              r"shard 'model\.safetensors\.index\.json' listed in the index is itself an index"),
    file_case("index-cycle-through-a-link", _index_text(json.dumps({"weight_map": {"w": "a.safetensors"}}),
                                                         "a.safetensors"),
              r"^error: a\.safetensors: unknown format"),
    file_case("index-nested-too-deeply", _index_text("[" * 100_000 + "]" * 100_000),
              r"model\.safetensors\.index\.json: shard index is nested too deeply"),
    file_case("index-huge-integer", _index_text('{"weight_map": {}, "n": 1' + "0" * 5000 + "}"),
              r"shard index holds a number that cannot be read"),
    file_case("index-shard-not-a-string", _index_text(json.dumps({"weight_map": {"w": ["x"]}})),
              r"not a valid shard index"),
]

# ---- 2. cost bombs ----
HUGE = num(10**8)
CONSTRUCTOR_BOMBS = [
    pickle_case(f"reduce-{kind}-of-range", PROTO + call("builtins", kind, call("builtins", "range", HUGE)) + STOP,
                rf"calls builtins\.{kind}\(builtins\.range\); only copies of data in the file are allowed")
    for kind in ("list", "tuple", "set", "frozenset", "bytearray", "dict")
] + [
    pickle_case(f"reduce-{kind}-of-a-count", PROTO + call("builtins", kind, num(10**10)) + STOP,
                rf"calls builtins\.{kind}\(int\); only copies")
    for kind in ("bytes", "bytearray", "list")
] + [
    pickle_case("torch-size-of-range", PROTO + call("torch", "Size", call("builtins", "range", HUGE)) + STOP,
                r"calls torch\.Size\(builtins\.range\)"),
    pickle_case("shape-is-a-range", distiller(mapping({"w": tensor(call("builtins", "range", HUGE), ints(1))})),
                r"tensor 'Distiller\.w' has a shape that is not a list of at most 64 integers \(a builtins\.range\)",
                PLAN),
    pickle_case("codecs-encode-cpu-burn",  # one 160 KB string encoded 10000 times
                PROTO + glob("_codecs", "encode") + put(0) + tup(text("x" * 160_000), text("latin1")) + put(1)
                + EMPTY_LIST + put(2) + (bget(2) + bget(0) + bget(1) + REDUCE + APPEND) * 10_000 + STOP,
                r"builds more than \d+ elements through calls such as _codecs\.encode\(\) \(a pickle bomb\)"),
    pickle_case("codecs-encode-rot13", PROTO + call("_codecs", "encode", text("x"), text("rot13")) + STOP,
                r"asks _codecs\.encode for the codec 'rot13'; only latin1"),
    pickle_case("codecs-encode-unknown-codec", PROTO + call("_codecs", "encode", text("x"), text("no-such")) + STOP,
                r"asks _codecs\.encode for the codec 'no-such'"),
    pickle_case("str-decode-punycode", PROTO + call("builtins", "str", call("_codecs", "encode", text("x"),
                                                                            text("latin1")), text("punycode")) + STOP,
                r"asks builtins\.str\(\) for the codec 'punycode'"),
    pickle_case("memo-index-bomb", PROTO + NONE + b"r" + struct.pack("<I", 100_000_000) + STOP,
                r"stores an object at memo index 100000000 after only 3 bytes \(a memory bomb\)"),
]


def _deflate_bomb(folder: Path) -> Sequence[str]:
    with zipfile.ZipFile(folder / "bomb.pt", "w") as archive:
        info = zipfile.ZipInfo("archive/data.pkl")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w") as member:
            member.write(PROTO + NONE)
            for _ in range(160):
                member.write(b"N0" * 500_000)  # 160 MB of NONE, POP
            member.write(STOP)
        archive.writestr("archive/version", "3\n")
    return INSPECT


def laughs(element: bytes, levels: int, width: int = 10, as_dict: bool = False) -> bytes:
    """L0 = [element]; L(k+1) = [Lk] * width (or a dict of width keys): width**levels leaves in a few KB."""
    out = EMPTY_LIST + element + APPEND + put(0)
    for level in range(1, levels + 1):
        body = b"".join((text(f"k{i}") if as_dict else b"") + get(level - 1) for i in range(width))
        out += POP + (EMPTY_DICT + MARK + body + SETITEMS if as_dict else EMPTY_LIST + MARK + body + APPENDS)
        out += put(level)
    return out


def tuple_laughs(levels: int, width: int = 10) -> bytes:
    """T0 = (1,) * width; T(k+1) = (Tk,) * width: a hashable key of width**levels leaves."""
    out = MARK + num(1) * width + TUPLE + put(0)
    for level in range(1, levels + 1):
        out += POP + MARK + get(level - 1) * width + TUPLE + put(level)
    return out


def _inert_laughs(levels: int) -> bytes:
    out = call("argparse", "Namespace") + put(0)
    for level in range(1, levels + 1):
        out += POP + glob("argparse", "Namespace") + tup(get(level - 1), get(level - 1)) + REDUCE + put(level)
    return out


EXPANDS = r"the checkpoint's object graph expands to more than \d+ entries at '{}'.*pickle bomb"
GRAPH_BOMBS = [
    file_case("deflate-bomb", _deflate_bomb,
              r"'archive/data\.pkl' would inflate to 160000004 bytes from a \d+-byte file \(a zip bomb\?\)"),
    pickle_case("laughs-list-in-config", PROTO + mapping({"Config": laughs(num(1), 9)}) + STOP,
                EXPANDS.format(r"Config(\.\d+)*")),
    pickle_case("laughs-dict-in-state-dict", distiller(laughs(text("x"), 9, as_dict=True)),
                EXPANDS.format(r"Distiller(\.\w+)*"), PLAN),
    pickle_case("laughs-through-stand-in-args", PROTO + mapping({"cfg": _inert_laughs(40)}) + STOP,
                EXPANDS.format(r"cfg\.args\.0\.args[.\w]*")),
    pickle_case("laughs-of-a-long-string", PROTO + text("y" * 100_000) + put(0) + EMPTY_LIST + MARK
                + get(0) * 50_000 + APPENDS + STOP, EXPANDS.format(r"the top level")),
    pickle_case("laughs-in-a-tuple-key", PROTO + tuple_laughs(3) + POP + EMPTY_DICT + get(3) + num(1) + SETITEM
                + STOP,
                r"a dict key at 'the top level' is too large \(\d+ entries\)"),
    pickle_case("hash-collision-dict-keys", PROTO + EMPTY_DICT + MARK + b"".join(
                num(k * (2**61 - 1)) + b"K\x01" for k in range(1, 20_001)) + SETITEMS + STOP,
                r"uses more than 2048 floats, non-string tuples or large integers as dict keys or set members \(a "
                r"hash-collision bomb\?\)"),
    pickle_case("hash-collision-through-set", PROTO + call("builtins", "set", EMPTY_LIST + MARK + b"".join(
                num(k * (2**61 - 1)) for k in range(1, 20_001)) + APPENDS) + STOP,
                r"hashes more than 2048 floats, tuples or large integers through calls such as builtins\.set\(\)"),
    pickle_case("deep-lists", PROTO + MARK * 200_000 + LIST * 200_000 + STOP,
                r"the checkpoint's object graph is nested too deeply \(more than 100 levels"),
    pickle_case("deep-tuples-as-a-key", PROTO + EMPTY_DICT + EMPTY_TUPLE + TUPLE1 * 150_000 + num(1) + SETITEM + STOP,
                r"nested too deeply \(tuples more than 100 levels within each other\)"),
    pickle_case("deep-stand-in-states", PROTO + glob("argparse", "Namespace") + put(0) + EMPTY_TUPLE + REDUCE
                + put(1) + POP + b"".join(get(0) + EMPTY_TUPLE + REDUCE + put(i) + get(i - 1) + BUILD + POP
                                          for i in range(2, 5_000)) + get(4_999) + STOP,
                r"the checkpoint's object graph is nested too deeply \(more than 100 levels"),
    pickle_case("height-grown-through-sharing", PROTO + EMPTY_LIST + put(0) + POP + b"".join(
                EMPTY_LIST + get(i - 1) + APPEND + put(i) + POP for i in range(1, 2_000)) + EMPTY_LIST + MARK
                + b"".join(get(i) for i in range(2_000)) + APPENDS + STOP,
                r"nested too deeply \(more than 100 levels"),
    pickle_case("shared-build-state-is-not-copied", PROTO + glob("collections", "OrderedDict") + put(1) + POP
                + mapping({f"k{i}": num(i) for i in range(20_000)}) + put(0) + EMPTY_LIST + MARK
                + (get(1) + EMPTY_TUPLE + REDUCE + get(0) + BUILD) * 10_000 + APPENDS + STOP, r"^$", code=0),
]

# ---- 3. strict metadata, each naming the tensor ----
STATE = "Distiller.w"
METADATA = [
    pickle_case("negative-storage-offset", distiller(mapping({"w": tensor(ints(1), ints(1), num(-4))})),
                rf"tensor '{STATE}' has a negative storage offset \(-4\)", PLAN),
    pickle_case("bool-in-a-shape", distiller(mapping({"w": tensor(tup(b"\x88", b"\x88", num(4)), ints(4, 4, 1))})),
                rf"tensor '{STATE}' has a shape holding True; each entry must be a non-negative integer", PLAN),
    pickle_case("float-in-a-shape", distiller(mapping({"w": tensor(tup(b"G" + struct.pack(">d", 2.0)), ints(1))})),
                rf"tensor '{STATE}' has a shape holding 2\.0", PLAN),
    pickle_case("huge-integer-in-a-shape", distiller(mapping({"w": tensor(ints(2**70), ints(1))})),
                rf"tensor '{STATE}' has a shape holding an integer of 71 bits", PLAN),
    pickle_case("huge-integer-in-the-config", PROTO + mapping({"cfg": num(2**5000)}) + STOP,
                r"holds an integer of 5001 bits at 'cfg'"),
    pickle_case("shape-past-its-storage", distiller(mapping({"w": tensor(ints(1000), ints(1))})),
                rf"tensor '{STATE}' reaches past its storage \(its shape and strides need 4000 bytes, the storage has "
                "16\\)", PLAN),
    pickle_case("broadcast-view", distiller(mapping({"w": tensor(ints(16_000, 16_000), ints(0, 0))})),
                r"tensor 'w' has 256000000 elements but its storage holds only 4 \(a broadcast view", PLAN),
    pickle_case("stride-count-mismatch", distiller(mapping({"w": tensor(ints(2, 2), ints(1))})),
                rf"tensor '{STATE}' has 1 strides for 2 dimensions", PLAN),
    pickle_case("self-referencing-state-dict", distiller(EMPTY_DICT + put(0) + text("a") + get(0) + SETITEM),
                r"the checkpoint's object graph contains itself at 'Distiller\.a' \(a container that holds itself\)",
                PLAN),
    pickle_case("self-referencing-list", PROTO + EMPTY_LIST + put(0) + get(0) + APPEND + STOP,
                r"contains itself at '0'"),
]


def _two_data_pkl(folder: Path) -> Sequence[str]:
    with warnings.catch_warnings(), zipfile.ZipFile(folder / "bomb.pt", "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name, and writes it
        archive.writestr("archive/data.pkl", PROTO + mapping({"a": num(1)}) + STOP)
        archive.writestr("archive/data.pkl", PROTO + mapping({"b": num(2)}) + STOP)
    return INSPECT


def _legacy_view(folder: Path) -> Sequence[str]:
    magic = PROTO + b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + STOP
    pid = tup(text("storage"), glob("torch", "FloatStorage"), text("root"), text("cpu"), num(4),
              tup(text("view"), num(100), num(50))) + BINPERSID
    state = mapping({"w": call("torch._utils", "_rebuild_tensor_v2", pid, num(0), ints(50), ints(1), NEWFALSE,
                               call("collections", "OrderedDict"))})
    body = magic + PROTO + num(1001) + STOP + PROTO + EMPTY_DICT + STOP + PROTO + state + STOP
    body += PROTO + EMPTY_LIST + text("root") + APPEND + STOP + struct.pack("<q", 4) + b"\0" * 16
    (folder / "bomb.pt").write_bytes(body)
    return INSPECT


def _st(header: dict[str, object] | str) -> Callable[[Path], Sequence[str]]:
    def build(folder: Path) -> Sequence[str]:
        safetensors(folder / "bomb.safetensors", header if isinstance(header, str) else json.dumps(header))
        return ["inspect", "bomb.safetensors"]

    return build


F32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
FILES = [
    file_case("zip-with-two-data-pkl", _two_data_pkl,
              r"the zip archive holds two members named 'archive/data\.pkl'; refusing an ambiguous file"),
    file_case("legacy-view-outside-its-root", _legacy_view,
              r"tensor 'w': its storage view \(50 elements from element 100\) reaches outside its root storage 'root' "
              r"of 4 elements"),
    file_case("safetensors-overlapping-tensors", _st({"a": F32, "b": {**F32, "data_offsets": [4, 12]}}),
              r"tensors 'a' and 'b' overlap in the file's data"),
    file_case("safetensors-unknown-dtype", _st({"a": {**F32, "dtype": "Q99"}}),
              r"tensor 'a' has an unknown dtype \"Q99\" \(known: BF16"),
    file_case("safetensors-bool-in-a-shape", _st({"a": {**F32, "shape": [True, 2]}}),
              r"tensor 'a' has a shape that is not a list of at most 64 non-negative integers: \[true, 2\]"),
    file_case("safetensors-float-in-a-shape", _st({"a": {**F32, "shape": [2.0]}}),
              r"tensor 'a' has a shape that is not a list of at most 64 non-negative integers: \[2\.0\]"),
    file_case("safetensors-huge-integer", _st('{"a": {"dtype": "F32", "shape": [1' + "0" * 5000 + "]}}"),
              r"safetensors header holds a number that cannot be read"),
    file_case("safetensors-nested-too-deeply", _st('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"),
              r"safetensors header is nested too deeply"),
    file_case("safetensors-key-twice", _st('{"a": ' + json.dumps(F32) + ', "a": ' + json.dumps(F32) + "}"),
              r"safetensors header names 'a' twice"),
]


def _payload(folder: Path) -> Sequence[str]:
    marker = str(folder / "pwned")
    zip_checkpoint(folder / "bomb.pt", PROTO + mapping({"a": call("os", "system", text(f"touch {marker}")),
                                                        "b": call("builtins", "exec", text(f"open({marker!r}, 'w')"))})
                   + STOP)
    return INSPECT


CASES = [*CONTAINMENT, *CONSTRUCTOR_BOMBS, *GRAPH_BOMBS, *METADATA, *FILES,
         Case("reader-reduce-payload-is-never-called", _payload, r"^$", code=0, marker="pwned")]
