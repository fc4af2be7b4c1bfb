"""The proofs schema (spec/schemas/proofs.cddl) against real fraud proofs and the vectors."""

from __future__ import annotations

from conformance import runner
from p2pnode.proofs import fraud
from p2pnode.wire import cbor
from tests.spec.test_cddl import conforms
from tests.spec.test_cddl_jobs import map_keys


def test_rule_keys_are_the_references() -> None:
    from p2pnode.proofs import segment, wasm_step

    assert map_keys("MatmulRowProof") == set(fraud._KEYS)
    assert map_keys("WasmSegmentProof") == set(segment.KEYS)
    assert map_keys("StepState") == set(wasm_step._STATE_KEYS)
    assert map_keys("MatmulProof") == {"rows"}


def test_fraud_vectors_against_the_schema() -> None:
    checked = 0
    vectors = [*runner.load(runner.DEFAULT_VECTORS, "proofs/fraud/"),
               *runner.load(runner.DEFAULT_VECTORS, "proofs/segment/")]
    for v in vectors:
        data = v.inputs["fraud.cbor"]
        body = cbor.decode(data)["b"]
        shape_ok = v.meta["expected"]["result"] == "valid" or \
            v.meta["expected"].get("reason") not in ("unknown_field", "bad_field",
                                                     "unknown_type")
        assert conforms("FraudProofEnvelope", data) == shape_ok, v.id
        assert conforms("FraudProof", cbor.encode(body)) == shape_ok, v.id
        checked += 1
    assert checked >= 30


def test_a_state_blob_matches() -> None:
    from p2pnode.proofs.wasm_step import State

    blob = State(7, False, (("steps", 3), ("x", -1)), bytes(65536)).encode()
    assert conforms("StepState", blob)
    assert not conforms("StepState", cbor.encode({"fuel": 7, "globals": [["x"]],
                                                  "memory": b""}))


def test_a_matmul_commitment_matches() -> None:
    assert conforms("MatmulProof", cbor.encode({"rows": bytes(32)}))
    assert not conforms("MatmulProof", cbor.encode({"rows": bytes(31)}))


def test_receipt_schema_keys_and_vectors() -> None:
    from p2pnode.proofs import receipts

    assert map_keys("Receipt") == set(receipts._KEYS)
    for v in runner.load(runner.DEFAULT_VECTORS, "proofs/receipt/"):
        shape_ok = v.meta["expected"].get("reason") not in ("unknown_field", "bad_field")
        assert conforms("ReceiptEnvelope", v.inputs["receipt.cbor"]) == shape_ok, v.id


def test_attestation_schema_keys_and_vectors() -> None:
    from p2pnode.proofs import challenge

    assert map_keys("Attestation") == set(challenge._KEYS)
    for v in runner.load(runner.DEFAULT_VECTORS, "proofs/attestation/"):
        shape_ok = v.meta["expected"].get("reason") not in ("unknown_field", "bad_field")
        assert conforms("AttestationEnvelope", v.inputs["attest.cbor"]) == shape_ok, v.id
