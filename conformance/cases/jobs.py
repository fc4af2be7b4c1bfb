"""Cases for the job market (spec/04-jobs.md).

``spec``: open ``input.cbor`` as a ``job.spec`` envelope (JOB-1 to JOB-4); a valid one yields
``job.json`` (id, requester, resource class, body).
``message``: open ``input.cbor`` as a stream message of /job/1 with the receiver's ``net``
and the types the exchange ``expected`` (null: any stream message) (JOB-7 to JOB-9);
yields ``message.json``.
``dht_record``: validate ``value.cbor`` stored under ``key`` with ``net`` and ``now_ms``
(DHT-1 to DHT-6); yields ``job.json``.
``discovery_keys``: the provider keys a worker looks up (DHT-8 to DHT-10); yields
``keys.json``.
``provider_lookup``: run a provider lookup (KAD-10) over the answers given for each peer;
yields ``batches.json`` and ``providers.json``.
``requester``: replay ``events.json`` against the job of ``spec.cbor`` (LEASE-*); yields
``decisions.json`` and ``job.json``.
``worker``: should a worker with ``profile``, holding ``active``, claim ``spec.cbor`` at
``now_ms`` (WRK-1)? Yields ``claim.json``.
``verify``: check ``output.bin`` against ``spec.cbor`` and its inputs (VER-2).
``execute``: run a job of ``kind`` on ``input_<name>.bin`` with ``params`` and ``limits``
(EXE-*); yields ``output.bin``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

from conformance.cases.common import (
    ALICE,
    BOB,
    CAROL,
    NET,
    NOW_MS,
    assemble,
    edited,
    key,
    seal,
    sign_bytes,
)
from conformance.jsonform import to_json
from conformance.model import Case, Expected, Inputs, ignore, reject, valid
from p2pnode.jobs import discovery, tensors
from p2pnode.jobs.executors import compile_wat
from p2pnode.jobs.executors.base import DEFAULT_LIMITS
from p2pnode.jobs.executors.wasm import WASM_HEADER
from p2pnode.jobs.model import (
    MAX_CREATED_SKEW_MS,
    MAX_DEADLINE_MS,
    SPEC_MAX_SIZE,
    T_CLAIM,
    T_ENTRY,
    T_GET,
    T_HEARTBEAT,
    T_LEASE,
    T_LIST,
    T_OFFER,
    T_PROBE,
    T_QUERY,
    T_REFUSE,
    T_RESULT,
    T_SPEC,
    T_VERDICT,
    JobSpec,
    Requirements,
)
from p2pnode.jobs.wasm_examples import example_module
from p2pnode.wire import cbor
from p2pnode.wire.cid import cid_of
from p2pnode.wire.reasons import Reason

DAVE = key("dave")
A = tensors.random_int8_matrix(2, 3, b"conformance a")
B = tensors.random_int8_matrix(3, 2, b"conformance b")
A_BLOB, B_BLOB = tensors.encode_matrix(A), tensors.encode_matrix(B)
CID_A, CID_B = cid_of(A_BLOB), cid_of(B_BLOB)
NONCE = hashlib.sha256(b"p2pnode conformance nonce").digest()[:16]
U64 = (1 << 64) - 1
TEN_YEARS_MS = 3652 * 86_400_000

BASE_SPEC = JobSpec(
    net=NET, kind="matmul", inputs=(("a", CID_A), ("b", CID_B)), params=(),
    req=Requirements(cores=2, mem=1 << 30), max_price=5000, created=NOW_MS - 60_000,
    deadline=NOW_MS + 540_000, lease_s=30, redundancy=1, nonce=NONCE)


def job(**changes: Any) -> JobSpec:
    return dataclasses.replace(BASE_SPEC, **changes)


def spec_body(**changes: Any) -> dict[str, Any]:
    """The body of BASE_SPEC with top-level fields replaced (``None`` deletes one)."""
    return edited(BASE_SPEC.to_body(), changes)


def seal_spec(body: Any, signer: Any = ALICE) -> bytes:
    return seal(body, signer, t=T_SPEC, v=1)


# -- spec -------------------------------------------------------------------------------------


def _spec_case(name: str, data: bytes, expected: Expected, desc: str,
               rules: tuple[str, ...]) -> Case:
    return Case(name, Inputs({"input.cbor": data}), expected, desc, rules)


def _max_spec() -> JobSpec:
    # params and verify are kept small enough that the envelope fits SPEC_MAX_SIZE (JOB-1)
    return job(net="n" * 32, kind="k" * 32,
               inputs=tuple(("%032d" % i, CID_A) for i in range(8)),
               params=tuple(("p%031d" % i, "v" * 180) for i in range(16)),
               req=Requirements(cores=U64, mem=U64, gpu_mem=U64, gpu=True), max_price=U64,
               created=U64 - MAX_DEADLINE_MS, deadline=U64, lease_s=3600, redundancy=8,
               verify=tuple(("v%031d" % i, i) for i in range(16)))


def _float_param() -> bytes:
    b = cbor.encode(spec_body(params={"fp": 0}))
    marker = cbor.encode("fp") + b"\x00"
    assert b.count(marker) == 1
    bb = b.replace(marker, cbor.encode("fp") + bytes.fromhex("f93e00"))  # 1.5, half precision
    return assemble(bb, k=ALICE.public_key, s=sign_bytes(ALICE, bb, t=T_SPEC, v=1), t=T_SPEC)


SPEC_VALID: list[tuple[str, JobSpec, str]] = [
    ("valid_matmul", BASE_SPEC, "the sample job: matmul of two blobs, 2 cores, 1 GiB"),
    ("valid_gpu", job(req=Requirements(gpu=True)), "a job that needs a GPU: class gpu"),
    ("valid_gpu_mem", job(req=Requirements(gpu_mem=1 << 30)),
     "a job that needs 1 GiB on one GPU: class gpu even with gpu false"),
    ("valid_wasm", job(kind="wasm", params=(("fuel", 1_000_000),)),
     "a wasm job with a fuel param"),
    ("valid_unknown_kind", job(kind="render"),
     "a kind this specification does not define is a valid spec (workers decline it)"),
    ("valid_no_inputs", job(inputs=()), "no inputs, no params"),
    ("valid_param_types", job(params=(("b", b"\x00" * 256), ("f", False), ("n", -5),
                                       ("t", "\u00e9" * 128))),
     "one param of each type: bytes and text at 256 bytes, a bool, a negative int"),
    ("valid_lease_min", job(lease_s=2), "lease_s 2"),
    ("valid_lease_max", job(lease_s=3600), "lease_s 3600"),
    ("valid_redundancy_max", job(redundancy=8), "redundancy 8"),
    ("valid_deadline_max", job(deadline=BASE_SPEC.created + MAX_DEADLINE_MS),
     "the deadline exactly 7 days after created"),
    ("valid_deadline_min", job(deadline=BASE_SPEC.created + 1),
     "the deadline 1 ms after created"),
    ("valid_verify_policy", job(verify=(("rounds", 20),)),
     "a verification policy entry (no meaning in v1)"),
    ("valid_max_sizes", _max_spec(), "every field near its limit, within 8192 bytes"),
]

# (name, body changes, reason, description); a change to None deletes the field.
SPEC_BAD: list[tuple[str, dict[str, Any], Reason, str]] = [
    ("body_not_a_map", {"__body__": [1]}, Reason.BAD_FIELD, "the body is an array"),
    ("missing_nonce", {"nonce": None}, Reason.BAD_FIELD, "no nonce"),
    ("unknown_field", {"priority": 1}, Reason.UNKNOWN_FIELD, 'an extra field "priority"'),
    ("net_empty", {"net": ""}, Reason.BAD_FIELD, "an empty network id"),
    ("net_too_long", {"net": "n" * 33}, Reason.BAD_FIELD, "a 33-byte network id"),
    ("kind_empty", {"kind": ""}, Reason.BAD_FIELD, "an empty kind"),
    ("kind_too_long", {"kind": "k" * 33}, Reason.BAD_FIELD, "a 33-byte kind"),
    ("inputs_not_map", {"inputs": [CID_A]}, Reason.BAD_FIELD, "inputs as an array"),
    ("inputs_too_many", {"inputs": {"i%d" % i: CID_A for i in range(9)}}, Reason.BAD_FIELD,
     "9 inputs"),
    ("input_name_empty", {"inputs": {"": CID_A}}, Reason.BAD_FIELD, "an empty input name"),
    ("input_name_too_long", {"inputs": {"n" * 33: CID_A}}, Reason.BAD_FIELD,
     "a 33-byte input name"),
    ("input_name_int", {"inputs": {1: CID_A}}, Reason.BAD_FIELD, "an input keyed by 1"),
    ("input_cid_short", {"inputs": {"a": CID_A[:33]}}, Reason.BAD_FIELD,
     "a 33-byte content id"),
    ("input_cid_not_sha256", {"inputs": {"a": b"\x13\x20" + CID_A[2:]}}, Reason.BAD_FIELD,
     "a 34-byte content id that is not a sha2-256 multihash"),
    ("input_cid_text", {"inputs": {"a": CID_A.hex()}}, Reason.BAD_FIELD,
     "a content id as hex text"),
    ("params_not_map", {"params": []}, Reason.BAD_FIELD, "params as an array"),
    ("params_too_many", {"params": {"p%d" % i: 1 for i in range(17)}}, Reason.BAD_FIELD,
     "17 params"),
    ("param_name_empty", {"params": {"": 1}}, Reason.BAD_FIELD, "an empty param name"),
    ("param_array", {"params": {"x": [1]}}, Reason.BAD_FIELD, "a param that is an array"),
    ("param_null", {"params": {"x": None}}, Reason.BAD_FIELD, "a param that is null"),
    ("param_text_too_long", {"params": {"x": "t" * 257}}, Reason.BAD_FIELD,
     "a 257-byte text param"),
    ("param_bytes_too_long", {"params": {"x": b"\x00" * 257}}, Reason.BAD_FIELD,
     "a 257-byte byte-string param"),
    ("verify_not_map", {"verify": 0}, Reason.BAD_FIELD, "verify as an integer"),
    ("req_not_map", {"req": [1, 0, 0, False]}, Reason.BAD_FIELD, "req as an array"),
    ("req_unknown_field", {"req": {"cores": 1, "mem": 0, "gpu_mem": 0, "gpu": False,
                                   "disk": 1}},
     Reason.UNKNOWN_FIELD, 'req with an extra field "disk"'),
    ("req_missing_gpu", {"req": {"cores": 1, "mem": 0, "gpu_mem": 0}}, Reason.BAD_FIELD,
     "req without gpu"),
    ("req_gpu_int", {"req": {"cores": 1, "mem": 0, "gpu_mem": 0, "gpu": 1}},
     Reason.BAD_FIELD, "req.gpu as the integer 1"),
    ("req_cores_negative", {"req": {"cores": -1, "mem": 0, "gpu_mem": 0, "gpu": False}},
     Reason.BAD_FIELD, "-1 cores"),
    ("max_price_negative", {"max_price": -1}, Reason.BAD_FIELD, "max_price -1"),
    ("max_price_bool", {"max_price": True}, Reason.BAD_FIELD, "max_price true"),
    ("created_text", {"created": "now"}, Reason.BAD_FIELD, 'created "now"'),
    ("lease_too_short", {"lease_s": 1}, Reason.BAD_FIELD, "lease_s 1"),
    ("lease_too_long", {"lease_s": 3601}, Reason.BAD_FIELD, "lease_s 3601"),
    ("redundancy_zero", {"redundancy": 0}, Reason.BAD_FIELD, "redundancy 0"),
    ("redundancy_too_high", {"redundancy": 9}, Reason.BAD_FIELD, "redundancy 9"),
    ("deadline_at_created", {"deadline": BASE_SPEC.created}, Reason.BAD_FIELD,
     "the deadline equal to created"),
    ("deadline_before_created", {"deadline": BASE_SPEC.created - 1}, Reason.BAD_FIELD,
     "the deadline before created"),
    ("deadline_too_far", {"deadline": BASE_SPEC.created + MAX_DEADLINE_MS + 1},
     Reason.BAD_FIELD, "the deadline 7 days and 1 ms after created"),
    ("nonce_short", {"nonce": NONCE[:15]}, Reason.BAD_FIELD, "a 15-byte nonce"),
    ("nonce_text", {"nonce": "0" * 16}, Reason.BAD_FIELD, "a nonce as text"),
    ("order_unknown_before_bad", {"lease_s": 0, "priority": 1}, Reason.UNKNOWN_FIELD,
     "an extra field and a bad one: unknown fields are checked first"),
]


def _spec_bad_body(changes: dict[str, Any]) -> Any:
    if "__body__" in changes:
        return changes["__body__"]
    return spec_body(**changes)


def _spec_rule(name: str, reason: Reason) -> str:
    if reason is Reason.UNKNOWN_FIELD or name.startswith(("missing", "body_not", "req_not",
                                                           "req_missing")):
        return "JOB-2"  # the shape of the maps
    return "JOB-4" if name.startswith("deadline") else "JOB-3"


def spec() -> Iterator[Case]:
    for name, s, desc in SPEC_VALID:
        rules = ("JOB-1", "JOB-2", "JOB-3", "JOB-4", "JOB-6")
        yield _spec_case(name, s.seal(ALICE), valid(), desc, rules)
    yield _spec_case("valid_other_signer", BASE_SPEC.seal(BOB), valid(),
                     "the same body signed by bob: another requester, another id", ("JOB-1",))
    for name, changes, reason, desc in SPEC_BAD:
        yield _spec_case(name, seal_spec(_spec_bad_body(changes)), reject(reason), desc,
                         (_spec_rule(name, reason),))
    yield _spec_case("param_float", _float_param(), reject(Reason.FLOAT_FORBIDDEN),
                     "a param that is a float, signed over those very bytes",
                     ("JOB-1", "ENC-1"))
    big = job(params=tuple(("p%d" % i, "v" * 256) for i in range(16)),
              verify=tuple(("v%d" % i, b"\x00" * 256) for i in range(16)))
    yield _spec_case("too_large", big.seal(ALICE), reject(Reason.TOO_LARGE),
                     "16 params and 16 verify entries of 256 bytes: every field within its "
                     "limits, the envelope "
                     "%d bytes > %d" % (len(big.seal(ALICE)), SPEC_MAX_SIZE), ("JOB-1",))
    yield _spec_case("wrong_type", seal(BASE_SPEC.to_body(), ALICE, t=T_CLAIM, v=1),
                     reject(Reason.UNKNOWN_TYPE), "a job body sealed as job.claim",
                     ("JOB-1", "ENV-5"))
    yield _spec_case("wrong_version", seal(BASE_SPEC.to_body(), ALICE, t=T_SPEC, v=2),
                     reject(Reason.UNSUPPORTED_VERSION), "job.spec version 2",
                     ("JOB-1", "ENV-5"))
    env = cbor.decode(BASE_SPEC.seal(ALICE))
    yield _spec_case("forged_price", cbor.encode({**env, "b": spec_body(max_price=10**9)}),
                     reject(Reason.BAD_SIGNATURE), "max_price raised after signing",
                     ("JOB-1", "ENV-8"))


# -- stream messages -------------------------------------------------------------------------

C1 = cid_of(b"job one")
OUT = cid_of(b"an output")


def _message_bodies() -> dict[str, dict[str, Any]]:
    ts = NOW_MS
    return {
        T_OFFER: {"net": NET, "spec": BASE_SPEC.seal(ALICE), "ts": ts},
        T_QUERY: {"net": NET, "kinds": ["matmul", "wasm"], "class": "cpu", "ts": ts},
        T_LIST: {"net": NET, "jobs": [C1, OUT], "ts": ts},
        T_GET: {"net": NET, "job": C1},
        T_CLAIM: {"net": NET, "job": C1, "price": 1000, "ts": ts},
        T_LEASE: {"net": NET, "job": C1, "worker": BOB.public_key, "lease": 1,
                  "expires": ts + 30_000, "price": 1000},
        T_HEARTBEAT: {"net": NET, "job": C1, "lease": 1, "progress": 500, "ts": ts},
        T_RESULT: {"net": NET, "job": C1, "lease": 1, "output": OUT, "size": 51,
                   "proof": {}, "meta": {"device": "cpu", "elapsed_ms": 3}, "ts": ts},
        T_VERDICT: {"net": NET, "job": C1, "lease": 1, "worker": BOB.public_key,
                    "output": OUT, "accepted": False, "reason": "bad_field", "ts": ts},
        T_REFUSE: {"net": NET, "job": C1, "reason": "busy", "detail": "fully leased",
                   "ts": ts},
        T_PROBE: {"net": NET, "job": C1, "lease": 1, "index": 6, "state": False, "ts": ts},
        T_ENTRY: {"net": NET, "job": C1, "lease": 1, "index": 6, "entry": bytes(41),
                  "path": [bytes(32)] * 4, "state": OUT, "ts": ts},
    }


# One broken field per type: (field, value, description)
BAD_MESSAGE_FIELD: dict[str, tuple[str, Any, str]] = {
    T_OFFER: ("spec", "not bytes", "spec as text"),
    T_QUERY: ("kinds", ["k%d" % i for i in range(17)], "17 kinds"),
    T_LIST: ("jobs", [C1] * 65, "65 job ids"),
    T_GET: ("job", C1[:33], "a 33-byte job id"),
    T_CLAIM: ("price", -1, "price -1"),
    T_LEASE: ("worker", BOB.public_key[:31], "a 31-byte worker key"),
    T_HEARTBEAT: ("progress", "half", 'progress "half"'),
    T_RESULT: ("proof", {"k%d" % i: 1 for i in range(17)}, "a proof map of 17 entries"),
    T_VERDICT: ("accepted", 1, "accepted as the integer 1"),
    T_REFUSE: ("detail", "d" * 201, "a 201-byte detail"),
    T_PROBE: ("state", 0, "state as the integer 0"),
    T_ENTRY: ("entry", bytes(40), "a 40-byte entry"),
}


def _message(name: str, data: bytes, expected: Expected, desc: str, rules: tuple[str, ...],
             *, net: str = NET, expect: list[str] | None = None) -> Case:
    return Case(name, Inputs({"input.cbor": data}, {"net": net, "expected": expect}),
                expected, desc, rules)


def message() -> Iterator[Case]:
    bodies = _message_bodies()
    for t, body in bodies.items():
        short = t.split(".")[1]
        signer = ALICE if t in (T_OFFER, T_LIST, T_LEASE, T_VERDICT, T_REFUSE,
                                T_PROBE) else BOB
        yield _message(f"{short}_valid", seal(body, signer, t=t, v=1), valid(),
                       f"a {t}", ("JOB-7", "JOB-9"), expect=[t])
        yield _message(f"{short}_wrong_network", seal({**body, "net": "mainnet"}, signer, t=t,
                                                      v=1),
                       reject(Reason.WRONG_NETWORK), f"a {t} for mainnet", ("JOB-8",))
        yield _message(f"{short}_unknown_field", seal({**body, "x": 0}, signer, t=t, v=1),
                       reject(Reason.UNKNOWN_FIELD), f'a {t} with an extra field "x"',
                       ("JOB-7",))
        fname, value, desc = BAD_MESSAGE_FIELD[t]
        yield _message(f"{short}_bad_field", seal({**body, fname: value}, signer, t=t, v=1),
                       reject(Reason.BAD_FIELD), f"a {t} with {desc}", ("JOB-7",))
        missing = {k: v for k, v in body.items() if k != "job" and k != "ts"}
        if missing != body:
            yield _message(f"{short}_missing_field", seal(missing, signer, t=t, v=1),
                           reject(Reason.BAD_FIELD), f"a {t} without its job or ts field",
                           ("JOB-7",))
    yield _message("any_expected_type", seal(bodies[T_CLAIM], BOB, t=T_CLAIM, v=1), valid(),
                   "a claim where any stream message may come", ("JOB-9",))
    yield _message("unexpected_type", seal(bodies[T_CLAIM], BOB, t=T_CLAIM, v=1),
                   reject(Reason.UNKNOWN_TYPE),
                   "a claim where the exchange expects a lease or a refusal", ("JOB-9",),
                   expect=[T_LEASE, T_REFUSE])
    yield _message("spec_is_not_a_stream_message", BASE_SPEC.seal(ALICE),
                   reject(Reason.UNKNOWN_TYPE),
                   "a job.spec as a stream's message: it travels inside job.offer and as "
                   "the answer to job.get only", ("JOB-9",))
    yield _message("caps_ad", seal({"net": NET}, BOB, t="caps.ad", v=1),
                   reject(Reason.UNKNOWN_TYPE), "a caps.ad on /job/1", ("JOB-9",))
    yield _message("wrong_version", seal(bodies[T_CLAIM], BOB, t=T_CLAIM, v=2),
                   reject(Reason.UNSUPPORTED_VERSION), "job.claim version 2",
                   ("JOB-9", "ENV-5"))
    big = seal({**bodies[T_CLAIM], "net": "n" * 600}, BOB, t=T_CLAIM, v=1)
    yield _message("claim_too_large", big, reject(Reason.TOO_LARGE),
                   "a job.claim of %d bytes > 512: the type's limit applies once t is read, "
                   "before its body is looked at" % len(big), ("JOB-9", "ENV-6"))
    huge = seal({**bodies[T_OFFER], "spec": b"\x00" * 9000}, ALICE, t=T_OFFER, v=1)
    yield _message("larger_than_any_type", huge, reject(Reason.TOO_LARGE),
                   "%d bytes, more than the largest job type's limit of 8704: refused "
                   "before decoding" % len(huge), ("JOB-9", "ENV-6"))
    yield _message("offer_spec_too_long",
                   seal({**bodies[T_OFFER], "spec": b"\x00" * (SPEC_MAX_SIZE + 1)}, ALICE,
                        t=T_OFFER, v=1),
                   reject(Reason.BAD_FIELD), "an offer whose spec field is 8193 bytes",
                   ("JOB-7",))
    for name, net, desc in (
            ("net_33_bytes", "n" * 33, "a net of 33 bytes: the schema bounds it to 1..32, "
             "so it is refused as a field before it is compared with the receiver's"),
            ("net_empty", "", "an empty net: refused as a field (1..32 bytes)")):
        yield _message(f"claim_{name}", seal({**bodies[T_CLAIM], "net": net}, BOB,
                                             t=T_CLAIM, v=1),
                       reject(Reason.BAD_FIELD), desc, ("JOB-7", "JOB-9"))
    yield _message("claim_net_32_bytes", seal({**bodies[T_CLAIM], "net": "n" * 32}, BOB,
                                              t=T_CLAIM, v=1),
                   reject(Reason.WRONG_NETWORK),
                   "a net of 32 bytes is a well-formed field, then another network",
                   ("JOB-7", "JOB-8"))
    yield _message("order_body_before_network",
                   seal({**bodies[T_CLAIM], "net": "mainnet", "price": -1}, BOB, t=T_CLAIM,
                        v=1),
                   reject(Reason.BAD_FIELD),
                   "a bad field on another network: the body is checked first", ("JOB-9",))
    yield _message("ts_zero", seal({**bodies[T_CLAIM], "ts": 0}, BOB, t=T_CLAIM, v=1),
                   valid(), "a claim dated 1970: ts is not checked", ("JOB-10",))
    yield _message("ts_far_future", seal({**bodies[T_HEARTBEAT], "ts": U64}, BOB,
                                         t=T_HEARTBEAT, v=1),
                   valid(), "a heartbeat dated 2^64-1 ms: ts is not checked", ("JOB-10",))
    yield _message("list_empty", seal({**bodies[T_LIST], "jobs": []}, ALICE, t=T_LIST, v=1),
                   valid(), "a job.list with no jobs", ("JOB-7",))
    yield _message("refuse_empty_job",
                   seal({**bodies[T_REFUSE], "job": b"", "reason": "bad_signature"}, ALICE,
                        t=T_REFUSE, v=1),
                   valid(), "a refusal that names no job (the offer's spec did not open)",
                   ("JOB-7", "XCH-11"))
    yield _message("forged_claim", _forge(seal(bodies[T_CLAIM], BOB, t=T_CLAIM, v=1),
                                          price=1),
                   reject(Reason.BAD_SIGNATURE), "a claim whose price was changed after "
                   "signing", ("JOB-9", "ENV-8"))


def _forge(data: bytes, **changes: Any) -> bytes:
    env = cbor.decode(data)
    return cbor.encode({**env, "b": {**env["b"], **changes}})


# -- DHT records ------------------------------------------------------------------------------


def _record(name: str, rkey: str, value: bytes, expected: Expected, desc: str,
            rules: tuple[str, ...], *, net: str = NET, now_ms: int = NOW_MS) -> Case:
    return Case(name, Inputs({"value.cbor": value}, {"key": rkey, "net": net,
                                                     "now_ms": now_ms}),
                expected, desc, rules)


def dht_record() -> Iterator[Case]:
    raw = BASE_SPEC.seal(ALICE)
    jid = cid_of(raw)
    rkey = discovery.job_record_key(jid)
    assert rkey == "/p2pjob/" + jid.hex()
    yield _record("valid", rkey, raw, valid(), "the sample job under its id",
                  ("DHT-1", "DHT-2", "DHT-3", "DHT-4", "DHT-5", "DHT-6"))
    yield _record("valid_until_deadline", rkey, raw, valid(),
                  "1 ms before the job's deadline", ("DHT-5",),
                  now_ms=BASE_SPEC.deadline - 1)
    yield _record("expired_at_deadline", rkey, raw, reject(Reason.EXPIRED),
                  "at the job's deadline the record is dead", ("DHT-5",),
                  now_ms=BASE_SPEC.deadline)
    yield _record("expired", rkey, raw, reject(Reason.EXPIRED), "a day after the deadline",
                  ("DHT-5",), now_ms=BASE_SPEC.deadline + 86_400_000)
    other = job(nonce=b"\x01" * 16).seal(ALICE)
    yield _record("id_mismatch", rkey, other, reject(Reason.ID_MISMATCH),
                  "another job (another nonce) under the sample job's key", ("DHT-3",))
    yield _record("id_mismatch_other_signer", rkey, BASE_SPEC.seal(BOB),
                  reject(Reason.ID_MISMATCH),
                  "the same body signed by bob: another envelope, another id", ("DHT-3",))
    yield _record("wrong_network", rkey, raw, reject(Reason.WRONG_NETWORK),
                  "a devnet job read by a testnet node", ("DHT-4",), net="testnet")
    mainnet = job(net="mainnet").seal(ALICE)
    yield _record("wrong_network_under_its_id", discovery.job_record_key(cid_of(mainnet)),
                  mainnet, reject(Reason.WRONG_NETWORK), "a mainnet job under its own id",
                  ("DHT-4",))
    sig = cbor.decode(raw)["s"]
    forged = cbor.encode({**cbor.decode(raw), "s": bytes([sig[0] ^ 1]) + sig[1:]})
    yield _record("bad_signature", discovery.job_record_key(cid_of(forged)), forged,
                  reject(Reason.BAD_SIGNATURE),
                  "one signature bit flipped, stored under the forged bytes' own id",
                  ("DHT-2",))
    yield _record("bad_body", discovery.job_record_key(cid_of(seal_spec(spec_body(
        lease_s=1)))), seal_spec(spec_body(lease_s=1)), reject(Reason.BAD_FIELD),
        "a signed job.spec with lease_s 1", ("DHT-2", "JOB-3"))
    ad = seal({"net": NET}, ALICE, t="caps.ad", v=1)
    yield _record("not_a_job", discovery.job_record_key(cid_of(ad)), ad,
                  reject(Reason.UNKNOWN_TYPE), "a caps.ad envelope as a job record",
                  ("DHT-2",))
    yield _record("not_an_envelope", rkey, cbor.encode([1, 2]), reject(Reason.BAD_ENVELOPE),
                  "an array as the value", ("DHT-2",))
    yield _record("key_other_namespace", "/pk/" + jid.hex(), raw, reject(Reason.BAD_FIELD),
                  "the right value under /pk/", ("DHT-1",))
    yield _record("key_not_hex", "/p2pjob/" + jid.hex()[:-1] + "g", raw,
                  reject(Reason.BAD_FIELD), "a key whose id is not hexadecimal", ("DHT-1",))
    yield _record("key_uppercase", "/p2pjob/" + jid.hex().upper(), raw,
                  reject(Reason.BAD_FIELD),
                  "the id in uppercase hex: one record has one key", ("DHT-1",))
    spaced = "/p2pjob/" + " ".join(jid.hex()[i:i + 2] for i in range(0, 68, 2))
    yield _record("key_spaced", spaced, raw, reject(Reason.BAD_FIELD),
                  "the id with spaces between its bytes", ("DHT-1",))
    yield _record("key_short_id", "/p2pjob/" + jid.hex()[:66], raw,
                  reject(Reason.ID_MISMATCH), "a key with a 33-byte id", ("DHT-1", "DHT-3"))
    yield _record("key_odd_digits", "/p2pjob/" + jid.hex() + "0", raw,
                  reject(Reason.BAD_FIELD),
                  "69 lowercase hexadecimal digits: not the hex of any byte string, so DHT-1 "
                  "refuses it before DHT-3 compares ids", ("DHT-1",))
    yield _record("key_long_id", "/p2pjob/" + jid.hex() + "00", raw,
                  reject(Reason.ID_MISMATCH),
                  "70 digits, the hex of 35 bytes: DHT-1 holds, the id is not the value's",
                  ("DHT-1", "DHT-3"))
    yield _record("key_empty_id", "/p2pjob/", raw, reject(Reason.ID_MISMATCH),
                  "no digits, the hex of the empty string: DHT-1 holds, the id is not the "
                  "value's", ("DHT-1", "DHT-3"))
    yield _record("key_fullwidth_digit", "/p2pjob/" + jid.hex()[:-1] + "\uff10", raw,
                  reject(Reason.BAD_FIELD),
                  "the last digit a fullwidth zero (U+FF10): only the ASCII digits 0-9 and "
                  "a-f are hexadecimal", ("DHT-1",))
    yield _record("order_id_before_network", rkey, mainnet, reject(Reason.ID_MISMATCH),
                  "a mainnet job under another job's key: the id is checked first",
                  ("DHT-6",))
    for name, created, expected, desc in (
        ("created_at_skew_bound", NOW_MS + MAX_CREATED_SKEW_MS, valid(),
         "created exactly 30 s ahead of the receiver's clock: within the skew"),
        ("created_in_future", NOW_MS + MAX_CREATED_SKEW_MS + 1, reject(Reason.CLOCK_SKEW),
         "created 30.001 s ahead of the receiver's clock"),
        ("created_ten_years_ahead", NOW_MS + TEN_YEARS_MS, reject(Reason.CLOCK_SKEW),
         "created ten years ahead: without JOB-11 the record would live ten years"),
    ):
        ahead = job(created=created, deadline=created + 600_000).seal(ALICE)
        yield _record(name, discovery.job_record_key(cid_of(ahead)), ahead, expected, desc,
                      ("DHT-5", "JOB-11"))
    old_mainnet = job(net="mainnet", created=NOW_MS - 120_000, deadline=NOW_MS - 60_000)
    raw_old = old_mainnet.seal(ALICE)
    yield _record("order_network_before_expiry", discovery.job_record_key(cid_of(raw_old)),
                  raw_old, reject(Reason.WRONG_NETWORK),
                  "an expired mainnet job: the network is checked first", ("DHT-6",))


# -- discovery keys ---------------------------------------------------------------------------


def _dkey(net: str, kind: str, cls: str, bucket: int) -> str:
    text = f"p2pnode/{net}/open/{kind}/{cls}/{bucket}".encode()
    return "1220" + hashlib.sha256(text).hexdigest()


def discovery_keys() -> Iterator[Case]:
    bucket = NOW_MS // 60_000
    yield Case("one_kind_cpu",
               Inputs({}, {"net": NET, "kinds": ["matmul"], "classes": ["cpu"],
                           "now_ms": NOW_MS}),
               valid({"keys.json": [_dkey(NET, "matmul", "cpu", bucket),
                                    _dkey(NET, "matmul", "cpu", bucket - 1)]}),
               "a CPU worker running matmul: the current bucket and the one before; "
               'the first key is the sha2-256 multihash of "p2pnode/devnet/open/matmul/cpu/'
               '%d"' % bucket, ("DHT-8", "DHT-10"))
    yield Case("two_kinds_two_classes",
               Inputs({}, {"net": NET, "kinds": ["wasm", "matmul"], "classes": ["cpu", "gpu"],
                           "now_ms": NOW_MS}),
               valid({"keys.json": [_dkey(NET, k, c, b) for k in ("matmul", "wasm")
                                    for c in ("cpu", "gpu") for b in (bucket, bucket - 1)]}),
               "a GPU worker running two kinds: kinds in sorted order, then classes, then "
               "buckets", ("DHT-8", "DHT-10"))
    edge = bucket * 60_000
    yield Case("bucket_boundary",
               Inputs({}, {"net": "testnet", "kinds": ["wasm"], "classes": ["cpu"],
                           "now_ms": edge}),
               valid({"keys.json": [_dkey("testnet", "wasm", "cpu", bucket),
                                    _dkey("testnet", "wasm", "cpu", bucket - 1)]}),
               "at the first millisecond of a bucket", ("DHT-8", "DHT-10"))
    yield Case("before_boundary",
               Inputs({}, {"net": "testnet", "kinds": ["wasm"], "classes": ["cpu"],
                           "now_ms": edge - 1}),
               valid({"keys.json": [_dkey("testnet", "wasm", "cpu", bucket - 1),
                                    _dkey("testnet", "wasm", "cpu", bucket - 2)]}),
               "at the last millisecond of the bucket before", ("DHT-8", "DHT-10"))


def _kid(i: int) -> str:
    """A peer's 32-byte Kademlia id, hex, at XOR distance ``i`` from the all-zero target."""
    return i.to_bytes(32, "big").hex()


