"""A pass over a pickle's opcodes before it is unpickled: it finds the pickle's end and refuses bombs.

CPython's unpickler trusts three things a hostile pickle controls. A memo index (``LONG_BINPUT
100000000``, eleven bytes) makes it allocate and zero a table of twice that many pointers. A tuple
nested a million deep (one ``TUPLE1`` opcode per level) crashes the interpreter when it is hashed as a
dict key. And dict keys whose hashes collide (floats, negative or large integers, tuples of them: their
hashes are not randomised, unlike strings') make every insertion compare with all the keys before it.

This pass simulates the unpickler's stack with one number per object: twice its depth of tuples within
tuples, plus one if its hash could be chosen to collide. It refuses a memo index beyond the bytes read so
far, tuples nested deeper than `MAX_DEPTH`, and more than `MAX_RISKY_KEYS` such keys. It reads every
opcode's argument length, so it also finds where the pickle ends (the legacy format holds several
pickles back to back).

Every object a call (``REDUCE``, ``NEWOBJ``, ``INST``...) returns is taken to be one tuple deep with a
collidable hash: the unpickler's callables (see `unpickle`) never return a deeper one, and count what
they hash themselves.
"""

from __future__ import annotations

import pickle
import struct
from typing import Final

from .limits import MAX_DEPTH


class PickleRefused(Exception):
    """A pickle refused for what it would make the unpickler do; the message is the whole reason."""


class Truncated(Exception):
    """The pickle runs past the end of the bytes scanned so far; ``need`` is how far it reaches at least."""

    def __init__(self, need: int) -> None:
        super().__init__("pickle data was truncated")
        self.need = need


MAX_RISKY_KEYS: Final = 2048  # keys with collidable hashes per pickle: at worst ~2M comparisons
_CALL: Final = 3  # what a call returns: one tuple deep (2), a collidable hash (1)
# Opcodes by their argument: a fixed byte count (>= 0), -1 for one text line, -2 for two, -(10 + k) for a
# k-byte unsigned length and that many bytes, -20 for a 4-byte signed length and that many bytes.
_ARGUMENT: Final[dict[bytes, int]] = {
    b"(": 0, b".": 0, b"0": 0, b"1": 0, b"2": 0, b"F": -1, b"I": -1, b"J": 4, b"K": 1, b"L": -1, b"M": 2,
    b"N": 0, b"P": -1, b"Q": 0, b"R": 0, b"S": -1, b"T": -20, b"U": -11, b"V": -1, b"X": -14, b"a": 0,
    b"b": 0, b"c": -2, b"d": 0, b"}": 0, b"e": 0, b"g": -1, b"h": 1, b"i": -2, b"j": 4, b"l": 0, b"]": 0,
    b"o": 0, b"p": -1, b"q": 1, b"r": 4, b"s": 0, b"t": 0, b")": 0, b"u": 0, b"G": 8, b"\x80": 1, b"\x81": 0,
    b"\x82": 1, b"\x83": 2, b"\x84": 4, b"\x85": 0, b"\x86": 0, b"\x87": 0, b"\x88": 0, b"\x89": 0,
    b"\x8a": -11, b"\x8b": -20, b"B": -14, b"C": -11, b"\x8c": -11, b"\x8d": -18, b"\x8e": -18, b"\x8f": 0,
    b"\x90": 0, b"\x91": 0, b"\x92": 0, b"\x93": 0, b"\x94": 0, b"\x95": 8, b"\x96": -18, b"\x97": 0, b"\x98": 0,
}
# Besides pushing one object whose hash is its own (strings, small ints, None, globals...):
_RISKY: Final = frozenset((b"F", b"G", b"I", b"L", b"\x8a", b"\x8b"))  # floats, and ints of any size or sign
_POP_PUSH: Final[dict[bytes, tuple[int, int]]] = {  # pop n, push v (-1: a tuple of what was popped)
    b"Q": (1, 0), b"R": (2, _CALL), b"\x81": (2, _CALL), b"\x92": (3, _CALL), b"\x93": (2, 0),
    b"\x85": (1, -1), b"\x86": (2, -1), b"\x87": (3, -1), b"\x88": (0, 0), b")": (0, -1),
}
_KEEP_TOP: Final = {b"a": 1, b"b": 1, b"s": 2}  # pop n, and the object they were added to must remain
_TO_MARK: Final = {b"t": -1, b"d": 0, b"l": 0, b"\x91": 0, b"i": _CALL, b"o": _CALL}  # pop to the mark, push
_MUTATE: Final = (b"e", b"u", b"\x90")  # pop to the mark; the container below it remains
_HASHED: Final = {b"d": 2, b"u": 2, b"\x90": 1, b"\x91": 1}  # after the mark, every n-th item is hashed
_PUT: Final = (b"p", b"q", b"r", b"\x94")
_GET: Final = (b"g", b"h", b"j")
_NO_EFFECT: Final = (b"\x80", b"\x95")  # PROTO, FRAME
_U32: Final = struct.Struct("<I").unpack_from
_TO_MARK_FAST: Final = {op: bytes([op]) for op in b"ldeu"}
# The whole length of each opcode that pushes one object with a fixed-size argument and a hash of its
# own: BININT1, BININT2, NONE, EMPTY_LIST, EMPTY_DICT, EXT1/2/4, NEWFALSE, EMPTY_SET. 0 for every other byte.
_PLAIN: Final = [0] * 256
for _opcode in b"KMN]}\x82\x83\x84\x89\x8f":
    _PLAIN[_opcode] = 1 + _ARGUMENT[bytes([_opcode])]
