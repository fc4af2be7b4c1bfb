"""Ledger elements (spec 07 §2, LGR-1..LGR-5): a valid credit opens with its fields, each
malformed or forged one is refused with its reason, and no input raises anything else."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.cases.common import BOB, CAROL, NET, NOW_MS
from conformance.cases.proofs import A_BLOB, B_BLOB, SPEC_RAW, TRUE
from p2pnode.jobs import tensors
from p2pnode.jobs.messages import JobResult
from p2pnode.ledger import elements, samples
from p2pnode.ledger.elements import (
    MAX_CREDIT_SIZE,
    MAX_ELEMENT_SIZE,
    MAX_PRICE,
    MAX_SKEW_MS,
    Kind,
    open_element,
)
from p2pnode.proofs import fraud, matmul
from p2pnode.proofs.bars import BAR_MS
from p2pnode.wire import cbor
from p2pnode.wire.cid import cid_of
from p2pnode.wire.reasons import Reason, WireError

REQUESTER = samples.identity("requester")
WORKER = samples.identity("worker")
OTHER = samples.identity("other")
TS = NOW_MS - 5_000
RESULT_TS = NOW_MS - 1_000


def refused(data: bytes, now_ms: int = NOW_MS, net: str = NET) -> Reason:
    with pytest.raises(WireError) as e:
        open_element(data, net=net, now_ms=now_ms)
    return e.value.reason


def job_and_receipt(price: int = 1234, ts: int = TS, signer: Any = REQUESTER,
                    net: str = NET, nonce: int = 1) -> tuple[bytes, bytes]:
    job = samples.job(REQUESTER, net, ts, nonce)
    return job, samples.receipt(signer, net, job, WORKER.public_key, price, ts)


def fraud_proof(ts: int = RESULT_TS, row: int = 1) -> bytes:
    """A valid matmul.row proof that BOB signed a wrong product (row ``row`` off by one),
    reported by CAROL."""
    c = TRUE.copy()
    c[row, 0] += 1
    blob = tensors.encode_matrix(np.asarray(c, dtype=np.int64))
    result = JobResult(net=NET, job=cid_of(SPEC_RAW), lease=1, output=cid_of(blob),
                       size=len(blob), ts=ts, proof={"rows": matmul.rows_root(c)}).seal(BOB)
    data = fraud.prove(CAROL, NET, SPEC_RAW, result, {"a": A_BLOB, "b": B_BLOB}, blob, row,
                       ts)
    assert data is not None
    return data


# -- credits ---------------------------------------------------------------------------


def test_a_valid_credit_opens_with_its_fields() -> None:
    job, receipt = job_and_receipt(price=1234)
    data = elements.credit(receipt, job)
    el = open_element(data, net=NET, now_ms=NOW_MS)
    assert el.kind is Kind.CREDIT
    assert el.id == cid_of(receipt)
    assert el.key == el.id[2:] and len(el.key) == 32
    assert el.account == WORKER.public_key
    assert el.payer == REQUESTER.public_key
    assert el.amount == 1234
    assert el.ts == TS
    assert el.job == cid_of(job)
    assert el.raw == data


def test_the_same_receipt_is_one_element_whatever_else() -> None:
    job, receipt = job_and_receipt()
    a = open_element(elements.credit(receipt, job), net=NET, now_ms=NOW_MS)
    b = open_element(elements.credit(receipt, job), net=NET, now_ms=NOW_MS + 10**9)
    assert a.id == b.id


def test_a_forged_receipt_signature_is_refused() -> None:
    job, receipt = job_and_receipt()
    env = cbor.decode(receipt)
    sig = env["s"]
    for i in (0, len(sig) // 2, len(sig) - 1):
        forged = cbor.encode({**env, "s": sig[:i] + bytes([sig[i] ^ 0x01]) + sig[i + 1:]})
        assert len(forged) == len(receipt) and forged != receipt
        assert refused(elements.credit(forged, job)) is Reason.BAD_SIGNATURE


def test_a_receipt_with_a_changed_price_is_refused() -> None:
    # The body changes under the same signature: the signature no longer covers it.
    job, receipt = job_and_receipt(price=10)
    env = cbor.decode(receipt)
    forged = cbor.encode({**env, "b": {**env["b"], "price": 10_000}})
    assert refused(elements.credit(forged, job)) is Reason.BAD_SIGNATURE


def test_a_receipt_signed_by_someone_other_than_the_requester_is_refused() -> None:
    # RCP-3: OTHER signs a receipt for REQUESTER's job: it promises nothing of REQUESTER's.
    job, receipt = job_and_receipt(signer=OTHER)
    assert refused(elements.credit(receipt, job)) is Reason.SIGNER_MISMATCH


def test_a_requester_cannot_pay_itself() -> None:
    job = samples.job(REQUESTER, NET, TS, 1)
    receipt = samples.receipt(REQUESTER, NET, job, REQUESTER.public_key, 10, TS)
    assert refused(elements.credit(receipt, job)) is Reason.SIGNER_MISMATCH


def test_job_bytes_that_are_not_the_receipts_job_are_refused() -> None:
    job, receipt = job_and_receipt(nonce=1)
    other_job = samples.job(REQUESTER, NET, TS, 2)
    assert other_job != job
    assert refused(elements.credit(receipt, other_job)) is Reason.ID_MISMATCH
    # One byte of the right job changed: its hash is another.
    bent = job[:-40] + bytes([job[-40] ^ 0x01]) + job[-39:]
    assert refused(elements.credit(receipt, bent)) is Reason.ID_MISMATCH


def test_job_bytes_without_the_job_spec_layout_are_refused() -> None:
    not_a_job = b"not a job.spec envelope at all"
    receipt = samples.receipt(REQUESTER, NET, not_a_job, WORKER.public_key, 10, TS)
    assert refused(elements.credit(receipt, not_a_job)) is Reason.BAD_ENVELOPE


def test_the_price_limit() -> None:
    job, receipt = job_and_receipt(price=MAX_PRICE)
    assert open_element(elements.credit(receipt, job), net=NET, now_ms=NOW_MS).amount == \
        (1 << 34) - 1
    job, receipt = job_and_receipt(price=1 << 34)
    assert refused(elements.credit(receipt, job)) is Reason.LIMIT_EXCEEDED
    job, receipt = job_and_receipt(price=(1 << 64) - 1)
    assert refused(elements.credit(receipt, job)) is Reason.LIMIT_EXCEEDED


def test_the_clock_skew_limit() -> None:
    assert MAX_SKEW_MS == 30_000
    job, receipt = job_and_receipt(ts=NOW_MS + 30_000)
    assert open_element(elements.credit(receipt, job), net=NET, now_ms=NOW_MS).ts == \
        NOW_MS + 30_000
    job, receipt = job_and_receipt(ts=NOW_MS + 30_001)
    assert refused(elements.credit(receipt, job)) is Reason.CLOCK_SKEW


def test_an_old_credit_is_not_refused() -> None:
    # LGR-4: no lower bound; an old element never seen is not a replay.
    job, receipt = job_and_receipt(ts=1)
    assert open_element(elements.credit(receipt, job), net=NET, now_ms=NOW_MS).ts == 1


def test_a_credit_of_another_network_is_refused() -> None:
    data = samples.credit(REQUESTER, "othernet", WORKER.public_key, 10, TS, 1)
    assert open_element(data, net="othernet", now_ms=NOW_MS).amount == 10
    assert refused(data) is Reason.WRONG_NETWORK


# -- the shape of an element (LGR-1) --------------------------------------------------------


def test_an_unknown_key_is_refused() -> None:
    job, receipt = job_and_receipt()
    assert refused(cbor.encode({"receipt": receipt, "job": job, "tip": 1})) is \
        Reason.UNKNOWN_FIELD
    assert refused(cbor.encode({"debit": receipt})) is Reason.UNKNOWN_FIELD


def test_other_shapes_are_bad_fields() -> None:
    job, receipt = job_and_receipt()
    for shape in ({}, [receipt, job], {"receipt": receipt}, {"job": job},
                  {"receipt": receipt, "fraud": job}, {"receipt": receipt, "job": 7},
                  {"fraud": "text"}, b"bytes", 7):
        assert refused(cbor.encode(shape)) is Reason.BAD_FIELD, shape


def test_non_canonical_cbor_is_refused() -> None:
    job, receipt = job_and_receipt()
    good = elements.credit(receipt, job)
    # The same map with its two keys in the wrong order.
    swapped = (b"\xa2" + cbor.encode("receipt") + cbor.encode(receipt)
               + cbor.encode("job") + cbor.encode(job))
    assert swapped != good
    assert refused(swapped) is Reason.NON_CANONICAL
    assert refused(good + b"\x00") is Reason.TRAILING_BYTES


def test_sizes() -> None:
    assert MAX_CREDIT_SIZE == 8736 and MAX_ELEMENT_SIZE == 524304
    big_credit = cbor.encode({"receipt": b"r" * 512, "job": b"j" * (MAX_CREDIT_SIZE - 500)})
    assert MAX_CREDIT_SIZE < len(big_credit) <= MAX_ELEMENT_SIZE
    assert refused(big_credit) is Reason.TOO_LARGE
    assert refused(b"\x00" * (MAX_ELEMENT_SIZE + 1)) is Reason.TOO_LARGE


# -- slashes (LGR-5) ------------------------------------------------------------------------


def test_a_valid_slash_names_the_cheater() -> None:
    proof = fraud_proof()
    el = open_element(elements.slash(proof), net=NET, now_ms=NOW_MS)
    assert el.kind is Kind.SLASH
    assert el.id == cid_of(proof)
    assert el.account == BOB.public_key and el.payer == CAROL.public_key
    assert el.amount == 0 and el.ts == RESULT_TS
    assert el.job == cid_of(SPEC_RAW)


def test_a_slash_does_not_expire() -> None:
    proof = fraud_proof()
    with pytest.raises(WireError) as e:  # as a fraud-topic message it has expired ...
        fraud.check(proof, net=NET, now_ms=RESULT_TS + BAR_MS + 1)
    assert e.value.reason is Reason.EXPIRED
    # ... as ledger evidence it has not.
    late = open_element(elements.slash(proof), net=NET, now_ms=RESULT_TS + 10 * BAR_MS)
    assert late.account == BOB.public_key


def test_a_slash_from_the_future_is_refused() -> None:
    proof = fraud_proof()
    assert open_element(elements.slash(proof), net=NET,
                        now_ms=RESULT_TS - MAX_SKEW_MS).ts == RESULT_TS
    assert refused(elements.slash(proof), now_ms=RESULT_TS - MAX_SKEW_MS - 1) is \
        Reason.CLOCK_SKEW


def test_a_slash_of_another_network_is_refused() -> None:
    assert refused(elements.slash(fraud_proof()), net="othernet") is Reason.WRONG_NETWORK


@pytest.mark.parametrize("proof", [b"garbage", b"\xa0", cbor.encode({"x": 1}), b"\x00" * 64])
def test_a_slash_whose_proof_is_garbage_is_refused(proof: bytes) -> None:
    reason = refused(elements.slash(proof))
    assert reason in {Reason.TRUNCATED, Reason.MALFORMED, Reason.BAD_ENVELOPE,
                      Reason.UNKNOWN_FIELD, Reason.BAD_FIELD, Reason.TRAILING_BYTES}


def test_a_slash_of_another_envelope_type_is_refused() -> None:
    _, receipt = job_and_receipt()
    assert refused(elements.slash(receipt)) is Reason.UNKNOWN_TYPE


def test_a_slash_whose_proof_proves_nothing_is_refused() -> None:
    proof = fraud_proof(row=1)
    env = cbor.decode(proof)
    body = env["b"]
    # The reporter re-signs the proof with another row, one the cheater got right.
    from p2pnode.wire import envelope

    resigned = envelope.seal(CAROL, fraud.T_FRAUD, 1, {**body, "row": 2})
    assert refused(elements.slash(resigned)) is Reason.BAD_PROOF
    # A byte of its signature flipped.
    sig = env["s"]
    forged = cbor.encode({**env, "s": bytes([sig[0] ^ 0x80]) + sig[1:]})
    assert refused(elements.slash(forged)) is Reason.BAD_SIGNATURE


# -- nothing but WireError -----------------------------------------------------------------

CREDIT = elements.credit(*reversed(job_and_receipt()))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_only_ever_raise_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        open_element(data, net=NET, now_ms=NOW_MS)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["receipt", "job", "fraud", "x", ""]),
                       st.one_of(st.binary(max_size=600), st.integers(), st.text(max_size=8),
                                 st.none()), max_size=4))
def test_random_maps_only_ever_raise_wire_error(m: dict[str, Any]) -> None:
    with pytest.raises(WireError):
        open_element(cbor.encode(m), net=NET, now_ms=NOW_MS)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(CREDIT) - 1), st.integers(1, 255))
def test_every_changed_byte_of_a_credit_is_refused(at: int, flip: int) -> None:
    assert open_element(CREDIT, net=NET, now_ms=NOW_MS).kind is Kind.CREDIT
    bent = CREDIT[:at] + bytes([CREDIT[at] ^ flip]) + CREDIT[at + 1:]
    with pytest.raises(WireError):
        open_element(bent, net=NET, now_ms=NOW_MS)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, len(CREDIT)), st.binary(min_size=1, max_size=8))
def test_every_insertion_into_a_credit_is_refused(at: int, extra: bytes) -> None:
    with pytest.raises(WireError):
        open_element(CREDIT[:at] + extra + CREDIT[at:], net=NET, now_ms=NOW_MS)