ZERO = _kid(0)


def _lookup(start: list[int], answers: dict[int, tuple[list[str], list[int]]],
            **params: int) -> Inputs:
    return Inputs({}, {"target": ZERO, "start": [_kid(i) for i in start],
                       "answers": {_kid(p): {"providers": prov, "closer": [_kid(c) for c in cl]}
                                   for p, (prov, cl) in answers.items()}, **params})


def provider_lookup() -> Iterator[Case]:
    everyone = list(range(1, 11))
    yield Case("nobody_provides",
               _lookup(everyone[::-1], {p: ([], everyone) for p in everyone}),
               valid({"batches.json": [[_kid(1), _kid(2), _kid(3)]], "providers.json": []}),
               "ten peers that each name all the others, a key nobody provides: the three "
               "closest are asked, once, and the lookup ends", ("KAD-10",))
    yield Case("walks_to_closer_peers",
               _lookup([64, 63, 62], {64: ([], [32]), 63: ([], [31]), 62: ([], [30]),
                                      32: ([], [4]), 31: ([], []), 30: ([], []),
                                      4: (["QmProvider"], [])}),
               valid({"batches.json": [[_kid(62), _kid(63), _kid(64)],
                                       [_kid(30), _kid(31), _kid(32)], [_kid(4)]],
                      "providers.json": ["QmProvider"]}),
               "only far peers known at first: each round asks the closest not yet asked "
               "among the three closest, and ends when those three have answered "
               "(31 and 30 name nobody: an empty answer is a failure, so 4 and the next "
               "live ones stay the closest)", ("KAD-10",))
    yield Case("failures_are_not_among_the_closest",
               _lookup([1, 2, 3, 4, 5, 6], {p: ([], [4, 5, 6]) for p in (4, 5, 6)}),
               valid({"batches.json": [[_kid(1), _kid(2), _kid(3)],
                                       [_kid(4), _kid(5), _kid(6)]], "providers.json": []}),
               "the three closest fail (no answer): the next three must answer before the "
               "lookup ends", ("KAD-10",))
    yield Case("ends_at_count",
               _lookup(everyone, {p: ([f"P{p}"], everyone) for p in everyone}, count=2,
                       alpha=1),
               valid({"batches.json": [[_kid(1)], [_kid(2)]], "providers.json": ["P1", "P2"]}),
               "with count 2 and one query in flight, two answers end it", ("KAD-10",))
    yield Case("ends_at_max_queries",
               _lookup(list(range(1, 40)), {}, max_queries=7),
               valid({"batches.json": [[_kid(1), _kid(2), _kid(3)],
                                       [_kid(4), _kid(5), _kid(6)], [_kid(7)]],
                      "providers.json": []}),
               "every peer fails: the lookup gives up after max_queries peers", ("KAD-10",))


