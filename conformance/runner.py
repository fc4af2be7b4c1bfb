"""Run the conformance vectors against an implementation.

    python -m conformance.runner                       # the reference, in process
    python -m conformance.runner --adapter "CMD ARGS"  # any implementation behind an adapter
    python -m conformance.runner --filter caps/validate -v

Prints each failure, then ``N passed, M failed`` (and ``K skipped`` for handlers the adapter
does not support); exits 1 if any vector failed. The adapter protocol is in README.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass
class Report:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[tuple[str, list[str]]] = field(default_factory=list)

    def summary(self) -> str:
        s = f"{self.passed} passed, {self.failed} failed"
        return s + (f", {self.skipped} skipped" if self.skipped else "")


def run(vectors: Iterator[Vector], backend: Backend) -> Report:
    report = Report()
    for v in vectors:
        try:
            response = backend(v.request())
        except Exception as e:  # an implementation's crash is its failure, not ours
            found = [f"no answer: {type(e).__name__}: {e}"]
        else:
            if response.get("unsupported"):
                report.skipped += 1
                continue
            found = problems(v, response)
        if found:
            report.failed += 1
            report.failures.append((v.id, found))
        else:
            report.passed += 1
    return report


class Adapter:
    """An implementation behind the adapter protocol: a process that reads one JSON request
    per line on stdin and writes one JSON response per line on stdout, in order."""

    def __init__(self, command: list[str], cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
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
    ap.add_argument("-v", "--verbose", action="store_true", help="list every vector run")
    args = ap.parse_args(argv)
    adapter = Adapter(shlex.split(args.adapter)) if args.adapter else None
    backend: Backend = adapter if adapter is not None else handle
    vectors = list(load(args.vectors, args.filter))
    if not vectors:
        print(f"no vectors under {args.vectors} match {args.filter!r}", file=sys.stderr)
        return 2
    try:
        report = run(iter(vectors), backend)
    finally:
        if adapter is not None:
            adapter.close()
    if args.verbose:
        failed = {vid for vid, _ in report.failures}
        for v in vectors:
            print(("FAIL " if v.id in failed else "ok   ") + v.id)
    for vid, found in report.failures:
        print(f"FAIL {vid}")
        for p in found:
            print(f"     {p}")
    print(report.summary())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
