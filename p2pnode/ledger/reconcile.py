"""Ledger set reconciliation: the session between two replicas (sync/1), sans-IO.

The initiator I and the responder R each hold a set of 32-byte keys (the digests of ledger
element ids). I learns the symmetric difference, ``missing`` (keys only R holds) and
``extra`` (keys only I holds), from a rateless IBLT (:mod:`p2pnode.ledger.riblt`):

    I -> R  sync.hello    {"t", "n": |S_I|, "fp": bstr .size 16}
    R -> I  sync.same     {"t"}                              n and fp equal R's: done
    R -> I  sync.symbols  {"t", "from": 0, "sym": bstr, "cnt": [uint, ...]}
    I -> R  sync.more     {"t", "from": m, "count": k}       until I has decoded
    R -> I  sync.symbols  {"t", "from": m, "sym", "cnt"}      exactly symbols [m, m + k)
    I -> R  sync.want     {"t", "ids": [bstr .size 32, ...]}  missing, sorted, in pieces
    I -> R  sync.end      {"t", "have": len(extra)}

``fp`` is sha256(b"p2pnode/sync/fp" || the sorted keys)[:16]. ``sym`` is the symbols'
wire form, 40 bytes each (sum, then chk little-endian); ``cnt`` R's raw counts, at most
2^40 each. Symbol 0 holds every key, so its count tells I the size n_R of R's set.

    first batch   first_batch(n_I, n_R) = min(4096, max(32, ceil(1.5 * |n_I - n_R|)))
    next batch    min(4096, max(32, m // 2), MAX_SYMBOLS - m)   (growth 1.5x)
    MAX_SYMBOLS   min(2^18, 2 * (n_I + n_R) + 1024)

When m reaches MAX_SYMBOLS undecoded, the session ends with LIMIT_EXCEEDED on I, and R
refuses a ``sync.more`` past it the same way. R checks every ``sync.more`` asks for exactly
the next batch, every wanted id is one it holds (ids increase across the whole session),
and ``have`` squares the books: n_I = n_R - len(wanted) + have. A ``sync.want`` holds 1 to
1024 ids and is sent only when something is missing. Moving the elements themselves is the
caller's: the machines expose ``missing``/``extra`` and ``wanted``.

The machines take raw messages and return the encoded messages to send; they read no
clock, draw no randomness and do no I/O. A refused message raises :class:`WireError` and
leaves the machine failed (BAD_STATE for anything after).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from p2pnode.ledger import riblt
from p2pnode.wire import cbor
from p2pnode.wire.fields import bstr, list_of, map_exact, uint
from p2pnode.wire.reasons import Reason, WireError

T_HELLO, T_SAME, T_SYMBOLS = "sync.hello", "sync.same", "sync.symbols"
T_MORE, T_WANT, T_END = "sync.more", "sync.want", "sync.end"
FP_DOMAIN = b"p2pnode/sync/fp"
FP_SIZE = 16
MIN_BATCH = 32
MAX_BATCH = 4096
MAX_WANT = 1024
MAX_SET = 1 << 40  # the largest n, count or have accepted
SYMBOLS_CAP = 1 << 18
# A full sync.symbols: 40 bytes and a count of at most 9 bytes a symbol, and the rest.
MAX_SYNC_MESSAGE = MAX_BATCH * (riblt.SYMBOL_SIZE + 9) + 64

_KEYS = {
    T_HELLO: frozenset({"t", "n", "fp"}),
    T_SAME: frozenset({"t"}),
    T_SYMBOLS: frozenset({"t", "from", "sym", "cnt"}),
    T_MORE: frozenset({"t", "from", "count"}),
    T_WANT: frozenset({"t", "ids"}),
    T_END: frozenset({"t", "have"}),
}


@dataclass(frozen=True, slots=True)
class Hello:
    n: int
    fp: bytes


@dataclass(frozen=True, slots=True)
class Same:
    pass


@dataclass(frozen=True, slots=True)
class Batch:
    """``sync.symbols``: symbols [start, start + len(cnt))."""

    start: int
    sym: bytes
    cnt: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class More:
    start: int
    count: int


@dataclass(frozen=True, slots=True)
class Want:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class End:
    have: int


Message = Hello | Same | Batch | More | Want | End


def first_batch(n_i: int, n_r: int) -> int:
    d = abs(n_i - n_r)
    return min(MAX_BATCH, max(MIN_BATCH, (3 * d + 1) // 2))  # ceil(1.5 d), exactly


def max_symbols(n_i: int, n_r: int) -> int:
    return min(SYMBOLS_CAP, 2 * (n_i + n_r) + 1024)


def next_batch(m: int, limit: int) -> int:
    """The size of the batch after the first ``m`` symbols; 0 once at ``limit``."""
    return max(0, min(MAX_BATCH, max(MIN_BATCH, m // 2), limit - m))


def fingerprint(keys: list[bytes]) -> bytes:
    """``fp`` of a sorted list of keys."""
    return hashlib.sha256(FP_DOMAIN + b"".join(keys)).digest()[:FP_SIZE]


def encode_message(msg: Message) -> bytes:
    v: dict[str, Any]
    if isinstance(msg, Hello):
        v = {"t": T_HELLO, "n": msg.n, "fp": msg.fp}
    elif isinstance(msg, Same):
        v = {"t": T_SAME}
    elif isinstance(msg, Batch):
        v = {"t": T_SYMBOLS, "from": msg.start, "sym": msg.sym, "cnt": list(msg.cnt)}
    elif isinstance(msg, More):
        v = {"t": T_MORE, "from": msg.start, "count": msg.count}
    elif isinstance(msg, Want):
        v = {"t": T_WANT, "ids": list(msg.ids)}
    else:
        v = {"t": T_END, "have": msg.have}
    return cbor.encode(v)


def _bounded(v: Any, what: str, lo: int = 0, hi: int = MAX_SET) -> int:
    n = uint(v, what)
    if not lo <= n <= hi:
        raise WireError(Reason.BAD_FIELD, "%s must be in %d..%d" % (what, lo, hi))
    return n


_LATER = frozenset({"sync.item", "sync.ack"})


def decode_message(data: bytes) -> Message:
    """One sync message, every field checked that needs no session state."""
    v = cbor.decode(data, max_size=MAX_SYNC_MESSAGE)
    t = v.get("t") if isinstance(v, dict) else None
    if not isinstance(t, str):
        raise WireError(Reason.BAD_FIELD, "a sync message is a map with a text t")
    if t in _LATER:  # RCN-8's messages: defined, but not during reconciliation
        raise WireError(Reason.BAD_STATE, "%s before the reconciliation ended" % t)
    if t not in _KEYS:
        raise WireError(Reason.UNKNOWN_TYPE, "sync message %r" % t[:32])
    v = map_exact(v, _KEYS[t], t)
    if t == T_HELLO:
        return Hello(_bounded(v["n"], "n"), bstr(v["fp"], "fp", size=FP_SIZE))
    if t == T_SAME:
        return Same()
    if t == T_SYMBOLS:
        cnt = tuple(_bounded(c, "cnt") for c in list_of(v["cnt"], MAX_BATCH, "cnt"))
        if not cnt:
            raise WireError(Reason.BAD_FIELD, "cnt is empty")
        sym = bstr(v["sym"], "sym", size=riblt.SYMBOL_SIZE * len(cnt))
        return Batch(uint(v["from"], "from"), sym, cnt)
    if t == T_MORE:
        return More(uint(v["from"], "from"), _bounded(v["count"], "count", 1, MAX_BATCH))
    if t == T_WANT:
        ids = tuple(bstr(i, "ids", size=riblt.KEY_SIZE)
                    for i in list_of(v["ids"], MAX_WANT, "ids"))
        if not ids or any(a >= b for a, b in pairwise(ids)):
            raise WireError(Reason.BAD_FIELD, "ids must be 1..%d increasing" % MAX_WANT)
        return Want(ids)
    return End(_bounded(v["have"], "have"))


def _key_list(keys: Iterable[bytes]) -> list[bytes]:
    ks = sorted(keys)
    for i, k in enumerate(ks):
        if type(k) is not bytes or len(k) != riblt.KEY_SIZE:
            raise ValueError("a key must be %d bytes" % riblt.KEY_SIZE)
        if i and ks[i - 1] == k:
            raise ValueError("duplicate key")
    return ks


class _Machine:
    _state: str

    def __init__(self, keys: Iterable[bytes]) -> None:
        self._keys = _key_list(keys)
        self.done = False
        self.rounds = 0
        self.sent_bytes = 0
        self.received_bytes = 0

    def receive(self, data: bytes) -> list[bytes]:
        """The next messages to send (encoded) in answer to ``data``."""
        if self._state in ("done", "failed"):
            raise WireError(Reason.BAD_STATE, "the session is over")
        self.received_bytes += len(data)
        try:
            out = [encode_message(m) for m in self._step(decode_message(data))]
        except WireError:
            self._state = "failed"
            raise
        self.sent_bytes += sum(map(len, out))
        return out

    def _step(self, msg: Message) -> list[Message]:
        raise NotImplementedError

    def _wrong(self, msg: Message) -> WireError:
        return WireError(Reason.BAD_STATE, "%s in state %s" % (type(msg).__name__, self._state))


class Initiator(_Machine):
    """I's side: :meth:`start`, then :meth:`receive` each message of R until ``done``."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        super().__init__(keys)
        self._state = "new"
        self.same = False
        self.missing: list[bytes] = []
        self.extra: list[bytes] = []
        self._m = 0
        self._asked = 0
        self._limit = 0
        self._encoder: riblt.Encoder | None = None
        self._decoder: riblt.Decoder | None = None

    def start(self) -> bytes:
        if self._state != "new":
            raise WireError(Reason.BAD_STATE, "already started")
        self._state = "hello"
        data = encode_message(Hello(len(self._keys), fingerprint(self._keys)))
        self.sent_bytes += len(data)
        return data

    def _step(self, msg: Message) -> list[Message]:
        if self._state == "hello" and isinstance(msg, Same):
            self.rounds += 1
            self._state, self.done, self.same = "done", True, True
            return []
        if self._state not in ("hello", "symbols") or not isinstance(msg, Batch):
            raise self._wrong(msg)
        if msg.start != self._m:
            raise WireError(Reason.BAD_FIELD, "from %d, expected %d" % (msg.start, self._m))
        if self._state == "hello":
            n_i, n_r = len(self._keys), msg.cnt[0]
            self._asked = first_batch(n_i, n_r)
            self._limit = max_symbols(n_i, n_r)
            self._encoder = riblt.Encoder(self._keys)
            self._decoder = riblt.Decoder(frozenset(self._keys), n_r)
            self._state = "symbols"
        assert self._encoder is not None and self._decoder is not None
        if len(msg.cnt) != self._asked:
            raise WireError(Reason.BAD_FIELD, "%d symbols, asked %d" % (len(msg.cnt), self._asked))
        self.rounds += 1
        self._m += len(msg.cnt)
        theirs = riblt.Symbols.from_bytes(msg.sym, msg.cnt)
        try:
            self._decoder.push(theirs - self._encoder.extend(self._m))
        except riblt.Inconsistent as e:
            raise WireError(Reason.BAD_FIELD, "sync.symbols: %s" % e) from None
        if self._decoder.complete:
            return self._finish(self._decoder)
        self._asked = next_batch(self._m, self._limit)
        if not self._asked:
            raise WireError(Reason.LIMIT_EXCEEDED, "undecoded after %d symbols" % self._m)
        return [More(self._m, self._asked)]

    def _finish(self, decoder: riblt.Decoder) -> list[Message]:
        self.missing, self.extra = sorted(decoder.remote), sorted(decoder.local)
        self._state, self.done = "done", True
        out: list[Message] = [Want(tuple(self.missing[i:i + MAX_WANT]))
                              for i in range(0, len(self.missing), MAX_WANT)]
        return [*out, End(len(self.extra))]


