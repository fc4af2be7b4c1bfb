"""The ``wasm`` executor: deterministic WebAssembly on wasmtime (spec 04 §7.4).

Job inputs and params
---------------------
``inputs = {"module": <binary wasm module>, "input": <bytes>}``; no other input names.
``module`` MUST be a binary core module (it starts with ``00 61 73 6D 01 00 00 00``); text
format is refused on the wire (:func:`compile_wat` is for examples and tests).
``params = {"fuel": uint}`` (optional): the fuel the job may burn, at most the worker's
``Limits.wasm_fuel``, which is also the default. A ``module`` longer than
``Limits.max_module_bytes`` is refused (``limit_exceeded``) before it is compiled.

ABI (spec 04 EXE-6)
-------------------
A job module MUST import nothing and MUST export:

* ``memory``: its linear memory (32-bit, not shared);
* ``alloc(len: i32) -> i32``: returns the address of ``len`` writable bytes;
* ``run(ptr: i32, len: i32) -> i64``: computes on the ``len`` input bytes at ``ptr`` and
  returns ``(out_ptr << 32) | out_len``, both read as unsigned 32-bit values.

The host, in one fresh store per job (nothing persists between jobs):

1. instantiates the module (a ``start`` function, if any, runs here, metered like the rest);
2. calls ``alloc(len(input))``; its result, read as unsigned, is ``ptr``. If
   ``ptr + len(input)`` is greater than the memory's size in bytes (then, after ``alloc``)
   the job fails with ``exec_failed``; otherwise the host writes the input at ``ptr``;
3. calls ``run(ptr, len(input))`` with the value ``alloc`` returned, and splits its
   result ``r`` (read as unsigned 64-bit) into ``out_ptr = r >> 32`` and
   ``out_len = r & 0xFFFFFFFF``;
4. fails the job with ``limit_exceeded`` if ``out_len`` is greater than the output limit,
   then with ``exec_failed`` if ``out_ptr + out_len`` is greater than the memory's size;
5. otherwise the job's output is the ``out_len`` bytes at ``out_ptr``.

All integers in memory are the module's business; the host only moves bytes.

Determinism (spec 04 EXE-7)
---------------------------
The engine runs with fuel metering, NaN canonicalization (every float NaN result is the
canonical NaN), no threads or shared memory, no relaxed SIMD, no memory64, no multiple
memories, no GC, exceptions or stack switching, and no host functions at all (no WASI): a
module that imports anything is refused with ``bad_field``. Given the same module, input,
fuel and memory limit, every run gives the same output (or the same failure) and burns the
same fuel, wall-time and native-stack exhaustion aside. Fuel is what spec 04 EXE-7 (on
chapter 06 WSM-4) states per instruction: 1 per instruction and per function invocation,
nothing for markers such as ``nop``, ``block`` and ``loop``, and bulk memory and table
instructions 1 plus their length. Wasmtime 50 counts exactly so (vectors ``proofs/exe_fuel``
pin it); ``meta["engine"]`` names the engine.

Outcomes (spec 04 EXE-8)
------------------------
* out of fuel: ``limit_exceeded`` (detail ``fuel``); deterministic.
* out of memory: ``limit_exceeded`` (detail ``memory``) when the input or the module's
  initial memory is larger than the limit; when ``alloc`` traps while the input could not
  fit beside the memory already in use (``memory size + len(input) > limit``); or when the
  module traps while its memory is within one 64 KiB page of the limit. (A ``memory.grow``
  past the limit returns -1 and a module that then traps ran out of memory; the engine does
  not tell the host that a grow failed, so the host judges by the memory in use, and a
  module that is refused one large block far below the limit during ``run`` and then traps
  ends in ``exec_failed``.) Deterministic for a given memory limit, so a job whose result
  depends on it must state the limit.
* out of wall time (epoch interruption here, or the node killing the execution's process,
  spec 04 EXE-9): ``limit_exceeded`` (detail ``wall_time``); a local outcome, not
  reproducible, so never evidence of anything.
* out of native stack: ``limit_exceeded`` (detail ``stack``); depends on the engine build.
* any other trap: ``exec_failed`` with the trap code.
"""

from __future__ import annotations

import importlib.metadata
import threading
import time
from collections.abc import Mapping
from typing import Any, Final

