"""Rateless IBLT coding: the index mapping, both encoders, and the peeling decoder."""

from __future__ import annotations

import hashlib
import math
import random
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.ledger import riblt
from p2pnode.ledger.riblt import Decoder, Encoder, Inconsistent, Symbols, reference_encode

M64 = (1 << 64) - 1


def keyset(count: int, tag: bytes = b"k") -> list[bytes]:
    return [hashlib.sha256(tag + i.to_bytes(8, "little")).digest() for i in range(count)]


# --- an independent reading of the module docstring -------------------------------------

def spec_indices(key: bytes, stop: int) -> list[int]:
    h = hashlib.sha256(b"p2pnode/sync/1" + key).digest()
    (s,) = struct.unpack("<Q", h[8:16])
    out, j = [], 0
    while j < stop:
        out.append(j)
        s = (s + 0x9E3779B97F4A7C15) % 2**64
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
        z = z ^ (z >> 31)
        u = float((z >> 11) + 1) * 2.0**-53
        g = max(1, math.ceil((float(j) + 1.5) * (1.0 / math.sqrt(u) - 1.0)))
        if j + g > 2**40:
            break
        j += g
    return out


def spec_symbols(keys: list[bytes], stop: int) -> list[tuple[bytes, int, int]]:
    table = [(bytearray(32), 0, 0) for _ in range(stop)]
    for key in keys:
        (chk,) = struct.unpack("<Q", hashlib.sha256(b"p2pnode/sync/1" + key).digest()[:8])
        for i in spec_indices(key, stop):
            s, c, n = table[i]
            table[i] = (bytearray(a ^ b for a, b in zip(s, key, strict=True)), c ^ chk, n + 1)
    return [(bytes(s), c, n) for s, c, n in table]


def test_indices_follow_the_spec() -> None:
    for key in keyset(300, b"spec"):
        assert list(riblt.indices(key, 1 << 41)) == spec_indices(key, 1 << 41)


def test_symbols_follow_the_spec() -> None:
    keys = keyset(50, b"sym")
    ours = reference_encode(keys, 0, 80)
    assert [ours.symbol(i) for i in range(80)] == spec_symbols(keys, 80)
    data = ours.to_bytes()
    s, c, _ = spec_symbols(keys, 80)[7]
    assert data[7 * 40:8 * 40] == s + c.to_bytes(8, "little")


def test_pinned_vectors() -> None:
    key = hashlib.sha256(b"p2pnode test key").digest()
    assert riblt.key_hash(key) == (3403833566477643940, 459257943161393535)
    assert list(riblt.indices(key, 10**6)) == [
        0, 1, 2, 3, 11, 23, 36, 39, 44, 73, 100, 167, 298, 498, 2284, 2566, 2825, 3093,
        12745, 15512, 55514, 97564, 140994, 191417, 462700, 822964, 961148]
    keys = [hashlib.sha256(b"vector %d" % i).digest() for i in range(100)]
    syms = Encoder(keys).extend(64)
    assert hashlib.sha256(syms.to_bytes()).hexdigest() == (
        "1c92d5220f11ef5e552962cc44d783d2188f477eae195401acacd0fb2e528765")
    assert syms.count.tolist()[:8] == [100, 63, 53, 43, 35, 26, 25, 25]


def _unmix(z: int) -> int:
    """The generator state whose next output is ``z`` (splitmix64 is invertible)."""
    z ^= (z >> 31) ^ (z >> 62)
    z = (z * pow(0x94D049BB133111EB, -1, 1 << 64)) & M64
    z ^= (z >> 27) ^ (z >> 54)
    z = (z * pow(0xBF58476D1CE4E5B9, -1, 1 << 64)) & M64
    z ^= (z >> 30) ^ (z >> 60)
    return (z - 0x9E3779B97F4A7C15) & M64


def test_vector_step_equals_scalar_step() -> None:
    rng = random.Random(7)
    js = [0, 1, 2, 1000, (1 << 39) + 3, (1 << 40) - 1, 1 << 40]
    states = [0, M64, _unmix(0), _unmix(M64), _unmix(1 << 11), _unmix((1 << 63) + 12345)]
    states += [rng.getrandbits(64) for _ in range(200)]
    pairs = [(j, s) for j in js for s in states]
    pairs += [(rng.randrange(1 << 40), rng.getrandbits(64)) for _ in range(2000)]
    nxt, st_ = riblt._advance(np.array([j for j, _ in pairs], np.int64),
                              np.array([s for _, s in pairs], np.uint64))
    for (j, s), a, b in zip(pairs, nxt.tolist(), st_.tolist(), strict=True):
        want, state = riblt.next_index(j, s)
        assert (a if a != riblt._NEVER else None, b) == (want, state)
    # u = 2^-53 gives the longest gap, u = 1 the shortest.
    assert riblt.next_index(0, _unmix(0))[0] == math.ceil(1.5 * (2**26.5 - 1))
    assert riblt.next_index(5, _unmix(M64))[0] == 6
    assert riblt.next_index(1 << 40, 12345)[0] is None
    assert riblt.next_index(1 << 20, _unmix(0))[0] is None


def test_density_is_two_over_i_plus_two() -> None:
    n = 4000
    counts = Encoder(keyset(n, b"dens")).extend(400).count
    assert counts[0] == n
    for lo, hi in ((1, 10), (10, 50), (50, 400)):
        expect = sum(2 * n / (i + 2) for i in range(lo, hi))
        assert abs(int(counts[lo:hi].sum()) - expect) < 0.05 * expect


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 200), st.integers(0, 2**32 - 1),
       st.lists(st.integers(0, 150), min_size=1, max_size=5))
