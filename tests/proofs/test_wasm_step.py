"""Step modules: the subset check, the fuel of small programs, checkpoint chains, replays
and disputes between an honest and a cheating run (spec 06 WSM, DSP)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.jobs.executors.wasm import compile_wat
from p2pnode.jobs.wasm_examples import example_module
from p2pnode.proofs import bisect, rows, wasm_step, wasm_subset
from p2pnode.wire.reasons import Reason, WireError

LCG = example_module("step_lcg")
LIMIT = 1 << 40

# The ABI around a body: f's instructions run in step(); state in memory and globals.
SHELL = """(module (memory (export "memory") 1)
  (global $g (export "g") (mut i32) (i32.const 0))
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "init") (param i32 i32))
  (func (export "step") (result i32) %s (i32.const 0))
  (func (export "output") (result i64) (i64.const 8)))"""


def step_fuel(body: str) -> int:
    """Fuel of one step() whose body is ``body`` followed by (i32.const 0)."""
    r = wasm_step.StepRun(compile_wat(SHELL % body), LIMIT)
    before = r.start(b"").fuel
    r.step()
    return r.fuel - before


@pytest.mark.parametrize(("body", "fuel"), [
    ("", 2),  # entry 1, i32.const 1
    ("nop nop (block (nop)) (loop (nop))", 2),  # markers cost nothing
    ("(drop (i32.const 7))", 3),  # const 1, drop 0
    ("(global.set $g (i32.add (global.get $g) (i32.const 1)))", 6),
    ("(i32.store (i32.const 0) (i32.const 1))", 5),
    ("(drop (i32.load (i32.const 0)))", 4),
    ("(drop (memory.grow (i32.const 2)))", 6),  # const 1, grow 1 + 2 pages
    ("(drop (memory.grow (i32.const 100000)))", 4),  # a failed grow: 1
    ("(if (i32.const 0) (then (nop)) (else (drop (i32.const 1))))", 5),
    ("(local $i i32) (block $d (loop $l (br_if $d (i32.ge_u (local.get $i) (i32.const 3)))"
     " (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $l)))",
     2 + 3 * 9 + 4),  # 3 turns of 9, then the exit test of 4
])
def test_fuel_of_small_programs(body: str, fuel: int) -> None:
    assert step_fuel(body) == fuel


@pytest.mark.parametrize(("src", "why"), [
    ('(module (import "env" "f" (func)) (memory (export "memory") 1))', "imports"),
    ('(module (memory (export "memory") 1) (global (mut i32) (i32.const 0)))',
     "not exported"),
    ('(module (memory (export "memory") 1) (func (memory.fill (i32.const 0) (i32.const 0)'
     ' (i32.const 9))))', "0xFC"),
    ('(module (memory (export "memory") 1) (table 1 funcref) (func (table.set 0 (i32.const 0)'
     ' (ref.null func))))', "0x"),
    ('(module (memory (export "memory") 1) (func (drop (v128.const i64x2 0 0))))', "0xFD"),
])
def test_modules_outside_the_subset_are_refused(src: str, why: str) -> None:
    with pytest.raises(WireError) as e:
        wasm_subset.check(compile_wat(src))
    assert e.value.reason is Reason.BAD_FIELD and why in e.value.detail


def test_the_example_is_a_step_module_and_truncated_bytes_are_not() -> None:
    assert wasm_subset.check(LCG).mutable_globals == ("left", "steps", "x")
    for cut in (9, len(LCG) // 2, len(LCG) - 1):
        with pytest.raises(WireError):
            wasm_subset.check(LCG[:cut])


def test_chains_are_deterministic_and_every_segment_replays() -> None:
    data = (300).to_bytes(4, "little")
    a = wasm_step.run(LCG, data, LIMIT, 20_000, keep_states=True)
    b = wasm_step.run(LCG, data, LIMIT, 20_000)
    assert a.entries == b.entries and a.output == b.output and len(a.entries) > 50
    assert a.entries[-1].done and not any(e.done for e in a.entries[:-1])
    assert wasm_step.replay(LCG, data, LIMIT, 20_000, None) == a.entries[0]
    for i in range(len(a.entries) - 1):
        assert wasm_step.replay(LCG, data, LIMIT, 20_000, a.states[i]) == a.entries[i + 1]


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 299), st.integers(0, 65535), st.booleans())
def test_a_cheater_always_loses_the_dispute(at: int, where: int, honest_first: bool) -> None:
    data = (300).to_bytes(4, "little")
    honest = wasm_step.run(LCG, data, LIMIT, 20_000, keep_states=True)

    def flip(r: wasm_step.StepRun, k: int) -> None:
        if k == at:
            r.poke(where, b"\x5a")

    cheat = wasm_step.run(LCG, data, LIMIT, 20_000, tamper=flip)
    chains = (honest, cheat) if honest_first else (cheat, honest)
    leaves = [[rows.leaf_hash(x) for x in c.raw] for c in chains]
    game = bisect.Bisection(*(bisect.Claim(rows.root_of_leaves(lv), len(lv)) for lv in leaves))
    step = game.start()
    while isinstance(step, bisect.Ask):
        i = step.index
        step = game.answer(*(bisect.Answer(c.raw[i], tuple(rows.path(lv, i)))
                             for c, lv in zip(chains, leaves, strict=True)))
    h = 0 if honest_first else 1
    if cheat.entries == honest.entries:  # the flip changed nothing (same byte)
        assert isinstance(step, bisect.Lost) and not step.losers
        return
    assert isinstance(step, bisect.Segment)
    start = None if step.start == bisect.START else honest.states[step.start]
    outcome = bisect.settle(step, wasm_step.replay(LCG, data, LIMIT, 20_000, start))
    assert outcome.losers == {1 - h}
    assert game.rounds <= bisect.max_rounds(len(honest.entries))


@settings(max_examples=300, deadline=None)
@given(st.integers(8, len(LCG) - 1), st.integers(0, 255), st.binary(max_size=64))
def test_the_subset_check_refuses_garbage_with_a_reason(at: int, byte: int,
                                                        junk: bytes) -> None:
    # A mutated module, or junk after the header: a verdict or a bad_field, never a crash.
    for module in (LCG[:at] + bytes([byte]) + LCG[at + 1:], LCG[:8] + junk):
        try:
            wasm_subset.check(module)
        except WireError as e:
            assert e.reason is Reason.BAD_FIELD