import wasmtime

from p2pnode.jobs.executors.base import (
    ExecError,
    ExecResult,
    Limits,
    check_input_size,
    check_names,
)
from p2pnode.wire.reasons import Reason

KIND: Final = "wasm"
INPUTS: Final = frozenset({"module", "input"})
PARAMS: Final = frozenset({"fuel", "checkpoint_fuel"})
WASM_HEADER: Final = b"\x00asm\x01\x00\x00\x00"  # magic + core module version 1
PAGE_SIZE: Final = 65536

# Store limits beside memory. One instance and one memory is all the ABI needs; tables are
# allowed (indirect calls) but bounded, as each element costs host memory.
MAX_TABLE_ELEMENTS: Final = 1 << 20
MAX_TABLES: Final = 16
# Fixed, so that how deep a module may recurse does not depend on the host's defaults.
MAX_WASM_STACK: Final = 512 << 10

_EXPORTS: Final = {
    "alloc": (["i32"], ["i32"]),
    "run": (["i32", "i32"], ["i64"]),
}
_U32: Final = 0xFFFFFFFF
_U64: Final = 0xFFFFFFFFFFFFFFFF


def _engine_name() -> str:
    try:
        return "wasmtime " + importlib.metadata.version("wasmtime")
    except importlib.metadata.PackageNotFoundError:  # vendored builds carry no metadata
        return "wasmtime"


# Fuel accounting belongs to the engine release, so results name it.
ENGINE_NAME: Final = _engine_name()


def make_config() -> wasmtime.Config:
    """The engine configuration of the determinism profile in the module docstring."""
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.cranelift_nan_canonicalization = True
    config.wasm_threads = False
    config.shared_memory = False
    config.wasm_relaxed_simd = False
    config.wasm_memory64 = False
    config.wasm_multi_memory = False
    config.wasm_gc = False
    config.wasm_function_references = False
    config.wasm_exceptions = False
    config.wasm_stack_switching = False
    config.wasm_component_model = False
    config.max_wasm_stack = MAX_WASM_STACK
    return config


def compile_wat(text: str) -> bytes:
    """Compile WebAssembly text to a binary module (examples and tests; never the wire)."""
    return bytes(wasmtime.wat2wasm(text))


def _signature(ft: wasmtime.FuncType) -> tuple[list[str], list[str]]:
    return [str(t) for t in ft.params], [str(t) for t in ft.results]


def _check_module(module: wasmtime.Module, limits: Limits) -> None:
    if module.imports:
        raise ExecError(Reason.BAD_FIELD, "imports are not allowed")
    exports = {e.name: e.type for e in module.exports}
    memory = exports.get("memory")
    if not isinstance(memory, wasmtime.MemoryType):
        raise ExecError(Reason.BAD_FIELD, "module does not export a memory named 'memory'")
    for name, sig in _EXPORTS.items():
        ft = exports.get(name)
        if not isinstance(ft, wasmtime.FuncType) or _signature(ft) != sig:
            raise ExecError(
                Reason.BAD_FIELD,
                f"module must export {name}({', '.join(sig[0])}) -> {sig[1][0]}",
            )
    initial = memory.limits.min * PAGE_SIZE
    if initial > limits.wasm_memory_bytes:
        raise ExecError(
            Reason.LIMIT_EXCEEDED,
            f"memory: initial {initial} bytes > wasm_memory_bytes {limits.wasm_memory_bytes}",
        )


def _fuel_param(params: Mapping[str, Any], limits: Limits) -> int:
    fuel = params.get("fuel", limits.wasm_fuel)
    if not isinstance(fuel, int) or isinstance(fuel, bool) or fuel < 1:
        raise ExecError(Reason.BAD_FIELD, "fuel must be a positive integer")
    if fuel > limits.wasm_fuel:
        raise ExecError(
            Reason.LIMIT_EXCEEDED, f"fuel: {fuel} asked for > wasm_fuel {limits.wasm_fuel}"
        )
    return fuel


