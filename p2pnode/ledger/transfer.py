"""After reconciliation, the elements themselves (spec 07 §7, RCN-8).

    sync.item  {"t": "sync.item", "el": element bytes, "settle": uint}
    sync.ack   {"t": "sync.ack", "n": uint}

The initiator sends the ``extra`` elements (the responder lacks them), then reads the
``missing`` ones and the responder's ``sync.ack``; the responder reads the initiator's
items first, stores them, then sends the wanted ones and the ack: ``n`` counts the items
of the initiator it holds durably, so an initiator knows what was acknowledged. ``settle``
is the epoch the sender settled the element in (LGR-8). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pnode.ledger.elements import MAX_ELEMENT_SIZE
from p2pnode.ledger.reconcile import MAX_SYNC_MESSAGE
from p2pnode.wire import cbor
from p2pnode.wire.fields import bstr, map_exact, text, uint
from p2pnode.wire.reasons import Reason, WireError

T_ITEM = "sync.item"
T_ACK = "sync.ack"
MAX_ITEM_SIZE = MAX_ELEMENT_SIZE + 64
MAX_FRAME = max(MAX_ITEM_SIZE, MAX_SYNC_MESSAGE)
# RCN-8: the elements one session moves each way; the rest waits for the next session.
MAX_SESSION_ITEMS = 2048
MAX_EPOCH = 1 << 40


@dataclass(frozen=True, slots=True)
class Item:
    element: bytes
    settle: int


def encode_item(element: bytes, settle: int) -> bytes:
    return cbor.encode({"t": T_ITEM, "el": element, "settle": settle})


def encode_ack(n: int) -> bytes:
    return cbor.encode({"t": T_ACK, "n": n})


def _open(data: bytes, t: str, keys: frozenset[str]) -> dict[str, object]:
    m = cbor.decode(bytes(data), max_size=MAX_ITEM_SIZE)
    if not isinstance(m, dict) or m.get("t") != t:
        raise WireError(Reason.BAD_STATE, "expected %s" % t)
    text(m["t"], 16, "t")
    return map_exact(m, keys, t)


def decode_item(data: bytes) -> Item:
    m = _open(data, T_ITEM, frozenset({"t", "el", "settle"}))
    settle = uint(m["settle"], "settle")
    if settle > MAX_EPOCH:
        raise WireError(Reason.BAD_FIELD, "settle out of range")
    return Item(bstr(m["el"], "el", max_len=MAX_ELEMENT_SIZE), settle)


def decode_ack(data: bytes, sent: int) -> int:
    m = _open(data, T_ACK, frozenset({"t", "n"}))
    n = uint(m["n"], "n")
    if n > sent:
        raise WireError(Reason.BAD_FIELD, "an ack of %d items, %d were sent" % (n, sent))
    return n
