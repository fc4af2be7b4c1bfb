"""Write the conformance vectors: ``python -m conformance.generate [--out DIR]``.

Every case of ``conformance/cases/`` is run against the reference implementation first; if the
reference disagrees with what the case states (result, reason, or a stated output) nothing is
written and the command fails. Output files the case does not state are taken from the
reference. The output is a pure function of the code: running it twice gives the same bytes.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from conformance import files
from conformance.cases import AREAS, all_cases
from conformance.model import Case, Outcome
from conformance.reference import run

DEFAULT_OUT = Path(__file__).resolve().parent / "vectors"
_NAME = re.compile(r"^[a-z0-9_]+$")


class GenerationError(Exception):
    pass


def check(handler: str, case: Case) -> Outcome:
    """Run ``case`` on the reference; raise GenerationError unless it gives what the case
    states. Return the reference's outcome."""
    where = f"{handler}/{case.name}"
    if not _NAME.match(case.name):
        raise GenerationError(f"{where}: case names are [a-z0-9_]+")
    out = run(handler, case.inputs.files, case.inputs.params)
    exp = case.expected
    if (out.result, out.reason) != (exp.result, exp.reason):
        raise GenerationError(
            f"{where}: the case expects {exp.result} {exp.reason or ''}, "
            f"the reference answers {out.result} {out.reason or ''}")
    for name, value in exp.outputs.items():
        if name not in out.outputs:
            raise GenerationError(f"{where}: the reference gives no {name}")
        if not files.same(name, out.outputs[name], value):
            raise GenerationError(f"{where}: the reference's {name} differs from the case's")
    clash = set(out.outputs) & set(case.inputs.files)
    if clash or "meta.json" in set(out.outputs) | set(case.inputs.files):
        raise GenerationError(f"{where}: file names clash: {sorted(clash)}")
    return out


def vector_files(handler: str, case: Case) -> dict[str, bytes]:
    """The files of one vector directory, name -> bytes."""
    out = check(handler, case)
    expected: dict[str, object] = {"result": out.result}
    if out.reason is not None:
        expected["reason"] = out.reason
    if out.result == "valid":
        expected["outputs"] = sorted(out.outputs)
    meta = {
        "description": case.description,
        "rules": list(case.rules),
        "params": dict(case.inputs.params),
        "inputs": sorted(case.inputs.files),
        "expected": expected,
    }
    result = {"meta.json": files.dump_json(meta).encode("utf-8")}
    for name, value in case.inputs.files.items():
        result[name] = files.to_disk(name, value)
    if out.result == "valid":
        for name, value in out.outputs.items():
            result[name] = files.to_disk(name, value)
    return result


def build() -> dict[str, dict[str, bytes]]:
    """Every vector: "area/handler/case" -> its files. Raises GenerationError on any mismatch."""
    return {f"{h}/{c.name}": vector_files(h, c) for h, c in all_cases()}


def write(out_dir: Path) -> int:
    vectors = build()  # all checks pass before anything is deleted or written
    if out_dir.exists():
        unexpected = [p.name for p in out_dir.iterdir() if p.name not in AREAS]
        if unexpected:
            raise GenerationError(
                f"{out_dir} holds {sorted(unexpected)}, which this command did not write; "
                "refusing to replace it")
        shutil.rmtree(out_dir)
    for path, contents in vectors.items():
        d = out_dir / path
        d.mkdir(parents=True)
        for name, data in contents.items():
            (d / name).write_bytes(data)
    return len(vectors)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance.generate", description=__doc__)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help="output directory (default: conformance/vectors)")
    args = ap.parse_args(argv)
    try:
        n = write(args.out)
    except GenerationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {n} vectors to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
