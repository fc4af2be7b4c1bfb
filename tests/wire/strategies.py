"""Hypothesis strategies for values of the p2pnode CBOR profile (spec 01 §2)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from p2pnode.wire import cbor

INT_MIN = -(1 << 64)
INT_MAX = (1 << 64) - 1

# Every boundary where the head of an integer changes width, on both signs.
INT_BOUNDARIES = sorted(
    {b + d for b in (0, 23, 24, 0xFF, 0x100, 0xFFFF, 0x10000, 0xFFFFFFFF, 0x100000000, INT_MAX)
     for d in (-1, 0, 1) if 0 <= b + d <= INT_MAX}
    | {-1 - b - d for b in (0, 23, 24, 0xFF, 0x100, 0xFFFF, 0x10000, 0xFFFFFFFF, 0x100000000,
                            INT_MAX) for d in (-1, 0, 1) if 0 <= b + d <= INT_MAX}
)

ints = st.one_of(
    st.sampled_from(INT_BOUNDARIES),
    st.integers(min_value=INT_MIN, max_value=INT_MAX),
    st.integers(min_value=-300, max_value=300),
)
texts = st.text(max_size=40)
leaves = st.one_of(st.none(), st.booleans(), ints, st.binary(max_size=64), texts)
keys = st.one_of(st.text(max_size=12), ints)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(keys, children, max_size=6),
    )


values = st.recursive(leaves, _containers, max_leaves=24)


def deep_values(depth: int) -> st.SearchStrategy[Any]:
    """Values that nest exactly ``depth`` levels below the top item."""
    def wrap(v: Any, how: list[bool]) -> Any:
        for as_map in how:
            v = {"k": v} if as_map else [v]
        return v

    return st.builds(wrap, leaves, st.lists(st.booleans(), min_size=depth, max_size=depth))


def nesting(v: Any) -> int:
    """How many levels below the top item the deepest item of ``v`` sits (codec depth)."""
    if isinstance(v, list):
        return 1 + max((nesting(x) for x in v), default=-1)
    if isinstance(v, dict):
        return 1 + max((max(nesting(k), nesting(x)) for k, x in v.items()), default=-1)
    return 0


def key_orders_agree(v: Any) -> bool:
    """True when every map in ``v`` sorts the same bytewise (RFC 8949 §4.2.1) and
    length-first (RFC 8949 §4.2.3, the RFC 7049 "canonical" order)."""
    if isinstance(v, list):
        return all(key_orders_agree(x) for x in v)
    if isinstance(v, dict):
        enc = [cbor.encode(k) for k in v]
        if sorted(enc) != sorted(enc, key=lambda b: (len(b), b)):
            return False
        return all(key_orders_agree(x) for x in v.values())
    return True
