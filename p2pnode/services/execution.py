"""Executions that can be stopped: each one runs in a child process (spec 04 §7.1, EXE-9).

A BLAS call or a wasm engine in a thread cannot be stopped from outside; a thread left
running after its job was cancelled keeps a core busy while the worker counts its slot as
free. So the worker runs every execution in a child process
(:mod:`p2pnode.jobs.executors.child`) and kills it (SIGKILL) the moment the execution is no
longer wanted: its caller's cancel scope is cancelled (the job was cancelled, its lease was
lost, the node is stopping) or ``limits.wall_time_s`` has passed. :func:`execute` returns or
raises only once such a child has been reaped, and :class:`ExecutionSlots` counts a slot
free only then, so the worker's concurrency bound is a bound on running processes.

A child whose execution ended with a response (a result or an executor's refusal) is
clean: with a :class:`ChildPool` it is kept for the next execution, which then costs no
interpreter start and no imports (a fresh child costs about 0.2 s of CPU, more than a
small job). Every other end kills it.

The wall time is measured from the request, so for a fresh child it covers the
interpreter's start and the import of the executor, and always the compilation of a wasm
module as well as the run.

Usage, in the worker::

    slots = ExecutionSlots(config.jobs_concurrency)
    async with slots.run(job_id):
        result = await execute(kind, inputs, params, limits, device=config.jobs_device)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import trio

import p2pnode
from p2pnode.jobs.executors import BLAS_ENV, check_lookup
from p2pnode.jobs.executors import child as child_protocol
from p2pnode.jobs.executors.base import ExecError, ExecResult, Limits
from p2pnode.wire.reasons import Reason

# What a response may hold beside the output: its frame and header (meta, details).
RESPONSE_MARGIN: Final = child_protocol.LENGTH_BYTES + child_protocol.MAX_HEADER_BYTES
# How much of the child's stderr is kept to explain a child that died (its last bytes, where
# a traceback ends).
STDERR_TAIL_BYTES: Final = 4096
_READ_CHUNK: Final = 1 << 16
# A kept child serves at most this many executions before a fresh one replaces it.
MAX_CHILD_USES: Final = 64

# -P: the node's working directory must not shadow a module the child imports.
_COMMAND: Final = (sys.executable, "-P", "-m", child_protocol.MODULE)


def _child_env() -> dict[str, str]:
    # The child must import this p2pnode even when it is not installed (a source tree on
    # PYTHONPATH or the tests' pythonpath); appended, so it never shadows anything.
    root = str(Path(p2pnode.__file__).resolve().parent.parent)
    env = {**BLAS_ENV, **os.environ}  # an operator's own setting wins
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = root if not path else path + os.pathsep + root
    return env


class _Conversation:
    """What the node reads from one child for one request: its response, bounded, and the
    tail of stderr."""

    def __init__(self, process: trio.Process, max_response: int) -> None:
        self.process = process
        self.max_response = max_response
        self.response = bytearray()
        self.too_long = False
        self.complete = False
        self.stderr_tail = bytearray()

    async def send(self, pieces: list[bytes | memoryview]) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            for piece in pieces:
                await stdin.send_all(piece)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the child is gone before reading it all; its exit status tells why
        # stdin stays open: its end of file tells the child that the node is gone.

    async def read_response(self) -> None:
        """Until one whole response is in (``complete``), the child's stdout ends, or more
        than ``max_response`` bytes came."""
        stdout = self.process.stdout
        assert stdout is not None
        parsable = True
        while chunk := await stdout.receive_some(_READ_CHUNK):
            self.response += chunk
            if len(self.response) > self.max_response:
                self.too_long = True
                self.process.kill()
                return
            if parsable:
                try:
                    total = child_protocol.response_length(self.response)
                except child_protocol.FrameError:
                    parsable = False  # garbage: read on until the end, then judge it
                    continue
                if total is not None and len(self.response) >= total:
                    self.complete = len(self.response) == total
                    return

    async def read_stderr(self) -> None:
        stderr = self.process.stderr
        assert stderr is not None
        while chunk := await stderr.receive_some(_READ_CHUNK):
            self.stderr_tail += chunk
            del self.stderr_tail[:-STDERR_TAIL_BYTES]

    async def run(self, request: list[bytes | memoryview]) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.send, request)
            nursery.start_soon(self.read_stderr)
            await self.read_response()
            if self.complete:  # the child lives on, for the next request
                nursery.cancel_scope.cancel()
        if not self.complete:
            await self.process.wait()

    def died(self) -> ExecError:
        code = self.process.returncode
        assert code is not None
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        lines = bytes(self.stderr_tail).decode("utf-8", "replace").strip().splitlines()
        last = f": {lines[-1][:200]}" if lines else ""
        return ExecError(Reason.EXEC_FAILED, f"executor process {how}{last}")


async def _stop(process: trio.Process) -> None:
    """Kill the child if it still runs and reap it, whatever cancels the caller."""
    with trio.CancelScope(shield=True):
        if process.returncode is None:
            process.kill()
        await process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                await stream.aclose()


class ChildPool:
    """Clean children kept for the next executions: at most ``keep`` idle, each used for at
    most ``max_uses`` executions (whatever a long-lived interpreter gathers is let go)."""

    def __init__(self, keep: int, max_uses: int = MAX_CHILD_USES) -> None:
        self.keep = keep
        self.max_uses = max_uses
        self._idle: list[tuple[trio.Process, int]] = []
        self._uses: dict[int, int] = {}

    @property
    def idle(self) -> int:
        return len(self._idle)

    def take(self) -> trio.Process | None:
        while self._idle:
            process, _ = self._idle.pop()
            if process.returncode is None:
                return process
        return None

    async def give_back(self, process: trio.Process) -> None:
        uses = self._uses.pop(process.pid, 0) + 1
        if process.returncode is None and uses < self.max_uses and len(self._idle) < self.keep:
            self._uses[process.pid] = uses
            self._idle.append((process, uses))
            return
        await _stop(process)

    async def aclose(self) -> None:
        """Stop every idle child (the node is stopping)."""
        idle, self._idle = self._idle, []
        for process, _ in idle:
            await _stop(process)


async def execute(
    kind: str,
    inputs: Mapping[str, bytes],
    params: Mapping[str, Any],
    limits: Limits,
    *,
    device: str = "auto",
    on_start: Callable[[int], object] | None = None,
    pool: ChildPool | None = None,
) -> ExecResult:
    """Run one execution of ``kind`` in a child process; its result, or :class:`ExecError`.

    The outcome is the one the in-process executor (``get_executor(kind, device).run``)
    gives, with the reasons of EXE-1, plus: ``limit_exceeded`` (detail ``wall_time``) when
    the child still runs after ``limits.wall_time_s``; ``exec_failed`` when it dies without
    a response, or writes more than ``limits.max_output_bytes`` plus ``RESPONSE_MARGIN``.
    Raises ``ValueError`` as :func:`get_executor` does (unknown kind or device, no GPU).

    Cancelling the caller kills the child at once; when this returns or raises, the child
    has been reaped, or it answered cleanly and went back to ``pool``. ``on_start`` is
    called with the child's pid as soon as it has the request (for metrics and tests).
    """
    check_lookup(kind, device)
    request = child_protocol.encode_request(kind, device, inputs, params, limits)
    process = pool.take() if pool is not None else None
    if process is None:
        process = await trio.lowlevel.open_process(
            _COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=_child_env())
    clean = False
    try:
        if on_start is not None:
            on_start(process.pid)
        conversation = _Conversation(process, limits.max_output_bytes + RESPONSE_MARGIN)
        with trio.move_on_after(limits.wall_time_s) as deadline:
            await conversation.run(request)
        outcome = _outcome(conversation, deadline.cancelled_caught, limits)
        clean = conversation.complete
    finally:
        if not clean:
            await _stop(process)
    if clean:
        if pool is not None:
            await pool.give_back(process)
        else:
            await _stop(process)
    if isinstance(outcome, ExecResult):
        return outcome
    raise outcome


def _outcome(conversation: _Conversation, timed_out: bool,
             limits: Limits) -> ExecResult | ExecError | ValueError:
    if timed_out:
        return ExecError(Reason.LIMIT_EXCEEDED,
                         f"wall_time: still running after {limits.wall_time_s} s")
    if conversation.too_long:
        return ExecError(Reason.EXEC_FAILED, "executor process wrote more than "
                         f"{conversation.max_response} bytes")
    if not conversation.complete and conversation.process.returncode not in (0, None):
        return conversation.died()
    try:
        return child_protocol.decode_response(conversation.response)
    except child_protocol.FrameError as e:
        conversation.complete = False  # not a child to keep
        return ExecError(Reason.EXEC_FAILED, f"executor process answered badly: {e}")


class ExecutionSlots:
    """The worker's bound on executions running at once (WRK-2, EXE-9).

    ``async with slots.run(job_id):`` waits for a free slot and holds it for the block;
    run the job's :func:`execute` inside it. As ``execute`` returns or raises only once its
    child is reaped, a slot is free again only when its execution has really stopped, even
    when the block is cancelled part-way.
    """

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError("ExecutionSlots needs at least one slot")
        self._limiter = trio.CapacityLimiter(n)

    @property
    def total(self) -> int:
        return int(self._limiter.total_tokens)

    @property
    def in_use(self) -> int:
        return self._limiter.borrowed_tokens

    @property
    def waiting(self) -> int:
        return self._limiter.statistics().tasks_waiting

    @asynccontextmanager
    async def run(self, job_id: bytes) -> AsyncIterator[None]:
        """Hold one slot for ``job_id``; a job may hold at most one (``RuntimeError``)."""
        await self._limiter.acquire_on_behalf_of(job_id)
        try:
            yield
        finally:
            self._limiter.release_on_behalf_of(job_id)