_LENGTHS: Final = {-11: struct.Struct("<B"), -14: struct.Struct("<I"), -18: struct.Struct("<Q"),
                   -20: struct.Struct("<i")}


def _underflow() -> pickle.UnpicklingError:
    return pickle.UnpicklingError("unpickling stack underflow")


class _Machine:
    """The unpickler's stack, marks and memo, each object reduced to 2 * tuple depth + collidable."""

    def __init__(self) -> None:
        self.stack: list[int] = []
        self.marks: list[int] = [0]  # marks[-1] is the fence: nothing below it may be popped
        self.memo: dict[int, int] = {}
        self.risky = 0

    def pop(self, count: int) -> list[int]:
        cut = len(self.stack) - count
        if cut < self.marks[-1]:
            raise _underflow()
        items = self.stack[cut:]
        del self.stack[cut:]
        return items

    def pop_mark_position(self) -> int:
        if len(self.marks) == 1:
            raise pickle.UnpicklingError("could not find MARK")
        return self.marks.pop()

    def pop_mark(self) -> list[int]:
        start = self.pop_mark_position()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def tuple(self, cut: int) -> None:
        """A tuple of everything above ``cut``: one level deeper than the deepest, collidable if any is."""
        if cut < self.marks[-1]:
            raise _underflow()
        self.push(-1, self.stack[cut:])
        del self.stack[cut:-1]

    def push(self, value: int, items: list[int]) -> None:
        if value < 0:  # a tuple of the items
            value = 2 + (max(items, default=0) & ~1) + any(v & 1 for v in items)
            if value >> 1 > MAX_DEPTH:
                raise PickleRefused(f"the checkpoint's object graph is nested too deeply (tuples more than "
                                    f"{MAX_DEPTH} levels within each other)")
        self.stack.append(value)

    def hashed(self, keys: list[int]) -> None:
        """Count the keys about to be hashed into one dict or set whose hashes could collide."""
        self.risky += sum(v & 1 for v in keys)
        if self.risky > MAX_RISKY_KEYS:
            raise PickleRefused(f"the checkpoint's pickle uses more than {MAX_RISKY_KEYS} floats, non-string tuples "
                                "or large integers as dict keys or set members (a hash-collision bomb?); refusing it")

    def put(self, index: int, pos: int) -> None:
        if len(self.stack) <= self.marks[-1]:
            raise _underflow()
        if index > pos:  # a real pickler numbers its memo entries 0, 1, 2...: never past the opcode count
            raise PickleRefused(f"the checkpoint's pickle stores an object at memo index {index} after only "
                                f"{pos} bytes (a memory bomb); refusing it")
        self.memo[index] = self.stack[-1]

    def step(self, opcode: bytes, argument: bytes, pos: int) -> None:
        if opcode in _POP_PUSH:
            count, value = _POP_PUSH[opcode]
            self.push(value, self.pop(count))
        elif opcode in _TO_MARK or opcode in _MUTATE:
            items = self.pop_mark()
            if opcode in _HASHED:
                self.hashed(items[::_HASHED[opcode]])
            if opcode in _TO_MARK:
                self.push(_TO_MARK[opcode], items)
            elif not self.stack:
                raise _underflow()
        elif opcode in _KEEP_TOP:
            if opcode == b"s" and len(self.stack) >= 2:
                self.hashed(self.stack[-2:-1])
            self.pop(_KEEP_TOP[opcode])
            if len(self.stack) <= self.marks[-1]:
                raise _underflow()
        elif opcode in _PUT or opcode in _GET:
            self.memory(opcode, argument, pos)
        else:
            self.rare(opcode, argument)

    def memory(self, opcode: bytes, argument: bytes, pos: int) -> None:
        if opcode in _PUT:
            self.put(len(self.memo) if opcode == b"\x94" else _index(opcode, argument), pos)
            return
        index = _index(opcode, argument)
        if index not in self.memo:
            raise pickle.UnpicklingError(f"Memo value not found at index {index}")
        self.stack.append(self.memo[index])

    def rare(self, opcode: bytes, argument: bytes) -> None:
        if opcode == b"(":
            self.marks.append(len(self.stack))
        elif opcode == b"1":
            self.pop_mark()
        elif opcode == b"0":
            if len(self.marks) > 1 and self.marks[-1] == len(self.stack):
                self.marks.pop()
            else:
                self.pop(1)
        elif opcode == b"2":
            self.stack.append(self.pop(1)[0])
            self.stack.append(self.stack[-1])
        elif opcode == b"\x80" and argument[0] > pickle.HIGHEST_PROTOCOL:
            raise pickle.UnpicklingError(f"unsupported pickle protocol: {argument[0]}")
        elif opcode in (b"\x97", b"\x98"):
            raise pickle.UnpicklingError("the pickle refers to out-of-band buffers")
        elif opcode not in _NO_EFFECT:
            self.stack.append(1 if opcode in _RISKY else 0)


