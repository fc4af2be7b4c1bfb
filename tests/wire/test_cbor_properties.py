"""Properties of the canonical codec over generated values of the profile."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from p2pnode.wire import cbor
from p2pnode.wire.reasons import Reason, WireError
from tests.wire import altcbor
from tests.wire.strategies import (
    INT_BOUNDARIES,
    deep_values,
    ints,
    key_orders_agree,
    nesting,
    values,
)


@given(values)
@example(INT_BOUNDARIES)
@example({"": [b"", "", 0, -1, None, True, False], 0: {}, -1: []})
def test_round_trip(v: Any) -> None:
    assume(nesting(v) <= cbor.MAX_DEPTH)
    data = cbor.encode(v)
    assert cbor.decode(data) == v
    # Accepted input re-encodes to itself: one value, one byte string.
    assert cbor.encode(cbor.decode(data)) == data


@given(ints)
def test_round_trip_integers_through_the_whole_64_bit_range(n: int) -> None:
    data = cbor.encode(n)
    assert cbor.decode(data) == n
    assert len(data) == 1 + altcbor.shortest_width(n if n >= 0 else -1 - n)


@given(st.integers(min_value=cbor.MAX_DEPTH - 2, max_value=cbor.MAX_DEPTH + 3).flatmap(deep_values))
def test_depth_limit_holds_for_encoder_and_decoder(v: Any) -> None:
    if nesting(v) <= cbor.MAX_DEPTH:
        assert cbor.decode(cbor.encode(v)) == v
    else:
        with pytest.raises(WireError) as exc:
            cbor.encode(v)
        assert exc.value.reason == Reason.TOO_DEEP
        # The same value written by another encoder is refused by ours as well.
        with pytest.raises(WireError) as exc:
            cbor.decode(cbor2.dumps(v, canonical=True))
        assert exc.value.reason == Reason.TOO_DEEP


@given(values)
@example({"a": 1, 1000: 2})  # length-first puts "a" (2 bytes) before 1000 (3 bytes)
@example({-1: 0, 24: 1})  # bytewise puts 24 (0x18 0x18) before -1 (0x20)
def test_agrees_with_cbor2(v: Any) -> None:
    """cbor2 as an independent implementation of the same encoding.

    cbor2's ``canonical=True`` sorts map keys length-first (RFC 7049 canonical, RFC 8949
    §4.2.3); the profile sorts them bytewise (RFC 8949 §4.2.1). The two orders differ only
    for maps whose keys mix major types or signs with different encoded lengths; there our
    decoder must refuse cbor2's order as non-canonical.
    """
    assume(nesting(v) <= cbor.MAX_DEPTH)
    ours = cbor.encode(v)
    theirs = cbor2.dumps(v, canonical=True)
    assert cbor2.loads(ours) == v
    if key_orders_agree(v):
        assert ours == theirs
    else:
        assert sorted(ours) == sorted(theirs)  # same items, other order
        with pytest.raises(WireError) as exc:
            cbor.decode(theirs)
        assert exc.value.reason == Reason.NON_CANONICAL


@given(values)
def test_alternative_writer_is_canonical_when_it_alters_nothing(v: Any) -> None:
    assume(nesting(v) <= cbor.MAX_DEPTH)
    assert altcbor.AltWriter().write(v) == cbor.encode(v)


@given(values, st.data())
def test_every_non_canonical_alternative_is_rejected(v: Any, data: st.DataObject) -> None:
    """Non-shortest heads, indefinite lengths, unsorted and duplicate keys: each single
    alteration anywhere in a value makes the decoder refuse it with the matching reason."""
    v = [v]  # the outer array always offers at least one alteration
    assume(nesting(v) <= cbor.MAX_DEPTH)
    site, alteration = data.draw(st.sampled_from(altcbor.sites(v)), label="site")
    bad = altcbor.altered(v, site, alteration)
    assert bad != cbor.encode(v)
    with pytest.raises(WireError) as exc:
        cbor.decode(bad)
    assert exc.value.reason == altcbor.EXPECTED[alteration], (site, alteration, bad.hex())


def test_every_alteration_of_a_mixed_value_is_rejected() -> None:
    """All sites of one value with every kind of item, exhaustively."""
    v = {"net": "devnet", "seq": 300, "n": -70000, "b": b"\x00" * 30, "l": [1, [], {}],
         "m": {"x": None, 5: True}, 24: "t" * 24}
    options = altcbor.sites(v)
    assert {a for _, a in options} == set(altcbor.EXPECTED)
    for site, alteration in options:
        with pytest.raises(WireError) as exc:
            cbor.decode(altcbor.altered(v, site, alteration))
        assert exc.value.reason == altcbor.EXPECTED[alteration]


@given(values, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_rejected(v: Any, extra: bytes) -> None:
    assume(nesting(v) <= cbor.MAX_DEPTH)
    with pytest.raises(WireError) as exc:
        cbor.decode(cbor.encode(v) + extra)
    assert exc.value.reason == Reason.TRAILING_BYTES


@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_fail_with_a_wire_error(data: bytes) -> None:
    try:
        v = cbor.decode(data)
    except WireError as e:
        assert isinstance(e.reason, Reason)
    else:
        assert cbor.encode(v) == data
