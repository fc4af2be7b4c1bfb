"""No single-byte change to a sealed capability ad opens as a different message."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pnode.caps.model import AD_TYPE, CapabilityAd
from p2pnode.identity import ED25519_PUBLIC_KEY_SIZE, ED25519_SIGNATURE_SIZE, Identity
from p2pnode.wire import cbor
from p2pnode.wire.envelope import open_envelope
from p2pnode.wire.reasons import Reason, WireError
from tests.caps.ads import AD, make_ad, sealed

SIGNER = Identity(bytes(range(100, 132)))


def replacements(b: int) -> set[int]:
    return {b ^ 0x01, b ^ 0x20, b ^ 0x80, b ^ 0xFF, (b + 1) % 256, 0x00, 0xFF} - {b}


def well_formed_envelope(data: bytes) -> bool:
    """True when ``data`` decodes to an envelope that differs from a valid one only in
    what the signature covers (so the signature check is what must catch it)."""
    try:
        obj = cbor.decode(data)
    except WireError:
        return False
    return (
        isinstance(obj, dict)
        and set(obj) == {"t", "v", "b", "k", "s"}
        and obj["t"] == AD_TYPE
        and obj["v"] == 1
        and isinstance(obj["k"], bytes)
        and len(obj["k"]) == ED25519_PUBLIC_KEY_SIZE
        and isinstance(obj["s"], bytes)
        and len(obj["s"]) == ED25519_SIGNATURE_SIZE
    )


def assert_mutation_rejected(data: bytes, pos: int, new: int) -> Reason:
    mutated = data[:pos] + bytes((new,)) + data[pos + 1 :]
    with pytest.raises(WireError) as exc:
        open_envelope(mutated, AD_TYPE)
    if well_formed_envelope(mutated):
        # It parses as an envelope of the right type: only the signature stands between
        # the attacker and a changed body, key or signature.
        assert exc.value.reason == Reason.BAD_SIGNATURE, (pos, new)
    return exc.value.reason


def test_every_single_byte_mutation_of_an_ad_is_rejected() -> None:
    data = sealed(SIGNER, AD)
    assert CapabilityAd.from_body(open_envelope(data, AD_TYPE).body) == AD
    seen: set[Reason] = set()
    for pos in range(len(data)):
        for new in replacements(data[pos]):
            seen.add(assert_mutation_rejected(data, pos, new))
    # Mutations hit the codec, the structure and the signature check.
    assert {Reason.BAD_SIGNATURE, Reason.NON_CANONICAL, Reason.TRUNCATED} <= seen


@given(
    seq=st.integers(min_value=0, max_value=2**64 - 1),
    ttl=st.integers(min_value=10, max_value=86_400),
    agent=st.text(max_size=20),
    kinds=st.lists(st.text(min_size=1, max_size=8), max_size=4, unique=True),
    where=st.floats(min_value=0, max_value=1, exclude_max=True),
    new=st.integers(min_value=0, max_value=255),
)
def test_random_byte_mutation_of_random_ads_is_rejected(
    seq: int, ttl: int, agent: str, kinds: list[str], where: float, new: int
) -> None:
    ad = make_ad(seq=seq, ttl=ttl, agent=agent, kinds=tuple(kinds),
                 price=tuple((k, 1) for k in sorted(kinds)))
    data = sealed(SIGNER, ad)
    pos = int(where * len(data))
    if data[pos] == new:
        new ^= 0xFF
    assert_mutation_rejected(data, pos, new)


def test_truncations_and_extensions_are_rejected() -> None:
    data = sealed(SIGNER, AD)
    for cut in range(len(data)):
        with pytest.raises(WireError):
            open_envelope(data[:cut], AD_TYPE)
    for extra in (b"\x00", b"\xf6", data):
        with pytest.raises(WireError) as exc:
            open_envelope(data + extra, AD_TYPE)
        assert exc.value.reason == Reason.TRAILING_BYTES
