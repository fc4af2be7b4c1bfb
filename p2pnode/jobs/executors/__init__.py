"""Job executors by kind (spec 04 §7): ``matmul`` and ``wasm``.

The node shell looks an executor up once per kind and calls ``run`` in a worker thread::

    executor = get_executor("matmul", device="auto")
    result = executor.run({"a": blob_a, "b": blob_b}, {}, limits)   # or raises ExecError
"""

from __future__ import annotations

from typing import Final

from p2pnode.jobs.executors.base import (
    DEFAULT_LIMITS,
    ExecError,
    ExecResult,
    Executor,
    Limits,
)
from p2pnode.jobs.executors.matmul import DEVICES, MatmulExecutor, detect_gpu
from p2pnode.jobs.executors.wasm import WasmExecutor, compile_wat

KINDS: Final = ("matmul", "wasm")


def available_kinds() -> tuple[str, ...]:
    """The job kinds this node can execute (both need only the CPU)."""
    return KINDS


def get_executor(kind: str, device: str = "auto") -> Executor:
    """A fresh executor for ``kind``.

    ``device`` is ``"auto"``, ``"cpu"`` or ``"gpu"``; only ``matmul`` runs on a GPU.
    Raises ``ValueError`` for an unknown kind or device, or ``"gpu"`` with no GPU present.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    if kind == "matmul":
        return MatmulExecutor(device)
    if kind == "wasm":
        if device == "gpu":
            raise ValueError("wasm runs on the CPU only")
        return WasmExecutor()
    raise ValueError(f"unknown job kind {kind!r}; known: {KINDS}")


__all__ = [
    "DEFAULT_LIMITS",
    "KINDS",
    "ExecError",
    "ExecResult",
    "Executor",
    "Limits",
    "MatmulExecutor",
    "WasmExecutor",
    "available_kinds",
    "compile_wat",
    "detect_gpu",
    "get_executor",
]
