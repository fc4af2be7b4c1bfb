"""Running a step module with checkpoints, and replaying one segment (spec 06 WSM).

ABI (WSM-2): a step module (WSM-1) exports ``memory``, ``alloc(len: i32) -> i32``,
``init(ptr: i32, len: i32)``, ``step() -> i32`` and ``output() -> i64``. The host writes
the input at ``alloc(len)``, calls ``init`` once, then ``step`` until it returns 0, then
reads ``output()`` as ``(ptr << 32) | len``. Between calls the whole state is the memory
and the exported mutable globals, so the host can hash it and a referee can restore it.

Checkpoints (WSM-3): entry 0 is the state after ``init``; then one after the first
``step`` that ends at least ``interval`` fuel after the previous entry, and one after the
last ``step`` (``done``). An entry is ``fuel || done || digest`` (:mod:`bisect`), with

    digest = SHA-256("p2pnode/wasm-state/1" || 0x00 || fuel (8, BE) || done (1)
                     || for each exported mutable global, by name:
                        len(name) (2, BE) || name || value (8, two's complement, LE)
                     || memory size (8, BE) || memory)

Fuel is counted by the engine and is what spec 06 WSM-4 states per instruction.
"""

from __future__ import annotations

import ctypes
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import wasmtime

from p2pnode.jobs.executors.wasm import PAGE_SIZE, make_config
from p2pnode.proofs import rows, wasm_subset
from p2pnode.proofs.bisect import Entry
from p2pnode.wire import cbor
from p2pnode.wire.fields import bstr, list_of, map_exact, uint
from p2pnode.wire.reasons import Reason, WireError

DIGEST_DOMAIN = b"p2pnode/wasm-state/1\x00"
# WSM-3: a chain has at most this many entries (41 bytes each: 2.7 MB); a run that would
# record more fails ``limit_exceeded``, so a worker, a referee and an audit path are bounded.
MAX_CHECKPOINTS = 1 << 16
_STATE_KEYS = frozenset({"fuel", "globals", "memory"})
_EXPORTS = {"alloc": (["i32"], ["i32"]), "init": (["i32", "i32"], []),
            "step": ([], ["i32"]), "output": ([], ["i64"])}


def step_config() -> wasmtime.Config:
    """The determinism profile of the wasm executor, without bulk memory (charged by length)
    and SIMD: the instruction set of WSM-1, whose fuel WSM-4 states."""
    config = make_config()
    config.wasm_simd = False
    config.wasm_bulk_memory = False
    config.wasm_tail_call = False
    return config


_ENGINE: wasmtime.Engine | None = None


def engine() -> wasmtime.Engine:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = wasmtime.Engine(step_config())
    return _ENGINE


def digest(fuel: int, done: bool, globals_: tuple[tuple[str, int], ...],
           memory: memoryview) -> bytes:
    """WSM-3's state digest."""
    h = hashlib.sha256(DIGEST_DOMAIN)
    h.update(fuel.to_bytes(8, "big") + bytes([done]))
    for name, value in globals_:
        raw = name.encode()
        h.update(len(raw).to_bytes(2, "big") + raw + (value & (2**64 - 1)).to_bytes(8, "little"))
    h.update(len(memory).to_bytes(8, "big"))
    h.update(memory)
    return h.digest()


@dataclass(frozen=True)
class State:
    """A checkpoint's full state: what a referee restores."""

    fuel: int
    done: bool
    globals: tuple[tuple[str, int], ...]
    memory: bytes

    def digest(self) -> bytes:
        return digest(self.fuel, self.done, self.globals, memoryview(self.memory))

    def entry(self) -> Entry:
        return Entry(self.fuel, self.done, self.digest())

    def encode(self) -> bytes:
        """DSP-3's state blob (a checkpoint before the last: ``done`` is false):
        ``{"fuel": uint, "globals": [* [name, int]], "memory": bstr}``."""
        return cbor.encode({"fuel": self.fuel, "globals": [list(g) for g in self.globals],
                            "memory": self.memory})

    @classmethod
    def decode(cls, data: bytes, names: tuple[str, ...]) -> State:
        """A state blob for a module whose exported mutable globals are ``names`` (in
        WSM-3's order); raises WireError ``bad_field`` on anything else."""
        m = map_exact(cbor.decode(data, max_size=max(len(data), 1)), _STATE_KEYS, "state")
        fuel = uint(m["fuel"], "state.fuel")
        globals_ = list_of(m["globals"], len(names), "state.globals")
        memory = bstr(m["memory"], "state.memory")
        got: list[tuple[str, int]] = []
        for g, name in zip(globals_, names, strict=False):
            if not isinstance(g, list) or len(g) != 2 or g[0] != name or \
                    not isinstance(g[1], int) or isinstance(g[1], bool) or \
                    not -(2**63) <= g[1] < 2**63:
                raise WireError(Reason.BAD_FIELD, f"state.globals: {name} as [name, int]")
            got.append((name, g[1]))
        if len(got) != len(names) or len(memory) % PAGE_SIZE:
            raise WireError(Reason.BAD_FIELD, "state: every global, and whole pages")
        return cls(fuel, False, tuple(got), memory)


