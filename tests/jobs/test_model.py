"""Job messages and DHT records: decoding rules and reason codes (spec 04 §2-3)."""

from __future__ import annotations

import pytest

from p2pnode.identity import Identity
from p2pnode.jobs import discovery
from p2pnode.jobs.model import (
    T_CLAIM,
    T_LEASE,
    JobSpec,
    Requirements,
    SignedJob,
    open_message,
    seal_message,
)
from p2pnode.wire import cbor, envelope
from p2pnode.wire.cid import cid_of
from p2pnode.wire.reasons import Reason, WireError

REQ = Identity(bytes(range(32)))
WORKER = Identity(bytes(range(1, 33)))
T0 = 1_700_000_000_000
CID = b"\x12\x20" + bytes(32)


def spec(**kw: object) -> JobSpec:
    base = dict(net="t", kind="matmul", inputs=(("a", CID), ("b", CID)), params=(("x", 1),),
                req=Requirements(cores=2, gpu=True), max_price=100, created=T0,
                deadline=T0 + 60_000, lease_s=10, redundancy=1, nonce=b"\x07" * 16)
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


def test_job_id_is_the_content_id_of_the_signed_spec() -> None:
    raw = spec().seal(REQ)
    job = SignedJob.open(raw)
    assert job.spec == spec()
    assert job.requester == REQ.public_key
    assert job.id == cid_of(raw)
    assert spec().req.resource_class == "gpu"
    assert SignedJob.open(spec(nonce=b"\x08" * 16).seal(REQ)).id != job.id


@pytest.mark.parametrize(("body_change", "reason"), [
    ({"lease_s": 1}, Reason.BAD_FIELD),
    ({"redundancy": 0}, Reason.BAD_FIELD),
    ({"deadline": T0}, Reason.BAD_FIELD),
    ({"nonce": b"short"}, Reason.BAD_FIELD),
    ({"inputs": {"a": b"\x00" * 34}}, Reason.BAD_FIELD),
    ({"params": {"x": 1.5}}, Reason.FLOAT_FORBIDDEN),
    ({"extra": 1}, Reason.UNKNOWN_FIELD),
])
def test_bad_specs_are_rejected(body_change: dict[str, object], reason: Reason) -> None:
    body = spec().to_body()
    body.update(body_change)
    with pytest.raises(WireError) as e:
        SignedJob.open(envelope.seal(REQ, "job.spec", 1, body))
    assert e.value.reason is reason


def test_messages_round_trip_and_check_network_and_type() -> None:
    raw = seal_message(WORKER, T_CLAIM, {"net": "t", "job": CID, "price": 5, "ts": T0})
    msg = open_message(raw, net="t", expected={T_CLAIM})
    assert msg.signer == WORKER.public_key and msg.job == CID and msg.body["price"] == 5
    with pytest.raises(WireError) as e:
        open_message(raw, net="other")
    assert e.value.reason is Reason.WRONG_NETWORK
    with pytest.raises(WireError) as e:
        open_message(raw, net="t", expected={T_LEASE})
    assert e.value.reason is Reason.UNKNOWN_TYPE
    with pytest.raises(WireError) as e:
        seal_message(WORKER, T_CLAIM, {"net": "t", "job": CID, "price": -1, "ts": T0})
    assert e.value.reason is Reason.BAD_FIELD


def test_dht_record_validation() -> None:
    raw = spec().seal(REQ)
    job = SignedJob.open(raw)
    key = discovery.job_record_key(job.id)
    ok, got = discovery.validate_job_record(key, raw, net="t", now_ms=T0)
    assert ok.ok and got is not None and got.id == job.id
    other = spec(nonce=b"\x09" * 16).seal(REQ)
    env = cbor.decode(raw)
    env["s"] = bytes([env["s"][0] ^ 1]) + env["s"][1:]
    forged = cbor.encode(env)
    cases = [
        (key, other, "t", T0, Reason.ID_MISMATCH),
        (key, raw, "u", T0, Reason.WRONG_NETWORK),
        (key, raw, "t", T0 + 60_000, Reason.EXPIRED),
        ("/other/" + job.id.hex(), raw, "t", T0, Reason.BAD_FIELD),
        ("/p2pjob/" + job.id.hex().upper(), raw, "t", T0, Reason.BAD_FIELD),  # one key only
        (key, forged, "t", T0, Reason.BAD_SIGNATURE),
        (key, cbor.encode({"t": "job.spec"}), "t", T0, Reason.BAD_ENVELOPE),
    ]
    for k, v, net, now, reason in cases:
        verdict, j = discovery.validate_job_record(k, v, net=net, now_ms=now)
        assert not verdict.ok and verdict.reason is reason and j is None  # type: ignore[union-attr]


def test_discovery_keys_change_with_bucket_kind_and_class() -> None:
    k = discovery.discovery_key("t", "matmul", "cpu", 10)
    assert len(bytes.fromhex(k)) == 34 and k.startswith("1220")
    others = {discovery.discovery_key("t", "wasm", "cpu", 10),
              discovery.discovery_key("t", "matmul", "gpu", 10),
              discovery.discovery_key("t", "matmul", "cpu", 11),
              discovery.discovery_key("u", "matmul", "cpu", 10)}
    assert k not in others and len(others) == 4
    keys = discovery.lookup_keys("t", ["matmul"], ("cpu",), 10 * discovery.BUCKET_MS + 5)
    assert keys == [k, discovery.discovery_key("t", "matmul", "cpu", 9)]


def test_discovery_backs_off_while_rounds_find_nothing() -> None:
    waits = [discovery.discovery_wait_s(5.0, n) for n in range(6)]
    assert waits == [5.0, 10.0, 20.0, 30.0, 30.0, 30.0]
    assert discovery.discovery_wait_s(5.0, 10**6) == 5.0 * discovery.DISCOVERY_BACKOFF
    assert discovery.discovery_wait_s(0.5, 0) == 0.5