# -- the requester's machine ------------------------------------------------------------------

T0 = NOW_MS
W1, W2, W3 = BOB.public_key.hex(), CAROL.public_key.hex(), DAVE.public_key.hex()
OUT1, OUT2 = cid_of(b"output 1").hex(), cid_of(b"output 2").hex()
# created T0, deadline T0 + 60 s, leases of 10 s
SM = job(created=T0, deadline=T0 + 60_000, lease_s=10)


def claim(at: int, worker: str = W1, price: int = 50, **kw: Any) -> dict[str, Any]:
    return {"op": "claim", "at_ms": at, "worker": worker, "price": price, **kw}


def heartbeat(at: int, lease: int, worker: str = W1, progress: int = 0,
              **kw: Any) -> dict[str, Any]:
    return {"op": "heartbeat", "at_ms": at, "worker": worker, "lease": lease,
            "progress": progress, **kw}


def result(at: int, lease: int, worker: str = W1, output: str = OUT1,
           **kw: Any) -> dict[str, Any]:
    return {"op": "result", "at_ms": at, "worker": worker, "lease": lease, "output": output,
            **kw}


def verified(at: int, lease: int, ok: bool = True, reason: str = "") -> dict[str, Any]:
    return {"op": "verified", "at_ms": at, "lease": lease, "ok": ok, "reason": reason}


