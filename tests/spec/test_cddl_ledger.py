"""The ledger schema (spec/schemas/ledger.cddl) against real elements and sync messages of the
reference code and against the conformance vectors (spec 07 §2, §7).

The helpers and pycddl's gaps are those of test_cddl.py. Two of them concern the choices
``LedgerElement`` and ``SyncMessage``: a choice lets any non-empty array through, and a map
with the keys of one alternative and an extra key; so what the schema must refuse is checked
against the alternative it would be (``Credit`` or ``Slash``; the rule of its ``t``), and the
choices only against what they must accept. (pycddl does not apply a generic rule inside
an array, so a want's ids are the non-generic ``Hash32`` of jobs.cddl.)
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from conformance import runner
from conformance.cases.common import ALICE, BOB, CAROL, NET, NOW_MS
from conformance.cases.ledger import _slash_of, sync_keys
from conformance.cases.proofs import _fraud_body
from p2pnode.ledger import elements, reconcile, samples, transfer
from p2pnode.wire import cbor
from tests.spec.test_cddl import conforms
from tests.spec.test_cddl_jobs import TEXT, map_keys

MESSAGE_RULES = {
    "sync.hello": "SyncHello", "sync.same": "SyncSame", "sync.symbols": "SyncSymbols",
    "sync.more": "SyncMore", "sync.want": "SyncWant", "sync.end": "SyncEnd",
    "sync.item": "SyncItem", "sync.ack": "SyncAck",
}


def _one_line_keys(rule: str) -> set[str]:
    m = re.search(r"^%s = \{ (.*) \}$" % rule, TEXT, re.M)
    assert m, rule
    return set(re.findall(r"(\w+):", m.group(1)))


def test_rule_keys_are_the_references() -> None:
    assert map_keys("Credit") == {"receipt", "job"}
    assert map_keys("Slash") == {"fraud"}
    for t, keys in reconcile._KEYS.items():
        assert _one_line_keys(MESSAGE_RULES[t]) == set(keys), t
    assert _one_line_keys("SyncItem") == {"t", "el", "settle"}
    assert _one_line_keys("SyncAck") == {"t", "n"}
    assert set(MESSAGE_RULES) == {*reconcile._KEYS, transfer.T_ITEM, transfer.T_ACK}


@pytest.mark.parametrize("price, ts", [(0, 0), (900, NOW_MS), ((1 << 34) - 1, NOW_MS + 30_000)])
def test_credits_match(price: int, ts: int) -> None:
    data = samples.credit(ALICE, NET, BOB.public_key, price, ts, price % 7)
    elements.open_element(data, net=NET, now_ms=NOW_MS)  # the reference takes it
    assert conforms("LedgerElement", data)
    assert conforms("Credit", data)
    assert not conforms("Slash", data)


def test_a_slash_matches() -> None:
    data = _slash_of(_fraud_body(), CAROL)
    assert elements.open_element(data, net=NET, now_ms=NOW_MS).kind is elements.Kind.SLASH
    assert conforms("LedgerElement", data)
    assert conforms("Slash", data)
    assert conforms("Slash", elements.slash(b"x"))  # the shape only: fraud is a byte string
    assert not conforms("Slash", elements.slash(b""))
    assert not conforms("Slash", cbor.encode({"fraud": "x"}))


def _session_messages() -> list[bytes]:
    shared = sync_keys(10)
    out: list[bytes] = []
    for ki, kr in ((shared, shared), (shared + sync_keys(30, "i"), shared + sync_keys(30, "r"))):
        out += [m for _, m in reconcile.run_session(ki, kr).transcript]
    el = samples.credit(ALICE, NET, BOB.public_key, 900, NOW_MS, 1)
    return [*out, transfer.encode_item(el, NOW_MS // 3_600_000), transfer.encode_ack(1)]


def test_every_sync_message_of_a_session_matches() -> None:
    seen = set()
    for data in _session_messages():
        t = cbor.decode(data)["t"]
        seen.add(t)
        assert conforms("SyncMessage", data), t
        assert conforms(MESSAGE_RULES[t], data), t
        for other, rule in MESSAGE_RULES.items():
            if other != t:
                assert not conforms(rule, data), (t, rule)
    assert seen == set(MESSAGE_RULES)


def element_conforms(data: bytes) -> bool:
    """Whether ``data`` is a ``LedgerElement``: one of its alternatives (the choice gaps)."""
    return conforms("Credit", data) or conforms("Slash", data)


def message_conforms(data: bytes) -> bool:
    """Whether ``data`` is a ``SyncMessage``: the rule of its ``t`` (the choice gaps)."""
    v = cbor.decode(data)
    t = v.get("t") if isinstance(v, dict) else None
    rule = MESSAGE_RULES.get(t) if isinstance(t, str) else None
    return rule is not None and conforms(rule, data)


def test_pycddl_choice_gaps_for_the_ledger() -> None:
    good = cbor.decode(samples.credit(ALICE, NET, BOB.public_key, 900, NOW_MS, 1))
    mixed = cbor.encode({"job": good["job"], "fraud": b"x"})
    assert conforms("LedgerElement", mixed) and not element_conforms(mixed)
    array = cbor.encode(["sync.hello", 3])
    assert conforms("SyncMessage", array) and not message_conforms(array)


@pytest.mark.parametrize("value", [
    {"t": "sync.hello", "n": 3, "fp": bytes(15)},  # fp of 15 bytes
    {"t": "sync.hello", "n": -1, "fp": bytes(16)},
    {"t": "sync.hello", "n": 3, "fp": bytes(16), "v": 1},  # an extra key
    {"t": "sync.bye"},
    {"t": "sync.symbols", "from": 0, "sym": b"", "cnt": []},
    {"t": "sync.symbols", "from": 0, "sym": bytes(40 * 4097), "cnt": [0] * 4097},
    {"t": "sync.want", "ids": []},
    {"t": "sync.want", "ids": [bytes(31)]},
    {"t": "sync.want", "ids": [bytes(32)] * 1025},
    {"t": "sync.item", "el": b"x", "settle": 1, "from": 2},
    {"t": "sync.ack"},
    ["sync.hello", 3, bytes(16)],
])
def test_malformed_sync_messages_are_refused(value: Any) -> None:
    assert not message_conforms(cbor.encode(value))


def test_malformed_elements_are_refused() -> None:
    good = cbor.decode(samples.credit(ALICE, NET, BOB.public_key, 900, NOW_MS, 1))
    for value in ({**good, "memo": b"x"}, {"job": good["job"]}, {}, [good["receipt"]],
                  {"job": good["job"], "fraud": b"x"}, {"fraud": b"x", "ts": 1},
                  {"receipt": good["receipt"], "job": bytes(8193)},
                  {"receipt": bytes(513), "job": good["job"]}):
        assert not element_conforms(cbor.encode(value)), value


def test_element_vectors_against_the_schema() -> None:
    checked = 0
    for v in runner.load(runner.DEFAULT_VECTORS, "ledger/element/"):
        shape_ok = v.meta["expected"].get("reason") not in ("unknown_field", "bad_field",
                                                             "too_large")
        assert element_conforms(v.inputs["element.cbor"]) == shape_ok, v.id
        if shape_ok:
            assert conforms("LedgerElement", v.inputs["element.cbor"]), v.id
        checked += 1
    assert checked >= 20


# The sync_message vectors whose message the schema refuses; every other one has the shape of
# a SyncMessage (its refusal, if any, rests on the session or on a bound stated in prose).
REFUSED_BY_SCHEMA = {"unknown_type", "fp_of_15_bytes", "hello_n_negative", "hello_extra_key",
                     "not_a_map", "want_empty"}


def test_sync_vectors_against_the_schema() -> None:
    names = set()
    for v in runner.load(runner.DEFAULT_VECTORS, "ledger/sync_message/"):
        name = v.id.rsplit("/", 1)[1]
        names.add(name)
        messages = [bytes.fromhex(m) for m in v.meta["params"]["prefix"]]
        if v.meta["expected"]["result"] == "valid":
            messages += [bytes.fromhex(m) for m in v.outputs["replies.json"]]
        assert message_conforms(v.inputs["message.cbor"]) == (name not in REFUSED_BY_SCHEMA), \
            v.id
        for m in messages:
            assert message_conforms(m) and conforms("SyncMessage", m), v.id
    assert names >= REFUSED_BY_SCHEMA
    for v in runner.load(runner.DEFAULT_VECTORS, "ledger/session/"):
        for step in v.outputs["transcript.json"]:
            data = bytes.fromhex(step["cbor"])
            assert message_conforms(data) and conforms("SyncMessage", data), v.id
