"""Attestation tables: bounded, newest-per-challenger, decided only by our own word."""

from __future__ import annotations

from conformance.cases.common import key
from p2pnode.proofs.challenge import (
    ATTEST_TTL_MS,
    Attestation,
    AttestTable,
    Signed,
    offer_rank,
)

NOW = 1_700_000_000_000
ME = key("me").public_key


def att(challenger: str, subject: str, ok: bool, ts: int) -> Signed:
    a = Attestation(net="n", subject=key(subject).public_key, seq=1, ok=ok, n=256, ms=5, ts=ts)
    return Signed(a, key(challenger).public_key, b"")


def test_free_keys_cannot_demote_or_crowd_out_our_own_word() -> None:
    t = AttestTable(max_subjects=4, max_challengers=3)
    assert t.add(Signed(att("x", "bob", True, NOW).attestation, ME, b""))
    for i in range(50):  # fifty fresh keys say Bob failed, each newer than our word
        t.add(att(f"sybil{i}", "bob", False, NOW + 1 + i))
    assert len(t.of(key("bob").public_key)) == 3
    # Our own attestation was the oldest and went: Bob is "never" again, not "failed".
    assert t.status(key("bob").public_key, NOW + 100, ME) == "never"
    for i in range(10):
        t.add(att("carol", f"s{i}", True, NOW + i))
    assert len(t) == 4  # the subjects heard of longest ago went first


def test_ttl_and_order() -> None:
    t = AttestTable()
    t.add(Signed(att("x", "bob", False, NOW).attestation, ME, b""))
    assert t.status(key("bob").public_key, NOW, ME) == "failed"
    assert t.status(key("bob").public_key, NOW + ATTEST_TTL_MS, ME) == "never"
    assert not t.add(Signed(att("x", "bob", True, NOW - 1).attestation, ME, b""))
    assert [offer_rank(s) for s in ("attested", "never", "failed")] == [0, 1, 2]
