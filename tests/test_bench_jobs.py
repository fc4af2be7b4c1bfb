"""The job benchmark's baseline runs the executor it names (a few calls, no timing checks)."""

from __future__ import annotations

from bench.bench_jobs import bare_executor


def test_bare_executor_reports_jobs_per_second() -> None:
    r = bare_executor(4, seconds=0.01)
    assert r["jobs_per_s"] > 0 and r["ms_per_job"] > 0
