"""Cases for capability ads (spec/02-capabilities.md).

``validate``: apply CAPS-1..CAPS-9 to ``input.cbor`` with the receiver's ``net``, clock
``now_ms``, the pubsub ``source`` (hex binary PeerID, or null when the ad did not come by
gossip) and ``held`` (PeerID -> seq already held); a valid ad yields ``accepted.json``.
``table``: replay ``steps`` (receive / expire / live) against an empty table; yields
``steps.json`` and ``table.json``.
``rate_limit``: feed ``events.json`` to a token bucket of ``burst`` and ``rate_per_s``; yields
``decisions.json``.
``sync``: read ``stream.bin``, a held-ads answer (SYNC-4), and check each of its ads as
SYNC-5 says with ``net``, ``now_ms`` and ``held``; yields ``answer.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from conformance.cases.common import (
    ALICE,
    BASE_AD,
    BOB,
    CAROL,
    H100,
    NET,
    NOW_MS,
    ad,
    assemble,
    body,
    seal,
    sign_bytes,
    source_of,
)
from conformance.model import Case, Expected, Inputs, ignore, reject, valid
from p2pnode.caps.model import AD_MAX_SIZE, Gpu
from p2pnode.caps.sync import SYNC_MAX_ADS
from p2pnode.identity import Identity
from p2pnode.services.caps import ADS_BURST, ADS_RATE_PER_S
from p2pnode.wire import cbor
from p2pnode.wire.framing import encode_frame
from p2pnode.wire.reasons import Reason

SKEW = 30_000


def _validate(name: str, data: bytes, expected: Expected, desc: str, rules: tuple[str, ...],
              *, net: str = NET, now_ms: int = NOW_MS, source: Identity | None = ALICE,
              held: dict[str, int] | None = None) -> Case:
    params: dict[str, Any] = {
        "net": net,
        "now_ms": now_ms,
        "source": source_of(source) if source is not None else None,
        "held": held or {},
    }
    return Case(name, Inputs({"input.cbor": data}, params), expected, desc, rules)


def _max_ad() -> bytes:
    top = (1 << 64) - 1
    return ad(
        net="n" * 32, seq=top, ttl=86_400, cores=top, threads=top, arch="a" * 64, mem=top,
        gpus=tuple(Gpu("g%02d" % i + "x" * 61, top) for i in range(16)),
        kinds=tuple("k%02d" % i + "x" * 29 for i in range(16)),
        price=tuple(("k%02d" % i + "x" * 29, top) for i in range(16)),
        addrs=tuple("/dns4/" + "h%d" % i + "x" * 120 for i in range(8)),
        agent="z" * 64,
    ).encode(ALICE)


def validate() -> Iterator[Case]:
    yield from _valid_ads()
    yield from _envelope_failures()
    yield from _field_failures()
    yield from _state_failures()


def _valid_ads() -> Iterator[Case]:
    yield _validate("valid_cpu_only", BASE_AD.encode(ALICE), valid(),
                    "the sample ad: 8 cores, 32 GiB, no GPU, two kinds",
                    ("CAPS-1", "CAPS-4", "CAPS-9"))
    yield _validate("valid_with_gpus", ad(gpus=(H100, H100)).encode(ALICE), valid(),
                    "two GPUs", ("CAPS-4",))
    yield _validate("valid_empty_lists",
                    ad(gpus=(), kinds=(), price=(), addrs=(), agent="", arch="").encode(ALICE),
                    valid(), "every list and map empty, agent and arch empty", ("CAPS-4",))
    maximal = _max_ad()
    yield _validate("valid_max_sizes", maximal, valid(),
                    "every field at its limit: %d bytes, under the 4096 limit" % len(maximal),
                    ("CAPS-1", "CAPS-4"), net="n" * 32, now_ms=NOW_MS)
    yield _validate("valid_multibyte_text_at_limit", ad(arch="\u00e9" * 32).encode(ALICE),
                    valid(), "arch of 32 characters, 64 bytes: limits count bytes",
                    ("CAPS-4",))
    yield _validate("valid_min_ttl", ad(ttl=10).encode(ALICE), valid(), "ttl 10 s",
                    ("CAPS-4",))
    yield _validate("valid_max_ttl", ad(ttl=86_400).encode(ALICE), valid(), "ttl 86400 s",
                    ("CAPS-4",))
    yield _validate("valid_seq_zero", ad(seq=0).encode(ALICE), valid(),
                    "seq 0 from a signer nothing is held for", ("CAPS-8",))
    yield _validate("valid_newer_seq", BASE_AD.encode(ALICE), valid(),
                    "seq 7 where seq 6 is held", ("CAPS-8",), held={ALICE.peer_id: 6})
    yield _validate("valid_held_for_other_signer", BASE_AD.encode(ALICE), valid(),
                    "a higher seq held for another signer does not matter", ("CAPS-8",),
                    held={BOB.peer_id: 100})
    yield _validate("valid_not_by_gossip", BASE_AD.encode(BOB), valid(),
                    "bob's ad obtained outside gossip: no source to compare with",
                    ("CAPS-6",), source=None)
    yield _validate("valid_skew_future_edge", ad(ts=NOW_MS + SKEW).encode(ALICE), valid(),
                    "ts exactly 30 s ahead of the receiver", ("CAPS-7",))
    yield _validate("valid_skew_past_edge", ad(ts=NOW_MS - SKEW).encode(ALICE), valid(),
                    "ts exactly 30 s behind the receiver", ("CAPS-7",))
    yield _validate("valid_expires_in_1ms", ad(ts=NOW_MS - 9_999, ttl=10).encode(ALICE),
                    valid(), "ts + ttl is 1 ms after now", ("CAPS-7",))
    yield _validate("valid_price_for_unlisted_kind",
                    ad(kinds=("matmul",), price=(("matmul", 5), ("wasm", 7))).encode(ALICE),
                    valid(), "a price for a kind not in kinds is accepted and means nothing",
                    ("CAPS-4",))


def _envelope_failures() -> Iterator[Case]:
    yield _validate("too_large", ad(agent="x" * 5000).encode(ALICE),
                    reject(Reason.TOO_LARGE),
                    "an ad over 4096 bytes (its agent is too long, but size comes first)",
                    ("CAPS-1",))
    yield _validate("not_cbor", b"\x1c", reject(Reason.MALFORMED),
                    "one reserved byte", ("CAPS-2", "ENC-7"))
    yield _validate("non_canonical_body", _with_long_agent_length(),
                    reject(Reason.NON_CANONICAL),
                    "the agent text with a one-byte length for 16 bytes", ("CAPS-2", "ENC-3"))
    yield _validate("float_in_body", _with_float_mem(), reject(Reason.FLOAT_FORBIDDEN),
                    "mem as a float, correctly signed over those very bytes",
                    ("CAPS-2", "ENC-1"))
    yield _validate("wrong_type", seal(BASE_AD.to_body(), t="jobs.spec"),
                    reject(Reason.UNKNOWN_TYPE), "an ad body sealed as type jobs.spec",
                    ("CAPS-2", "ENV-5"))
    yield _validate("wrong_version", seal(BASE_AD.to_body(), v=2),
                    reject(Reason.UNSUPPORTED_VERSION), "caps.ad version 2",
                    ("CAPS-2", "ENV-5"))
    env = cbor.decode(BASE_AD.encode(ALICE))
    yield _validate("envelope_unknown_field", cbor.encode({**env, "x": 0}),
                    reject(Reason.UNKNOWN_FIELD), "an extra envelope field",
                    ("CAPS-2", "ENV-1"))
    yield _validate("envelope_bad_key", cbor.encode({**env, "k": env["k"][:31]}),
                    reject(Reason.BAD_KEY), "a 31-byte key", ("CAPS-2", "ENV-3"))
    sig = env["s"]
    yield _validate("bad_signature",
                    cbor.encode({**env, "s": sig[:5] + bytes([sig[5] ^ 1]) + sig[6:]}),
                    reject(Reason.BAD_SIGNATURE), "one bit of the signature flipped",
                    ("CAPS-3",))
    yield _validate("forged_body", cbor.encode({**env, "b": body(mem=1 << 40)}),
                    reject(Reason.BAD_SIGNATURE), "mem raised to 1 TiB after signing",
                    ("CAPS-3",))


def _with_long_agent_length() -> bytes:
    b = cbor.encode(BASE_AD.to_body())
    agent = cbor.encode(BASE_AD.agent)
    assert agent[0] == 0x70 and b.count(agent) == 1  # text of 16 bytes, length in the head
    bb = b.replace(agent, b"\x78\x10" + agent[1:])
    return assemble(bb, k=ALICE.public_key, s=sign_bytes(ALICE, bb))


def _with_float_mem() -> bytes:
    b = cbor.encode(body(mem=0))
    # mem is the only field equal to 0 here: "mem" 0x00 -> "mem" f9 7c00 (+infinity)
    marker = cbor.encode("mem") + b"\x00"
    assert b.count(marker) == 1
    bb = b.replace(marker, cbor.encode("mem") + bytes.fromhex("f97c00"))
    return assemble(bb, k=ALICE.public_key, s=sign_bytes(ALICE, bb))


# (name, body changes, description); each breaks one field of CAPS-4. A change to None
# deletes the field; "__add__" adds fields after that; "__body__" replaces the body.
BAD_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("body_not_a_map", {"__body__": [1, 2]}, "the body is an array"),
    ("missing_agent", {"agent": None}, "no agent field"),
    ("missing_cpu", {"cpu": None}, "no cpu field"),
    ("net_empty", {"net": ""}, "an empty network id"),
    ("net_too_long", {"net": "n" * 33}, "a 33-byte network id"),
    ("seq_negative", {"seq": -1}, "seq -1"),
    ("seq_text", {"seq": "7"}, 'seq "7"'),
    ("seq_bool", {"seq": True}, "seq true: booleans are not integers"),
    ("ts_negative", {"ts": -NOW_MS}, "a negative ts"),
    ("ttl_too_short", {"ttl": 9}, "ttl 9 s"),
    ("ttl_too_long", {"ttl": 86_401}, "ttl 86401 s"),
    ("mem_bytes", {"mem": b"\x08"}, "mem as a byte string"),
    ("cpu_not_a_map", {"cpu": [8, 16, "x86_64"]}, "cpu as an array"),
    ("cpu_missing_arch", {"cpu": {"cores": 8, "threads": 16}}, "cpu without arch"),
    ("cores_negative", {"cpu": {"cores": -8, "threads": 16, "arch": "x86_64"}}, "-8 cores"),
    ("arch_too_long", {"cpu": {"cores": 8, "threads": 16, "arch": "a" * 65}},
     "a 65-byte arch"),
    ("arch_multibyte_too_long", {"cpu": {"cores": 8, "threads": 16, "arch": "\u00e9" * 33}},
     "33 characters, 66 bytes"),
    ("gpus_not_array", {"gpus": {"name": "x", "mem": 1}}, "gpus as a map"),
    ("gpus_too_many", {"gpus": [{"name": "g", "mem": 1}] * 17}, "17 GPUs"),
    ("gpu_not_a_map", {"gpus": ["NVIDIA H100"]}, "a GPU as a text string"),
    ("gpu_missing_mem", {"gpus": [{"name": "g"}]}, "a GPU without mem"),
    ("gpu_name_too_long", {"gpus": [{"name": "g" * 65, "mem": 1}]}, "a 65-byte GPU name"),
    ("gpu_mem_negative", {"gpus": [{"name": "g", "mem": -1}]}, "GPU mem -1"),
    ("kinds_too_many", {"kinds": ["k%d" % i for i in range(17)]}, "17 kinds"),
    ("kind_empty", {"kinds": [""]}, "an empty kind"),
    ("kind_too_long", {"kinds": ["k" * 33]}, "a 33-byte kind"),
    ("kind_not_text", {"kinds": [1]}, "a kind that is an integer"),
    ("kinds_repeat", {"kinds": ["matmul", "matmul"]}, "the same kind twice"),
    ("price_not_map", {"price": [["matmul", 1000]]}, "price as an array of pairs"),
    ("price_too_many", {"price": {"k%d" % i: 1 for i in range(17)}}, "17 prices"),
    ("price_negative", {"price": {"matmul": -1}}, "a negative price"),
    ("price_text", {"price": {"matmul": "1000"}}, "a price as text"),
    ("price_key_int", {"price": {1: 1000}}, "a price keyed by an integer"),
    ("price_key_empty", {"price": {"": 1000}}, "a price for the empty kind"),
    ("price_key_too_long", {"price": {"k" * 33: 1000}}, "a price for a 33-byte kind"),
    ("addrs_too_many", {"addrs": ["/ip4/192.0.2.1/tcp/%d" % p for p in range(9)]}, "9 addrs"),
    ("addr_empty", {"addrs": [""]}, "an empty address"),
    ("addr_too_long", {"addrs": ["/dns4/" + "h" * 123]}, "a 129-byte address"),
    ("agent_too_long", {"agent": "x" * 65}, "a 65-byte agent"),
    ("agent_null", {"agent": None, "__add__": {"agent": None}}, "agent null"),
]

UNKNOWN_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown_field", {"region": "eu"}, 'an extra top-level field "region"'),
    ("unknown_int_field", {"__add__": {0: 1}}, "an extra top-level field with key 0"),
    ("unknown_cpu_field", {"cpu": {"cores": 8, "threads": 16, "arch": "x86_64", "ghz": 3}},
     'an extra field "ghz" in cpu'),
    ("unknown_gpu_field", {"gpus": [{"name": "g", "mem": 1, "uuid": "GPU-0"}]},
     'an extra field "uuid" in a GPU'),
    ("order_unknown_before_bad", {"seq": -1, "region": "eu"},
     "an extra field and a bad one: unknown fields of a map are checked before its fields"),
]


def _body_with(changes: dict[str, Any]) -> Any:
    if "__body__" in changes:
        return changes["__body__"]
    b = body(**{k: v for k, v in changes.items() if k != "__add__"})
    for k, v in changes.get("__add__", {}).items():
        b[k] = v
    return b


def _field_failures() -> Iterator[Case]:
    for name, changes, desc in BAD_FIELDS:
        yield _validate(name, seal(_body_with(changes)), reject(Reason.BAD_FIELD), desc,
                        ("CAPS-4",))
    for name, changes, desc in UNKNOWN_FIELDS:
        yield _validate(name, seal(_body_with(changes)), reject(Reason.UNKNOWN_FIELD), desc,
                        ("CAPS-4",))


def _state_failures() -> Iterator[Case]:
    yield _validate("wrong_network", ad(net="mainnet").encode(ALICE),
                    reject(Reason.WRONG_NETWORK), "a mainnet ad on devnet", ("CAPS-5",))
    yield _validate("signer_mismatch", BASE_AD.encode(BOB), reject(Reason.SIGNER_MISMATCH),
                    "bob's ad arriving in a pubsub message from alice", ("CAPS-6",))
    yield _validate("expired", ad(ts=NOW_MS - 20_000, ttl=10).encode(ALICE),
                    reject(Reason.EXPIRED), "a 10 s ad made 20 s ago", ("CAPS-7",))
    yield _validate("expired_at_boundary", ad(ts=NOW_MS - 10_000, ttl=10).encode(ALICE),
                    reject(Reason.EXPIRED), "ts + ttl equals now: expired", ("CAPS-7",))
    yield _validate("clock_skew_future", ad(ts=NOW_MS + SKEW + 1).encode(ALICE),
                    reject(Reason.CLOCK_SKEW), "ts 30.001 s ahead", ("CAPS-7",))
    yield _validate("clock_skew_past", ad(ts=NOW_MS - SKEW - 1).encode(ALICE),
                    reject(Reason.CLOCK_SKEW),
                    "ts 30.001 s behind, though its 180 s ttl has not run out", ("CAPS-7",))
    yield _validate("stale_seq_equal", BASE_AD.encode(ALICE), ignore(Reason.STALE_SEQ),
                    "seq 7 where seq 7 is held", ("CAPS-8",), held={ALICE.peer_id: 7})
    yield _validate("stale_seq_lower", BASE_AD.encode(ALICE), ignore(Reason.STALE_SEQ),
                    "seq 7 where seq 8 is held", ("CAPS-8",), held={ALICE.peer_id: 8})
    # order of the rules (CAPS-9)
    yield _validate("order_field_before_network",
                    seal(body(net="mainnet", ttl=5)), reject(Reason.BAD_FIELD),
                    "a bad ttl on another network: the body is checked first",
                    ("CAPS-9", "CAPS-4"))
    yield _validate("order_network_before_signer", ad(net="mainnet").encode(BOB),
                    reject(Reason.WRONG_NETWORK),
                    "another network and another signer: the network is checked first",
                    ("CAPS-9", "CAPS-5"))
    yield _validate("order_signer_before_expiry", ad(ts=NOW_MS - 20_000, ttl=10).encode(BOB),
                    reject(Reason.SIGNER_MISMATCH),
                    "expired and from another signer: the signer is checked first",
                    ("CAPS-9", "CAPS-6"))
    yield _validate("order_expiry_before_skew", ad(ts=NOW_MS - 60_000, ttl=10).encode(ALICE),
                    reject(Reason.EXPIRED),
                    "expired and outside the skew bound: expiry is reported",
                    ("CAPS-9", "CAPS-7"))
    yield _validate("order_skew_before_seq", ad(ts=NOW_MS + 60_000).encode(ALICE),
                    reject(Reason.CLOCK_SKEW),
                    "from the future and stale: the clock is checked first",
                    ("CAPS-9", "CAPS-7"), held={ALICE.peer_id: 9})


def _step(op: str, now_ms: int, file: str | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"op": op, "now_ms": now_ms}
    if file is not None:
        s["file"] = file
    return s


def _table(name: str, ads: dict[str, bytes], steps: list[dict[str, Any]], desc: str,
           rules: tuple[str, ...]) -> Case:
    return Case(name, Inputs(dict(ads), {"net": NET, "steps": steps}), valid(), desc, rules)


def table() -> Iterator[Case]:
    t0 = NOW_MS
    yield _table("newer_seq_replaces",
                 {"a1.cbor": ad(seq=1).encode(ALICE), "a2.cbor": ad(seq=2, ts=t0 + 1000)
                  .encode(ALICE)},
                 [_step("receive", t0, "a1.cbor"), _step("receive", t0 + 1000, "a2.cbor"),
                  _step("live", t0 + 1000)],
                 "seq 2 replaces seq 1", ("TBL-1", "TBL-2"))
    yield _table("older_seq_refused",
                 {"a2.cbor": ad(seq=2).encode(ALICE), "a1.cbor": ad(seq=1, ts=t0 + 1000)
                  .encode(ALICE)},
                 [_step("receive", t0, "a2.cbor"), _step("receive", t0 + 1000, "a1.cbor")],
                 "seq 1 after seq 2 is stale; the table keeps seq 2", ("TBL-2", "CAPS-8"))
    yield _table("same_ad_twice", {"a.cbor": BASE_AD.encode(ALICE)},
                 [_step("receive", t0, "a.cbor"), _step("receive", t0 + 500, "a.cbor")],
                 "the same ad again is stale", ("TBL-2", "CAPS-8"))
    yield _table("ttl_expiry",
                 {"a.cbor": ad(ttl=10).encode(ALICE)},
                 [_step("receive", t0, "a.cbor"), _step("live", t0 + 9_999),
                  _step("expire", t0 + 9_999), _step("live", t0 + 10_000),
                  _step("expire", t0 + 10_000)],
                 "a 10 s ad is live for 9.999 s; at 10 s it is no longer served, and the "
                 "next sweep removes it", ("TBL-3",))
    yield _table("expired_but_not_swept_still_held",
                 {"a5.cbor": ad(seq=5, ttl=10).encode(ALICE),
                  "a3.cbor": ad(seq=3, ts=t0 + 10_500).encode(ALICE)},
                 [_step("receive", t0, "a5.cbor"), _step("receive", t0 + 10_500, "a3.cbor"),
                  _step("expire", t0 + 10_500), _step("receive", t0 + 10_600, "a3.cbor"),
                  _step("live", t0 + 10_600)],
                 "until the sweep removes an expired entry its seq still counts; after it, "
                 "a lower seq is accepted", ("TBL-3", "TBL-4", "CAPS-8"))
    yield _table("two_signers",
                 {"a.cbor": ad(ttl=10).encode(ALICE), "b.cbor": ad(ttl=60).encode(BOB),
                  "c.cbor": ad(seq=1, ttl=30, ts=t0 + 5_000).encode(CAROL)},
                 [_step("receive", t0, "a.cbor"), _step("receive", t0, "b.cbor"),
                  _step("receive", t0 + 5_000, "c.cbor"), _step("expire", t0 + 20_000),
                  _step("live", t0 + 20_000), _step("expire", t0 + 40_000)],
                 "entries of different signers live and expire independently",
                 ("TBL-1", "TBL-3"))
    yield _table("rejected_ad_changes_nothing",
                 {"a.cbor": BASE_AD.encode(ALICE), "bad.cbor": ad(net="mainnet", seq=9)
                  .encode(ALICE)},
                 [_step("receive", t0, "a.cbor"), _step("receive", t0, "bad.cbor"),
                  _step("live", t0)],
                 "an invalid ad (another network) does not replace the held one",
                 ("TBL-2", "CAPS-9"))


def _rate(name: str, events: list[tuple[str, int]], desc: str) -> Case:
    return Case(name,
                Inputs({"events.json": [{"origin": o, "at_ms": t} for o, t in events]},
                       {"burst": ADS_BURST, "rate_per_s": ADS_RATE_PER_S}),
                valid(), desc, ("RL-1",))


def rate_limit() -> Iterator[Case]:
    yield _rate("burst_then_refill",
                [("A", 0)] * 6 + [("A", 1000), ("A", 2000), ("A", 2000)],
                "5 pass at once, the 6th does not; after 1 s half a token is not enough; "
                "after 2 s one more passes")
    yield _rate("per_origin", [("A", 0)] * 5 + [("B", 0)] * 5 + [("A", 0), ("B", 0)],
                "each origin has its own bucket")
    yield _rate("refill_capped_at_burst", [("A", 0)] + [("A", 600_000)] * 6,
                "after 10 minutes the bucket holds 5 tokens, not 300")
    yield _rate("steady_rate", [("A", 0)] * 5 + [("A", 2000 * i) for i in range(1, 6)],
                "after the burst, one ad every 2 s passes")
    yield _rate("drops_take_no_token", [("A", 0)] * 8 + [("A", 2000)],
                "refused ads do not use up tokens: 2 s after a burst one ad passes")


def _ok(ident: Identity) -> dict[str, Any]:
    return {"result": "valid", "reason": None, "peer_id": ident.peer_id}


def _no(result: str, reason: Reason) -> dict[str, Any]:
    return {"result": result, "reason": reason.value, "peer_id": None}


def _sync(name: str, frames: list[bytes], ads: list[dict[str, Any]], cut: Reason | None,
          desc: str, rules: tuple[str, ...], *, tail: bytes = b"",
          held: dict[str, int] | None = None) -> Case:
    stream = b"".join(encode_frame(f) for f in frames) + tail
    return Case(name, Inputs({"stream.bin": stream},
                             {"net": NET, "now_ms": NOW_MS, "held": held or {}}),
                valid({"answer.json": {"ads": ads, "cut": None if cut is None else cut.value}}),
                desc, rules)


def sync() -> Iterator[Case]:
    a, b = BASE_AD.encode(ALICE), BASE_AD.encode(BOB)
    yield _sync("empty_answer", [], [], None, "a peer that holds nothing", ("SYNC-4",))
    yield _sync("ads_of_other_signers", [a, b], [_ok(ALICE), _ok(BOB)], None,
                "two signers' ads relayed by a third peer: no signer check (CAPS-6 does not "
                "apply)", ("SYNC-5",))
    yield _sync("older_than_skew_bound", [ad(ts=NOW_MS - 90_000).encode(ALICE)],
                [_ok(ALICE)], None,
                "an ad made 90 s ago with 180 s to live: held ads may be older than the skew "
                "bound", ("SYNC-5", "CAPS-7"))
    yield _sync("from_the_future", [ad(ts=NOW_MS + SKEW + 1).encode(ALICE), b],
                [_no("reject", Reason.CLOCK_SKEW), _ok(BOB)], None,
                "ts 30.001 s ahead is still refused; the next ad is checked", ("SYNC-5",))
    yield _sync("future_edge", [ad(ts=NOW_MS + SKEW).encode(ALICE)], [_ok(ALICE)], None,
                "ts exactly 30 s ahead", ("SYNC-5",))
    yield _sync("expired", [ad(ts=NOW_MS - 180_000).encode(ALICE)],
                [_no("reject", Reason.EXPIRED)], None, "ts + ttl equals now", ("SYNC-5",))
    yield _sync("same_signer_twice", [a, a], [_ok(ALICE), _no("ignore", Reason.STALE_SEQ)],
                None, "the second copy meets the seq the first stored", ("SYNC-5", "CAPS-8"))
    yield _sync("stale_against_held", [a], [_no("ignore", Reason.STALE_SEQ)], None,
                "seq 7 where seq 7 is held", ("SYNC-5", "CAPS-8"),
                held={ALICE.peer_id: 7})
    yield _sync("garbage_then_valid", [b"\x1c", a, b""],
                [_no("reject", Reason.MALFORMED), _ok(ALICE), _no("reject", Reason.TRUNCATED)],
                None, "a frame that is not CBOR, and an empty frame, are refused one by one",
                ("SYNC-5", "CAPS-2"))
    forged = cbor.decode(b)
    forged["s"] = bytes(64)
    yield _sync("forged_signature", [cbor.encode(forged), ad(net="mainnet").encode(ALICE)],
                [_no("reject", Reason.BAD_SIGNATURE), _no("reject", Reason.WRONG_NETWORK)],
                None, "a bad signature and another network", ("SYNC-5", "CAPS-3", "CAPS-5"))
    yield _sync("oversized_frame", [a], [_ok(ALICE)], Reason.TOO_LARGE,
                "a length prefix over AD_MAX_SIZE ends the answer; the ads before it count",
                ("SYNC-4",), tail=encode_frame(b"x" * (AD_MAX_SIZE + 1))[:3])
    yield _sync("frame_at_max_size", [b"\x00" * AD_MAX_SIZE], [_no("reject",
                                                                 Reason.TRAILING_BYTES)],
                None, "a frame of exactly AD_MAX_SIZE bytes is read (and then refused as an "
                "ad)", ("SYNC-4",))
    yield _sync("too_many_ads", [b"\x1c"] * (SYNC_MAX_ADS + 1),
                [_no("reject", Reason.MALFORMED)] * SYNC_MAX_ADS, Reason.TOO_LARGE,
                "ad 201 ends the answer; the 200 before it are checked", ("SYNC-4",))
    yield _sync("ends_inside_a_frame", [a], [_ok(ALICE)], Reason.TRUNCATED,
                "the stream ends 1 byte short of the second frame", ("SYNC-4",),
                tail=encode_frame(b)[:-1])


HANDLERS: dict[str, Callable[[], Iterator[Case]]] = {
    "validate": validate, "table": table, "rate_limit": rate_limit, "sync": sync}
