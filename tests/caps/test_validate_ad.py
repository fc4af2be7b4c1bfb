"""validate_ad: rules CAPS-1..CAPS-8 of spec 02 §3, each on its own, with a fixed now."""

from __future__ import annotations

from typing import Any

import pytest

from p2pnode.caps.model import AD_MAX_SIZE, CapabilityAd, Gpu
from p2pnode.caps.table import MAX_CLOCK_SKEW_MS, ValidatedAd, validate_ad
from p2pnode.identity import Identity, peer_id_bytes
from p2pnode.wire import cbor
from p2pnode.wire.envelope import seal
from p2pnode.wire.reasons import Accept, Reason, Reject, Verdict
from tests.caps.ads import AD, NET, NOW_MS, make_ad, sealed, sealed_body

ALICE = Identity(bytes(range(32)))
BOB = Identity(bytes(range(32, 64)))
ALICE_SRC = peer_id_bytes(ALICE.public_key)


def check(
    data: bytes,
    *,
    source: bytes | None = ALICE_SRC,
    now_ms: int = NOW_MS,
    held: dict[str, int] | None = None,
    net: str = NET,
) -> tuple[Verdict, ValidatedAd | None]:
    held = held or {}
    return validate_ad(data, net=net, now_ms=now_ms, source=source, held_seq=held.get)


def rejected(data: bytes, reason: Reason, **kw: Any) -> None:
    verdict, validated = check(data, **kw)
    assert isinstance(verdict, Reject), verdict
    assert verdict.reason == reason, verdict
    assert not verdict.ok
    assert validated is None


def body(**changes: Any) -> dict[str, Any]:
    b = AD.to_body()
    for k, v in changes.items():
        if v is ...:
            del b[k]
        else:
            b[k] = v
    return b


def test_valid_ad_is_accepted() -> None:
    verdict, validated = check(sealed(ALICE))
    assert isinstance(verdict, Accept) and verdict.ok
    assert validated is not None
    assert validated.peer_id == ALICE.peer_id
    assert validated.ad == AD
    assert validated.ad.signer == ALICE.public_key


def test_ad_without_a_gossip_source_skips_the_signer_check() -> None:
    verdict, validated = check(sealed(ALICE), source=None)
    assert verdict.ok and validated is not None


def test_wrong_network() -> None:
    rejected(sealed(ALICE, make_ad(net="mainnet")), Reason.WRONG_NETWORK)
    rejected(sealed(ALICE), Reason.WRONG_NETWORK, net="devnet")


def test_signer_must_be_the_gossip_source() -> None:
    rejected(sealed(BOB), Reason.SIGNER_MISMATCH)
    rejected(sealed(ALICE), Reason.SIGNER_MISMATCH, source=peer_id_bytes(BOB.public_key))


def test_expired() -> None:
    # An ad stays valid until ts + ttl, exclusive; make skew irrelevant with a wide bound.
    ad = make_ad(ts=NOW_MS - 10_000, ttl=10)
    rejected(sealed(ALICE, ad), Reason.EXPIRED)
    assert check(sealed(ALICE, ad), now_ms=NOW_MS - 1)[0].ok
    rejected(sealed(ALICE, make_ad(ttl=10)), Reason.EXPIRED, now_ms=NOW_MS + 10_000)


@pytest.mark.parametrize("sign", [-1, 1])
def test_clock_skew_both_directions(sign: int) -> None:
    at_bound = make_ad(ts=NOW_MS + sign * MAX_CLOCK_SKEW_MS)
    beyond = make_ad(ts=NOW_MS + sign * (MAX_CLOCK_SKEW_MS + 1))
    assert check(sealed(ALICE, at_bound))[0].ok
    rejected(sealed(ALICE, beyond), Reason.CLOCK_SKEW)


def test_clock_skew_bound_is_a_parameter() -> None:
    ad = make_ad(ts=NOW_MS - 5_000)
    verdict, _ = validate_ad(sealed(ALICE, ad), net=NET, now_ms=NOW_MS, source=ALICE_SRC,
                             held_seq=lambda _: None, max_skew_ms=4_999)
    assert isinstance(verdict, Reject) and verdict.reason == Reason.CLOCK_SKEW


@pytest.mark.parametrize("held_seq", [AD.seq, AD.seq + 1, 2**64 - 1])
def test_stale_seq_equal_or_lower_than_held_is_ignored(held_seq: int) -> None:
    from p2pnode.wire.reasons import Ignore

    verdict, validated = check(sealed(ALICE), held={ALICE.peer_id: held_seq})
    assert isinstance(verdict, Ignore) and verdict.reason == Reason.STALE_SEQ
    assert not verdict.ok and validated is None


def test_higher_seq_than_held_is_accepted() -> None:
    assert check(sealed(ALICE), held={ALICE.peer_id: AD.seq - 1})[0].ok
    # The held seq of another peer does not matter.
    assert check(sealed(ALICE), held={BOB.peer_id: 10**6})[0].ok


