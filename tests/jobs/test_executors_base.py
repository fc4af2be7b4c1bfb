"""Executor registry, Limits, ExecError."""

from __future__ import annotations

import pytest

from p2pnode.jobs.executors import (
    DEFAULT_LIMITS,
    ExecError,
    Executor,
    Limits,
    MatmulExecutor,
    WasmExecutor,
    available_kinds,
    get_executor,
)
from p2pnode.wire.reasons import Reason, WireError


def test_kinds() -> None:
    assert set(available_kinds()) == {"matmul", "wasm"}
    for kind in available_kinds():
        ex = get_executor(kind, "cpu")
        assert ex.kind == kind
        assert isinstance(ex, Executor)
    assert isinstance(get_executor("matmul"), MatmulExecutor)
    assert isinstance(get_executor("wasm"), WasmExecutor)


@pytest.mark.parametrize(
    ("kind", "device"), [("sort", "auto"), ("matmul", "tpu"), ("wasm", "gpu"), ("wasm", "")]
)
def test_refused_lookups(kind: str, device: str) -> None:
    with pytest.raises(ValueError):
        get_executor(kind, device)


def test_exec_error_only_takes_execution_reasons() -> None:
    for reason in (Reason.BAD_FIELD, Reason.LIMIT_EXCEEDED, Reason.EXEC_FAILED):
        e = ExecError(reason, "why")
        assert e.reason is reason and e.detail == "why"
        assert str(e) == f"{reason.value}: why"
    with pytest.raises(ValueError):
        ExecError(Reason.MALFORMED)


@pytest.mark.parametrize(
    ("wire", "exec_reason"),
    [(Reason.TOO_LARGE, Reason.LIMIT_EXCEEDED), (Reason.NON_CANONICAL, Reason.BAD_FIELD),
     (Reason.UNKNOWN_FIELD, Reason.BAD_FIELD), (Reason.TRUNCATED, Reason.BAD_FIELD)],
)
def test_wire_errors_map(wire: Reason, exec_reason: Reason) -> None:
    e = ExecError.from_wire(WireError(wire, "x"), "input a")
    assert e.reason is exec_reason and e.detail.startswith("input a: ")


def test_limits_validated() -> None:
    assert Limits() == DEFAULT_LIMITS
    with pytest.raises(ValueError):
        Limits(wasm_fuel=0)
    with pytest.raises(ValueError):
        Limits(wall_time_s=0)
    with pytest.raises(AttributeError):
        DEFAULT_LIMITS.wasm_fuel = 5  # type: ignore[misc]