class _Run:
    """One job's store, instance and memory; what a failure needs to be classified."""

    def __init__(self, engine: wasmtime.Engine, module: wasmtime.Module, fuel: int,
                 limits: Limits) -> None:
        self.limits = limits
        self.fuel = fuel
        self.store = wasmtime.Store(engine)
        self.store.set_limits(
            memory_size=limits.wasm_memory_bytes,
            table_elements=MAX_TABLE_ELEMENTS,
            instances=1,
            tables=MAX_TABLES,
            memories=1,
        )
        self.store.set_fuel(fuel)
        self.store.set_epoch_deadline(1)
        self.module = module
        self.memory: wasmtime.Memory | None = None
        self.input_len = 0
        self.phase = "instantiate"  # then "alloc", "run"

    def fuel_used(self) -> int:
        return self.fuel - self.store.get_fuel()

    def memory_bytes(self) -> int:
        return 0 if self.memory is None else self.memory.data_len(self.store)

    def execute(self, data: bytes) -> bytes:
        instance = wasmtime.Instance(self.store, self.module, [])
        exports = instance.exports(self.store)
        memory, alloc, run = exports["memory"], exports["alloc"], exports["run"]
        # _check_module saw the types; these narrow them for the type checker.
        assert isinstance(memory, wasmtime.Memory)
        assert isinstance(alloc, wasmtime.Func) and isinstance(run, wasmtime.Func)
        self.memory = memory

        self.phase, self.input_len = "alloc", len(data)
        ptr_raw = alloc(self.store, len(data))
        ptr = int(ptr_raw) & _U32
        if ptr + len(data) > memory.data_len(self.store):
            raise ExecError(
                Reason.EXEC_FAILED, f"alloc({len(data)}) returned {ptr}, outside memory"
            )
        if data:
            memory.write(self.store, data, ptr)

        self.phase = "run"
        packed = int(run(self.store, ptr_raw, len(data))) & _U64
        out_ptr, out_len = packed >> 32, packed & _U32
        if out_len > self.limits.max_output_bytes:
            raise ExecError(
                Reason.LIMIT_EXCEEDED,
                f"output: {out_len} bytes > max_output_bytes {self.limits.max_output_bytes}",
            )
        if out_ptr + out_len > memory.data_len(self.store):
            raise ExecError(
                Reason.EXEC_FAILED, f"run returned [{out_ptr}, +{out_len}), outside memory"
            )
        return bytes(memory.read(self.store, out_ptr, out_ptr + out_len))

    def classify(self, trap: wasmtime.Trap) -> ExecError:
        code = trap.trap_code
        if code is wasmtime.TrapCode.OUT_OF_FUEL:
            return ExecError(Reason.LIMIT_EXCEEDED, f"fuel: all {self.fuel} units used")
        if code is wasmtime.TrapCode.INTERRUPT:
            return ExecError(
                Reason.LIMIT_EXCEEDED, f"wall_time: still running after {self.limits.wall_time_s} s"
            )
        if code is wasmtime.TrapCode.STACK_OVERFLOW:
            return ExecError(Reason.LIMIT_EXCEEDED, f"stack: more than {MAX_WASM_STACK} bytes")
        size = self.memory_bytes()
        limit = self.limits.wasm_memory_bytes
        if self.memory is not None:
            if self.phase == "alloc" and size + self.input_len > limit:
                return ExecError(
                    Reason.LIMIT_EXCEEDED,
                    f"memory: alloc of {self.input_len} input bytes trapped "
                    f"({_trap_name(trap)}) with {size} bytes in use, limit {limit}",
                )
            if size + PAGE_SIZE > limit:
                return ExecError(
                    Reason.LIMIT_EXCEEDED,
                    f"memory: trapped ({_trap_name(trap)}) with {size} bytes in use, "
                    f"limit {limit}",
                )
        return ExecError(Reason.EXEC_FAILED, f"trap: {_trap_name(trap)}")


def _trap_name(trap: wasmtime.Trap) -> str:
    code = trap.trap_code
    if code is not None:
        return code.name.lower()
    return trap.message.strip().splitlines()[-1][:200] if trap.message.strip() else "trap"


