"""The reference implementation behind the conformance handlers.

Each handler takes the input files and parameters of one vector and answers with an
:class:`Outcome`, using nothing but the public core API of ``p2pnode``. The generator runs the
same handlers to check every case before it writes it, the runner calls them in-process, and
``python -m conformance.adapter`` serves them over the adapter protocol (README.md). The
handlers of frames, jobs, matrices and blobs are in ``reference_jobs.py``, those of the
proofs and the ledger in ``reference_proofs.py`` and ``reference_ledger.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from conformance import (
    files,
    reference_chain,
    reference_jobs,
    reference_ledger,
    reference_market,
    reference_proofs,
)
from conformance.jsonform import from_json, to_json
from conformance.model import Outcome
from p2pnode.caps.sync import AnswerReader
from p2pnode.caps.table import CapTable, validate_ad
from p2pnode.identity import (
    Identity,
    b58encode,
    peer_id_bytes,
    peer_id_str,
    public_key_from_peer_id,
)
from p2pnode.ratelimit import PeerRateLimiter
from p2pnode.wire import cbor, envelope
from p2pnode.wire.reasons import Accept, Ignore, Reject, WireError

Files = Mapping[str, Any]
Params = Mapping[str, Any]
Handler = Callable[[Files, Params], Outcome]


def _rejected(e: WireError) -> Outcome:
    return Outcome("reject", e.reason.value)


def cbor_decode(f: Files, p: Params) -> Outcome:
    try:
        value = cbor.decode(f["input.cbor"], max_size=p.get("max_size", cbor.MAX_MESSAGE_SIZE))
    except WireError as e:
        return _rejected(e)
    return Outcome("valid", outputs={"decoded.json": to_json(value)})


def cbor_encode(f: Files, p: Params) -> Outcome:
    try:
        data = cbor.encode(from_json(f["value.json"]))
    except WireError as e:
        return _rejected(e)
    return Outcome("valid", outputs={"encoded.cbor": data})


def peer_id(f: Files, p: Params) -> Outcome:
    ident = Identity(bytes.fromhex(f["seed.txt"]))
    pk = ident.public_key
    return Outcome("valid", outputs={
        "public_key.txt": pk.hex(),
        "peer_id.bin": peer_id_bytes(pk),
        "peer_id.txt": peer_id_str(pk),
    })


def peer_id_decode(f: Files, p: Params) -> Outcome:
    try:
        pk = public_key_from_peer_id(f["peer_id.bin"])
    except WireError as e:
        return _rejected(e)
    return Outcome("valid", outputs={
        "public_key.txt": pk.hex(),
        "peer_id.txt": b58encode(f["peer_id.bin"]),
    })


def envelope_open(f: Files, p: Params) -> Outcome:
    try:
        env = envelope.open_envelope(f["input.cbor"], expected_type=p.get("expected_type"))
    except WireError as e:
        return _rejected(e)
    return Outcome("valid", outputs={"envelope.json": {
        "t": env.t,
        "v": str(env.v),
        "k": env.signer.hex(),
        "s": env.sig.hex(),
        "peer_id": env.signer_peer_id,
        "content_id": env.content_id.hex(),
        "body": to_json(env.body),
    }})


def envelope_seal(f: Files, p: Params) -> Outcome:
    ident = Identity(bytes.fromhex(p["seed"]))
    body = from_json(f["body.json"])
    t, v = p["t"], p["v"]
    return Outcome("valid", outputs={
        "signing_input.bin": envelope.signing_input(t, v, cbor.encode(body)),
        "envelope.cbor": envelope.seal(ident, t, v, body),
    })


def _verdict_outcome(verdict: Accept | Reject | Ignore) -> Outcome:
    if isinstance(verdict, Accept):
        return Outcome("valid")
    return Outcome("reject" if isinstance(verdict, Reject) else "ignore", verdict.reason.value)


def caps_validate(f: Files, p: Params) -> Outcome:
    held: Mapping[str, int] = p.get("held", {})
    source = p.get("source")
    verdict, validated = validate_ad(
        f["input.cbor"],
        net=p["net"],
        now_ms=p["now_ms"],
        source=bytes.fromhex(source) if source is not None else None,
        held_seq=held.get,
    )
    out = _verdict_outcome(verdict)
    if validated is None:
        return out
    return Outcome("valid", outputs={"accepted.json": {
        "peer_id": validated.peer_id,
        "body": to_json(validated.ad.to_body()),
    }})


def caps_table(f: Files, p: Params) -> Outcome:
    """Replay ``steps`` against an empty table: receive an ad, expire, or list live ads.

    ``table.json`` lists what the table holds after the last step, expired entries that no
    ``expire`` step has removed included (they still count for CAPS-8).
    """
    table = CapTable()
    seen: set[str] = set()
    log: list[dict[str, Any]] = []
    for step in p["steps"]:
        now = step["now_ms"]
        if step["op"] == "receive":
            verdict, validated = validate_ad(
                f[step["file"]], net=p["net"], now_ms=now, source=None,
                held_seq=table.held_seq)
            if validated is not None:
                table.update(validated.peer_id, validated.ad, now)
                seen.add(validated.peer_id)
            o = _verdict_outcome(verdict)
            log.append({"op": "receive", "result": o.result, "reason": o.reason})
        elif step["op"] == "expire":
            log.append({"op": "expire", "removed": sorted(table.expire(now))})
        elif step["op"] == "live":
            log.append({"op": "live", "peers": sorted(e.peer_id for e in table.live(now))})
        else:
            raise ValueError(f"unknown step {step['op']!r}")
    held = [e for pid in sorted(seen) if (e := table.get(pid)) is not None]
    return Outcome("valid", outputs={
        "steps.json": log,
        "table.json": [{"peer_id": e.peer_id, "seq": str(e.ad.seq),
                        "expires_at_ms": str(e.ad.expires_at_ms())} for e in held],
    })


def caps_sync(f: Files, p: Params) -> Outcome:
    """Read a held-ads answer (SYNC-4) and check each ad (SYNC-5) against ``held``, which
    every valid ad updates."""
    held: dict[str, int] = dict(p.get("held", {}))
    reader = AnswerReader()
    frames = reader.feed(f["stream.bin"])
    reader.finish()
    cut = None if reader.error is None else reader.error.reason.value
    ads = []
    for data in frames:
        verdict, validated = validate_ad(data, net=p["net"], now_ms=p["now_ms"], source=None,
                                         held_seq=held.get, synced=True)
        o = _verdict_outcome(verdict)
        if validated is not None:
            held[validated.peer_id] = validated.ad.seq
        ads.append({"result": o.result, "reason": o.reason,
                    "peer_id": validated.peer_id if validated is not None else None})
    return Outcome("valid", outputs={"answer.json": {"ads": ads, "cut": cut}})


def rate_limit(f: Files, p: Params) -> Outcome:
    limiter = PeerRateLimiter(rate=p["rate_per_s"], burst=p["burst"])
    decisions = [limiter.allow(ev["origin"], ev["at_ms"] / 1000) for ev in f["events.json"]]
    return Outcome("valid", outputs={"decisions.json": decisions})


HANDLERS: dict[str, Handler] = {
    "encoding/cbor": cbor_decode,
    "encoding/cbor_encode": cbor_encode,
    "identity/peer_id": peer_id,
    "identity/peer_id_decode": peer_id_decode,
    "envelope/open": envelope_open,
    "envelope/seal": envelope_seal,
    "caps/validate": caps_validate,
    "caps/table": caps_table,
    "caps/rate_limit": rate_limit,
    "caps/sync": caps_sync,
    **reference_jobs.HANDLERS,
    **reference_market.HANDLERS,
    **reference_proofs.HANDLERS,
    **reference_ledger.HANDLERS,
    **reference_chain.HANDLERS,
}


def run(handler: str, f: Files, p: Params) -> Outcome:
    return HANDLERS[handler](f, p)


def handle(request: Mapping[str, Any]) -> dict[str, Any]:
    """Answer one adapter-protocol request (README.md, "Adapter protocol")."""
    handler = request["handler"]
    if handler not in HANDLERS:
        return {"id": request.get("id"), "unsupported": True}
    f = {name: files.from_wire(name, v) for name, v in request["inputs"].items()}
    out = run(handler, f, request.get("params", {}))
    return {
        "id": request.get("id"),
        "result": out.result,
        "reason": out.reason,
        "outputs": {name: files.to_wire(name, v) for name, v in out.outputs.items()},
    }
