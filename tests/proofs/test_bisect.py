"""The bisection game: an honest worker never loses, whatever the cheater commits or
answers, and the game takes at most 1 + ceil(log2(checkpoints)) questions."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.proofs import rows
from p2pnode.proofs.bisect import (
    START,
    Answer,
    Ask,
    Bisection,
    Claim,
    Entry,
    Lost,
    Segment,
    max_rounds,
    settle,
)


def chain(n: int, salt: bytes = b"") -> list[Entry]:
    return [Entry(fuel=100 * (i + 1), done=i == n - 1,
                  digest=hashlib.sha256(b"state %d" % i + salt).digest()) for i in range(n)]


class Party:
    def __init__(self, entries: list[Entry], lie_at: int | None = None) -> None:
        self.raw = [e.encode() for e in entries]
        self.leaves = [rows.leaf_hash(r) for r in self.raw]
        self.claim = Claim(rows.root_of_leaves(self.leaves), len(entries))
        self.lie_at = lie_at  # answer this question with garbage

    def answer(self, index: int, question: int) -> Answer | None:
        if question == self.lie_at or not 0 <= index < len(self.raw):
            return Answer(b"\x00" * 41, ())
        return Answer(self.raw[index], tuple(rows.path(self.leaves, index)))


def play(honest: list[Entry], parties: tuple[Party, Party]) -> tuple[Lost, int]:
    game = Bisection(parties[0].claim, parties[1].claim)
    step = game.start()
    q = 0
    while isinstance(step, Ask):
        step = game.answer(parties[0].answer(step.index, q), parties[1].answer(step.index, q))
        q += 1
    if isinstance(step, Segment):
        # The referee replays from the agreed state: determinism gives the honest entry.
        assert step.agreed == (None if step.start == START else honest[step.start])
        step = settle(step, honest[step.start + 1])
    assert isinstance(step, Lost)
    return step, game.rounds


@st.composite
def cheats(draw: st.DrawFn) -> tuple[list[Entry], list[Entry], int | None]:
    n = draw(st.integers(1, 300))
    honest = chain(n)
    kind = draw(st.sampled_from(["diverge", "shorter", "longer", "same"]))
    if kind == "diverge":
        j = draw(st.integers(0, n - 1))
        cheat = honest[:j] + chain(n, b"x")[j:]
    elif kind == "shorter" and n > 1:
        m = draw(st.integers(1, n - 1))
        cheat = [*honest[:m - 1], Entry(honest[m - 1].fuel, True, honest[m - 1].digest)]
    elif kind == "longer":
        extra = draw(st.integers(1, 20))
        cheat = honest[:-1] + [Entry(honest[-1].fuel, False, honest[-1].digest)] + [
            Entry(honest[-1].fuel + 10 * (k + 1), k == extra - 1, bytes([k]) * 32)
            for k in range(extra)]
    else:
        cheat = list(honest)
    lie = draw(st.none() | st.integers(0, 12))
    return honest, cheat, lie


@settings(max_examples=300, deadline=None)
@given(cheats(), st.booleans())
def test_the_honest_worker_never_loses(case: tuple[list[Entry], list[Entry], int | None],
                                       honest_first: bool) -> None:
    honest, cheat, lie = case
    h, c = Party(honest), Party(cheat, lie_at=lie)
    parties = (h, c) if honest_first else (c, h)
    hi, ci = (0, 1) if honest_first else (1, 0)
    outcome, rounds = play(honest, parties)
    assert hi not in outcome.losers
    if cheat != honest:
        assert ci in outcome.losers, outcome.why
    else:
        assert outcome.losers == frozenset() or lie is not None
    assert rounds <= max_rounds(min(len(honest), len(cheat)))


def test_rounds_at_512_checkpoints_and_the_segment() -> None:
    honest = chain(512)
    cheat = honest[:300] + chain(512, b"x")[300:]
    outcome, rounds = play(honest, (Party(honest), Party(cheat)))
    assert outcome.losers == {1} and rounds == 10 == max_rounds(512)


def test_an_empty_chain_loses() -> None:
    game = Bisection(Claim(bytes(32), 0), Party(chain(3)).claim)
    step = game.start()
    assert isinstance(step, Lost) and step.losers == {0}
