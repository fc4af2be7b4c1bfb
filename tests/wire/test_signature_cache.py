"""ENV-12: the signature of given envelope bytes is verified at most once, and the record
changes no verdict."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.caps.model import AD_TYPE
from p2pnode.caps.table import validate_ad
from p2pnode.identity import Identity, peer_id_bytes
from p2pnode.wire import cbor
from p2pnode.wire.envelope import SignatureCache, open_envelope
from p2pnode.wire.reasons import Reason, WireError
from tests.caps.ads import NET, NOW_MS, make_ad, sealed

SIGNER = Identity(bytes(range(7, 39)))
OTHER = Identity(bytes(range(40, 72)))


def forged(data: bytes) -> bytes:
    """``data`` with the last byte of its signature flipped (still well formed)."""
    obj = cbor.decode(data)
    obj["s"] = obj["s"][:-1] + bytes([obj["s"][-1] ^ 1])
    return bytes(cbor.encode(obj))


def verdict(data: bytes, cache: SignatureCache | None) -> Any:
    try:
        return open_envelope(data, AD_TYPE, verified=cache).content_id
    except WireError as e:
        return e.reason


def test_a_copy_of_checked_bytes_is_not_verified_again() -> None:
    cache = SignatureCache()
    data = sealed(SIGNER)
    for _ in range(5):
        open_envelope(data, AD_TYPE, verified=cache)
    assert (cache.verifications, cache.hits) == (1, 4)


def test_a_forgery_flooded_many_times_costs_one_verification() -> None:
    cache = SignatureCache()
    bad = forged(sealed(SIGNER))
    for _ in range(100):
        with pytest.raises(WireError) as e:
            open_envelope(bad, AD_TYPE, verified=cache)
        assert e.value.reason is Reason.BAD_SIGNATURE
    assert cache.verifications == 1


def test_a_valid_signature_does_not_vouch_for_a_forged_copy() -> None:
    """The key is the whole envelope: a forged ``s`` over the same body is a new key."""
    cache = SignatureCache()
    good = sealed(SIGNER)
    open_envelope(good, AD_TYPE, verified=cache)
    with pytest.raises(WireError):
        open_envelope(forged(good), AD_TYPE, verified=cache)
    assert cache.verifications == 2


def test_garbage_never_reaches_the_record() -> None:
    cache = SignatureCache()
    for junk in (b"", b"\xa0", b"\xff" * 10, cbor.encode({"t": "caps.ad"})):
        with pytest.raises(WireError):
            open_envelope(junk, AD_TYPE, verified=cache)
    assert (cache.verifications, cache.hits, len(cache)) == (0, 0, 0)


def test_the_record_is_bounded_least_recently_used_first_out() -> None:
    cache = SignatureCache(max_entries=3)
    ads = [sealed(SIGNER, make_ad(seq=i)) for i in range(4)]
    for data in ads[:3]:
        open_envelope(data, AD_TYPE, verified=cache)
    open_envelope(ads[0], AD_TYPE, verified=cache)  # ads[0] is now the most recent
    open_envelope(ads[3], AD_TYPE, verified=cache)  # evicts ads[1]
    assert len(cache) == 3
    before = cache.verifications
    open_envelope(ads[0], AD_TYPE, verified=cache)
    assert cache.verifications == before
    open_envelope(ads[1], AD_TYPE, verified=cache)
    assert cache.verifications == before + 1


@settings(max_examples=60, deadline=None)
@given(seqs=st.lists(st.integers(0, 5), min_size=1, max_size=20),
       flips=st.lists(st.booleans(), min_size=20, max_size=20),
       size=st.integers(1, 4))
def test_the_record_changes_no_verdict(seqs: list[int], flips: list[bool], size: int) -> None:
    cache = SignatureCache(max_entries=size)
    for seq, flip in zip(seqs, flips, strict=False):
        data = sealed(SIGNER, make_ad(seq=seq))
        if flip:
            data = forged(data)
        assert verdict(data, cache) == verdict(data, None)
    assert len(cache) <= size


def test_validator_and_delivery_of_one_ad_cost_one_verification() -> None:
    """A gossiped ad is validated, then validated again on delivery (the table's
    latest-seq rule), and may be replayed under another sender: one verification."""
    cache = SignatureCache()
    data = sealed(SIGNER, make_ad(net=NET, ts=NOW_MS))
    kw: dict[str, Any] = dict(net=NET, now_ms=NOW_MS, held_seq=lambda _: None, verified=cache)
    ok, _ = validate_ad(data, source=peer_id_bytes(SIGNER.public_key), **kw)
    again, _ = validate_ad(data, source=peer_id_bytes(SIGNER.public_key), **kw)
    replayed, _ = validate_ad(data, source=peer_id_bytes(OTHER.public_key), **kw)
    assert ok.ok and again.ok
    assert replayed.reason is Reason.SIGNER_MISMATCH  # type: ignore[union-attr]
    assert cache.verifications == 1