class Responder(_Machine):
    """R's side: :meth:`receive` each message of I; ``wanted`` collects what I asked for,
    ``have`` is how many elements I announced it will send."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        super().__init__(keys)
        self._state = "hello"
        self._held = frozenset(self._keys)
        self.wanted: list[bytes] = []
        self.have: int | None = None
        self._n_i = 0
        self._m = 0
        self._limit = 0
        self._encoder: riblt.Encoder | None = None

    def _step(self, msg: Message) -> list[Message]:
        if self._state == "hello" and isinstance(msg, Hello):
            self.rounds += 1
            n_r = len(self._keys)
            if msg.n == n_r and msg.fp == fingerprint(self._keys):
                self._state, self.done = "done", True
                return [Same()]
            self._n_i, self._limit = msg.n, max_symbols(msg.n, n_r)
            self._encoder = riblt.Encoder(self._keys)
            self._state = "symbols"
            return [self._batch(first_batch(msg.n, n_r))]
        if self._state == "symbols" and isinstance(msg, More):
            self.rounds += 1
            if msg.start != self._m:
                raise WireError(Reason.BAD_FIELD, "from %d, expected %d" % (msg.start, self._m))
            if msg.start + msg.count > self._limit:
                raise WireError(Reason.LIMIT_EXCEEDED, "past %d symbols" % self._limit)
            if msg.count != next_batch(self._m, self._limit):
                raise WireError(Reason.BAD_FIELD, "count %d is not the next batch" % msg.count)
            return [self._batch(msg.count)]
        if self._state in ("symbols", "want") and isinstance(msg, Want):
            last = self.wanted[-1] if self.wanted else b""
            for k in msg.ids:
                if k <= last or k not in self._held:
                    raise WireError(Reason.BAD_FIELD, "want of an id not held or not in order")
                last = k
            self.wanted.extend(msg.ids)
            self._state = "want"
            return []
        if self._state in ("symbols", "want") and isinstance(msg, End):
            if self._n_i != len(self._keys) - len(self.wanted) + msg.have:
                raise WireError(Reason.BAD_FIELD, "have does not square with n and the wants")
            self.have = msg.have
            self._state, self.done = "done", True
            return []
        raise self._wrong(msg)

    def _batch(self, k: int) -> Batch:
        assert self._encoder is not None
        syms = self._encoder.extend(self._m + k)
        start, self._m = self._m, self._m + k
        return Batch(start, syms.to_bytes(), tuple(syms.count.tolist()))


@dataclass(frozen=True, slots=True)
class SessionResult:
    missing: list[bytes]
    extra: list[bytes]
    wanted: list[bytes]
    bytes_i2r: int
    bytes_r2i: int
    rounds: int
    transcript: list[tuple[str, bytes]] = field(repr=False)

    same: bool = False

    @property
    def total_bytes(self) -> int:
        return self.bytes_i2r + self.bytes_r2i


def run_session(keys_i: Iterable[bytes], keys_r: Iterable[bytes]) -> SessionResult:
    """Both machines driven in process; the transcript's directions are "i>r" and "r>i"."""
    ini, res = Initiator(keys_i), Responder(keys_r)
    transcript: list[tuple[str, bytes]] = []
    outbox = [ini.start()]
    while outbox:
        replies: list[bytes] = []
        for m in outbox:
            transcript.append(("i>r", m))
            replies += res.receive(m)
        outbox = []
        for r in replies:
            transcript.append(("r>i", r))
            outbox += ini.receive(r)
    return SessionResult(ini.missing, ini.extra, res.wanted, ini.sent_bytes,
                         ini.received_bytes, ini.rounds, transcript, ini.same)