def _index(opcode: bytes, argument: bytes) -> int:
    if opcode in (b"q", b"h"):
        return argument[0]
    if opcode in (b"r", b"j"):
        return int(_U32(argument)[0])
    text = argument.rstrip(b"\n")
    if not 0 < len(text) <= 20 or not text.isdigit():
        raise pickle.UnpicklingError("invalid memo index in the pickle")
    return int(text)


def scan(data: bytes, pos: int = 0) -> int:
    """Check the pickle starting at ``data[pos]``; return the offset just after its STOP opcode.

    Raises `Truncated` if the pickle runs past ``data``, `PickleRefused` for a bomb, and
    ``pickle.UnpicklingError`` for a malformed opcode stream.
    """
    machine = _Machine()
    try:
        end = _run(machine, data, pos)
    except (IndexError, struct.error):
        raise Truncated(len(data) + 1) from None
    except KeyError as exc:
        raise pickle.UnpicklingError(f"Memo value not found at index {exc.args[0]}") from None
    return end


def _run(machine: _Machine, data: bytes, pos: int) -> int:  # noqa: PLR0912, PLR0915 - the hot loop, flat on purpose
    """The common opcodes of torch's protocol-2 pickles inline; every other one through `_Machine.step`."""
    stack, memo, marks, plain = machine.stack, machine.memo, machine.marks, _PLAIN
    end = len(data)
    while pos < end:
        op = data[pos]
        size = plain[op]
        if size:
            stack.append(0)
            pos += size
        elif op == 0x72:  # LONG_BINPUT
            index = _U32(data, pos + 1)[0]
            if index > pos or len(stack) <= marks[-1]:
                machine.put(index, pos)
            memo[index] = stack[-1]
            pos += 5
        elif op == 0x68:  # BINGET
            stack.append(memo[data[pos + 1]])  # a KeyError: see scan
            pos += 2
        elif op == 0x58:  # BINUNICODE
            pos += 5 + _U32(data, pos + 1)[0]
            stack.append(0)
        elif op == 0x28:  # MARK
            marks.append(len(stack))
            pos += 1
        elif op in _TO_MARK_FAST:  # LIST, DICT, APPENDS, SETITEMS
            machine.step(_TO_MARK_FAST[op], b"", pos)
            pos += 1
        elif op == 0x74 or 0x85 <= op <= 0x87:  # TUPLE, TUPLE1, TUPLE2, TUPLE3
            cut = machine.pop_mark_position() if op == 0x74 else len(stack) - op + 0x84
            top = max(stack[cut:], default=0)
            if top < 2 and 0 <= marks[-1] <= cut:  # a tuple of no tuples: collidable if any item is
                del stack[cut:]
                stack.append(2 + top)
            else:
                machine.tuple(cut)
            pos += 1
        elif op in (0x52, 0x51):  # REDUCE, BINPERSID
            if len(stack) - (op - 0x50) < marks[-1]:
                raise _underflow()
            if op == 0x52:
                del stack[-1]
            stack[-1] = _CALL if op == 0x52 else 0
            pos += 1
        elif op == 0x4A:  # BININT: a negative one's hash may collide (hash(-1) == hash(-2))
            stack.append(data[pos + 4] >> 7)
            pos += 5
        elif op == 0x2E:  # STOP
            if len(stack) <= marks[-1]:
                raise _underflow()
            return pos + 1
        else:
            pos = _other(machine, data, pos)
    raise Truncated(pos + 1)


def _other(machine: _Machine, data: bytes, pos: int) -> int:
    opcode = data[pos:pos + 1]
    argument = _ARGUMENT.get(opcode)
    if argument is None:
        raise pickle.UnpicklingError(f"invalid load key, '\\x{data[pos]:02x}'.")
    start = pos + 1
    pos = _skip(data, start, argument)
    machine.step(opcode, data[start:pos], start - 1)
    return pos


def _skip(data: bytes, pos: int, argument: int) -> int:
    """The position after an argument that starts at ``pos`` (see `_ARGUMENT`)."""
    if argument >= 0:
        if pos + argument > len(data):
            raise Truncated(pos + argument)
        return pos + argument
    if argument in (-1, -2):
        for _ in range(-argument):
            newline = data.find(b"\n", pos)
            if newline < 0:
                raise Truncated(len(data) + 1)
            pos = newline + 1
        return pos
    layout = _LENGTHS[argument]
    if pos + layout.size > len(data):
        raise Truncated(pos + layout.size)
    length = int(layout.unpack_from(data, pos)[0])
    if length < 0:
        raise pickle.UnpicklingError("negative byte count in the pickle")
    if pos + layout.size + length > len(data):
        raise Truncated(pos + layout.size + length)
    return pos + layout.size + length
