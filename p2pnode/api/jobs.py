"""Admin API commands of the job market: ``job.submit``, ``job.list``, ``job.show``.

``job.submit`` takes the keys of a job file (docs/jobs.md), with paths already absolute:

    kind          "matmul" | "wasm"
    count         how many jobs to submit (each gets fresh random inputs for matmul)
    n             matmul: inputs are random int8 n x n matrices a and b
    inputs        {name: path}: explicit input files (matmul: a and b in the matrix format)
    module        wasm: path to a .wasm or .wat file, or "example:NAME"
    input         wasm: path of the input bytes (default: empty)
    params        {name: int | str}: kind-specific parameters (e.g. fuel for wasm)
    requirements  {cores, mem_mib, gpu_mem_mib, gpu}
    max_price, deadline_s, lease_s, redundancy
    soundness_bits  matmul: the soundness of Freivalds' test, 40..128 (spec 06 PRF-4)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import trio

from p2pnode.api.views import find_job, job_detail, job_summary
from p2pnode.jobs.market import JobState
from p2pnode.jobs.model import Requirements

MAX_COUNT = 10_000


class JobArgsError(ValueError):
    pass


def _int(args: dict[str, Any], key: str, default: int | None = None, lo: int = 0,
         hi: int = 1 << 62) -> int | None:
    v = args.get(key, default)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise JobArgsError(f"{key} must be an integer in [{lo}, {hi}]")
    return v


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise JobArgsError(f"cannot read {what} {path}: {e.strerror}") from e


def check_matmul_size(n: int, max_blob_bytes: int) -> None:
    """Refuse a matmul whose int64 output could not travel as one blob."""
    out = n * n * 8
    if out > max_blob_bytes:
        raise JobArgsError(
            f"matmul n={n} makes a {out >> 20} MiB output, over the {max_blob_bytes >> 20} MiB "
            "blob limit ([jobs] max_blob_bytes)")


def build_inputs(args: dict[str, Any]) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Input blobs and params of one job from submit args (fresh random data each call)."""
    from p2pnode.jobs import tensors

    kind = args.get("kind")
    params = dict(args.get("params") or {})
    inputs: dict[str, bytes] = {}
    for name, path in (args.get("inputs") or {}).items():
        inputs[str(name)] = _read(str(path), f"input {name}")
    if kind == "matmul":
        if "a" not in inputs or "b" not in inputs:
            n = _int(args, "n", 256, 1, 1 << 16)
            assert n is not None
            seed = os.urandom(16)
            inputs["a"] = tensors.encode_matrix(tensors.random_int8_matrix(n, n, seed + b"a"))
            inputs["b"] = tensors.encode_matrix(tensors.random_int8_matrix(n, n, seed + b"b"))
    elif kind == "wasm":
        if "module" not in inputs:
            module = args.get("module") or "example:sum"
            inputs["module"] = load_module(str(module))
        if "input" not in inputs:
            inputs["input"] = _read(str(args["input"]), "input") if args.get("input") else b""
        if args.get("fuel") is not None:
            params["fuel"] = _int(args, "fuel", None, 1)
    else:
        raise JobArgsError(f"unknown job kind {kind!r}; known: matmul, wasm")
    return inputs, params


def load_module(ref: str) -> bytes:
    from p2pnode.jobs import wasm_examples
    from p2pnode.jobs.executors import wasm

    if ref.startswith("example:"):
        try:
            return wasm_examples.example_module(ref.split(":", 1)[1])
        except (FileNotFoundError, KeyError, ValueError) as e:
            raise JobArgsError(f"no example module {ref}") from e
    data = _read(ref, "module")
    if ref.endswith(".wat"):
        return wasm.compile_wat(data.decode())
    return data


def _verify(args: dict[str, Any]) -> dict[str, Any]:
    """The job's ``verify`` map (spec 06 PRF-4): ``soundness_bits`` -> ``{"bits": n}``."""
    bits = _int(args, "soundness_bits", None, 40, 128)
    return {} if bits is None else {"bits": bits}


def requirements(args: dict[str, Any]) -> Requirements:
    r = args.get("requirements") or {}
    if not isinstance(r, dict):
        raise JobArgsError("requirements must be a table")
    return Requirements(cores=_int(r, "cores", 1, 0) or 0,
                        mem=(_int(r, "mem_mib", 0, 0) or 0) << 20,
                        gpu_mem=(_int(r, "gpu_mem_mib", 0, 0) or 0) << 20,
                        gpu=bool(r.get("gpu", False)))


def job_handlers(node: Any) -> dict[str, Any]:
    async def submit(args: dict[str, Any]) -> Any:
        market = node.market
        count = _int(args, "count", 1, 1, MAX_COUNT) or 1
        req = requirements(args)
        if args.get("kind") == "matmul" and not args.get("inputs"):
            check_matmul_size(_int(args, "n", 256, 1, 1 << 16) or 1,
                              node.config.jobs_max_blob_bytes)
        out = []
        for _ in range(count):
            # Input files are read (and matrices made) off the event loop.
            inputs, params = await trio.to_thread.run_sync(build_inputs, args)
            job = await market.requester.submit(
                str(args["kind"]), inputs, params, req,
                max_price=_int(args, "max_price", None),
                deadline_s=_int(args, "deadline_s", None, 1, 7 * 86400),
                lease_s=_int(args, "lease_s", None, 2, 3600),
                redundancy=_int(args, "redundancy", 1, 1, 8) or 1,
                verify=_verify(args))
            out.append(job_summary(job, node.blobs))
        return out

    async def list_(args: dict[str, Any]) -> Any:
        market = node.market
        states = set(args.get("states") or [])
        jobs = [job_summary(j, node.blobs) for j in market.jobs.values()
                if not states or j.state.value in states]
        counts = {s.value: 0 for s in JobState}
        for j in market.jobs.values():
            counts[j.state.value] += 1
        return {"jobs": jobs, "counts": counts, "work": market.worker.summary()}

    async def show(args: dict[str, Any]) -> Any:
        try:
            job = find_job(node.market.jobs, str(args.get("id", "")))
        except KeyError as e:
            raise JobArgsError(str(e.args[0])) from e
        d = job_detail(job, node.blobs, node.peer_id)
        from p2pnode.wire.cid import cid_of

        raws = await trio.to_thread.run_sync(node.store.receipts, job.id)
        d["receipts"] = [{"id": cid_of(r).hex(), "raw": r.hex()} for r in raws]
        return d

    return {"job.submit": submit, "job.list": list_, "job.show": show}
