"""The fast path (cbor2 plus proofs) agrees with the pure-Python reference codec.

Agreement means: whatever the fast path accepts, the reference accepts with the same value;
whatever the reference refuses, the fast path refuses too, and :func:`cbor.decode` then
reports the reference's reason. The fast path may step aside on input the reference
accepts (it is then only slower), but the tests below also show that it takes every
canonical encoding of a value of the profile, so that honest input never pays for the
reference.
"""

from __future__ import annotations

import json
from typing import Any

import cbor2
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from bench.bench_wire import realistic_ad
from conformance import runner
from conformance.jsonform import from_json
from p2pnode.wire import cbor
from p2pnode.wire.cbor import REFUSED, fast_decode, fast_encode, reference_decode, reference_encode
from p2pnode.wire.reasons import WireError
from tests.wire import altcbor
from tests.wire.strategies import ints, keys, nesting, values


def same_value(a: Any, b: Any) -> bool:
    """Equal as CBOR values: Python's ``==`` takes ``True`` for ``1`` and ``1`` for ``1.0``."""
    return reference_encode(a) == reference_encode(b)


def assert_paths_agree(data: bytes) -> bool:
    """Both paths give one answer for ``data``; True when that answer is a value."""
    fast = fast_decode(data)
    try:
        ref = reference_decode(data)
    except WireError as e:
        assert fast is REFUSED, data.hex()
        with pytest.raises(WireError) as exc:
            cbor.decode(data)
        assert exc.value.reason == e.reason, data.hex()
        return False
    assert fast is REFUSED or same_value(fast, ref), data.hex()
    assert same_value(cbor.decode(data), ref)
    return True


def test_cbor2_is_the_native_extension() -> None:
    # cbor2 6 is written in Rust; a pure-Python build would make the fast path slow, not wrong.
    assert type(cbor2.loads).__name__ == "builtin_function_or_method"
    assert cbor2.loads.__module__ == "cbor2._cbor2"


# -- decoding: canonical input always takes the fast path ---------------------------------


@given(values)
@example({"a": 1, 1000: 2, -1: 3, "\u00e9": 4, "z": 5})  # the two key orders disagree here
@example({"\u00e9": 0, "ab": 1, "\U0001f600": 2, "": 3})  # non-ASCII keys, ordered by bytes
@example([[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]])  # depth 16
def test_fast_path_takes_every_canonical_encoding(v: Any) -> None:
    assume(nesting(v) <= cbor.MAX_DEPTH)
    data = reference_encode(v)
    fast = fast_decode(data)
    assert fast is not REFUSED, data.hex()
    assert same_value(fast, v)
    # cbor2's own encodings of the value: length-first key order, or insertion order.
    assert_paths_agree(cbor2.dumps(v, canonical=True))
    assert_paths_agree(cbor2.dumps(v))


def test_every_vector_input_passes_through_the_fast_path() -> None:
    """Every CBOR input of the conformance vectors: accepted ones are accepted by the fast
    path with the reference's value, refused ones are refused by it."""
    taken = refused = 0
    for path in sorted(runner.DEFAULT_VECTORS.rglob("*.cbor")):
        data = path.read_bytes()
        if len(data) > cbor.MAX_MESSAGE_SIZE:
            continue
        if assert_paths_agree(data):
            assert fast_decode(data) is not REFUSED, path
            taken += 1
        else:
            refused += 1
    assert taken > 100 and refused > 30


def test_every_encoding_vector_is_written_by_the_fast_path() -> None:
    root = runner.DEFAULT_VECTORS / "encoding" / "cbor_encode"
    written = 0
    for case in sorted(p for p in root.iterdir() if p.is_dir()):
        meta = json.loads((case / "meta.json").read_text())
        if meta["expected"]["result"] != "valid":
            continue
        value = from_json(json.loads((case / "value.json").read_text()))
        assert fast_encode(value) == (case / "encoded.cbor").read_bytes(), case.name
        written += 1
    assert written > 10


# -- decoding: random, mutated and adversarial input -------------------------------------


@given(st.binary(max_size=80))
def test_random_bytes(data: bytes) -> None:
    assert_paths_agree(data)


def _mutate(data: bytes, how: int, at: int, byte: int) -> bytes:
    i = at % (len(data) + 1)
    if how == 0:  # replace a byte
        return data[:i] + bytes([byte]) + data[i + 1 :]
    if how == 1:  # insert a byte
        return data[:i] + bytes([byte]) + data[i:]
    if how == 2:  # delete a byte
        return data[:i] + data[i + 1 :]
    if how == 3:  # cut the input
        return data[:i]
    return data + bytes([byte])  # a trailing byte


@given(values, st.lists(st.tuples(st.integers(0, 4), st.integers(0, 1 << 16),
                                  st.integers(0, 255)), min_size=1, max_size=3))
def test_mutated_encodings(v: Any, mutations: list[tuple[int, int, int]]) -> None:
    data = reference_encode([v]) if nesting(v) < cbor.MAX_DEPTH else b"\x80"
    for how, at, byte in mutations:
        data = _mutate(data, how, at, byte)
    assert_paths_agree(data)


