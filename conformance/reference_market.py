"""Reference handlers for the market machines (spec 04 §3.3, §4, §5, §6): the requester over
its jobs (``jobs/market``), the worker (``jobs/work``), the fetch policy of VER-1
(``jobs/fetch``) and the routing of a first message (``jobs/dispatch``).

Each replays a list of events against the machine and reports every decision and effect,
so another implementation can replay the same steps and compare.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from typing import Any

from conformance.model import Outcome
from p2pnode.identity import peer_id_str
from p2pnode.jobs.market import Await, Decided, Grant, Lease, LeaseState, Refuse, RequesterJob
from p2pnode.jobs.matching import Capacity
from p2pnode.jobs.messages import Drop, JobLease, route
from p2pnode.jobs.model import SignedJob
from p2pnode.jobs.requester import (
    Candidate,
    CheckOutput,
    Finished,
    Offer,
    Persist,
    Provide,
    PutRecord,
    Requester,
)
from p2pnode.jobs.verify import FetchAttempts
from p2pnode.jobs.worker import (
    Execute,
    FetchInputs,
    SendHeartbeat,
    SendResult,
    Stop,
    Work,
    Worker,
)
from p2pnode.jobs.worker import Persist as WorkPersist
from p2pnode.wire.reasons import Reason

Files = Mapping[str, Any]
Params = Mapping[str, Any]


def _capacity(p: Mapping[str, Any]) -> Capacity:
    return Capacity(kinds=frozenset(p["kinds"]), prices=dict(p.get("prices", {})),
                    cores=p["cores"], mem=p["mem"], gpu_mem=p.get("gpu_mem", 0),
                    gpus=p.get("gpus", 0))


def _lease(le: Lease) -> dict[str, Any]:
    return {"lease": le.number, "state": le.state.value, "expires": le.expires,
            "reason": le.reason}


def _decision(d: Any) -> dict[str, Any]:
    if isinstance(d, Refuse):
        return {"decision": "refuse", "reason": d.reason.value}
    if isinstance(d, Grant):
        return {"decision": "lease", "lease": d.lease.number, "expires": d.lease.expires,
                "price": d.lease.price}
    if isinstance(d, Await):
        return {"decision": "await", "lease": d.lease.number}
    if isinstance(d, Decided):
        return {"decision": "verdict", "lease": d.lease.number,
                "accepted": d.lease.state is LeaseState.ACCEPTED, "reason": d.lease.reason}
    return {"decision": "verify", "lease": d.lease.number, "by": d.lease.verify_by}


def _effect(e: Any) -> dict[str, Any]:
    if isinstance(e, Persist | WorkPersist):
        return {"effect": "persist"}
    if isinstance(e, Offer):
        return {"effect": "offer", "worker": e.worker}
    if isinstance(e, CheckOutput):
        return {"effect": "check_output", "lease": e.lease, "by": e.by}
    if isinstance(e, PutRecord):
        return {"effect": "put_record", "key": e.key}
    if isinstance(e, Provide):
        return {"effect": "provide", "key": e.key}
    if isinstance(e, Finished):
        return {"effect": "finished"}
    if isinstance(e, FetchInputs):
        return {"effect": "fetch_inputs"}
    if isinstance(e, Execute):
        return {"effect": "execute", "wall_time_s": e.wall_time_s}
    if isinstance(e, Stop):
        return {"effect": "stop"}
    if isinstance(e, SendHeartbeat):
        return {"effect": "heartbeat", "lease": e.lease, "progress": e.progress}
    if isinstance(e, SendResult):
        return {"effect": "result", "lease": e.lease, "output": e.output.hex(),
                "size": e.size}
    raise TypeError(e)


def market(f: Files, p: Params) -> Outcome:
    """Replay ``events.json`` against a requester holding the job of ``spec.cbor``."""
    sj = SignedJob.open(f["spec.cbor"])
    m = Requester(sj.spec.net, rng=random.Random(0), max_output_bytes=p["max_output_bytes"])
    m.add(RequesterJob.new(sj.id, sj.spec, sj.raw, sj.spec.created), sj.spec.created)
    log: list[dict[str, Any]] = []
    for ev in f["events.json"]:
        op, now = ev["op"], ev["at_ms"]
        entry: dict[str, Any] = {"op": op}
        job_id = bytes.fromhex(ev.get("job", sj.id.hex()))
        effects: list[Any] = []
        if op == "claim":
            cap = _capacity(ev["capacity"]) if ev.get("capacity") else None
            d, effects = m.on_claim(job_id, bytes.fromhex(ev["worker"]), ev["price"], now, cap)
            entry.update(_decision(d))
        elif op == "heartbeat":
            entry.update(_decision(m.on_heartbeat(job_id, bytes.fromhex(ev["worker"]),
                                                  ev["lease"], ev["progress"], now)))
        elif op == "result":
            d, effects = m.on_result(job_id, bytes.fromhex(ev["worker"]), ev["lease"],
                                     bytes.fromhex(ev["output"]), ev["size"], now)
            entry.update(_decision(d))
        elif op == "checked":
            lease, effects = m.on_checked(job_id, ev["lease"], ev["ok"], ev["reason"], now,
                                          ev["checked"])
            if lease is not None:
                entry.update(_decision(Decided(lease)))
        elif op == "tick":
            effects = m.on_timer(now, ev.get("wall_ms", now))
        elif op == "offers":
            table = [Candidate(peer_id_str(bytes.fromhex(c["key"])), bytes.fromhex(c["key"]),
                               _capacity(c)) for c in ev["table"]]
            entry["candidates"] = sorted(m.candidates(m.jobs[sj.id], table, now))
            effects = list(m.offers(table, now))
        elif op == "offer_done":
            m.on_offer_done(sj.id, peer_id_str(bytes.fromhex(ev["worker"])), now, ev["busy"])
        elif op == "query":
            entry["jobs"] = [j.hex() for j in m.on_query(ev["kinds"], ev["class"])]
        elif op == "restart":  # stored, loaded into a fresh machine (XCH-10)
            row = m.jobs[sj.id].to_row()
            m = Requester(sj.spec.net, rng=random.Random(0),
                          max_output_bytes=p["max_output_bytes"])
            effects = m.add(RequesterJob.from_row(sj.id, sj.spec, sj.raw, row), now,
                            resumed=True)
        else:
            raise ValueError(f"unknown event {op!r}")
        entry["effects"] = [_effect(e) for e in effects]
        job = m.jobs[sj.id]
        entry["state"] = job.state.value
        entry["next_deadline"] = m.next_deadline(now, ev.get("wall_ms", now))
        log.append(entry)
    job = m.jobs[sj.id]
    return Outcome("valid", outputs={"steps.json": log, "job.json": {
        "state": job.state.value, "rejected": job.rejected,
        "leases": [_lease(le) for le in sorted(job.leases.values(), key=lambda x: x.number)]}})


def work(f: Files, p: Params) -> Outcome:
    """Replay ``events.json`` against a worker offered the job of ``spec.cbor``."""
    sj = SignedJob.open(f["spec.cbor"])
    me = bytes.fromhex(p["key"])
    w = Worker(p["net"], me, _capacity(p["profile"]), p["profile"]["concurrency"],
               wall_time_s=p["wall_time_s"])
    log: list[dict[str, Any]] = []
    for ev in f["events.json"]:
        op, now = ev["op"], ev["at_ms"]
        entry: dict[str, Any] = {"op": op}
        effects: list[Any] = []
        if op == "offer":
            price, why = w.take(sj, now, sj.spec.deadline)
            entry.update({"decision": "claim", "price": price} if why is None
                         else {"decision": "refuse", "reason": why.value})
        elif op in ("lease", "renewal"):
            lease = JobLease(net=p["net"], job=bytes.fromhex(ev.get("job", sj.id.hex())),
                             worker=bytes.fromhex(ev.get("worker", p["key"])),
                             lease=ev["lease"], expires=ev["expires"], price=ev["price"])
            signer = bytes.fromhex(ev.get("signer", sj.requester.hex()))
            held = w.work[sj.id].lease if op == "renewal" else None
            why = w.lease_problem(sj, signer, lease, held)
            entry["check"] = why.value if why else "ok"
            if op == "lease":
                effects = w.on_claim_answer(sj.id, None if why else lease, lease.expires, now)
            else:
                effects = w.on_heartbeat_answer(sj.id, None if why else lease.expires, False,
                                                now)
        elif op == "listed":
            why = w.listing_problem(sj, bytes.fromhex(ev["provider"]),
                                    bytes.fromhex(ev["list_signer"]))
            entry["check"] = why.value if why else "ok"
        elif op == "claim_refused":
            effects = w.on_claim_answer(sj.id, None, 0, now)
        elif op == "inputs":
            effects = w.on_inputs(sj.id, ev["ok"], ev.get("detail", ""), now)
        elif op == "executed":
            out = bytes.fromhex(ev["output"]) if ev.get("output") else None
            effects = w.on_executed(sj.id, out, ev.get("size", 0), {}, ev.get("reason", ""),
                                    now)
        elif op == "heartbeat_refused":
            effects = w.on_heartbeat_answer(sj.id, None, True, now)
        elif op == "heartbeat_failed":
            effects = w.on_heartbeat_answer(sj.id, None, False, now)
        elif op == "result_answer":
            effects = w.on_result_answer(sj.id, ev.get("accepted"), ev.get("refused"), now)
        elif op == "tick":
            effects = w.on_timer(now)
        elif op == "restart":  # stored, loaded into a fresh machine (WRK-9)
            held = copy.deepcopy(w.work[sj.id])
            w = Worker(p["net"], me, _capacity(p["profile"]), p["profile"]["concurrency"],
                       wall_time_s=p["wall_time_s"])
            effects = w.resume(Work(job=sj, state=held.state, lease=held.lease,
                                    price=held.price, expires=held.expires,
                                    budget_end=held.budget_end), now)
        else:
            raise ValueError(f"unknown event {op!r}")
        entry["effects"] = [_effect(e) for e in effects]
        held_work = w.work.get(sj.id)
        entry["state"] = held_work.state.value if held_work else None
        entry["free"] = w.free
        entry["next_deadline"] = w.next_deadline()
        log.append(entry)
    return Outcome("valid", outputs={"steps.json": log})


def fetch(f: Files, p: Params) -> Outcome:
    """VER-1: the decision after each failed fetch, in order, until one ends it."""
    attempts = FetchAttempts()
    out = []
    for r in p["failures"]:
        what, reason = attempts.on_failure(Reason(r))
        out.append({"failure": r, "then": what})
        if what == "reject":
            return Outcome("reject", reason.value, outputs={"decisions.json": out})
    return Outcome("valid", outputs={"decisions.json": out})


def dispatch(f: Files, p: Params) -> Outcome:
    """XCH-2 to XCH-4: where the first message of an exchange goes, or why it is dropped."""
    r = route(f["first.cbor"], bytes.fromhex(p["remote"]), net=p["net"])
    if isinstance(r, Drop):
        return Outcome("reject", r.reason.value)
    return Outcome("valid", outputs={"route.json": {"side": r.side,
                                                    "t": r.received.msg.T}})


HANDLERS = {"jobs/market": market, "jobs/work": work, "jobs/fetch": fetch,
            "jobs/dispatch": dispatch}