def test_encoder_equals_reference(n: int, seed: int, cuts: list[int]) -> None:
    keys = keyset(n, seed.to_bytes(4, "little"))
    stops = sorted(cuts)
    enc = Encoder(keys)
    parts = [enc.extend(s) for s in stops]
    start = 0
    for stop, part in zip(stops, parts, strict=True):
        assert part == reference_encode(keys, start, stop)
        start = stop
    assert enc.m == stops[-1]
    assert Encoder(keys).extend(stops[-1]) == reference_encode(keys, 0, stops[-1])


def test_encoder_edge_cases() -> None:
    assert Encoder([]).extend(50) == Symbols.zeros(50)
    assert len(Encoder(keyset(3)).extend(0)) == 0
    key = keyset(1)[0]
    syms = Encoder([key]).extend(3000)
    hits = set(riblt.indices(key, 3000))
    for i in range(3000):
        assert syms.symbol(i) == ((key, riblt.check(key), 1) if i in hits else (bytes(32), 0, 0))
    big = keyset(5000, b"big")
    enc = Encoder(big)
    assert enc.extend(100) == reference_encode(big, 0, 100)
    assert enc.extend(700) == reference_encode(big, 100, 700)
    with pytest.raises(ValueError):
        enc.extend(699)
    with pytest.raises(ValueError):
        Encoder([b"short"])


def test_join_and_weights() -> None:
    keys = keyset(40)
    enc = Encoder(keys[:20])
    enc.extend(30)
    below = [enc.join(k, -1) for k in keys[20:]]
    for k, b in zip(keys[20:], below, strict=True):
        assert b == list(riblt.indices(k, 30))
    later = enc.extend(90)
    plus = reference_encode(keys[:20], 30, 90)
    minus = reference_encode(keys[20:], 30, 90)
    assert np.array_equal(later.sums, plus.sums ^ minus.sums)
    assert np.array_equal(later.count, plus.count - minus.count)


def test_wire_form_round_trips() -> None:
    syms = Encoder(keyset(30)).extend(40)
    back = Symbols.from_bytes(syms.to_bytes(), syms.count.tolist())
    assert back == syms and back != Symbols.zeros(40)
    with pytest.raises(ValueError):
        Symbols.from_bytes(syms.to_bytes()[:-1], syms.count.tolist())


def decode(mine: list[bytes], theirs: list[bytes], step: int = 16) -> tuple[Decoder, int]:
    ei, er = Encoder(mine), Encoder(theirs)
    dec = Decoder(frozenset(mine))
    m = 0
    while not dec.complete:
        m += step
        dec.push(er.extend(m) - ei.extend(m))
        assert m < 10_000
    return dec, m


@pytest.mark.parametrize("d", [0, 1, 2, 10, 1000])
@pytest.mark.parametrize("sides", ["remote", "local", "both"])
def test_decodes_known_differences(d: int, sides: str) -> None:
    keys = keyset(2000 + d, b"dec%d" % d)
    common = keys[:2000]
    own = keys[2000:]
    mine, theirs = list(common), list(common)
    r_only = own if sides == "remote" else [] if sides == "local" else own[: d // 2]
    l_only = [k for k in own if k not in r_only]
    mine += l_only
    theirs += r_only
    dec, m = decode(mine, theirs)
    assert sorted(dec.remote) == sorted(r_only)
    assert sorted(dec.local) == sorted(l_only)
    assert m <= 32 + 2 * d and (d > 0 or m == 16)


@pytest.mark.parametrize("empty", ["mine", "theirs"])
def test_one_side_empty(empty: str) -> None:
    keys = keyset(300, b"empty")
    dec, _ = decode([] if empty == "mine" else keys, keys if empty == "mine" else [])
    assert sorted(dec.remote if empty == "mine" else dec.local) == sorted(keys)
    assert not (dec.local if empty == "mine" else dec.remote)


def test_decoder_is_not_complete_before_any_symbol() -> None:
    dec = Decoder()
    assert not dec.complete
    dec.push(Symbols.zeros(1))
    assert dec.complete


def _pure(key: bytes, sign: int, k: int = 4, at: int = 2) -> Symbols:
    data = bytearray(40 * k)
    data[40 * at:40 * at + 40] = key + riblt.check(key).to_bytes(8, "little")
    return Symbols.from_bytes(bytes(data), [sign if i == at else 0 for i in range(k)])


def test_decoder_refuses_contradictions() -> None:
    key = keyset(1)[0]
    with pytest.raises(Inconsistent):  # a key only the responder holds, but we hold it
        Decoder(frozenset([key])).push(_pure(key, 1))
    with pytest.raises(Inconsistent):  # a key only we hold, but we do not
        Decoder(frozenset()).push(_pure(key, -1))
    with pytest.raises(Inconsistent):  # more remote keys than the remote set has
        Decoder(frozenset(), remote_max=0).push(_pure(key, 1))
    dec = Decoder(frozenset())
    dec.push(_pure(key, 1, k=1, at=0))
    assert dec.remote == [key] and dec.complete
    with pytest.raises(Inconsistent):  # later symbols lack it: it decodes again, negated
        dec.push(Symbols.zeros(40))