def tick(at: int) -> dict[str, Any]:
    return {"op": "tick", "at_ms": at}


def _scenario(name: str, events: list[dict[str, Any]], desc: str, rules: tuple[str, ...],
              s: JobSpec = SM) -> Case:
    return Case(name, Inputs({"spec.cbor": s.seal(ALICE), "events.json": events}), valid(),
                desc, rules)


def requester() -> Iterator[Case]:
    yield _scenario("happy_path", [
        claim(T0 + 1), heartbeat(T0 + 5_000, 1, progress=500), result(T0 + 6_000, 1),
        verified(T0 + 6_100, 1), result(T0 + 7_000, 1), claim(T0 + 7_000, W2)],
        "claim, heartbeat (renews to 15 s), result, verified: completed; the same result "
        "again gets the recorded verdict; a later claim finds the job over",
        ("LEASE-1", "LEASE-2", "LEASE-3", "LEASE-6", "LEASE-7", "LEASE-8"))
    yield _scenario("duplicate_claim", [
        claim(T0), claim(T0 + 10), claim(T0 + 20, W2)],
        "a second claim of the leaseholder returns its lease unchanged; another worker "
        "finds the job fully leased", ("LEASE-3",))
    yield _scenario("claim_refusals", [
        claim(T0, price=SM.max_price + 1), claim(T0 + 1, price=SM.max_price),
        claim(T0 + 60_000, W2)],
        "a price above max_price is refused, one at max_price granted; a claim at the "
        "deadline is refused",
        ("LEASE-3",))
    yield _scenario("unknown_job", [
        claim(T0, job=C1.hex()), claim(T0 + 1), heartbeat(T0 + 2, 1, job=C1.hex()),
        result(T0 + 3, 1, job=C1.hex())],
        "messages naming a job the requester does not hold are refused", ("XCH-5",))
    yield _scenario("not_leaseholder", [
        claim(T0), heartbeat(T0 + 1, 1, worker=W2), result(T0 + 1, 1, worker=W2),
        result(T0 + 1, 8), heartbeat(T0 + 1, 0)],
        "another worker's heartbeat and result for lease 1, and the leaseholder's result "
        "and heartbeat for leases it does not hold", ("LEASE-5",))
    yield _scenario("lease_expiry_reassigns", [
        claim(T0), heartbeat(T0 + 2_000, 1), tick(T0 + 12_000), tick(T0 + 12_001),
        result(T0 + 12_500, 1), heartbeat(T0 + 12_500, 1), claim(T0 + 13_000),
        claim(T0 + 13_000, W2), result(T0 + 14_000, 2, worker=W2), verified(T0 + 14_100, 2)],
        "a lease renewed to T0+12 s is live at T0+12 s and expired 1 ms later; the late "
        "result and heartbeat are refused, the old worker may not claim again, a new "
        "worker gets lease 2 and completes the job",
        ("LEASE-4", "LEASE-5", "LEASE-9", "LEASE-10"))
    yield _scenario("heartbeat_at_expiry", [
        claim(T0), heartbeat(T0 + 10_000, 1, progress=100),
        heartbeat(T0 + 20_001, 1, progress=200)],
        "a lease granted at T0 expires at T0+10 s: a heartbeat in that very millisecond "
        "renews it to T0+20 s; one at T0+20.001 s, with no tick between, is refused "
        "lease_expired", ("LEASE-5", "LEASE-6"))
    yield _scenario("result_at_expiry", [
        claim(T0), claim(T0, W2), result(T0 + 10_000, 1),
        result(T0 + 10_001, 2, worker=W2, output=OUT2)],
        "two leases expiring at T0+10 s: a result in that very millisecond is taken for "
        "verification; one at T0+10.001 s, with no tick between, is refused lease_expired",
        ("LEASE-5", "LEASE-7"),
        s=job(created=T0, deadline=T0 + 60_000, lease_s=10, redundancy=2))
    yield _scenario("unheartbeated_lease_expires", [
        claim(T0), tick(T0 + 10_000), tick(T0 + 10_001)],
        "a lease never renewed expires lease_s after it was granted", ("LEASE-9",))
    yield _scenario("heartbeat_renewal_capped", [
        claim(T0 + 45_000, price=40), heartbeat(T0 + 52_000, 1, progress=1500),
        heartbeat(T0 + 59_000, 1, progress=999)],
        "a lease granted at T0+45 s ends at T0+55 s; renewed at T0+52 s it would end at "
        "T0+62 s but ends at the deadline, T0+60 s; progress is capped at 1000",
        ("LEASE-4", "LEASE-6"))
    yield _scenario("deadline", [
        claim(T0 + 50_000), result(T0 + 60_001, 1), tick(T0 + 60_001), tick(T0 + 70_000),
        claim(T0 + 70_000, W2), heartbeat(T0 + 70_000, 1)],
        "a lease granted 10 s before the deadline ends at it; a result after the deadline "
        "is refused; at the deadline the job fails; then it refuses everything",
        ("LEASE-3", "LEASE-4", "LEASE-7", "LEASE-9"))
    yield _scenario("result_at_deadline", [
        claim(T0 + 55_000), result(T0 + 60_000, 1), tick(T0 + 60_000), verified(T0 + 60_100, 1)],
        "a result in the deadline's very millisecond is refused, and the tick of that "
        "millisecond fails the job with the lease's reason deadline_passed",
        ("LEASE-7", "LEASE-8", "LEASE-9"))
    yield _scenario("rejected_results_give_up", [
        claim(T0), result(T0 + 1, 1), result(T0 + 2, 1), verified(T0 + 3, 1, False,
                                                                   "bad_field"),
        result(T0 + 4, 1), claim(T0 + 5, W2), result(T0 + 6, 2, worker=W2),
        verified(T0 + 7, 2, False, "hash_mismatch"), claim(T0 + 8, W3),
        result(T0 + 9, 3, worker=W3), verified(T0 + 10, 3, False, "bad_field")],
        "a second result during verification is busy; a rejected result gets its verdict "
        "again; each rejection reopens the job, the third fails it",
        ("LEASE-7", "LEASE-8"))
    yield _scenario("rejected_then_other_output", [
        claim(T0), result(T0 + 1, 1), verified(T0 + 2, 1, False, "bad_field"),
        result(T0 + 3, 1, output=OUT2), heartbeat(T0 + 4, 1)],
        "after a rejection, a different output on the same lease is refused, and so is a "
        "heartbeat (bad_state)", ("LEASE-6", "LEASE-7"))
    yield _scenario("heartbeat_while_verifying", [
        claim(T0), result(T0 + 1_000, 1), heartbeat(T0 + 5_000, 1), tick(T0 + 30_000),
        verified(T0 + 30_001, 1)],
        "while its result is verified a lease is neither renewed nor expired",
        ("LEASE-6", "LEASE-9"))
    yield _scenario("redundancy_two", [
        claim(T0), claim(T0, W2), claim(T0, W3), heartbeat(T0 + 1, 1, progress=10),
        result(T0 + 2, 1), heartbeat(T0 + 3, 2, worker=W2, progress=10),
        verified(T0 + 4, 1), result(T0 + 5, 2, worker=W2, output=OUT2), verified(T0 + 6, 2)],
        "redundancy 2: two leases, a third worker is busy; the job shows its most advanced "
        "lease and completes with the second accepted result", ("LEASE-2", "LEASE-3",
                                                               "LEASE-8"),
        s=job(created=T0, deadline=T0 + 60_000, lease_s=10, redundancy=2))
    yield _scenario("redundancy_expiry_while_verifying", [
        claim(T0), claim(T0, W2), result(T0 + 1, 1), tick(T0 + 10_001), claim(T0 + 10_002, W3)],
        "one lease expires while the other's result is verified: the job stays in result "
        "and takes a new worker", ("LEASE-2", "LEASE-9"),
        s=job(created=T0, deadline=T0 + 60_000, lease_s=10, redundancy=2))