@given(values, st.data())
def test_non_canonical_alterations(v: Any, data: st.DataObject) -> None:
    """Each alteration the profile forbids, anywhere in a value (tests/wire/altcbor.py)."""
    v = [v]
    assume(nesting(v) <= cbor.MAX_DEPTH)
    site, alteration = data.draw(st.sampled_from(altcbor.sites(v)), label="site")
    bad = altcbor.altered(v, site, alteration)
    assert fast_decode(bad) is REFUSED
    assert_paths_agree(bad)


@given(st.one_of(st.floats(), st.sets(ints, max_size=3), st.lists(st.floats(), max_size=2),
                 st.dictionaries(st.one_of(keys, st.booleans(), st.binary(max_size=2)),
                                 st.integers(), max_size=3)))
def test_values_outside_the_profile_written_by_cbor2(v: Any) -> None:
    assert_paths_agree(cbor2.dumps(v))
    assert_paths_agree(cbor2.dumps(v, canonical=True))


def _hex_items(text: str) -> list[str]:
    return text.split()


# RFC 8949 Appendix F.1: examples of CBOR data items that are not well-formed.
NOT_WELL_FORMED = _hex_items("""
18 19 1a 1b 1901 1a0102 1b01020304050607 38 58 78 98 9a01ff00 b8 d8 f8 f900 fa0000 fb000000
41 61 5affffffff00 5bffffffffffffffff010203 7affffffff00 7b7fffffffffffffff010203
81 818181818181818181 8200 a1 a20102 a100 a2000000
c0 5f4100 7f6100
1c 1d 1e 3c 3d 3e 5c 5d 5e 7c 7d 7e 9c 9d 9e bc bd be dc dd de fc fd fe
f800 f801 f818 f81f
5f00ff 5f21ff 5f6100ff 5f80ff 5fa0ff 5fc000ff 5fe0ff 7f4100ff 5f5f4100ffff 7f7f6100ffff
ff 81ff 8200ff a1ff a1ff00 a100ff a20000ff 9f81ff 9f829f819f9fffffffff bf00ff bf000000ff
1f 3f df
""")

# Well-formed CBOR outside the profile, or not the canonical encoding of its value; each is
# something cbor2 decodes without complaint unless told otherwise.
ADVERSARIAL = _hex_items("""
c249010000000000000000 c24101 c34100 c2420001 c349010000000000000000 d81c80 d81c81d81d00
d81c8200d81d00 d9010082d8190061616161 d9d9f700 d9d9f78100 d8186161 c11a514b67b0
c074323031332d30332d32315432303a30343a30305a d82568000000000000000000000000000000
d9010283010203 d81e820102 d82344612e2a62 d90103a10100
fb3ff0000000000000 fb0000000000000000 8201fb3ff0000000000000 a16161fb7ff8000000000000
f93c00 fa3f800000 f7 e0 f3 f820 f8ff a1f401 a1f501 a1f601 a1416101 a1800101 a1a00101
a20100f500 a2f5000100 a2010001f6 a2616101616102 a3010001006161f6 a2616201616102
a2200100f6 a2616100186401 a2616119038802 a2616100613a01 a262c3a900617a01 a2617a0062c3a901
1800 1817 1900ff 1a0000ffff 1b00000000ffffffff 3817 580161 78016161 980100 b8016161f6
5f4161ff 7f6161ff 9f01ff 9fff bf616101ff 0000 f6f6 8000 a0ff 616100 62c328 61ff 63eda080
62c0af 64f4908080 6414141414
""")


# The items of ADVERSARIAL that are canonical after all: a text of four control characters,
# and {"z": 0, "é": 1} (the 1-byte key first, whatever the code points).
CANONICAL = {"6414141414", "a2617a0062c3a901"}


@pytest.mark.parametrize("hexed", NOT_WELL_FORMED + ADVERSARIAL)
def test_adversarial(hexed: str) -> None:
    data = bytes.fromhex(hexed)
    assert_paths_agree(data)
    assert (fast_decode(data) is REFUSED) == (hexed not in CANONICAL)


def test_depth_limit_is_the_references() -> None:
    for levels in (cbor.MAX_DEPTH, cbor.MAX_DEPTH + 1, cbor.MAX_DEPTH + 2, 400, 100_000):
        arrays = b"\x81" * (levels - 1) + b"\x80"
        maps = b"\xa1\x61k" * (levels - 1) + b"\xa0"
        leaf = b"\x81" * (levels - 1) + b"\x00"
        for data in (arrays, maps, leaf):
            assert_paths_agree(data)
            assert (fast_decode(data) is REFUSED) == (levels > cbor.MAX_DEPTH + 1)


def test_a_map_at_the_depth_limit_has_no_room_for_keys() -> None:
    empty_map = b"\x81" * cbor.MAX_DEPTH + b"\xa0"
    assert fast_decode(empty_map) is not REFUSED
    one_key = b"\x81" * cbor.MAX_DEPTH + b"\xa1\x00\x00"
    assert fast_decode(one_key) is REFUSED
    assert_paths_agree(one_key)


