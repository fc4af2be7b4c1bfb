"""The fraud proof a lost dispute leaves: one wrong checkpoint (spec 06 §3, FRD-10..FRD-12).

    fraud.proof v1, kind "wasm.segment", signed by whoever reports it:
      net, spec, result, ts   as for "matmul.row" (FRD-1 .. FRD-3)
      module, input           the blobs the step job names
      index                   the wrong entry of the cheater's chain
      claimed, path           that entry, and its audit path to the chain's root
      prior, prior_path       the entry before it and its path (empty for index 0)
      state                   the state that entry commits to (DSP-3's blob; empty for 0)

Anyone checks one by re-running a single segment: restore ``state`` (it must hash to
``prior``, which the cheater signed), run to the next checkpoint of WSM-3 (for index 0:
instantiate and ``init``), and find another entry than ``claimed``. The replay is bounded by
``MAX_SEGMENT_FUEL``; a proof whose segment needs more is not checked (``limit_exceeded``).
Pure but for wasmtime: no I/O, the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from p2pnode.identity import Identity
from p2pnode.jobs.model import SignedJob
from p2pnode.proofs import rows
from p2pnode.proofs.bisect import ENTRY_SIZE, Claim, Entry
from p2pnode.wire import envelope
from p2pnode.wire.cid import cid_of
from p2pnode.wire.fields import bstr, hashes, uint
from p2pnode.wire.reasons import Reason, WireError

if TYPE_CHECKING:
    from p2pnode.proofs.wasm_step import State

KIND_WASM_SEGMENT = "wasm.segment"
KEYS = frozenset({"net", "kind", "spec", "result", "module", "input", "index", "claimed",
                  "path", "prior", "prior_path", "state", "ts"})
# FRD-12: the most fuel a node spends replaying one proof's segment (about 0.1 s here).
MAX_SEGMENT_FUEL = 1 << 24


@dataclass(frozen=True, slots=True)
class Opened:
    """One party's answer at an index: the entry bytes and their path."""

    entry: bytes
    path: tuple[bytes, ...]


def build(identity: Identity, net: str, spec_raw: bytes, result_raw: bytes, module: bytes,
          data: bytes, index: int, claimed: Opened, prior: Opened | None, state: bytes,
          ts: int, max_size: int) -> bytes | None:
    """A ``wasm.segment`` proof; None when it would exceed ``max_size`` (FRD-8)."""
    if len(module) + len(data) + len(state) + len(spec_raw) + len(result_raw) > max_size:
        return None
    body = {"net": net, "kind": KIND_WASM_SEGMENT, "spec": spec_raw, "result": result_raw,
            "module": module, "input": data, "index": index, "claimed": claimed.entry,
            "path": list(claimed.path), "prior": prior.entry if prior else b"",
            "prior_path": list(prior.path) if prior else [], "state": state, "ts": ts}
    raw = envelope.seal(identity, "fraud.proof", 1, body)
    return raw if len(raw) <= max_size else None


def _bad(detail: str) -> WireError:
    return WireError(Reason.BAD_PROOF, detail)


def _opened(entry: bytes, path: Sequence[bytes], index: int, chain: Claim) -> Entry:
    e = Entry.decode(entry)
    if e is None or not rows.verify_path(rows.leaf_hash(entry), index, chain.count, path,
                                         chain.root):
        raise _bad(f"entry {index} is not the committed one")
    return e


def check(m: dict[str, Any], job: SignedJob, chain: Claim) -> None:
    """FRD-10 .. FRD-12 for a body ``m`` whose job and signed chain FRD-2 opened; returns
    when the claimed entry is wrong, else raises WireError with the reason."""
    from p2pnode.proofs import wasm_step, wasm_subset

    spec = job.spec
    interval = spec.param("checkpoint_fuel")
    if spec.kind != "wasm" or not isinstance(interval, int) or isinstance(interval, bool) \
            or interval < 1:
        raise _bad("not a step job")
    fuel = spec.param("fuel", 1 << 62)
    if not isinstance(fuel, int) or isinstance(fuel, bool) or fuel < 1:
        raise _bad("the job's fuel is not a positive integer")
    inputs = dict(spec.inputs)
    module, data = bstr(m["module"], "module"), bstr(m["input"], "input")
    if cid_of(module) != inputs.get("module") or cid_of(data) != inputs.get("input"):
        raise WireError(Reason.HASH_MISMATCH, "the module or input is not the job's")
    # FRD-11: the claimed entry, and the one before it with its state, are committed.
    i = uint(m["index"], "index")
    if i >= chain.count:
        raise _bad("no such entry")
    claimed = _opened(bstr(m["claimed"], "claimed", size=ENTRY_SIZE),
                      hashes(m["path"], rows.MAX_PATH, "path"), i, chain)
    prior_raw, state_raw = bstr(m["prior"], "prior"), bstr(m["state"], "state")
    prior_path = hashes(m["prior_path"], rows.MAX_PATH, "prior_path")
    try:
        names = tuple(wasm_subset.check(module).mutable_globals)
    except WireError as e:
        raise _bad(f"not a step module: {e.detail}") from e
    start: wasm_step.State | None = None
    if i == 0:
        if prior_raw or prior_path or state_raw:
            raise _bad("entry 0 has no prior entry or state")
    else:
        prior = _opened(prior_raw, prior_path, i - 1, chain)
        if prior.done:
            raise _bad("the prior entry is the last")
        try:
            decoded = wasm_step.State.decode(state_raw, names)
        except WireError as e:
            raise _bad(f"the state: {e.detail}") from e
        start = wasm_step.State(prior.fuel, False, decoded.globals, decoded.memory)
        if start.digest() != prior.digest:
            raise _bad("the state is not the one the prior entry commits to")
    # FRD-12: and the replay of the segment gives another entry.
    if replay(module, fuel, data, interval, start) == claimed:
        raise _bad("the entry is right")


def replay(module: bytes, fuel: int, data: bytes, interval: int, start: State | None,
           budget: int = MAX_SEGMENT_FUEL) -> Entry | None:
    """The segment's end, or None when the run cannot reach it within the job's fuel (or
    traps): then no such entry exists and any claim of one is wrong. Each part of the
    replay (instantiation and ``init``, then the segment) gets ``budget`` fuel; beyond it,
    ``limit_exceeded``."""
    import wasmtime

    from p2pnode.proofs.wasm_step import StepRun

    run: StepRun | None = None
    try:
        run = StepRun(module, fuel, budget=budget)
        run.start(data)
        if start is None:
            return run.entry()
        try:
            run.restore(start)
        except (ValueError, wasmtime.WasmtimeError) as e:
            raise _bad(f"the state does not fit the module: {e}") from e
        run.cap(budget)
        while True:
            run.step()
            if run.done or run.fuel - start.fuel >= interval:
                return run.entry()
    except wasmtime.Trap as trap:
        if trap.trap_code is wasmtime.TrapCode.OUT_OF_FUEL and \
                (run is None or run.budget_bound):
            raise WireError(Reason.LIMIT_EXCEEDED,
                            f"the segment needs more than {budget} fuel") from trap
        return None
    except wasmtime.WasmtimeError:
        return None
    except WireError as e:
        if e.reason in (Reason.LIMIT_EXCEEDED, Reason.BAD_PROOF):
            raise
        raise _bad(f"not a step module: {e.detail}") from e