# -- the worker -------------------------------------------------------------------------------

PROFILE = {"kinds": ["matmul", "wasm"], "prices": {"matmul": 1000, "wasm": 800},
           "concurrency": 2, "cores": 8, "mem": 32 << 30, "gpu_mem": 0, "gpus": 0}
GPU_PROFILE = {**PROFILE, "gpu_mem": 80 << 30, "gpus": 1}


def _worker(name: str, s: JobSpec, expected: Expected, desc: str, rules: tuple[str, ...],
            *, profile: dict[str, Any] | None = None, active: list[str] | None = None,
            now_ms: int = NOW_MS, net: str = NET, signed: bytes | None = None) -> Case:
    return Case(name, Inputs({"spec.cbor": signed or s.seal(ALICE)},
                             {"net": net, "now_ms": now_ms, "profile": profile or PROFILE,
                              "active": active or []}),
                expected, desc, rules)


def worker() -> Iterator[Case]:
    yield _worker("accept", BASE_SPEC, valid(), "a CPU worker takes the sample job at its "
                  "price for matmul", ("WRK-1",))
    yield _worker("accept_gpu", job(req=Requirements(gpu=True, gpu_mem=40 << 30)), valid(),
                  "a GPU job on a worker with an 80 GiB GPU", ("WRK-1",),
                  profile=GPU_PROFILE)
    yield _worker("accept_exact_fit", job(req=Requirements(cores=8, mem=32 << 30),
                                          max_price=1000),
                  valid(), "requirements and price exactly at the worker's", ("WRK-1",))
    yield _worker("accept_unpriced_kind", job(kind="wasm"), valid(),
                  "a kind without a configured price is claimed at 0", ("WRK-1",),
                  profile={**PROFILE, "prices": {"matmul": 1000}})
    yield _worker("accept_second_slot", BASE_SPEC, valid(), "one of two slots taken",
                  ("WRK-1", "WRK-2"), active=[C1.hex()])
    yield _worker("wrong_network", job(net="testnet"), reject(Reason.WRONG_NETWORK),
                  "a testnet job offered on devnet", ("WRK-1",))
    yield _worker("kind_not_run", job(kind="render"), ignore(Reason.REQUIREMENTS_UNMET),
                  "a kind the worker does not run", ("WRK-1",))
    yield _worker("too_few_cores", job(req=Requirements(cores=9)),
                  ignore(Reason.REQUIREMENTS_UNMET), "9 cores wanted, 8 present", ("WRK-1",))
    yield _worker("too_little_mem", job(req=Requirements(mem=(32 << 30) + 1)),
                  ignore(Reason.REQUIREMENTS_UNMET), "1 byte more RAM than present",
                  ("WRK-1",))
    yield _worker("needs_gpu", job(req=Requirements(gpu=True)),
                  ignore(Reason.REQUIREMENTS_UNMET), "a GPU job on a CPU worker", ("WRK-1",))
    yield _worker("gpu_mem_too_small", job(req=Requirements(gpu_mem=(80 << 30) + 1)),
                  ignore(Reason.REQUIREMENTS_UNMET), "more GPU memory than the GPU has",
                  ("WRK-1",), profile=GPU_PROFILE)
    yield _worker("price_too_low", job(max_price=999), ignore(Reason.BAD_FIELD),
                  "max_price 999 below the worker's price 1000", ("WRK-1",))
    yield _worker("challenge_for_another", job(verify=(("target", BOB.public_key),)),
                  ignore(Reason.REQUIREMENTS_UNMET),
                  "a challenge (06 CHL-1) addressed to Bob, not to this worker (key 32 zero "
                  "bytes)", ("WRK-1", "CHL-1"))
    yield _worker("challenge_for_this_worker", job(verify=(("target", bytes(32)),)), valid(),
                  "a challenge addressed to this worker", ("WRK-1", "CHL-1"))
    yield _worker("deadline_passed", BASE_SPEC, ignore(Reason.DEADLINE_PASSED),
                  "offered at its deadline", ("WRK-1",), now_ms=BASE_SPEC.deadline)
    jid = cid_of(BASE_SPEC.seal(ALICE)).hex()
    yield _worker("already_working", BASE_SPEC, ignore(Reason.BAD_STATE),
                  "a job the worker already holds", ("WRK-1",), active=[jid])
    yield _worker("busy", BASE_SPEC, ignore(Reason.BUSY), "both slots taken",
                  ("WRK-1", "WRK-2"), active=[C1.hex(), OUT.hex()])
    yield _worker("order_network_first", job(net="testnet", kind="render"),
                  reject(Reason.WRONG_NETWORK),
                  "another network and an unknown kind: the network is checked first",
                  ("WRK-1",))
    yield _worker("order_requirements_before_price", job(req=Requirements(cores=64),
                                                         max_price=1),
                  ignore(Reason.REQUIREMENTS_UNMET),
                  "too many cores and too low a price: requirements first", ("WRK-1",))
    yield _worker("order_price_before_deadline", job(max_price=1),
                  ignore(Reason.BAD_FIELD),
                  "too low a price, past the deadline: price first", ("WRK-1",),
                  now_ms=BASE_SPEC.deadline + 1)
    yield _worker("created_at_skew_bound", job(created=NOW_MS + MAX_CREATED_SKEW_MS,
                                               deadline=NOW_MS + 600_000),
                  valid(), "created exactly 30 s ahead of the worker's clock", ("WRK-1",
                                                                                "JOB-11"))
    yield _worker("created_in_future", job(created=NOW_MS + TEN_YEARS_MS,
                                           deadline=NOW_MS + TEN_YEARS_MS + 600_000),
                  reject(Reason.CLOCK_SKEW), "a job created ten years ahead",
                  ("WRK-1", "JOB-11"))
    yield _worker("created_just_in_future", job(created=NOW_MS + MAX_CREATED_SKEW_MS + 1,
                                                deadline=NOW_MS + 600_000),
                  reject(Reason.CLOCK_SKEW), "created 30.001 s ahead of the worker's clock",
                  ("WRK-1", "JOB-11"))
    future = job(created=NOW_MS + TEN_YEARS_MS, deadline=NOW_MS + TEN_YEARS_MS + 600_000)
    yield _worker("order_created_before_held", future, reject(Reason.CLOCK_SKEW),
                  "created in the future and already held: the creation time first",
                  ("WRK-1",), active=[cid_of(future.seal(ALICE)).hex()])
    yield _worker("order_held_before_busy", BASE_SPEC, ignore(Reason.BAD_STATE),
                  "held and no slot free: held first", ("WRK-1",), active=[jid, C1.hex()])
    env = cbor.decode(BASE_SPEC.seal(ALICE))
    yield _worker("forged_spec", BASE_SPEC, reject(Reason.BAD_SIGNATURE),
                  "a spec whose max_price was raised after signing", ("WRK-3", "JOB-1"),
                  signed=cbor.encode({**env, "b": spec_body(max_price=10**6)}))


