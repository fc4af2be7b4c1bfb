"""The DHT server's record policy and stores (spec 03 §5.2, KAD-1 to KAD-5), without a
network; and the provider lookup (KAD-10)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from p2pnode.dhtpolicy import (
    KadLimits,
    KadPolicy,
    ProviderBook,
    ProviderLookup,
    RecordCheck,
    ValueBook,
    namespace_of,
)
from p2pnode.wire.reasons import ACCEPT, Reason, Reject, Verdict

LIMITS = KadLimits(max_record_bytes=100, max_key_bytes=40, max_records=3, max_store_bytes=1000,
                   record_ttl_s=60.0, max_providers_per_key=2, max_providers_per_peer=3,
                   max_providers=5, provider_ttl_s=30.0)


def ok_until(expiry: float | None) -> RecordCheck:
    def check(key: str, value: bytes, now: float) -> tuple[Verdict, float | None]:
        if value == b"bad":
            return Reject(Reason.BAD_SIGNATURE), None
        return ACCEPT, expiry
    return check


def policy(expiry: float | None = None) -> KadPolicy:
    return KadPolicy(LIMITS, {"p2pjob": ok_until(expiry)})


def reason(verdict: Verdict) -> Reason | None:
    return None if verdict.ok else verdict.reason  # type: ignore[union-attr]


def test_namespace_of() -> None:
    assert namespace_of("/p2pjob/12") == "p2pjob"
    for key in ("p2pjob/12", "/p2pjob/", "/p2pjob", "//x", "", "bare", "/"):
        assert namespace_of(key) is None, key
    assert namespace_of("/job/x/y") == "job"


def test_keys_outside_our_namespaces_are_bad_field() -> None:
    p = policy()
    for key in (b"/job/x", b"/caps/x", b"bare", b"/pk/abc", b"/ipns/abc", b"/p2pjob/",
                b"/P2PJOB/1"):
        verdict, _ = p.check(key, b"v", 0.0)
        assert reason(verdict) is Reason.BAD_FIELD, key


def test_sizes_are_bounded() -> None:
    p = policy()
    assert reason(p.check(b"/p2pjob/" + b"1" * 40, b"v", 0.0)[0]) is Reason.TOO_LARGE
    assert reason(p.check(b"/p2pjob/1", b"v" * 101, 0.0)[0]) is Reason.TOO_LARGE
    assert p.check(b"/p2pjob/1", b"v" * 100, 0.0)[0].ok
    assert reason(p.check(b"/p2pjob/\xff", b"v", 0.0)[0]) is Reason.MALFORMED


def test_the_namespace_check_decides_and_the_record_lives_until_the_sooner_expiry() -> None:
    assert reason(policy().check(b"/p2pjob/1", b"bad", 5.0)[0]) is Reason.BAD_SIGNATURE
    assert policy(None).check(b"/p2pjob/1", b"v", 5.0) == (ACCEPT, 65.0)
    assert policy(20.0).check(b"/p2pjob/1", b"v", 5.0) == (ACCEPT, 20.0)
    assert policy(500.0).check(b"/p2pjob/1", b"v", 5.0) == (ACCEPT, 65.0)
    assert reason(policy(5.0).check(b"/p2pjob/1", b"v", 5.0)[0]) is Reason.EXPIRED


def test_value_book_evicts_least_recently_stored_by_count() -> None:
    book = ValueBook(max_records=3, max_bytes=1000)
    assert book.put(b"a", 10, 100.0) == []
    assert book.put(b"b", 10, 100.0) == []
    assert book.put(b"c", 10, 100.0) == []
    assert book.put(b"a", 10, 100.0) == []  # a re-put replaces and moves to the back
    assert book.put(b"d", 10, 100.0) == [b"b"]
    assert len(book) == 3 and book.bytes == 30


def test_value_book_evicts_by_bytes() -> None:
    book = ValueBook(max_records=100, max_bytes=100)
    book.put(b"a", 40, 100.0)
    book.put(b"b", 40, 100.0)
    assert book.put(b"c", 50, 100.0) == [b"a"]
    assert book.bytes == 90
    assert book.put(b"d", 100, 100.0) == [b"b", b"c"]
    assert book.bytes == 100 and len(book) == 1


def test_value_book_expires() -> None:
    book = ValueBook(max_records=10, max_bytes=1000)
    book.put(b"a", 10, 10.0)
    book.put(b"b", 10, 20.0)
    assert book.live(b"a", 9.9) and not book.live(b"a", 10.0)
    assert book.expire(15.0) == [b"a"]
    assert b"a" not in book and b"b" in book and book.bytes == 10
    assert book.remove(b"b") and not book.remove(b"b") and book.bytes == 0


def test_providers_are_bounded_per_key() -> None:
    book = ProviderBook(LIMITS)
    assert book.add(b"k", "p1", 0.0)[0].ok
    assert book.add(b"k", "p2", 0.0)[0].ok
    verdict, _ = book.add(b"k", "p3", 0.0)
    assert reason(verdict) is Reason.RATE_LIMITED
    assert book.providers(b"k", 1.0) == ["p1", "p2"]
    assert book.add(b"k", "p1", 1.0)[0].ok  # a renewal is always taken


def test_a_peer_over_its_bound_crowds_out_only_itself() -> None:
    book = ProviderBook(LIMITS)
    for i in range(3):
        assert book.add(bytes([i]), "flood", float(i))[0].ok
    book.add(b"x", "honest", 0.0)
    verdict, evicted = book.add(b"\x09", "flood", 4.0)
    assert verdict.ok and evicted == [(b"\x00", "flood")]
    assert book.keys_of("flood") == 3
    assert book.providers(b"x", 5.0) == ["honest"]


def test_our_own_records_have_no_per_peer_bound() -> None:
    book = ProviderBook(LIMITS, exempt="me")
    for i in range(5):
        assert book.add(bytes([i]), "me", 0.0) == (ACCEPT, [])
    assert book.keys_of("me") == 5


def test_providers_in_all_are_bounded_and_expire() -> None:
    book = ProviderBook(LIMITS)
    for i in range(5):
        assert book.add(bytes([i]), f"p{i}", 0.0)[0].ok
    verdict, _ = book.add(b"new", "p9", 10.0)
    assert reason(verdict) is Reason.RATE_LIMITED and book.total == 5
    assert book.providers(b"\x00", 29.9) == ["p0"]
    assert book.providers(b"\x00", 30.0) == []
    assert book.total == 4
    assert book.add(b"new", "p9", 30.0)[0].ok
    assert book.total == 5
    assert book.add(b"newer", "p8", 30.0)[0].ok  # a full book sweeps expired records first
    assert book.total == 2
    assert len(book.expire(60.0)) == 2 and book.total == 0


# -- ProviderLookup (KAD-10) ----------------------------------------------------------------

def run_lookup(network: dict[int, tuple[list[str], list[int]]], start: list[int],
               **kw: Any) -> tuple[ProviderLookup[int], list[int]]:
    """Peers are ints whose distance to the key is the int itself; ``network[p]`` is what
    p answers (providers, closer peers); a peer missing from it fails."""
    lookup: ProviderLookup[int] = ProviderLookup(start, lambda p: p, **kw)
    asked: list[int] = []
    for _ in range(1000):
        if lookup.done:
            break
        batch = lookup.next_batch()
        assert batch and len(batch) <= lookup.alpha
        for p in batch:
            asked.append(p)
            if p in network:
                lookup.on_answer(p, *network[p])
            else:
                lookup.on_failure(p)
    assert lookup.done and lookup.next_batch() == []
    return lookup, asked


def test_lookup_asks_the_beta_closest_not_the_network() -> None:
    # 100 peers, every one knows all the others; nobody provides the key.
    everyone = list(range(1, 101))
    network = {p: ([], everyone) for p in everyone}
    lookup, asked = run_lookup(network, everyone[::-1])
    assert sorted(asked) == [1, 2, 3]
    assert lookup.providers == []


def test_lookup_walks_towards_closer_peers() -> None:
    # Only far peers are known at first; each answer names peers closer to the key.
    network = {p: ([], [p // 2]) for p in range(2, 65)}
    network[1] = (["prov"], [])
    lookup, asked = run_lookup(network, [64, 63, 62], beta=1)
    # with beta 1: the closest known, then each closer peer an answer names, down to 1
    assert asked == [62, 31, 15, 7, 3, 1]
    assert lookup.providers == ["prov"]


def test_failed_peers_do_not_count_among_the_closest() -> None:
    network: dict[int, tuple[list[str], list[int]]] = {p: ([], [4, 5, 6]) for p in (4, 5, 6)}
    _, asked = run_lookup(network, [1, 2, 3, 4, 5, 6])
    assert asked[:3] == [1, 2, 3]  # the closest fail...
    assert sorted(asked[3:]) == [4, 5, 6]  # ...so the next three must answer


def test_lookup_stops_at_count_and_at_max_queries() -> None:
    network = {p: (["x"], list(range(1, 50))) for p in range(1, 50)}
    lookup, asked = run_lookup(network, [1, 2, 3], count=2, alpha=1)
    assert len(asked) == 2 and len(lookup.providers) == 2
    # everyone fails: the lookup gives up after max_queries peers
    lookup, asked = run_lookup({}, list(range(1, 50)), max_queries=7)
    assert len(asked) == 7


def test_lookup_never_asks_itself_or_twice() -> None:
    everyone = list(range(1, 30))
    network = {p: ([], everyone) for p in everyone}
    _, asked = run_lookup(network, everyone, me=1, beta=10, alpha=4)
    # the ten closest other than itself, four at a time (the batches run back to back)
    assert asked == list(range(2, 12))


@given(st.dictionaries(st.integers(1, 200),
                       st.tuples(st.lists(st.just("p"), max_size=2),
                                 st.lists(st.integers(1, 200), max_size=8)), max_size=60),
       st.lists(st.integers(1, 200), min_size=0, max_size=20),
       st.integers(1, 4), st.integers(1, 5), st.integers(1, 25))
def test_lookup_always_ends_within_its_bounds(
        network: dict[int, tuple[list[str], list[int]]], start: list[int],
        alpha: int, beta: int, max_queries: int) -> None:
    lookup, asked = run_lookup(network, start, alpha=alpha, beta=beta,
                               max_queries=max_queries)
    assert len(asked) <= max_queries and len(asked) == len(set(asked))
    answered = [p for p in asked if p in network]
    # it ended for a reason: enough providers, the query budget, or the beta closest known
    # (not failed) peers all answered
    known = set(start) | {c for p in answered for c in network[p][1]}
    alive = sorted(p for p in known if p in network or p not in asked)[:beta]
    assert (len(lookup.providers) >= lookup.count or len(asked) >= max_queries
            or all(p in answered for p in alive))