def test_large_counts_and_lengths_are_refused_without_allocating() -> None:
    for head in (b"\x5b", b"\x7b", b"\x9b", b"\xbb"):
        data = head + b"\xff" * 8
        assert fast_decode(data) is REFUSED
        assert_paths_agree(data)


def test_the_fast_path_returns_the_reference_types() -> None:
    v = fast_decode(reference_encode({"b": b"x", "i": -5, "l": [True, None, "s"], "m": {}}))
    assert type(v) is dict and type(v["b"]) is bytes and type(v["l"]) is list
    assert v["l"][0] is True and v["l"][1] is None and type(v["i"]) is int


# -- key order: the proof of the ASCII shortcut -----------------------------------------


@given(st.lists(st.one_of(st.text(max_size=6), ints), unique=True, max_size=8))
@example(["a", 1000])
@example([-1, 24])
@example(["b", "aa", "\u00e9", "z"])
def test_key_order_is_the_bytewise_order_of_the_encodings(ks: list[Any]) -> None:
    assume(len({(type(k), k) for k in ks}) == len(ks))
    expected = sorted(ks, key=reference_encode)
    assert cbor._key_order(list(ks)) == expected
    assert cbor._key_order(expected) == expected


@given(st.lists(st.text(alphabet=st.characters(max_codepoint=127), max_size=30),
                unique=True, min_size=2, max_size=12))
def test_length_first_equals_bytewise_for_ascii_text_keys(ks: list[str]) -> None:
    assert sorted(sorted(ks), key=len) == sorted(ks, key=reference_encode)


# -- encoding ----------------------------------------------------------------------------


def _shuffled(v: Any, rnd: Any) -> Any:
    """The same value with every map's entries in another insertion order."""
    if isinstance(v, list):
        return [_shuffled(x, rnd) for x in v]
    if isinstance(v, dict):
        items = list(v.items())
        rnd.shuffle(items)
        return {k: _shuffled(x, rnd) for k, x in items}
    return v


@given(values, st.randoms(use_true_random=False))
@example({"a": 1, 1000: 2}, None)
@example({-1: 0, 24: 1}, None)
def test_encoder_fast_path_writes_the_reference_bytes(v: Any, rnd: Any) -> None:
    assume(nesting(v) <= cbor.MAX_DEPTH)
    if rnd is not None:
        v = _shuffled(v, rnd)
    expected = reference_encode(v)
    assert fast_encode(v) == expected
    assert cbor.encode(v) == expected


OUTSIDE = [
    1.0, float("nan"), [1, 2.5], {"p": 0.1}, 2**64, -(2**64) - 1, [2**64], {"n": -(2**64) - 1},
    {1, 2}, frozenset(), object(), 1j, {(1, 2): 3}, {b"k": 1}, {True: 1}, {None: 1},
    {1.5: 1}, {2**64: 0}, "\ud800", ["\udfff"], {"\ud800": 1}, range(3), cbor2.CBORTag(1, 0),
    cbor2.undefined, cbor2.CBORSimpleValue(0),
]


@pytest.mark.parametrize("value", OUTSIDE, ids=repr)
def test_encoder_fast_path_steps_aside_outside_the_profile(value: Any) -> None:
    assert fast_encode(value) is None
    with pytest.raises(WireError) as ref:
        reference_encode(value)
    with pytest.raises(WireError) as exc:
        cbor.encode(value)
    assert exc.value.reason == ref.value.reason


@pytest.mark.parametrize("value", [(1, 2), bytearray(b"ab"), memoryview(b"ab"),
                                   {"t": (1, [bytearray(b"x")])}, [memoryview(b"")]], ids=repr)
def test_values_the_reference_accepts_in_other_shapes(value: Any) -> None:
    # Tuples take the fast path; byte buffers other than bytes go to the reference.
    assert cbor.encode(value) == reference_encode(value)
    assert fast_encode(value) in (None, reference_encode(value))


@given(st.integers(min_value=cbor.MAX_DEPTH - 2, max_value=cbor.MAX_DEPTH + 2),
       st.integers(min_value=0, max_value=2), st.booleans())
def test_encoder_depth_limit_is_the_references(levels: int, start: int, as_map: bool) -> None:
    v: Any = 0
    for _ in range(levels):
        v = {"k": v} if as_map else [v]
    try:
        expected = reference_encode(v, depth=start)
    except WireError:
        assert fast_encode(v, depth=start) is None
    else:
        assert fast_encode(v, depth=start) == expected


class _Text(str):
    pass


class _Map(dict[Any, Any]):
    pass


def test_subclasses_go_to_the_reference() -> None:
    for value in (_Text("a"), [_Text("a")], _Map(a=1), [_Map()], {"a": _Map(b=2)}):
        assert cbor.encode(value) == reference_encode(value)
        assert fast_encode(value) is None or fast_encode(value) == reference_encode(value)


def test_the_bench_body_takes_both_fast_paths() -> None:
    body = realistic_ad().to_body()
    data = fast_encode(body)
    assert data is not None and data == reference_encode(body)
    assert same_value(fast_decode(data), body)