class WasmExecutor:
    """Executor of ``wasm`` jobs (spec 04 §7.4, EXE-5 to EXE-8), ABI and profile in the module
    docstring.

    Each run gets its own engine, so the wall-time interruption of one job (an epoch tick)
    can never reach another job running in a neighbouring thread.
    """

    kind: str = KIND

    def _engine(self) -> wasmtime.Engine:
        # An Engine consumes its Config; building both costs about 0.2 ms.
        return wasmtime.Engine(make_config())

    def run(
        self, inputs: Mapping[str, bytes], params: Mapping[str, Any], limits: Limits
    ) -> ExecResult:
        check_names("inputs", inputs, INPUTS, frozenset())
        check_names("params", params, frozenset(), PARAMS)
        check_input_size(inputs, limits)
        fuel = _fuel_param(params, limits)
        wasm = bytes(inputs["module"])
        data = bytes(inputs["input"])
        if not wasm.startswith(WASM_HEADER):
            raise ExecError(Reason.BAD_FIELD, "module is not a binary wasm core module")
        if len(wasm) > limits.max_module_bytes:
            # Compilation time and memory grow with the module; refuse before compiling.
            raise ExecError(
                Reason.LIMIT_EXCEEDED,
                f"module: {len(wasm)} bytes > max_module_bytes {limits.max_module_bytes}",
            )
        if len(data) > limits.wasm_memory_bytes:
            raise ExecError(
                Reason.LIMIT_EXCEEDED,
                f"memory: input of {len(data)} bytes > wasm_memory_bytes "
                f"{limits.wasm_memory_bytes}",
            )

        if "checkpoint_fuel" in params:
            return _run_steps(wasm, data, fuel, params["checkpoint_fuel"], limits)
        engine = self._engine()
        try:
            module = wasmtime.Module(engine, wasm)
        except wasmtime.WasmtimeError as e:
            raise ExecError(Reason.BAD_FIELD, f"invalid module: {_first_line(e)}") from e
        _check_module(module, limits)

        job = _Run(engine, module, fuel, limits)
        start = time.perf_counter()
        timer = threading.Timer(limits.wall_time_s, engine.increment_epoch)
        timer.daemon = True
        timer.start()
        try:
            output = job.execute(data)
        except wasmtime.Trap as trap:
            raise job.classify(trap) from trap
        except wasmtime.WasmtimeError as e:
            raise ExecError(Reason.EXEC_FAILED, f"engine: {_first_line(e)}") from e
        finally:
            timer.cancel()
        meta: dict[str, int | str] = {
            "device": "cpu",
            "engine": ENGINE_NAME,
            "fuel_used": job.fuel_used(),
            "memory_bytes": job.memory_bytes(),
            "elapsed_ms": round((time.perf_counter() - start) * 1000),
        }
        return ExecResult(output=output, meta=meta)


def _run_steps(wasm: bytes, data: bytes, fuel: int, interval: Any,
               limits: Limits) -> ExecResult:
    """A step job (spec 06 WSM-5): the step module run with checkpoints every ``interval``
    fuel; the chain's commitment goes back in ``meta`` (``chain_root``, ``checkpoints``),
    which the worker signs as the result's proof. Wall time is bounded by the node, which
    stops the execution's process (EXE-9)."""
    from p2pnode.proofs import wasm_step
    from p2pnode.wire.reasons import WireError

    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
        raise ExecError(Reason.BAD_FIELD, "checkpoint_fuel must be a positive integer")
    start = time.perf_counter()
    try:
        chain = wasm_step.run(wasm, data, fuel, interval, memory_bytes=limits.wasm_memory_bytes)
    except WireError as e:
        raise ExecError(e.reason, e.detail) from e
    except wasmtime.Trap as trap:
        if trap.trap_code is wasmtime.TrapCode.OUT_OF_FUEL:
            raise ExecError(Reason.LIMIT_EXCEEDED, "fuel") from trap
        raise ExecError(Reason.EXEC_FAILED, f"trap: {_first_line(trap)}") from trap
    except wasmtime.WasmtimeError as e:
        raise ExecError(Reason.EXEC_FAILED, f"engine: {_first_line(e)}") from e
    meta: dict[str, int | str] = {
        "device": "cpu", "engine": ENGINE_NAME, "fuel_used": chain.entries[-1].fuel,
        "chain_root": chain.root().hex(), "checkpoints": len(chain.entries),
        "elapsed_ms": round((time.perf_counter() - start) * 1000),
    }
    if len(chain.output) > limits.max_output_bytes:
        raise ExecError(Reason.LIMIT_EXCEEDED, "output")
    return ExecResult(output=chain.output, meta=meta)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__
