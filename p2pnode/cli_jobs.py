"""``p2pnode job``: submit, list and show jobs through the running node's admin API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from p2pnode.cli_common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    ask,
    print_json,
    table,
)
from p2pnode.config import ConfigError


def _inside_job_dir(base: Path, job_file: str, key: str, value: str) -> str:
    """``value`` resolved against the job file's directory ``base``, symlinks included; a
    UsageError unless the result lies in ``base`` or below (docs/jobs.md)."""
    target = (base / value).resolve()
    if not target.is_relative_to(base):
        raise UsageError(
            f"job file {job_file}: {key} = {value!r} resolves to {target}, outside the job "
            f"file's directory {base}; a job file may only name files in its own directory "
            "or below (give other files on the command line, e.g. --input or --module)")
    return str(target)


def load_job_file(path: str) -> dict[str, Any]:
    """The keys of a job file, with its paths made absolute. A path that leads out of the
    file's directory is a UsageError: whatever it names would become a public blob."""
    import tomllib

    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"job file {path}: {e}") from e
    known = {"kind", "count", "n", "inputs", "module", "input", "fuel", "params",
             "requirements", "max_price", "deadline_s", "lease_s", "redundancy",
             "soundness_bits"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"job file {path}: unknown keys {sorted(unknown)}")
    base = p.resolve().parent
    if isinstance(data.get("inputs"), dict):
        data["inputs"] = {k: _inside_job_dir(base, path, f"inputs.{k}", str(v))
                          for k, v in data["inputs"].items()}
    if isinstance(data.get("module"), str) and not data["module"].startswith("example:"):
        data["module"] = _inside_job_dir(base, path, "module", data["module"])
    if isinstance(data.get("input"), str):
        data["input"] = _inside_job_dir(base, path, "input", data["input"])
    return data


def cmd_job_submit(a: argparse.Namespace) -> int:
    import time

    args: dict[str, Any] = load_job_file(a.file) if a.file else {}
    flags = {"kind": a.kind, "n": a.n, "count": a.count, "fuel": a.fuel,
             "max_price": a.max_price, "deadline_s": a.deadline, "lease_s": a.lease,
             "redundancy": a.redundancy,
             "module": a.module if a.module is None or a.module.startswith("example:")
             else str(Path(a.module).resolve()),
             "input": str(Path(a.input).resolve()) if a.input else None}
    args.update({k: v for k, v in flags.items() if v is not None})
    if a.gpu:
        args.setdefault("requirements", {})["gpu"] = True
    if "kind" not in args:
        print("error: give --kind or a job file with `kind`", file=sys.stderr)
        return EXIT_USAGE
    jobs = ask(a, "job.submit", args)
    if not a.wait:
        if a.json:
            print_json(jobs)
        else:
            for j in jobs:
                print(f"submitted {j['id']} ({j['kind']})")
        return EXIT_OK
    # --wait: follow every job to a final state, progress on stderr.
    ids = [j["id"] for j in jobs]
    last: dict[str, str] = {}
    final: dict[str, Any] = {}
    while len(final) < len(ids):
        for jid in ids:
            if jid in final:
                continue
            d = ask(a, "job.show", {"id": jid})
            if d["state"] != last.get(jid):
                last[jid] = d["state"]
                print(f"{jid[:16]}  {d['state']}", file=sys.stderr, flush=True)
            if d["state"] in ("completed", "failed"):
                final[jid] = d
        if len(final) < len(ids):
            time.sleep(0.5)
    failed = [d for d in final.values() if d["state"] != "completed"]
    if a.json:
        print_json([final[j] for j in ids])
    else:
        for jid in ids:
            d = final[jid]
            where = d["output_path"] or d["output"] or "-"
            lat = f"{d['latency_ms']} ms" if d["latency_ms"] is not None else "-"
            why = ""
            if d["state"] != "completed" and d["history"]:
                last = d["history"][-1]
                why = f"  ({last['event']}: {last['detail']})"
            print(f"{jid}  {d['state']}{why}  latency {lat}  output {where}")
    return EXIT_ERROR if failed else EXIT_OK


def cmd_job_list(a: argparse.Namespace) -> int:
    res = ask(a, "job.list", {"states": a.state or []})
    if a.json:
        print_json(res)
        return EXIT_OK
    rows = [[j["id"][:20], j["kind"], j["state"], str(j["reassigned"]),
             (j["worker"] or "-")[:20],
             f"{j['latency_ms']} ms" if j["latency_ms"] is not None else "-"]
            for j in res["jobs"]]
    if rows:
        print(table(rows, ["JOB", "KIND", "STATE", "REASSIGNED", "WORKER", "LATENCY"]))
    counts = ", ".join(f"{k} {v}" for k, v in res["counts"].items() if v) or "no jobs"
    print(f"requested: {counts}; working on: {len(res['work'])}")
    return EXIT_OK


def cmd_job_show(a: argparse.Namespace) -> int:
    d = ask(a, "job.show", {"id": a.id})
    if a.output:
        if not d["output_path"]:
            why = {"disagreement": "its workers' outputs disagree"}.get(
                d.get("output_checked", ""), "the job has no verified output here yet")
            print(f"error: {why}", file=sys.stderr)
            return EXIT_ERROR
        Path(a.output).write_bytes(Path(d["output_path"]).read_bytes())
    if a.json:
        print_json(d)
        return EXIT_OK
    print(f"job        {d['id']}\nkind       {d['kind']}\nstate      {d['state']}"
          f"\nworker     {d['worker'] or '-'}\noutput     {d['output'] or '-'}"
          f" (checked: {d.get('output_checked', '-')})"
          f"\nstored at  {d['output_path'] or '-'}\nreassigned {d['reassigned']}")
    if d["latency_ms"] is not None:
        print(f"latency    {d['latency_ms']} ms (submit to verified result)")
    for r in d.get("receipts", []):
        print(f"receipt    {r['id']}")
    print("history:")
    t0 = d["history"][0]["ts_ms"] if d["history"] else 0
    for h in d["history"]:
        print(f"  +{(h['ts_ms'] - t0) / 1000:8.3f}s  {h['event']:<14} {h['detail']}")
    return EXIT_OK
