"""The gossip benchmark's accounting: which ads count, what is delivered, how late (no
network, no timing)."""

from __future__ import annotations

import json

from bench.bench_gossip import Published, Received, node_log_events, pct, tally


def _line(**rec: object) -> str:
    return json.dumps(rec)


def test_node_log_events_reads_publications_and_receptions() -> None:
    lines = [
        _line(ts=1.0, event="node.started"),
        _line(ts=2.0, event="caps.ad.published", seq=7, ad_ts=1990),
        _line(ts=3.5, event="caps.ad.accepted", peer="B", seq=3, ad_ts=3490),
        _line(ts=3.6, event="caps.ad.accepted", peer="A", seq=7, ad_ts=1990),  # our own ad
        _line(ts=3.7, event="caps.ad.accepted", peer="C", seq=1),  # a log of another version
        "not json",
    ]
    assert list(node_log_events(lines, "A")) == [
        Published("A", 7, 1990), Received("A", "B", 3, 3500.0)]


def test_tally_counts_each_receiver_once_and_only_ads_of_the_window() -> None:
    events = [
        Published("A", 1, 1000), Published("A", 2, 5000),  # seq 2: after the window
        Published("B", 1, 1100),
        Received("B", "A", 1, 1010.0), Received("B", "A", 1, 1500.0),  # counted once
        Received("C", "A", 1, 1030.0), Received("C", "A", 2, 5010.0),
        Received("A", "B", 1, 1120.0),  # C never got B's ad
    ]
    r = tally(["A", "B", "C"], events, start_ms=0, end_ms=4000)
    assert (r.messages, r.expected, r.delivered) == (2, 4, 3)
    assert sorted(r.latencies_ms) == [10.0, 20.0, 30.0]
    s = r.summary()
    assert s["delivery"] == 0.75 and s["nodes"] == 3 and s["messages"] == 2
    assert s["p50_ms"] == 20.0 and s["max_ms"] == 30.0


def test_pct_picks_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert pct(values, 0.5) == 51.0 and pct(values, 0.99) == 99.0 and pct([4.0], 0.99) == 4.0