# -- verification ------------------------------------------------------------------------------


def _product(a: Any, b: Any) -> list[list[int]]:
    """a @ b with Python integers: independent of numpy and of the BLAS."""
    al, bl = a.tolist(), b.tolist()
    return [[sum(al[i][t] * bl[t][j] for t in range(len(bl))) for j in range(len(bl[0]))]
            for i in range(len(al))]


def _int64_blob(rows: list[list[int]]) -> bytes:
    data = b"".join(x.to_bytes(8, "little", signed=True) for row in rows for x in row)
    return cbor.encode({"data": data, "dtype": "int64", "shape": [len(rows), len(rows[0])]})


PRODUCT = _int64_blob(_product(A, B))


def _verify(name: str, output: bytes, expected: Expected, desc: str, *,
            s: JobSpec = BASE_SPEC, inputs: dict[str, bytes] | None = None) -> Case:
    given = {"a": A_BLOB, "b": B_BLOB} if inputs is None else inputs
    files: dict[str, Any] = {"spec.cbor": s.seal(ALICE), "output.bin": output}
    files.update({f"input_{n}.bin": v for n, v in given.items()})
    return Case(name, Inputs(files), expected, desc, ("VER-2",))


def verify() -> Iterator[Case]:
    yield _verify("matmul_product", PRODUCT, valid(), "the exact product of a and b")
    yield _verify("matmul_wrong_values", _int64_blob([[0, 0], [0, 0]]), valid(),
                  "a 2x2 int64 matrix of zeros passes the structural check of v1: "
                  "values are checked by the proofs chapter")
    yield _verify("matmul_wrong_shape", _int64_blob([[0, 0, 0], [0, 0, 0]]),
                  reject(Reason.BAD_FIELD), "a 2x3 output for a 2x3 by 3x2 product")
    yield _verify("matmul_int8_output", tensors.encode_matrix(A[:, :2].copy()),
                  reject(Reason.BAD_FIELD), "an int8 output")
    yield _verify("matmul_output_not_cbor", b"\xff", reject(Reason.INDEFINITE_LENGTH),
                  "an output that is a stray break byte: the codec's reason")
    yield _verify("matmul_output_not_matrix", cbor.encode([1, 2]), reject(Reason.BAD_FIELD),
                  "an output that is an array")
    yield _verify("matmul_output_too_many_elements",
                  cbor.encode({"data": b"", "dtype": "int64", "shape": [1 << 13, 1 << 14]}),
                  reject(Reason.TOO_LARGE),
                  "an output whose shape claims 2^27 elements, over the check's 2^26")
    yield _verify("matmul_input_missing", PRODUCT, reject(Reason.NOT_FOUND),
                  "the requester no longer holds input b", inputs={"a": A_BLOB})
    yield _verify("wasm_any_output", b"anything", valid(),
                  "any bytes are a structurally valid wasm output",
                  s=job(kind="wasm"), inputs={})
    yield _verify("unknown_kind", b"", reject(Reason.UNKNOWN_TYPE),
                  "no check exists for a kind this specification does not define",
                  s=job(kind="render"), inputs={})


