"""The wasm executor: the ABI, the determinism profile, fuel, wall time, memory, traps."""

from __future__ import annotations

import struct
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.jobs.executors import ExecError, ExecResult, Limits, compile_wat, get_executor
from p2pnode.jobs.wasm_examples import EXAMPLES, example_module, example_source
from p2pnode.wire.reasons import Reason

LIMITS = Limits(wall_time_s=30.0, wasm_fuel=50_000_000, wasm_memory_bytes=4 << 20)

# Appended to inline test modules that need the ABI's allocator.
ALLOC = """
  (global $heap (mut i32) (i32.const 1024))
  (func $alloc (export "alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $len)))
    (local.get $p))
"""


def module(body: str, memory: str = '(memory (export "memory") 1)', alloc: str = ALLOC) -> bytes:
    return compile_wat(f"(module {memory} {alloc} {body})")


def run(wasm: bytes, data: bytes = b"", limits: Limits = LIMITS, **params: Any) -> ExecResult:
    return get_executor("wasm").run({"module": wasm, "input": data}, params, limits)


def expect(reason: Reason, wasm: bytes, data: bytes = b"", limits: Limits = LIMITS,
           **params: Any) -> str:
    with pytest.raises(ExecError) as info:
        run(wasm, data, limits, **params)
    assert info.value.reason is reason, info.value
    return info.value.detail


# --- the examples --------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=3000))
def test_sum(data: bytes) -> None:
    result = run(example_module("sum"), data)
    assert result.output == struct.pack("<Q", sum(data))


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=3000))
def test_reverse(data: bytes) -> None:
    assert run(example_module("reverse"), data).output == data[::-1]


def test_inputs_that_make_the_module_grow_its_memory() -> None:
    data = bytes(range(256)) * 800  # 200 KiB: alloc grows the 64 KiB memory
    assert run(example_module("reverse"), data).output == data[::-1]
    assert run(example_module("sum"), data).output == struct.pack("<Q", sum(data))


def test_examples_are_shipped() -> None:
    for name in EXAMPLES:
        assert example_source(name).lstrip().startswith(";;")
        assert example_module(name).startswith(b"\x00asm\x01\x00\x00\x00")
    with pytest.raises(KeyError):
        example_source("../sum")


def test_meta() -> None:
    meta = run(example_module("sum"), b"abc").meta
    assert meta["device"] == "cpu"
    assert str(meta["engine"]).startswith("wasmtime")
    assert isinstance(meta["fuel_used"], int) and meta["fuel_used"] > 0
    assert meta["memory_bytes"] == 65536


def test_deterministic_output_and_fuel() -> None:
    data = bytes(range(256)) * 40
    for name in ("sum", "reverse"):
        first, second = run(example_module(name), data), run(example_module(name), data)
        assert first.output == second.output
        assert first.meta["fuel_used"] == second.meta["fuel_used"]
    # fuel follows the work done
    short = run(example_module("sum"), data[:100]).meta["fuel_used"]
    assert short < run(example_module("sum"), data).meta["fuel_used"]


def test_nothing_persists_between_jobs() -> None:
    counter = module("""
      (global $runs (mut i32) (i32.const 0))
      (func (export "run") (param i32 i32) (result i64)
        (global.set $runs (i32.add (global.get $runs) (i32.const 1)))
        (i32.store (i32.const 0) (global.get $runs))
        (i64.const 4))""")
    assert run(counter).output == run(counter).output == (1).to_bytes(4, "little")


# --- fuel ----------------------------------------------------------------------------------


def test_out_of_fuel() -> None:
    detail = expect(Reason.LIMIT_EXCEEDED, example_module("spin"), fuel=100_000)
    assert detail.startswith("fuel")


