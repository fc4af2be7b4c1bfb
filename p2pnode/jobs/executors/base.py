"""What every executor shares: limits, the result, the error, the protocol (spec 04 §7.1).

An executor is a plain synchronous function object: it takes the job's inputs (blobs by
name, already fetched and hash-checked by the shell), the job's params and the worker's
limits, and returns the output blob or raises :class:`ExecError`. It opens no sockets and
keeps no state between jobs, so the node shell can run it in a child process that it can
kill (:mod:`p2pnode.services.execution`) and the conformance runner can call it directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

from p2pnode.wire.reasons import Reason, WireError

# The devices an executor may be asked to use; only matmul runs on a GPU.
DEVICES: Final = ("auto", "cpu", "gpu")

# The reasons an execution may end with; each is a value of the shared Reason enum.
EXEC_REASONS: Final = frozenset({Reason.EXEC_FAILED, Reason.LIMIT_EXCEEDED, Reason.BAD_FIELD})


@dataclass(frozen=True, slots=True)
class Limits:
    """A worker's bounds on one execution (local policy; jobs that need more are refused).

    ``wall_time_s`` is enforced in process where the engine can be interrupted (wasm); the
    node runs every execution in a child process that it kills at ``wall_time_s``
    (:mod:`p2pnode.services.execution`, EXE-9), which also bounds a matmul, whose BLAS call
    cannot be stopped part-way, and the compilation of a wasm module, which is bounded in
    size by ``max_module_bytes`` (EXE-5).
    """

    max_input_bytes: int = 64 << 20
    max_output_bytes: int = 64 << 20
    wall_time_s: float = 60.0
    wasm_fuel: int = 10_000_000_000
    wasm_memory_bytes: int = 256 << 20
    matmul_max_n: int = 2048
    max_module_bytes: int = 8 << 20

    def __post_init__(self) -> None:
        for name in ("max_input_bytes", "max_output_bytes", "wasm_fuel", "wasm_memory_bytes",
                     "matmul_max_n", "max_module_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not self.wall_time_s > 0:
            raise ValueError("wall_time_s must be > 0")


DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True, slots=True)
class ExecResult:
    """The output blob of a successful execution and facts about the run.

    ``meta`` is local information for logs and metrics (``device``, ``elapsed_ms``,
    ``fuel_used``, ...); only ``output`` is the job's result.
    """

    output: bytes
    meta: dict[str, int | str] = field(default_factory=dict)


class ExecError(Exception):
    """An execution that produced no result, with the reason code the worker reports.

    ``BAD_FIELD``: the job's inputs or params are malformed (the requester's fault).
    ``LIMIT_EXCEEDED``: the job needs more than ``Limits`` allow; ``detail`` names the limit.
    ``EXEC_FAILED``: the program itself failed (a wasm trap, a broken ABI result).
    """

    def __init__(self, reason: Reason, detail: str = "") -> None:
        if reason not in EXEC_REASONS:
            raise ValueError(f"{reason} is not an execution reason")
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail

    @classmethod
    def from_wire(cls, err: WireError, what: str) -> ExecError:
        """Map a blob decoding error: too large is a limit, anything else a bad field."""
        reason = Reason.LIMIT_EXCEEDED if err.reason is Reason.TOO_LARGE else Reason.BAD_FIELD
        return cls(reason, f"{what}: {err}")


@runtime_checkable
class Executor(Protocol):
    """One job kind's executor (spec 04 §7.1, EXE-1)."""

    kind: str

    def run(
        self, inputs: Mapping[str, bytes], params: Mapping[str, Any], limits: Limits
    ) -> ExecResult: ...


def check_names(
    what: str, given: Mapping[str, Any], required: frozenset[str], optional: frozenset[str]
) -> None:
    """Refuse missing or unknown input/param names with ``BAD_FIELD``."""
    missing = required - set(given)
    if missing:
        raise ExecError(Reason.BAD_FIELD, f"{what} lack {sorted(missing)}")
    unknown = set(given) - required - optional
    if unknown:
        raise ExecError(Reason.BAD_FIELD, f"unknown {what} {sorted(map(str, unknown))}")


def check_input_size(inputs: Mapping[str, bytes], limits: Limits) -> None:
    """Refuse inputs whose total size is over ``limits.max_input_bytes``."""
    for name, blob in inputs.items():
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise ExecError(Reason.BAD_FIELD, f"input {name!r} is not bytes")
    total = sum(len(blob) for blob in inputs.values())
    if total > limits.max_input_bytes:
        raise ExecError(
            Reason.LIMIT_EXCEEDED,
            f"input: {total} bytes > max_input_bytes {limits.max_input_bytes}",
        )
