"""Waiting on a condition in tests that drive real processes (no trio loop to await in)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

POLL_INTERVAL_S = 0.1


def poll(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """Return the first truthy ``cond()``; fail the test after ``timeout`` seconds.

    The pause between checks only paces the polling of another process's state; the
    condition itself is what the test waits for.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_INTERVAL_S)