def test_fuel_param_is_exactly_enough() -> None:
    data = bytes(5000)
    used = run(example_module("sum"), data).meta["fuel_used"]
    assert isinstance(used, int)
    again = run(example_module("sum"), data, fuel=used)
    assert again.meta["fuel_used"] == used
    assert expect(Reason.LIMIT_EXCEEDED, example_module("sum"), data, fuel=used // 2) \
        .startswith("fuel")


def test_worker_fuel_limit_applies() -> None:
    expect(Reason.LIMIT_EXCEEDED, example_module("spin"), limits=Limits(wasm_fuel=10_000))


def test_fuel_above_worker_limit_refused() -> None:
    detail = expect(Reason.LIMIT_EXCEEDED, example_module("sum"), fuel=LIMITS.wasm_fuel + 1)
    assert "fuel" in detail


@pytest.mark.parametrize("fuel", [0, -5, True, "100", 1.5])
def test_bad_fuel_param(fuel: Any) -> None:
    expect(Reason.BAD_FIELD, example_module("sum"), fuel=fuel)


def test_start_function_is_metered() -> None:
    spin_at_start = module("""
      (func $spin (loop $l (br $l)))
      (start $spin)
      (func (export "run") (param i32 i32) (result i64) (i64.const 0))""")
    expect(Reason.LIMIT_EXCEEDED, spin_at_start, fuel=100_000)


# --- wall time -------------------------------------------------------------------------------


def test_wall_time_limit() -> None:
    limits = Limits(wall_time_s=0.2, wasm_fuel=10**15)
    detail = expect(Reason.LIMIT_EXCEEDED, example_module("spin"), limits=limits)
    assert detail.startswith("wall_time")


def test_wall_time_of_one_job_does_not_stop_another() -> None:
    # Job A runs into its wall-time limit while job B spins on in another thread; B must end
    # by its own (fuel) limit, never by A's interruption.
    outcomes: dict[str, str] = {}

    def job(name: str, limits: Limits) -> None:
        try:
            run(example_module("spin"), limits=limits)
        except ExecError as e:
            outcomes[name] = e.detail.split(":")[0]

    b = threading.Thread(target=job, args=("b", Limits(wall_time_s=60.0, wasm_fuel=300_000_000)))
    b.start()
    job("a", Limits(wall_time_s=0.05, wasm_fuel=10**15))
    b.join()
    assert outcomes == {"a": "wall_time", "b": "fuel"}


# --- memory ----------------------------------------------------------------------------------


def test_memory_limit_by_growing() -> None:
    detail = expect(Reason.LIMIT_EXCEEDED, example_module("grow"),
                    limits=Limits(wasm_memory_bytes=1 << 20))
    assert detail.startswith("memory")


def test_initial_memory_over_limit() -> None:
    big = module('(func (export "run") (param i32 i32) (result i64) (i64.const 0))',
                 memory='(memory (export "memory") 32)')
    assert expect(Reason.LIMIT_EXCEEDED, big, limits=Limits(wasm_memory_bytes=1 << 20)) \
        .startswith("memory")
    run(big, limits=Limits(wasm_memory_bytes=2 << 20))


def test_input_larger_than_memory_limit() -> None:
    limits = Limits(wasm_memory_bytes=1 << 20)
    assert expect(Reason.LIMIT_EXCEEDED, example_module("sum"), bytes((1 << 20) + 1),
                  limits).startswith("memory")


def test_module_larger_than_module_limit() -> None:
    wasm = example_module("sum")
    assert expect(Reason.LIMIT_EXCEEDED, wasm, limits=Limits(max_module_bytes=len(wasm) - 1)) \
        .startswith("module")
    run(wasm, limits=Limits(max_module_bytes=len(wasm)))


def test_module_limit_applies_before_compiling() -> None:
    garbage = b"\x00asm\x01\x00\x00\x00" + b"\xff" * 64
    assert expect(Reason.BAD_FIELD, garbage).startswith("invalid module")
    assert expect(Reason.LIMIT_EXCEEDED, garbage, limits=Limits(max_module_bytes=64)) \
        .startswith("module")


def test_alloc_running_into_memory_limit() -> None:
    # Just under 1 MiB fits the limit on its own, not beside the 64 KiB the module starts
    # with: alloc's one large grow fails far below the ceiling and alloc traps.
    limits = Limits(wasm_memory_bytes=1 << 20)
    assert run(example_module("sum"), bytes(800 << 10), limits=limits).output == bytes(8)
    assert expect(Reason.LIMIT_EXCEEDED, example_module("sum"), bytes((1 << 20) - 100),
                  limits).startswith("memory")


# --- traps and broken results -----------------------------------------------------------------


def test_trap() -> None:
    assert expect(Reason.EXEC_FAILED, example_module("trap")) == "trap: unreachable"


def test_out_of_bounds_access_traps() -> None:
    oob = module("""(func (export "run") (param i32 i32) (result i64)
                      (i64.load (i32.const 70000)))""")
    assert "memory_out_of_bounds" in expect(Reason.EXEC_FAILED, oob)


def test_stack_exhaustion() -> None:
    recurse = module("""
      (func $f (param i32) (result i32) (call $f (i32.add (local.get 0) (i32.const 1))))
      (func (export "run") (param i32 i32) (result i64)
        (i64.extend_i32_u (call $f (i32.const 0))))""")
    assert expect(Reason.LIMIT_EXCEEDED, recurse).startswith("stack")


def test_output_over_limit() -> None:
    huge = module('(func (export "run") (param i32 i32) (result i64) (i64.const 0xFFFFFFFF))')
    assert expect(Reason.LIMIT_EXCEEDED, huge).startswith("output")


def test_output_outside_memory() -> None:
    outside = module("""(func (export "run") (param i32 i32) (result i64)
                          (i64.const 0xFFFFFFF000000010))""")
    assert "outside memory" in expect(Reason.EXEC_FAILED, outside)


def test_alloc_outside_memory() -> None:
    # alloc always answers 16 bytes before the end of the one-page memory
    near_end = module(
        '(func (export "run") (param i32 i32) (result i64) (i64.const 0))',
        alloc='(func (export "alloc") (param i32) (result i32) (i32.const 65520))',
    )
    run(near_end, b"x" * 16)
    assert "outside memory" in expect(Reason.EXEC_FAILED, near_end, b"x" * 17)
    past_end = module(
        '(func (export "run") (param i32 i32) (result i64) (i64.const 0))',
        alloc='(func (export "alloc") (param i32) (result i32) (i32.const -16))',
    )
    assert "outside memory" in expect(Reason.EXEC_FAILED, past_end, b"")


# --- refused modules ------------------------------------------------------------------------


def test_imports_refused() -> None:
    for imp in ('(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) '
                "(result i32)))",
                '(import "env" "counter" (global i32))'):
        wasm = compile_wat(f"""(module {imp}
          (memory (export "memory") 1) {ALLOC}
          (func (export "run") (param i32 i32) (result i64) (i64.const 0)))""")
        assert expect(Reason.BAD_FIELD, wasm) == "imports are not allowed"
    imported_memory = module('(func (export "run") (param i32 i32) (result i64) (i64.const 0))',
                             memory='(import "env" "memory" (memory 1)) (export "memory" '
                                    "(memory 0))")
    assert expect(Reason.BAD_FIELD, imported_memory) == "imports are not allowed"


@pytest.mark.parametrize(
    ("wasm", "detail"),
    [
        (b"garbage", "not a binary"),
        (b"", "not a binary"),
        (b"\x00asm\x01\x00\x00\x00\xff\xff", "invalid module"),
        (b"(module)", "not a binary"),  # text format is not accepted on the wire
        (b"\x00asm\x0d\x00\x01\x00", "not a binary"),  # a component, not a core module
    ],
)
def test_garbage_refused(wasm: bytes, detail: str) -> None:
    assert detail in expect(Reason.BAD_FIELD, wasm)


@pytest.mark.parametrize(
    "wat",
    [
        # no memory export
        '(module (memory 1) (func (export "alloc") (param i32) (result i32) (i32.const 0))'
        ' (func (export "run") (param i32 i32) (result i64) (i64.const 0)))',
        # no alloc
        '(module (memory (export "memory") 1)'
        ' (func (export "run") (param i32 i32) (result i64) (i64.const 0)))',
        # run with the wrong result type
        f'(module (memory (export "memory") 1) {ALLOC}'
        ' (func (export "run") (param i32 i32) (result i32) (i32.const 0)))',
        # alloc that is a global
        '(module (memory (export "memory") 1) (global (export "alloc") i32 (i32.const 0))'
        ' (func (export "run") (param i32 i32) (result i64) (i64.const 0)))',
    ],
)
def test_abi_mismatch_refused(wat: str) -> None:
    expect(Reason.BAD_FIELD, compile_wat(wat))


def test_threads_refused() -> None:
    shared = compile_wat(f"""(module (memory (export "memory") 1 1 shared) {ALLOC}
      (func (export "run") (param i32 i32) (result i64) (i64.const 0)))""")
    assert "invalid module" in expect(Reason.BAD_FIELD, shared)


def test_relaxed_simd_refused() -> None:
    relaxed = module("""(func (export "run") (param i32 i32) (result i64)
      (drop (i8x16.relaxed_swizzle (v128.const i64x2 0 0) (v128.const i64x2 0 0)))
      (i64.const 0))""")
    assert "invalid module" in expect(Reason.BAD_FIELD, relaxed)


def test_nan_results_are_canonical() -> None:
    # A NaN with a payload in, through an arithmetic op: hardware would keep (x86) or drop
    # (ARM) the payload and sign; the profile makes every NaN result the canonical one.
    nan = module("""(func (export "run") (param i32 i32) (result i64)
      (f32.store (i32.const 0)
        (f32.add (f32.reinterpret_i32 (i32.const 0xFFA00001)) (f32.const 1)))
      (f64.store (i32.const 8)
        (f64.div (f64.const 0) (f64.const 0)))
      (i64.const 16))""")
    out = run(nan).output
    assert out[:4] == (0x7FC00000).to_bytes(4, "little")
    assert out[8:] == (0x7FF8000000000000).to_bytes(8, "little")


# --- inputs and params -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "params"),
    [({"module": b"x"}, {}), ({"input": b""}, {}), ({"module": b"x", "input": b"", "x": b""}, {}),
     (None, {"memory": 5}), ({"module": "text", "input": b""}, {})],
)
def test_bad_inputs(inputs: dict[str, Any] | None, params: dict[str, Any]) -> None:
    ok = {"module": example_module("sum"), "input": b""}
    with pytest.raises(ExecError) as info:
        get_executor("wasm").run(inputs if inputs is not None else ok, params, LIMITS)
    assert info.value.reason is Reason.BAD_FIELD


def test_input_size_limit() -> None:
    wasm = example_module("sum")
    limits = Limits(max_input_bytes=len(wasm) + 10)
    run(wasm, bytes(10), limits)
    assert expect(Reason.LIMIT_EXCEEDED, wasm, bytes(11), limits).startswith("input")