# -- execution ---------------------------------------------------------------------------------

SMALL_LIMITS = {"wasm_memory_bytes": 1 << 20, "wasm_fuel": 1_000_000}


def _exec(name: str, kind: str, inputs: dict[str, bytes], expected: Expected, desc: str,
          rules: tuple[str, ...], *, params: dict[str, Any] | None = None,
          limits: dict[str, Any] | None = None) -> Case:
    p: dict[str, Any] = {"kind": kind, "params": to_json(params or {})}
    if limits is not None:
        p["limits"] = limits
    if expected.result != "valid":
        rules = ("EXE-1", *rules)  # the outcome of a failure
    return Case(name, Inputs({f"input_{n}.bin": v for n, v in inputs.items()}, p), expected,
                desc, rules)


def _i8(rows: list[list[int]]) -> bytes:
    data = b"".join(x.to_bytes(1, "little", signed=True) for row in rows for x in row)
    return cbor.encode({"data": data, "dtype": "int8", "shape": [len(rows), len(rows[0])]})


ABI = """
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
"""


def _wat(body: str) -> bytes:
    return compile_wat("(module %s)" % body)


def execute() -> Iterator[Case]:
    yield _exec("matmul", "matmul", {"a": A_BLOB, "b": B_BLOB}, valid({"output.bin": PRODUCT}),
                "2x3 by 3x2: the product, computed here with Python integers",
                ("EXE-3", "EXE-4", "MAT-1"))
    k = 1000
    yield _exec("matmul_extremes", "matmul", {"a": _i8([[-128] * k, [127] * k]),
                                              "b": _i8([[-128, 127]] * k)},
                valid({"output.bin": _int64_blob([[128 * 128 * k, -128 * 127 * k],
                                                   [-127 * 128 * k, 127 * 127 * k]])}),
                "k = 1000 products of the extreme int8 values, exact", ("EXE-4",))
    yield _exec("matmul_shapes_differ", "matmul", {"a": A_BLOB, "b": A_BLOB},
                reject(Reason.BAD_FIELD), "2x3 by 2x3", ("EXE-3",))
    yield _exec("matmul_int64_input", "matmul", {"a": PRODUCT, "b": B_BLOB},
                reject(Reason.BAD_FIELD), "an int64 matrix as input a", ("EXE-3",))
    yield _exec("matmul_input_missing", "matmul", {"a": A_BLOB}, reject(Reason.BAD_FIELD),
                "no input b", ("EXE-2",))
    yield _exec("matmul_input_unknown", "matmul", {"a": A_BLOB, "b": B_BLOB, "c": B_BLOB},
                reject(Reason.BAD_FIELD), "an input c", ("EXE-2",))
    yield _exec("matmul_param_given", "matmul", {"a": A_BLOB, "b": B_BLOB},
                reject(Reason.BAD_FIELD), "matmul takes no params", ("EXE-2",),
                params={"device": "gpu"})
    yield _exec("matmul_input_not_matrix", "matmul", {"a": b"\x00", "b": B_BLOB},
                reject(Reason.BAD_FIELD), "input a is the integer 0", ("EXE-3",))
    yield _exec("matmul_dimension_limit", "matmul", {"a": _i8([[1, 2, 3]]),
                                                     "b": _i8([[1], [2], [3]])},
                ignore(Reason.LIMIT_EXCEEDED),
                "1x3 by 3x1 with matmul_max_n 2: 3 elements each, but k = 3",
                ("EXE-3",), limits={"matmul_max_n": 2})
    yield _exec("matmul_element_limit", "matmul", {"a": _i8([[1] * 5]), "b": _i8([[1]] * 5)},
                ignore(Reason.LIMIT_EXCEEDED),
                "a 1x5 input where matmul_max_n 2 allows 4 elements", ("EXE-3",),
                limits={"matmul_max_n": 2})
    yield _exec("matmul_input_bytes_limit", "matmul", {"a": A_BLOB, "b": B_BLOB},
                ignore(Reason.LIMIT_EXCEEDED),
                "inputs of %d bytes where 40 are allowed" % (len(A_BLOB) + len(B_BLOB)),
                ("EXE-2",), limits={"max_input_bytes": 40})
    yield _exec("matmul_output_bytes_limit", "matmul", {"a": A_BLOB, "b": B_BLOB},
                ignore(Reason.LIMIT_EXCEEDED),
                "a %d-byte output where 40 are allowed" % len(PRODUCT), ("EXE-3",),
                limits={"max_output_bytes": 40})
    # wasm
    sum_mod = example_module("sum")
    data = bytes(range(1, 101))
    yield _exec("wasm_sum", "wasm", {"module": sum_mod, "input": data},
                valid({"output.bin": sum(data).to_bytes(8, "little")}),
                "the sum example over 1..100: 5050 as u64 little-endian",
                ("EXE-5", "EXE-6", "EXE-7"))
    yield _exec("wasm_reverse", "wasm", {"module": example_module("reverse"),
                                         "input": b"p2pnode"},
                valid({"output.bin": b"p2pnode"[::-1]}),
                "the reverse example", ("EXE-6",))
    yield _exec("wasm_empty_input", "wasm", {"module": sum_mod, "input": b""},
                valid({"output.bin": bytes(8)}), "an empty input", ("EXE-6",))
    yield _exec("wasm_fuel_param", "wasm", {"module": sum_mod, "input": data},
                valid({"output.bin": sum(data).to_bytes(8, "little")}),
                "a fuel param within the worker's limit", ("EXE-5",), params={"fuel": 100_000},
                limits=SMALL_LIMITS)
    yield _exec("wasm_trap", "wasm", {"module": example_module("trap"), "input": b"x"},
                reject(Reason.EXEC_FAILED), "run executes unreachable", ("EXE-8",))
    yield _exec("wasm_out_of_fuel", "wasm", {"module": example_module("spin"), "input": b""},
                ignore(Reason.LIMIT_EXCEEDED), "an endless loop with 10000 units of fuel",
                ("EXE-8",), params={"fuel": 10_000}, limits=SMALL_LIMITS)
    yield _exec("wasm_out_of_memory", "wasm", {"module": example_module("grow"), "input": b""},
                ignore(Reason.LIMIT_EXCEEDED),
                "grows until memory.grow fails at the 1 MiB limit, then traps", ("EXE-8",),
                limits=SMALL_LIMITS)
    yield _exec("wasm_fuel_over_limit", "wasm", {"module": sum_mod, "input": b""},
                ignore(Reason.LIMIT_EXCEEDED), "fuel asked for above the worker's limit",
                ("EXE-5",), params={"fuel": 1_000_001}, limits=SMALL_LIMITS)
    yield _exec("wasm_fuel_zero", "wasm", {"module": sum_mod, "input": b""},
                reject(Reason.BAD_FIELD), "fuel 0", ("EXE-5",), params={"fuel": 0})
    yield _exec("wasm_fuel_text", "wasm", {"module": sum_mod, "input": b""},
                reject(Reason.BAD_FIELD), 'fuel "1000"', ("EXE-5",), params={"fuel": "1000"})
    yield _exec("wasm_unknown_param", "wasm", {"module": sum_mod, "input": b""},
                reject(Reason.BAD_FIELD), "a param other than fuel", ("EXE-2",),
                params={"memory": 1})
    yield _exec("wasm_text_module", "wasm", {"module": b"(module)", "input": b""},
                reject(Reason.BAD_FIELD), "WebAssembly text instead of a binary module",
                ("EXE-5",))
    yield _exec("wasm_invalid_module", "wasm", {"module": b"\x00asm\x01\x00\x00\x00\xff",
                                                "input": b""},
                reject(Reason.BAD_FIELD), "the header and then garbage", ("EXE-5",))
    yield _exec("wasm_import", "wasm", {"module": _wat(
        '(import "env" "f" (func)) ' + ABI + '(func (export "run") (param i32 i32) '
        '(result i64) (i64.const 0))'), "input": b""},
        reject(Reason.BAD_FIELD), "a module that imports a function", ("EXE-5", "EXE-7"))
    yield _exec("wasm_no_memory", "wasm", {"module": _wat(
        '(func (export "alloc") (param i32) (result i32) (i32.const 0)) '
        '(func (export "run") (param i32 i32) (result i64) (i64.const 0))'), "input": b""},
        reject(Reason.BAD_FIELD), "no exported memory", ("EXE-5",))
    yield _exec("wasm_run_wrong_signature", "wasm", {"module": _wat(
        ABI + '(func (export "run") (param i32 i32) (result i32) (i32.const 0))'),
        "input": b""}, reject(Reason.BAD_FIELD), "run returns i32", ("EXE-5",))
    yield _exec("wasm_initial_memory_too_large", "wasm", {"module": _wat(
        '(memory (export "memory") 17) (func (export "alloc") (param i32) (result i32) '
        '(i32.const 0)) (func (export "run") (param i32 i32) (result i64) (i64.const 0))'),
        "input": b""}, ignore(Reason.LIMIT_EXCEEDED),
        "an initial memory of 17 pages where 16 are allowed", ("EXE-5",),
        limits=SMALL_LIMITS)
    yield _exec("wasm_module_over_limit", "wasm", {"module": WASM_HEADER + bytes(9),
                                                   "input": b""},
                ignore(Reason.LIMIT_EXCEEDED),
                "a 17-byte module where max_module_bytes is 16: refused before it is "
                "compiled, so before it is found invalid", ("EXE-5",),
                limits={"max_module_bytes": 16})
    yield _exec("wasm_input_over_memory", "wasm", {"module": sum_mod, "input": bytes(17)},
                ignore(Reason.LIMIT_EXCEEDED),
                "an input of 17 bytes where the memory limit is 16: refused before the "
                "module is compiled", ("EXE-5",), limits={"wasm_memory_bytes": 16})
    yield _exec("wasm_alloc_outside", "wasm", {"module": _wat(
        '(memory (export "memory") 1) (func (export "alloc") (param i32) (result i32) '
        '(i32.const 65535)) (func (export "run") (param i32 i32) (result i64) '
        '(i64.const 0))'), "input": b"ab"}, reject(Reason.EXEC_FAILED),
        "alloc(2) returns 65535: the input would end past the memory", ("EXE-6",))
    yield _exec("wasm_output_outside", "wasm", {"module": _wat(
        ABI + '(func (export "run") (param i32 i32) (result i64) '
        '(i64.const 0xFFFF00000002))'), "input": b""}, reject(Reason.EXEC_FAILED),
        "run returns 2 bytes at 65535", ("EXE-6",))
    yield _exec("wasm_output_at_memory_end", "wasm", {"module": _wat(
        ABI + '(data (i32.const 65534) "ok") (func (export "run") (param i32 i32) '
        '(result i64) (i64.const 0xFFFE00000002))'), "input": b""},
        valid({"output.bin": b"ok"}), "run returns the last 2 bytes of the memory",
        ("EXE-6",))
    yield _exec("wasm_output_too_long", "wasm", {"module": _wat(
        ABI + '(func (export "run") (param i32 i32) (result i64) (i64.const 0x0000000100))'),
        "input": b""}, ignore(Reason.LIMIT_EXCEEDED),
        "256 bytes of output where 255 are allowed", ("EXE-6",),
        limits={"max_output_bytes": 255})
    yield _exec("wasm_nan_canonical", "wasm", {"module": _wat(
        ABI + '(func (export "run") (param i32 i32) (result i64) '
        '(i32.store (i32.const 0) (i32.reinterpret_f32 (f32.div (f32.const 0) '
        '(f32.const 0)))) (i64.const 4))'), "input": b""},
        valid({"output.bin": bytes.fromhex("0000c07f")}),
        "0/0 in f32 yields the canonical NaN 0x7fc00000", ("EXE-7",))
    assert DEFAULT_LIMITS.wasm_memory_bytes > SMALL_LIMITS["wasm_memory_bytes"]


HANDLERS: dict[str, Callable[[], Iterator[Case]]] = {
    "spec": spec, "message": message, "dht_record": dht_record,
    "discovery_keys": discovery_keys, "provider_lookup": provider_lookup,
    "requester": requester, "worker": worker,
    "verify": verify, "execute": execute,
}
