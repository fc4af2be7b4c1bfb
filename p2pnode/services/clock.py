"""The node's clock: a local timeline that a wall-clock step cannot move (LEASE-13)."""

from __future__ import annotations

import time
from collections.abc import Callable

import trio


class LocalClock:
    """``now_ms`` starts at the wall clock and then follows trio's clock, which is
    monotonic (and virtual under ``trio.testing.MockClock``); ``wall_ms`` is the wall clock
    for values that go on the wire."""

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._start_wall_ms = int(wall() * 1000)
        self._start = trio.current_time()

    def now_ms(self) -> int:
        return self._start_wall_ms + int((trio.current_time() - self._start) * 1000)

    def wall_ms(self) -> int:
        return int(self._wall() * 1000)

    def to_wall(self, local_ms: int) -> int:
        return local_ms + self.wall_ms() - self.now_ms()

    def from_wall(self, wall_ms: int) -> int:
        return wall_ms - self.wall_ms() + self.now_ms()

    def trio_deadline(self, local_ms: int) -> float:
        """The trio time at which the local timeline reaches ``local_ms``."""
        return trio.current_time() + (local_ms - self.now_ms()) / 1000
