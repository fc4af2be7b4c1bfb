"""Run the conformance vectors against an implementation.

    python -m conformance.runner                       # the reference, in process
    python -m conformance.runner --adapter "CMD ARGS"  # any implementation behind an adapter
    python -m conformance.runner --filter caps/validate -v

Prints each failure, a table of passed, failed and skipped vectors per handler, then
``N passed, M failed`` (and ``K skipped`` for vectors the adapter answered ``unsupported``);
exits 1 if any vector failed. An adapter's standard error goes to a file of its own
(``--adapter-log``), never into this output. The adapter protocol is in README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from conformance import files
from conformance.model import RESULTS
from conformance.reference import handle

DEFAULT_VECTORS = Path(__file__).resolve().parent / "vectors"

Backend = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Vector:
    id: str  # "area/handler/case"
    handler: str  # "area/handler"
    meta: dict[str, Any]
    inputs: dict[str, Any]  # name -> value
    outputs: dict[str, Any]  # expected output files, name -> value

    def request(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "handler": self.handler,
            "params": self.meta.get("params", {}),
            "inputs": {n: files.to_wire(n, v) for n, v in self.inputs.items()},
        }


def load(root: Path, prefix: str = "") -> Iterator[Vector]:
    """Every vector under ``root`` whose id starts with ``prefix``, sorted by id."""
    for meta_path in sorted(root.glob("*/*/*/meta.json")):
        d = meta_path.parent
        vid = d.relative_to(root).as_posix()
        if not vid.startswith(prefix):
            continue
        meta = json.loads(meta_path.read_text("utf-8"))
        exp = meta["expected"]
        yield Vector(
            id=vid,
            handler=vid.rsplit("/", 1)[0],
            meta=meta,
            inputs={n: files.from_disk(n, (d / n).read_bytes()) for n in meta["inputs"]},
            outputs={n: files.from_disk(n, (d / n).read_bytes())
                     for n in exp.get("outputs", [])},
        )


def problems(vector: Vector, response: dict[str, Any]) -> list[str]:
    """What is wrong with ``response`` as an answer to ``vector``; empty if nothing."""
    exp = vector.meta["expected"]
    got_result, got_reason = response.get("result"), response.get("reason")
    if got_result not in RESULTS:
        return [f"result {got_result!r} is not one of {', '.join(RESULTS)}"]
    want = f"{exp['result']} {exp.get('reason') or ''}".strip()
    got = f"{got_result} {got_reason or ''}".strip()
    if exp["result"] != got_result or (exp["result"] != "valid"
                                       and exp.get("reason") != got_reason):
        return [f"expected {want}, got {got}"]
    out: list[str] = []
    if exp["result"] == "valid":
        answered = response.get("outputs") or {}
        for name, value in vector.outputs.items():
            if name not in answered:
                out.append(f"no output {name}")
                continue
            try:
                got_value = files.from_wire(name, answered[name])
            except ValueError as e:
                out.append(f"output {name}: {e}")
                continue
            if not files.same(name, got_value, value):
                out.append(f"output {name} differs: expected {_show(name, value)}, "
                           f"got {_show(name, got_value)}")
    return out


def _show(name: str, value: Any) -> str:
    text = json.dumps(files.to_wire(name, value), sort_keys=True)
    return text if len(text) <= 200 else text[:197] + "..."


OUTCOMES = ("passed", "failed", "skipped")


@dataclass
class Report:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[tuple[str, list[str]]] = field(default_factory=list)
    # handler -> outcome ("passed", "failed", "skipped") -> vector ids, in run order
    by_handler: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def count(self, handler: str, vector_id: str, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        counts = self.by_handler.setdefault(handler, {o: [] for o in OUTCOMES})
        counts[outcome].append(vector_id)

    def summary(self) -> str:
        s = f"{self.passed} passed, {self.failed} failed"
        return s + (f", {self.skipped} skipped" if self.skipped else "")

    def handler_table(self) -> list[str]:
        """One line per handler, sorted: its passed, failed and skipped vectors."""
        width = max([len("handler"), *map(len, self.by_handler)])
        lines = [f"{'handler':<{width}}  passed  failed  skipped"]
        for handler in sorted(self.by_handler):
            n = {o: len(ids) for o, ids in self.by_handler[handler].items()}
            lines.append(f"{handler:<{width}}  {n['passed']:>6}  {n['failed']:>6}  "
                         f"{n['skipped']:>7}")
        return lines


def run(vectors: Iterator[Vector], backend: Backend) -> Report:
    report = Report()
    for v in vectors:
        try:
            response = backend(v.request())
        except Exception as e:  # an implementation's crash is its failure, not ours
            found = [f"no answer: {type(e).__name__}: {e}"]
        else:
            if response.get("unsupported"):
                report.count(v.handler, v.id, "skipped")
                continue
            found = problems(v, response)
        if found:
            report.count(v.handler, v.id, "failed")
            report.failures.append((v.id, found))
        else:
            report.count(v.handler, v.id, "passed")
    return report


class Adapter:
    """An implementation behind the adapter protocol: a process that reads one JSON request
    per line on stdin and writes one JSON response per line on stdout, in order.

    Its standard error goes to ``stderr`` (a file opened for writing), so that its logs
    never mix with the runner's report; by default it is discarded."""

    def __init__(self, command: list[str], cwd: Path | None = None,
                 stderr: IO[bytes] | None = None) -> None:
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=stderr if stderr is not None else subprocess.DEVNULL,
                                     text=True, encoding="utf-8", bufsize=1, cwd=cwd)

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"adapter exited (status {self.proc.poll()})")
        response: dict[str, Any] = json.loads(line)
        if response.get("id") != request["id"]:
            raise RuntimeError(f"adapter answered id {response.get('id')!r}")
        return response

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance.runner", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", type=Path, default=DEFAULT_VECTORS,
                    help="vector directory (default: conformance/vectors)")
    ap.add_argument("--adapter", metavar="COMMAND",
                    help="command line of an adapter (default: the reference, in process)")
    ap.add_argument("--filter", default="", metavar="PREFIX",
                    help="only vectors whose id starts with PREFIX, e.g. caps/validate")
    ap.add_argument("--adapter-log", type=Path, metavar="FILE",
                    help="where the adapter's standard error goes (default: a new temporary "
                         "file, named at the end if the adapter wrote to it)")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every vector run")
    args = ap.parse_args(argv)
    vectors = list(load(args.vectors, args.filter))
    if not vectors:
        print(f"no vectors under {args.vectors} match {args.filter!r}", file=sys.stderr)
        return 2
    log_path: Path | None = args.adapter_log
    if args.adapter and log_path is None:
        fd, name = tempfile.mkstemp(prefix="conformance-adapter-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    with contextlib.ExitStack() as stack:
        adapter = None
        if args.adapter and log_path is not None:
            log = stack.enter_context(log_path.open("wb"))
            adapter = Adapter(shlex.split(args.adapter), stderr=log)
            stack.callback(adapter.close)
        backend: Backend = adapter if adapter is not None else handle
        report = run(iter(vectors), backend)
    if args.verbose:
        mark = {vid: outcome for counts in report.by_handler.values()
                for outcome, ids in counts.items() for vid in ids}
        for v in vectors:
            print({"passed": "ok   ", "failed": "FAIL ", "skipped": "skip "}[mark[v.id]] + v.id)
    for vid, found in report.failures:
        print(f"FAIL {vid}")
        for p in found:
            print(f"     {p}")
    for line in report.handler_table():
        print(line)
    if log_path is not None and (args.adapter_log or log_path.stat().st_size):
        print(f"adapter's standard error: {log_path}")
    elif log_path is not None:
        log_path.unlink()
    print(report.summary())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
