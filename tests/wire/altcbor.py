"""A deliberately non-canonical CBOR writer for tests.

It writes a value canonically except at one chosen item ("site"), where it applies one
alteration that RFC 8949 allows in general CBOR but the p2pnode profile forbids. Walking
the value once with no target lists every site and the alterations that apply there, in
the order the decoder meets them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from p2pnode.wire import cbor
from p2pnode.wire.reasons import Reason

# alteration -> the reason the strict decoder must give
EXPECTED: dict[str, Reason] = {
    "widen1": Reason.NON_CANONICAL,
    "widen2": Reason.NON_CANONICAL,
    "widen4": Reason.NON_CANONICAL,
    "widen8": Reason.NON_CANONICAL,
    "indefinite": Reason.INDEFINITE_LENGTH,
    "unsorted": Reason.NON_CANONICAL,
    "duplicate": Reason.DUPLICATE_KEY,
}

_WIDTH_AI = {1: 24, 2: 25, 4: 26, 8: 27}
_WIDTH_FMT = {1: ">B", 2: ">H", 4: ">I", 8: ">Q"}


def shortest_width(arg: int) -> int:
    """Bytes after the initial byte in the shortest head for ``arg`` (0 when it fits in ai)."""
    if arg < 24:
        return 0
    for w in (1, 2, 4, 8):
        if arg < 1 << (8 * w):
            return w
    raise ValueError("argument exceeds 64 bits")


def head(major: int, arg: int, width: int | None = None) -> bytes:
    """A head with ``arg`` written in ``width`` bytes (shortest when None)."""
    w = shortest_width(arg) if width is None else width
    if w == 0:
        return bytes(((major << 5) | arg,))
    return bytes(((major << 5) | _WIDTH_AI[w],)) + struct.pack(_WIDTH_FMT[w], arg)


@dataclass
class AltWriter:
    target: int | None = None
    alteration: str | None = None
    sites: list[tuple[int, str]] = field(default_factory=list)
    _next: int = 0

    def write(self, v: Any) -> bytes:
        i = self._next
        self._next += 1
        alt = self.alteration if i == self.target else None
        if v is None or isinstance(v, bool):
            return cbor.encode(v)
        if isinstance(v, int):
            major, arg = (0, v) if v >= 0 else (1, -1 - v)
            self._widen_sites(i, arg)
            return self._head(major, arg, alt)
        if isinstance(v, bytes | str):
            raw = v.encode("utf-8") if isinstance(v, str) else v
            major = 3 if isinstance(v, str) else 2
            self._widen_sites(i, len(raw))
            self.sites.append((i, "indefinite"))
            if alt == "indefinite":
                # Two definite chunks (the second may be empty) between 0x?f and a break.
                cut = len(raw) // 2
                return (bytes(((major << 5) | 31,)) + head(major, cut) + raw[:cut]
                        + head(major, len(raw) - cut) + raw[cut:] + b"\xff")
            return self._head(major, len(raw), alt) + raw
        if isinstance(v, list):
            self._widen_sites(i, len(v))
            self.sites.append((i, "indefinite"))
            items = b"".join(self.write(x) for x in v)
            if alt == "indefinite":
                return b"\x9f" + items + b"\xff"
            return self._head(4, len(v), alt) + items
        if isinstance(v, dict):
            self._widen_sites(i, len(v))
            self.sites.append((i, "indefinite"))
            if len(v) >= 2:
                self.sites.append((i, "unsorted"))
            if v:
                self.sites.append((i, "duplicate"))
            # Keys sort by their canonical bytes; the key items themselves may be altered.
            order = sorted(v, key=cbor.encode)
            pairs = [(self.write(k), k) for k in order]
            entries = [kb + self.write(v[k]) for kb, k in pairs]
            n = len(entries)
            if alt == "unsorted":
                entries[0], entries[1] = entries[1], entries[0]
            elif alt == "duplicate":
                entries.insert(1, entries[0])
                n += 1
            body = b"".join(entries)
            if alt == "indefinite":
                return b"\xbf" + body + b"\xff"
            return self._head(5, n, alt) + body
        raise TypeError(type(v).__name__)

    def _widen_sites(self, i: int, arg: int) -> None:
        for w in (1, 2, 4, 8):
            if w > shortest_width(arg):
                self.sites.append((i, f"widen{w}"))

    @staticmethod
    def _head(major: int, arg: int, alt: str | None) -> bytes:
        if alt is not None and alt.startswith("widen"):
            return head(major, arg, int(alt[5:]))
        return head(major, arg)


def sites(v: Any) -> list[tuple[int, str]]:
    w = AltWriter()
    w.write(v)
    return w.sites


def altered(v: Any, site: int, alteration: str) -> bytes:
    return AltWriter(target=site, alteration=alteration).write(v)
