"""Judging matmul results and fraud proofs: tampering is caught, honest work never is."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.cases.common import ALICE, BOB, CAROL, NET, NOW_MS
from conformance.cases.proofs import A_BLOB, B_BLOB, SPEC, SPEC_RAW
from p2pnode.jobs import tensors
from p2pnode.jobs.executors.matmul import matmul_exact_cpu
from p2pnode.jobs.messages import JobResult
from p2pnode.jobs.verify import judge_output
from p2pnode.proofs import cheat, fraud, matmul
from p2pnode.proofs.bars import BAR_MS, BarList
from p2pnode.wire.cid import cid_of
from p2pnode.wire.reasons import Reason, WireError

A = tensors.decode_matrix(A_BLOB, 1 << 20)
B = tensors.decode_matrix(B_BLOB, 1 << 20)
TRUE = matmul_exact_cpu(A, B)
INPUTS: dict[str, bytes | None] = {"a": A_BLOB, "b": B_BLOB}
SECRET = bytes(32)
TS = NOW_MS - 1000


def result_of(c: np.ndarray, root: bytes | None = None, job: bytes | None = None,
              signer=BOB) -> bytes:  # type: ignore[no-untyped-def]
    blob = tensors.encode_matrix(np.asarray(c, dtype=np.int64))
    return JobResult(net=NET, job=job or cid_of(SPEC_RAW), lease=1, output=cid_of(blob),
                     size=len(blob), ts=TS,
                     proof={"rows": root if root is not None else matmul.rows_root(c)}
                     ).seal(signer)


def judge(c: np.ndarray, root: bytes | None = None, lease: int = 1):  # type: ignore[no-untyped-def]
    blob = tensors.encode_matrix(np.asarray(c, dtype=np.int64))
    root = matmul.rows_root(c) if root is None else root
    seed = matmul.draw_seed(SECRET, cid_of(SPEC_RAW), lease, cid_of(blob), root)
    return judge_output(SPEC, INPUTS, blob, root, seed)


def prove(c: np.ndarray, row: int, reporter=CAROL) -> bytes:  # type: ignore[no-untyped-def]
    blob = tensors.encode_matrix(np.asarray(c, dtype=np.int64))
    data = fraud.prove(reporter, NET, SPEC_RAW, result_of(c), INPUTS, blob, row, NOW_MS)
    assert data is not None
    return data


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 4), st.integers(0, 2), st.integers(-2**30, 2**30).filter(bool),
       st.integers(1, 2**40))
def test_any_tampered_entry_is_rejected_and_proven(i: int, j: int, by: int,
                                                   lease: int) -> None:
    c = TRUE.copy()
    c[i, j] += by
    out = judge(c, lease=lease)
    assert out.reason is Reason.WRONG_RESULT and out.row == i
    f = fraud.check(prove(c, i), net=NET, now_ms=NOW_MS)
    assert f.cheater == BOB.public_key and f.job == cid_of(SPEC_RAW)
    assert f.until == TS + BAR_MS and f.reporter == CAROL.public_key


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 2**40))
def test_the_true_product_is_always_accepted(lease: int) -> None:
    assert judge(TRUE, lease=lease).ok


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 4), st.data())
def test_a_fraud_proof_against_an_honest_row_always_fails(i: int, draw: st.DataObject) -> None:
    c = TRUE.copy()
    wrong = draw.draw(st.integers(0, 4).filter(lambda r: r != i))
    c[wrong, 0] += 1
    # Row i is right; whatever reporter says otherwise proves nothing.
    with pytest.raises(WireError) as e:
        fraud.check(prove(c, i), net=NET, now_ms=NOW_MS)
    assert e.value.reason is Reason.BAD_PROOF


def test_fraud_proof_rejected_when_any_part_is_replaced() -> None:
    c = TRUE.copy()
    c[2, 1] -= 7
    good = prove(c, 2)
    from p2pnode.wire import envelope

    body = envelope.open_envelope(good).body
    others = {
        "spec": dataclasses.replace(SPEC, nonce=bytes(16)).seal(ALICE),  # another job
        "result": result_of(c, job=cid_of(dataclasses.replace(SPEC, nonce=bytes(16))
                                           .seal(ALICE))),
        "a": B_BLOB, "b": A_BLOB, "row": 3, "claimed": body["claimed"][8:] + bytes(8),
        "path": body["path"][1:],
    }
    for k, v in others.items():
        forged = envelope.seal(CAROL, fraud.T_FRAUD, 1, {**body, k: v})
        with pytest.raises(WireError):
            fraud.check(forged, net=NET, now_ms=NOW_MS)
    assert fraud.check(good, net=NET, now_ms=NOW_MS).cheater == BOB.public_key


def test_a_valid_proof_replayed_later_never_extends_the_bar() -> None:
    c = TRUE.copy()
    c[0, 0] += 1
    data = prove(c, 0)
    assert fraud.check(data, net=NET, now_ms=NOW_MS).until == TS + BAR_MS
    assert fraud.check(data, net=NET, now_ms=TS + BAR_MS - 1).until == TS + BAR_MS
    with pytest.raises(WireError) as e:
        fraud.check(data, net=NET, now_ms=TS + BAR_MS)
    assert e.value.reason is Reason.EXPIRED


def test_a_proof_for_another_network_fails() -> None:
    c = TRUE.copy()
    c[1, 1] += 1
    with pytest.raises(WireError) as e:
        fraud.check(prove(c, 1), net="testnet", now_ms=NOW_MS)
    assert e.value.reason is Reason.WRONG_NETWORK


@pytest.mark.parametrize("mode", cheat.MATMUL_MODES)
def test_every_cheat_mode_is_caught(mode: str) -> None:
    out_blob, proof = cheat.tamper(mode, tensors.encode_matrix(TRUE))
    c = tensors.decode_matrix(out_blob, 1 << 20)
    root = proof["rows"]
    seed = matmul.draw_seed(SECRET, cid_of(SPEC_RAW), 1, cid_of(out_blob), root)
    out = judge_output(SPEC, INPUTS, out_blob, root, seed)
    assert out.reason is (Reason.BAD_PROOF if mode == "commit" else Reason.WRONG_RESULT)
    if out.row is not None:
        blob_raw = JobResult(net=NET, job=cid_of(SPEC_RAW), lease=1, output=cid_of(out_blob),
                             size=len(out_blob), ts=TS, proof=proof).seal(BOB)
        data = fraud.prove(CAROL, NET, SPEC_RAW, blob_raw, INPUTS, out_blob, out.row, NOW_MS)
        assert data is not None
        assert fraud.check(data, net=NET, now_ms=NOW_MS).cheater == BOB.public_key
    assert not np.array_equal(c, TRUE)


def test_too_large_for_a_proof() -> None:
    big = tensors.encode_matrix(np.zeros((600, 600), dtype=np.int8))
    assert fraud.prove(CAROL, NET, SPEC_RAW, result_of(TRUE), {"a": big, "b": big},
                       tensors.encode_matrix(TRUE), 0, NOW_MS) is None


def test_bar_list_is_bounded_and_never_shortens() -> None:
    bars = BarList(cap=3)
    for i in range(5):
        bars.bar(bytes([i]) * 32, b"job", 1000 + i, now=0)
    assert len(bars) == 3 and not bars.barred(bytes([0]) * 32, 0)  # soonest ends went first
    assert bars.barred(bytes([4]) * 32, 1003) and not bars.barred(bytes([4]) * 32, 1004)
    bars.bar(bytes([4]) * 32, b"job2", 10, now=0)
    assert bars.barred(bytes([4]) * 32, 1003)  # a shorter bar does not shorten it
    assert bars.known(bytes([4]) * 32, b"job") and not bars.known(bytes([9]) * 32, b"job")
    bars.bar(bytes([7]) * 32, b"j", 5000, now=2000)  # expired bars are let go
    assert set(bars.snapshot(2000)) == {bytes([7]) * 32}


def test_a_node_bars_for_its_own_configured_time() -> None:
    from p2pnode.services.fraud import FraudService

    class Topic:  # only the peer id is read by validate
        peer_id = "12D3KooWlocal"

    barred: list[tuple[bytes, bytes, int]] = []
    c = TRUE.copy()
    c[4, 2] += 3
    svc = FraudService(net=NET, gossip=Topic(), topic="t",  # type: ignore[arg-type]
                       count=lambda *_: None, reject=lambda _: None,
                       wall_ms=lambda: NOW_MS, clock=lambda: 0.0,
                       on_fraud=lambda *a: barred.append(a), bar_ms=60_000)
    data = prove(c, 4)
    assert svc.validate(None, data, "12D3KooWpeer").ok
    assert barred == [(BOB.public_key, cid_of(SPEC_RAW), TS + 60_000)]
    # The same fraud again is known for the proof's whole life: ignored, not relayed.
    assert not svc.validate(None, data, "12D3KooWpeer").ok and len(barred) == 1
