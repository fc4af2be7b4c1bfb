"""The module subset of checkpointed wasm jobs (spec 06 WSM-1), checked on the binary.

A step module keeps all its state in its linear memory and its mutable globals, so that a
checkpoint (memory, globals, fuel) is the whole state and a referee can restore it. This
reads the module's sections and decodes every instruction of every function, and refuses:

* imports (nothing nondeterministic can come in);
* a mutable global that is not exported (the host could neither hash nor restore it), or
  that is not an i32 or i64 (its bits would go through the host's floats);
* instructions outside the subset: table.get / table.set and every 0xFC instruction but
  the saturating truncations (tables would hold state; bulk memory is charged by length),
  reference instructions, SIMD (0xFD), atomics (0xFE), exceptions and tail calls.

The subset is the WebAssembly 1.0 (MVP) instruction set with sign extension, saturating
float-to-int conversion and multiple results. Pure: bytes in, a verdict out.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pnode.wire.reasons import Reason, WireError

WASM_HEADER = b"\x00asm\x01\x00\x00\x00"
SEC_IMPORT, SEC_GLOBAL, SEC_EXPORT, SEC_CODE = 2, 6, 7, 10
EXPORT_GLOBAL = 3
I32, I64 = 0x7F, 0x7E

# Opcode -> the immediates that follow it.
_NONE = "none"
_IMMEDIATES: dict[int, str] = {
    0x00: _NONE, 0x01: _NONE, 0x02: "block", 0x03: "block", 0x04: "block", 0x05: _NONE,
    0x0B: _NONE, 0x0C: "u32", 0x0D: "u32", 0x0E: "br_table", 0x0F: _NONE, 0x10: "u32",
    0x11: "u32u32", 0x1A: _NONE, 0x1B: _NONE, 0x1C: "select_t",
    0x20: "u32", 0x21: "u32", 0x22: "u32", 0x23: "u32", 0x24: "u32",
    0x3F: "byte", 0x40: "byte", 0x41: "s32", 0x42: "s64", 0x43: "f32", 0x44: "f64",
}
for _op in range(0x28, 0x3F):  # loads and stores
    _IMMEDIATES[_op] = "memarg"
for _op in range(0x45, 0xC5):  # numeric, conversions, sign extension
    _IMMEDIATES[_op] = _NONE
SATURATING = range(0, 8)  # 0xFC 0..7: i32/i64.trunc_sat_f32/f64_s/u
MAX_FUNCTION_BYTES = 1 << 24


@dataclass(frozen=True)
class Subset:
    """What the check found: exported mutable globals by name, and the functions' count."""

    mutable_globals: tuple[str, ...]
    functions: int


class _Reader:
    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data, self.pos = data, pos
        self.end = len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise WireError(Reason.BAD_FIELD, "module ends inside an item")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def leb(self, bits: int, signed: bool = False) -> int:
        result = shift = 0
        for _ in range((bits + 6) // 7):
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if signed and b & 0x40:
                    result -= 1 << shift
                return result
        raise WireError(Reason.BAD_FIELD, "LEB128 integer too long")

    def u32(self) -> int:
        return self.leb(32)

    def skip(self, n: int) -> None:
        if self.pos + n > self.end:
            raise WireError(Reason.BAD_FIELD, "module ends inside an item")
        self.pos += n

    def name(self) -> str:
        n = self.u32()
        start = self.pos
        self.skip(n)
        return self.data[start:self.pos].decode("utf-8", "replace")


def _refuse(detail: str) -> WireError:
    return WireError(Reason.BAD_FIELD, "not a step module: " + detail)


def _expr(r: _Reader, end: int) -> None:
    """Decode instructions up to ``end`` (a function body) or to the ``end`` that closes
    a constant expression (``end`` = -1)."""
    depth = 0
    while r.pos < (r.end if end < 0 else end):
        op = r.byte()
        if op == 0xFC:
            sub = r.u32()
            if sub not in SATURATING:
                raise _refuse(f"instruction 0xFC {sub} (tables, bulk memory)")
            continue
        kind = _IMMEDIATES.get(op)
        if kind is None:
            raise _refuse(f"instruction 0x{op:02X}")
        if kind == "block":
            depth += 1
            # One byte: empty (0x40) or a value type (numbers, v128, funcref, externref; a
            # module whose engine accepted the latter two uses features the rest refuses).
            if r.pos < r.end and r.data[r.pos] in (0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70,
                                                   0x6F):
                r.byte()
            else:
                r.leb(33, signed=True)  # a type index
        elif kind == "u32":
            r.u32()
        elif kind == "u32u32":
            r.u32()
            r.u32()
        elif kind == "br_table":
            for _ in range(r.u32() + 1):
                r.u32()
        elif kind == "select_t":
            r.skip(r.u32())
        elif kind == "memarg":
            r.u32()
            r.u32()
        elif kind == "byte":
            r.byte()
        elif kind == "s32":
            r.leb(32, signed=True)
        elif kind == "s64":
            r.leb(64, signed=True)
        elif kind == "f32":
            r.skip(4)
        elif kind == "f64":
            r.skip(8)
        if op == 0x0B:
            if depth == 0:
                if end < 0:
                    return
                if r.pos != end:
                    raise _refuse("code after a function's end")
                return
            depth -= 1
    raise _refuse("a body that does not end")


def check(module: bytes) -> Subset:
    """WSM-1: the module as a step module, or WireError(bad_field) saying why not."""
    if not module.startswith(WASM_HEADER):
        raise WireError(Reason.BAD_FIELD, "not a binary wasm module")
    r = _Reader(module, len(WASM_HEADER))
    mutable: list[int] = []  # indices of mutable globals
    n_globals = 0
    exported: dict[int, str] = {}
    functions = 0
    while r.pos < r.end:
        sec, size = r.byte(), r.u32()
        start, end = r.pos, r.pos + size
        if end > r.end:
            raise WireError(Reason.BAD_FIELD, "a section runs past the module")
        s = _Reader(module, start, end)
        if sec == SEC_IMPORT and s.u32() > 0:
            raise _refuse("imports")
        if sec == SEC_GLOBAL:
            for _ in range(s.u32()):
                valtype = s.byte()
                if s.byte() == 1:
                    if valtype not in (I32, I64):
                        raise _refuse(f"mutable global {n_globals} is not an i32 or i64")
                    mutable.append(n_globals)
                n_globals += 1
                _expr(s, -1)
        elif sec == SEC_EXPORT:
            for _ in range(s.u32()):
                name, kind, index = s.name(), s.byte(), s.u32()
                if kind == EXPORT_GLOBAL:
                    exported[index] = name
        elif sec == SEC_CODE:
            for _ in range(s.u32()):
                body = s.u32()
                if body > MAX_FUNCTION_BYTES:
                    raise _refuse("a function of more than 16 MiB")
                body_end = s.pos + body
                for _ in range(s.u32()):  # local declarations
                    s.u32()
                    s.byte()
                _expr(s, body_end)
                functions += 1
        r.pos = end
    hidden = [i for i in mutable if i not in exported]
    if hidden:
        raise _refuse(f"mutable global {hidden[0]} is not exported")
    return Subset(tuple(sorted(exported[i] for i in mutable)), functions)
