"""Executions in child processes: same outcomes as in process, and stopped for real (EXE-9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import psutil
import pytest
import trio

from conformance.cases import jobs as job_cases
from conformance.jsonform import from_json
from conformance.model import Case
from p2pnode.jobs.executors import ExecError, ExecResult, Limits, get_executor
from p2pnode.jobs.executors import child as child_protocol
from p2pnode.jobs.tensors import encode_matrix, random_int8_matrix
from p2pnode.jobs.wasm_examples import example_module
from p2pnode.services import execution
from p2pnode.services.execution import ExecutionSlots, execute
from p2pnode.wire.reasons import Reason

# Runs until killed: the spin example with fuel for hours and a wall time no test reaches.
SPIN = {"module": example_module("spin"), "input": b""}
FOREVER = Limits(wall_time_s=3600.0, wasm_fuel=10**15)
# A guard against a test that would hang, not a bound on how fast anything must be.
GUARD_S = 120


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _until(cond: Callable[[], bool]) -> None:
    while not cond():
        await trio.sleep(0.02)


def _cpu_seconds(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


async def _expect(reason: Reason, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ExecError) as info:
        await execute(*args, **kwargs)
    assert info.value.reason is reason, info.value
    return info.value.detail


# --- the same outcomes as in process ---------------------------------------------------------


async def test_matmul_as_in_process() -> None:
    a = encode_matrix(random_int8_matrix(12, 40, b"a"))
    b = encode_matrix(random_int8_matrix(40, 7, b"b"))
    inputs = {"a": a, "b": b}
    here = get_executor("matmul", "cpu").run(inputs, {}, Limits())
    there = await execute("matmul", inputs, {}, Limits(), device="cpu")
    assert there.output == here.output
    assert there.meta["device"] == "cpu" and (there.meta["n"], there.meta["m"]) == (12, 7)


async def test_wasm_as_in_process() -> None:
    inputs = {"module": example_module("sum"), "input": bytes(range(256)) * 40}
    here = get_executor("wasm").run(inputs, {"fuel": 10**6}, Limits())
    there = await execute("wasm", inputs, {"fuel": 10**6}, Limits())
    assert there.output == here.output == sum(inputs["input"]).to_bytes(8, "little")
    assert there.meta["fuel_used"] == here.meta["fuel_used"]


async def test_large_inputs_and_outputs_cross_intact() -> None:
    data = np.random.default_rng(7).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    result = await execute("wasm", {"module": example_module("reverse"), "input": data}, {},
                           Limits(wasm_memory_bytes=16 << 20))
    assert result.output == data[::-1]


def _outcome(run: Callable[[], ExecResult]) -> tuple[str, bytes | str]:
    try:
        return "ok", run().output
    except ExecError as e:
        return "error", e.reason.value


@pytest.mark.parametrize("case", list(job_cases.execute()), ids=lambda c: c.name)
async def test_conformance_cases_as_in_process(case: Case) -> None:
    p = case.inputs.params
    inputs = {name[len("input_"):-len(".bin")]: data
              for name, data in case.inputs.files.items()}
    params = from_json(p["params"])
    limits = Limits(**p.get("limits", {}))
    here = _outcome(lambda: get_executor(p["kind"], "cpu").run(inputs, params, limits))
    try:
        there: tuple[str, bytes | str] = "ok", (
            await execute(p["kind"], inputs, params, limits, device="cpu")).output
    except ExecError as e:
        there = "error", e.reason.value
    assert there == here


async def test_bad_module_is_bad_field() -> None:
    detail = await _expect(Reason.BAD_FIELD, "wasm",
                           {"module": b"\x00asm\x01\x00\x00\x00\xff", "input": b""}, {},
                           Limits())
    assert detail.startswith("invalid module")


async def test_module_over_max_module_bytes_is_refused() -> None:
    wasm = example_module("sum")
    detail = await _expect(Reason.LIMIT_EXCEEDED, "wasm", {"module": wasm, "input": b""}, {},
                           Limits(max_module_bytes=len(wasm) - 1))
    assert detail.startswith("module")


async def test_trap_is_exec_failed_with_its_detail() -> None:
    inputs = {"module": example_module("trap"), "input": b"x"}
    with pytest.raises(ExecError) as here:
        get_executor("wasm").run(inputs, {}, Limits())
    detail = await _expect(Reason.EXEC_FAILED, "wasm", inputs, {}, Limits())
    assert detail == here.value.detail and detail.startswith("trap")


async def test_params_the_wire_cannot_carry_are_bad_field() -> None:
    await _expect(Reason.BAD_FIELD, "wasm", {"module": example_module("sum"), "input": b""},
                  {"fuel": 1.5}, Limits())


@pytest.mark.parametrize(("kind", "device"), [("sort", "auto"), ("wasm", "gpu"),
                                              ("matmul", "tpu")])
async def test_unknown_kind_or_device_refused_before_any_process(kind: str,
                                                                 device: str) -> None:
    started: list[int] = []
    with pytest.raises(ValueError):
        await execute(kind, {}, {}, Limits(), device=device, on_start=started.append)
    assert started == []


# --- stopping -------------------------------------------------------------------------------


async def test_cancelling_kills_a_busy_child() -> None:
    pids: list[int] = []
    with trio.fail_after(GUARD_S):
        async with trio.open_nursery() as nursery:
            async def job() -> None:
                await execute("wasm", SPIN, {}, FOREVER, on_start=pids.append)

            nursery.start_soon(job)
            await _until(lambda: bool(pids))
            # Well past the child's start: it is spinning in the module.
            await _until(lambda: _cpu_seconds(pids[0]) > 0.5)
            nursery.cancel_scope.cancel()
        assert nursery.cancel_scope.cancelled_caught
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)


async def test_wall_time_kills_a_busy_loop() -> None:
    pids: list[int] = []
    with trio.fail_after(GUARD_S):
        detail = await _expect(Reason.LIMIT_EXCEEDED, "wasm", SPIN, {},
                               Limits(wall_time_s=1.0, wasm_fuel=10**15), on_start=pids.append)
    assert detail.startswith("wall_time")
    assert not _exists(pids[0])


async def test_a_child_that_dies_is_exec_failed() -> None:
    def kill(pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    detail = await _expect(Reason.EXEC_FAILED, "wasm", SPIN, {}, FOREVER, on_start=kill)
    assert "SIGKILL" in detail


def _fake_child(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    monkeypatch.setattr(execution, "_COMMAND", (sys.executable, "-c", code))


async def test_output_read_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_child(monkeypatch, "import sys\nwhile True: sys.stdout.buffer.write(bytes(1 << 16))")
    limits = Limits(max_output_bytes=1000)
    detail = await _expect(Reason.EXEC_FAILED, "wasm", SPIN, {}, limits)
    assert detail.endswith(f"more than {1000 + execution.RESPONSE_MARGIN} bytes")


async def test_a_garbled_response_is_exec_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_child(monkeypatch, "import sys\nsys.stdout.buffer.write(b'hello')")
    detail = await _expect(Reason.EXEC_FAILED, "wasm", SPIN, {}, Limits())
    assert "answered badly" in detail


async def test_a_crash_reports_the_last_line_of_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_child(monkeypatch, "raise SystemExit('out of sorts')")
    detail = await _expect(Reason.EXEC_FAILED, "wasm", SPIN, {}, Limits())
    assert detail == "executor process exited with status 1: out of sorts"


async def test_a_child_whose_node_is_gone_exits() -> None:
    # The node holds the child's stdin open; its end of file means the node died.
    request = child_protocol.encode_request("wasm", "auto", SPIN, {}, FOREVER)
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", child_protocol.MODULE], stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL)
    try:
        assert proc.stdin is not None
        for piece in request:
            await proc.stdin.send_all(piece)
        await proc.stdin.aclose()
        with trio.fail_after(GUARD_S):
            assert await proc.wait() == child_protocol.EXIT_ORPHANED
    finally:
        with trio.CancelScope(shield=True):
            proc.kill()
            await proc.wait()


def test_a_child_imports_only_its_kind() -> None:
    code = ("import sys\n"
            "from p2pnode.jobs.executors import child, Limits\n"
            "from p2pnode.jobs.wasm_examples import example_module\n"
            "r = child.run('wasm', 'cpu', {'module': example_module('sum'), 'input': b''}, {},"
            " Limits())\n"
            "assert r.output == bytes(8), r\n"
            "print('numpy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# --- slots ----------------------------------------------------------------------------------


def test_slots_need_one() -> None:
    with pytest.raises(ValueError):
        ExecutionSlots(0)


async def test_a_job_holds_one_slot_at_most() -> None:
    slots = ExecutionSlots(2)
    async with slots.run(b"job"):
        assert slots.in_use == 1
        with pytest.raises(RuntimeError):
            async with slots.run(b"job"):
                pass
    assert slots.in_use == 0


async def test_slots_bound_running_children_under_cancellation() -> None:
    n, jobs = 2, 5
    slots = ExecutionSlots(n)
    started: dict[int, int] = {}  # job -> pid of its child
    scopes = [trio.CancelScope() for _ in range(jobs)]

    def on_start(job: int) -> Callable[[int], None]:
        def hook(pid: int) -> None:
            alive = [p for p in started.values() if p != pid and _exists(p)]
            assert len(alive) < n, f"child {pid} starts while {alive} still run"
            started[job] = pid
        return hook

    async def job(i: int) -> None:
        with scopes[i]:
            async with slots.run(bytes([i])):
                await execute("wasm", SPIN, {}, FOREVER, on_start=on_start(i))

    with trio.fail_after(GUARD_S):
        async with trio.open_nursery() as nursery:
            for i in range(jobs):
                nursery.start_soon(job, i)
            await _until(lambda: len(started) == n and slots.waiting == jobs - n)
            assert slots.in_use == n
            never = next(i for i in range(jobs) if i not in started)
            scopes[never].cancel()  # one cancelled while it waits for a slot
            await _until(lambda: slots.waiting == jobs - n - 1)
            cancelled: set[int] = set()
            while len(started) < jobs - 1:
                victim = min(set(started) - cancelled)
                cancelled.add(victim)
                scopes[victim].cancel()  # one cancelled while its child spins
                # Its slot goes to the next job waiting.
                await _until(lambda: len(started) == n + len(cancelled))
                assert not _exists(started[victim])
                assert slots.in_use == n
            nursery.cancel_scope.cancel()
    assert never not in started and slots.in_use == 0
    assert not any(_exists(pid) for pid in started.values())


# --- kept children ---------------------------------------------------------------------------

SUM = {"module": example_module("sum"), "input": b""}


async def test_a_clean_child_is_kept_and_reused() -> None:
    pool = execution.ChildPool(keep=1)
    pids: list[int] = []
    try:
        for _ in range(3):
            out = await execute("wasm", SUM, {}, Limits(), on_start=pids.append, pool=pool)
            assert out.output == bytes(8)
        # An executor's refusal is a clean end too: the child is kept.
        await _expect(Reason.BAD_FIELD, "wasm", {"module": b"\0asm\1\0\0\0\xff", "input": b""},
                      {}, Limits(), on_start=pids.append, pool=pool)
        assert len(set(pids)) == 1 and pool.idle == 1 and _exists(pids[0])
    finally:
        await pool.aclose()
    assert not _exists(pids[0]) and pool.idle == 0


async def test_a_kept_child_is_killed_when_its_execution_must_stop() -> None:
    pool = execution.ChildPool(keep=1)
    pids: list[int] = []
    try:
        await execute("wasm", SUM, {}, Limits(), on_start=pids.append, pool=pool)
        with trio.fail_after(GUARD_S):
            await _expect(Reason.LIMIT_EXCEEDED, "wasm", SPIN, {},
                          Limits(wall_time_s=0.5, wasm_fuel=10**15), on_start=pids.append,
                          pool=pool)
        assert pids[0] == pids[1] and not _exists(pids[1]) and pool.idle == 0
        with trio.fail_after(GUARD_S):
            async with trio.open_nursery() as nursery:
                async def job() -> None:
                    await execute("wasm", SPIN, {}, FOREVER, on_start=pids.append, pool=pool)

                nursery.start_soon(job)
                await _until(lambda: len(pids) == 3)
                nursery.cancel_scope.cancel()
        assert pids[2] != pids[1] and not _exists(pids[2]) and pool.idle == 0
    finally:
        await pool.aclose()


async def test_a_kept_child_is_retired_after_max_uses() -> None:
    pool = execution.ChildPool(keep=1, max_uses=2)
    pids: list[int] = []
    try:
        for _ in range(4):
            await execute("wasm", SUM, {}, Limits(), on_start=pids.append, pool=pool)
        assert pids[0] == pids[1] != pids[2] == pids[3]
        assert not _exists(pids[0])
    finally:
        await pool.aclose()
