"""Running an executor for the worker (spec 04 §7)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import trio

from p2pnode.jobs.executors import get_executor
from p2pnode.jobs.executors.base import ExecResult, Limits


async def execute(kind: str, inputs: Mapping[str, bytes], params: Mapping[str, Any],
                  limits: Limits, *, device: str = "auto") -> ExecResult:
    executor = get_executor(kind, device=device)
    return await trio.to_thread.run_sync(executor.run, dict(inputs), dict(params), limits)
