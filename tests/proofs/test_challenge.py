"""Attestation tables: bounded, newest-per-challenger, decided only by our own word."""

from __future__ import annotations

from conformance.cases.common import ad, key
from p2pnode.proofs.challenge import (
    ATTEST_TTL_MS,
    Attestation,
    AttestTable,
    Signed,
    challenge_n,
    offer_rank,
    pick_subject,
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


def test_whom_to_challenge_next() -> None:
    mine = ad(signer=ME, kinds=("matmul",))
    wasm_only = ad(signer=key("w").public_key, kinds=("wasm",))
    known = ad(signer=key("k").public_key, kinds=("matmul",))
    tried = ad(signer=key("t").public_key, kinds=("matmul",), seq=5)
    fresh = ad(signer=key("f").public_key, kinds=("matmul", "wasm"), cores=32)

    def status(k: bytes) -> str:
        return "attested" if k == known.signer else "never"

    ads = [mine, wasm_only, known, tried, fresh]
    pick = pick_subject(ads, ME, status, {tried.signer: 5})
    assert pick == (fresh.signer, fresh.seq, challenge_n(32, 0))
    # One try per seq: the same node with a new ad is a new subject.
    renewed = ad(signer=tried.signer, kinds=("matmul",), seq=6)
    assert pick_subject([mine, renewed], ME, status, {tried.signer: 5}) == \
        (tried.signer, 6, challenge_n(renewed.cores, 0))
    assert pick_subject([mine, wasm_only, known, tried], ME, status, {tried.signer: 5}) is None