@dataclass
class Chain:
    entries: list[Entry] = field(default_factory=list)
    states: list[State] = field(default_factory=list)  # kept only when asked to
    output: bytes = b""

    @property
    def raw(self) -> list[bytes]:
        return [e.encode() for e in self.entries]

    def root(self) -> bytes:
        return rows.root(self.raw)


class StepRun:
    """One execution of a step module under a fuel limit."""

    def __init__(self, module: bytes, fuel: int, memory_bytes: int = 256 << 20,
                 budget: int | None = None) -> None:
        subset = wasm_subset.check(module)
        self.globals = subset.mutable_globals
        try:
            self.module = wasmtime.Module(engine(), module)
        except wasmtime.WasmtimeError as e:
            raise WireError(Reason.BAD_FIELD, f"module does not validate: {e}") from e
        exports = {e.name: e.type for e in self.module.exports}
        for name, (params, results) in _EXPORTS.items():
            ft = exports.get(name)
            if not isinstance(ft, wasmtime.FuncType) or \
                    ([str(t) for t in ft.params], [str(t) for t in ft.results]) != \
                    (params, results):
                raise WireError(Reason.BAD_FIELD, f"a step module exports {name}{params}")
        if not isinstance(exports.get("memory"), wasmtime.MemoryType):
            raise WireError(Reason.BAD_FIELD, "a step module exports its memory")
        self.job_limit = self.limit = fuel
        self.store = wasmtime.Store(engine())
        self.store.set_limits(memory_size=memory_bytes, instances=1, memories=1)
        self.store.set_fuel(fuel)
        self.budget_bound = False  # whether a cap, not the job's fuel, ends the run
        if budget is not None:
            self.cap(budget)
        self.store.set_epoch_deadline(1 << 62)
        self.instance = wasmtime.Instance(self.store, self.module, [])
        ex = self.instance.exports(self.store)
        memory = ex["memory"]
        assert isinstance(memory, wasmtime.Memory)
        self._memory = memory
        self._fn: dict[str, wasmtime.Func] = {}
        for n in _EXPORTS:
            f = ex[n]
            assert isinstance(f, wasmtime.Func)
            self._fn[n] = f
        self._globals: dict[str, wasmtime.Global] = {}
        for n in self.globals:
            g = ex[n]
            assert isinstance(g, wasmtime.Global)
            self._globals[n] = g
        self.done = False

    def cap(self, budget: int) -> None:
        """From now on spend at most ``budget`` more fuel (a referee's bound): running out
        then traps with ``budget_bound`` set."""
        left = self.store.get_fuel()
        self.budget_bound = budget < left
        if self.budget_bound:
            self.store.set_fuel(budget)
            self.limit -= left - budget

    @property
    def fuel(self) -> int:
        return self.limit - self.store.get_fuel()

    def _globals_now(self) -> tuple[tuple[str, int], ...]:
        return tuple((n, _int(g.value(self.store))) for n, g in self._globals.items())

    def _memory_view(self) -> memoryview:
        """The linear memory in place (valid until the module next runs)."""
        n = self._memory.data_len(self.store)
        ptr = self._memory.data_ptr(self.store)
        return memoryview((ctypes.c_ubyte * n).from_address(ctypes.addressof(ptr.contents)))

    def state(self) -> State:
        return State(self.fuel, self.done, self._globals_now(), bytes(self._memory_view()))

    def entry(self) -> Entry:
        """This moment's checkpoint entry, hashing the memory in place (no copy)."""
        view = self._memory_view()
        return Entry(self.fuel, self.done, digest(self.fuel, self.done, self._globals_now(),
                                                  view))

    def restore(self, s: State) -> None:
        """Put ``s`` back: memory (grown to its size), globals and the fuel used."""
        mem = self._memory
        have = mem.data_len(self.store)
        if len(s.memory) > have:
            mem.grow(self.store, (len(s.memory) - have) // PAGE_SIZE)
        elif len(s.memory) < have:
            raise ValueError("a state smaller than the instance's memory")
        mem.write(self.store, s.memory, 0)
        for n, v in s.globals:
            self._globals[n].set_value(self.store, v)
        if s.fuel > self.job_limit:
            raise ValueError("a state past the job's fuel")
        self.limit = self.job_limit
        self.store.set_fuel(self.limit - s.fuel)
        self.budget_bound = False
        self.done = s.done

    def poke(self, at: int, data: bytes) -> None:
        """Write into the memory between steps (a cheater's move, for tests and benchmarks)."""
        self._memory.write(self.store, data, at)

    def flip(self, at: int) -> None:
        """Invert one byte of memory (a cheater's move, for testnets and benchmarks)."""
        view = self._memory_view().cast("B")
        view[at] ^= 0xFF

    def start(self, data: bytes) -> State:
        ptr = _int(self._fn["alloc"](self.store, len(data))) & 0xFFFFFFFF
        self._memory.write(self.store, data, ptr)
        self._fn["init"](self.store, ptr, len(data))
        return self.state()

    def step(self) -> None:
        if not _int(self._fn["step"](self.store)):
            self.done = True

    def output(self) -> bytes:
        r = _int(self._fn["output"](self.store)) & (2**64 - 1)
        ptr, n = r >> 32, r & 0xFFFFFFFF
        return bytes(self._memory.read(self.store, ptr, ptr + n))


def _int(v: object) -> int:
    if not isinstance(v, int):
        raise WireError(Reason.BAD_FIELD, "a step module's export returned no integer")
    return v


Tamper = Callable[[StepRun, int], None]


def run(module: bytes, data: bytes, fuel: int, interval: int, *, keep_states: bool = False,
        tamper: Tamper | None = None, memory_bytes: int = 256 << 20,
        state_at: int | None = None) -> Chain:
    """Execute to the end, with a checkpoint every ``interval`` fuel (WSM-3).
    ``tamper(run, steps)`` is called after each step: a cheater's hook, for tests and
    benchmarks. With ``state_at``, the state at that entry is kept (``states[0]``) and the
    run stops there (a worker answering a referee, DSP-3). Raises WireError
    ``limit_exceeded`` beyond MAX_CHECKPOINTS entries."""
    r = StepRun(module, fuel, memory_bytes)
    chain = Chain()
    r.start(data)
    last, steps = _record(chain, r, keep_states or state_at == 0), 0
    while not r.done and state_at != len(chain.entries) - 1:
        r.step()
        steps += 1
        if tamper is not None:
            tamper(r, steps)
        if r.done or r.fuel - last >= interval:
            if len(chain.entries) >= MAX_CHECKPOINTS:
                raise WireError(Reason.LIMIT_EXCEEDED,
                                f"more than {MAX_CHECKPOINTS} checkpoints")
            last = _record(chain, r, keep_states or state_at == len(chain.entries))
    if state_at is None:
        chain.output = r.output()
    return chain


def _record(chain: Chain, r: StepRun, keep: bool) -> int:
    """Append this moment's entry (and state, when kept); returns its fuel."""
    if keep:
        s = r.state()
        chain.entries.append(s.entry())
        chain.states.append(s)
    else:
        chain.entries.append(r.entry())
    return chain.entries[-1].fuel


def replay(module: bytes, data: bytes, fuel: int, interval: int,
           start: State | None) -> Entry:
    """A referee's replay of one segment: from ``start`` (None: the run's start, through
    ``init``) to the next checkpoint; returns its entry."""
    r = StepRun(module, fuel)
    r.start(data)
    if start is None:
        return r.entry()
    r.restore(start)
    while True:
        r.step()
        if r.done or r.fuel - start.fuel >= interval:
            return r.entry()


def fuel_only(module: bytes, data: bytes, fuel: int) -> tuple[int, bytes]:
    """The same execution with fuel metering alone (the checkpoints' baseline)."""
    r = StepRun(module, fuel)
    r.start(data)
    while not r.done:
        r.step()
    return r.fuel, r.output()