@pytest.mark.parametrize(
    "bad",
    [
        body(seq=-1),
        body(seq="7"),
        body(seq=True),
        body(ts=-1),
        body(ttl=9),
        body(ttl=86_401),
        body(net=""),
        body(net="n" * 33),
        body(net=1),
        body(mem=[]),
        body(cpu=[8, 16, "x86_64"]),
        body(cpu={"cores": 8, "threads": 16}),
        body(cpu={"cores": -8, "threads": 16, "arch": "x86_64"}),
        body(gpus={}),
        body(gpus=[{"name": "g"}]),
        body(gpus=[{"name": "g" * 65, "mem": 1}]),
        body(gpus=[{"name": "g", "mem": 1}] * 17),
        body(kinds=["matmul", "matmul"]),
        body(kinds=[""]),
        body(kinds=["k" * 33]),
        body(kinds=[f"k{i}" for i in range(17)]),
        body(price=[["matmul", 1]]),
        body(price={"matmul": -1}),
        body(price={"": 1}),
        body(addrs=["/ip4/1.2.3.4/tcp/1"] * 9),
        body(addrs=[""]),
        body(addrs=["a" * 129]),
        body(agent="a" * 65),
        body(agent=None),
        body(seq=...),
        body(agent=...),
        [1, 2, 3],
        "ad",
    ],
)
def test_bad_field(bad: Any) -> None:
    rejected(sealed_body(ALICE, bad), Reason.BAD_FIELD)


INT_KEYED_BODY: dict[Any, Any] = {**body(), 1: "int key"}


@pytest.mark.parametrize(
    "bad",
    [
        body(extra=1),
        body(cpu={"cores": 8, "threads": 16, "arch": "x86_64", "mhz": 3000}),
        body(gpus=[{"name": "g", "mem": 1, "uuid": "x"}]),
        INT_KEYED_BODY,
    ],
)
def test_unknown_field(bad: Any) -> None:
    rejected(sealed_body(ALICE, bad), Reason.UNKNOWN_FIELD)


def test_too_large() -> None:
    padded = sealed_body(ALICE, body(agent="a" * AD_MAX_SIZE))
    assert len(padded) > AD_MAX_SIZE
    rejected(padded, Reason.TOO_LARGE)


def test_largest_legal_ad_fits_the_size_limit() -> None:
    """Every field at its maximum still makes an ad under the limit."""
    big = CapabilityAd(
        net="n" * 32, seq=2**64 - 1, ts=NOW_MS, ttl=86_400, cores=2**64 - 1,
        threads=2**64 - 1, arch="a" * 64, mem=2**64 - 1,
        gpus=tuple(Gpu(name=f"{i:02d}" + "g" * 62, mem=2**64 - 1) for i in range(16)),
        kinds=tuple(f"{i:02d}" + "k" * 30 for i in range(16)),
        price=tuple((f"{i:02d}" + "k" * 30, 2**64 - 1) for i in range(16)),
        addrs=tuple(f"{i:02d}" + "a" * 126 for i in range(8)),
        agent="x" * 64,
    )
    data = sealed(ALICE, big)
    assert len(data) <= AD_MAX_SIZE
    verdict, validated = validate_ad(data, net="n" * 32, now_ms=NOW_MS, source=ALICE_SRC,
                                     held_seq=lambda _: None)
    assert verdict.ok and validated is not None and validated.ad == big


def test_bad_signature() -> None:
    env = cbor.decode(sealed(ALICE))
    env["s"] = env["s"][:5] + bytes((env["s"][5] ^ 0x01,)) + env["s"][6:]
    rejected(cbor.encode(env), Reason.BAD_SIGNATURE)


def test_codec_and_envelope_reasons_surface() -> None:
    rejected(b"\xde\xad\xbe\xef", Reason.MALFORMED)
    rejected(b"", Reason.TRUNCATED)
    rejected(sealed(ALICE) + b"\x00", Reason.TRAILING_BYTES)
    rejected(seal(ALICE, "caps.other", 1, AD.to_body()), Reason.UNKNOWN_TYPE)
    rejected(seal(ALICE, "caps.ad", 2, AD.to_body()), Reason.UNSUPPORTED_VERSION)


def test_rules_apply_in_order() -> None:
    # Wrong network and the wrong signer and expired and stale: the network is named.
    ad = make_ad(net="other", ts=NOW_MS - 10**7, ttl=10, seq=0)
    rejected(sealed(BOB, ad), Reason.WRONG_NETWORK, held={BOB.peer_id: 5})
    # The wrong signer comes before expiry and staleness.
    ad = make_ad(ts=NOW_MS - 10**7, ttl=10, seq=0)
    rejected(sealed(BOB, ad), Reason.SIGNER_MISMATCH, held={BOB.peer_id: 5})
    # Expiry before skew, skew before staleness.
    rejected(sealed(ALICE, ad), Reason.EXPIRED, held={ALICE.peer_id: 5})
    ad = make_ad(ts=NOW_MS + 10**6, seq=0)
    rejected(sealed(ALICE, ad), Reason.CLOCK_SKEW, held={ALICE.peer_id: 5})


def test_decoded_ad_keeps_its_fields() -> None:
    _, validated = check(sealed(ALICE))
    assert validated is not None
    ad = validated.ad
    assert ad.gpu_mem == 80 << 30
    assert ad.expires_at_ms() == NOW_MS + 180_000
    assert ad.to_body() == AD.to_body()
