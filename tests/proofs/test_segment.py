"""``wasm.segment`` fraud proofs (spec 06 FRD-10..FRD-12): the cheater's wrong checkpoint is
proven by one replay; no honest checkpoint can be."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.cases.common import BOB, CAROL, NET, NOW_MS
from conformance.cases.proofs import _path, segment_body, step_case
from p2pnode.proofs import fraud
from p2pnode.proofs.fraud import T_FRAUD
from p2pnode.wire import envelope
from p2pnode.wire.reasons import Reason, WireError

CASE = step_case()
HONEST = step_case(chain=CASE.honest)


def _check(body: dict[str, object]) -> fraud.Fraud:
    return fraud.check(envelope.seal(CAROL, T_FRAUD, 1, body), net=NET, now_ms=NOW_MS)


def test_the_first_wrong_checkpoint_proves_the_cheater() -> None:
    assert CASE.first_wrong == 2  # the cheater alters its memory after its second step
    assert _check(segment_body(CASE)).cheater == BOB.public_key


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_no_honest_checkpoint_is_a_fraud(data: st.DataObject) -> None:
    raw = CASE.honest.raw
    i = data.draw(st.integers(0, len(raw) - 1))
    body = segment_body(HONEST, index=i, claimed=raw[i], path=_path(raw, i),
                        prior=raw[i - 1] if i else b"",
                        prior_path=_path(raw, i - 1) if i else [])
    with pytest.raises(WireError) as e:
        _check(body)
    assert e.value.reason is Reason.BAD_PROOF


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_every_later_cheater_checkpoint_is_a_fraud_or_unprovable(data: st.DataObject) -> None:
    # From its first wrong entry on, the cheater's chain follows its altered memory: a
    # proof at a later index needs the state its prior entry commits to, which only the
    # cheater holds; with the honest state in its place the proof is refused, never valid
    # against the wrong party.
    raw = CASE.cheat.raw
    i = data.draw(st.integers(CASE.first_wrong + 1, len(raw) - 1))
    with pytest.raises(WireError) as e:
        _check(segment_body(CASE, index=i))
    assert e.value.reason is Reason.BAD_PROOF


def test_a_proof_for_another_job_is_refused() -> None:
    other = step_case(steps=13)
    with pytest.raises(WireError) as e:
        _check(segment_body(CASE, spec=other.spec_raw))
    assert e.value.reason is Reason.ID_MISMATCH
