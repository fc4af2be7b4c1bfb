"""Prometheus metrics of one node (served as text on a 127.0.0.1 address).

Each node owns its registry, so several nodes in one process (tests) keep separate counts.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from p2pnode.wire.envelope import SignatureCache
from p2pnode.wire.reasons import Reason


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.started = time.monotonic()
        self.peers = Gauge("p2pnode_peers", "Connected libp2p peers", registry=r)
        self.ads_accepted = Counter(
            "p2pnode_caps_ads_accepted", "Capability ads accepted", registry=r)
        self.ads_rejected = Counter(
            "p2pnode_caps_ads_rejected", "Capability ads rejected, by reason", ["reason"],
            registry=r)
        self.ads_ignored = Counter(
            "p2pnode_caps_ads_ignored", "Capability ads dropped without fault of the sender "
            "(stale, over a rate limit), by reason", ["reason"], registry=r)
        self.ads_published = Counter(
            "p2pnode_caps_ads_published", "Capability ads this node published", registry=r)
        self.table_size = Gauge(
            "p2pnode_caps_table_size", "Live entries in the capability table", registry=r)
        self.messages_rejected = Counter(
            "p2pnode_messages_rejected", "Messages rejected on any topic or stream",
            ["topic", "reason"], registry=r)
        self.uptime = Gauge("p2pnode_uptime_seconds", "Seconds since the node started",
                            registry=r)
        self.uptime.set_function(lambda: time.monotonic() - self.started)
        # Pre-create every reason label so a scrape shows zeros rather than nothing.
        for reason in Reason:
            self.ads_rejected.labels(reason=reason.value)
            self.ads_ignored.labels(reason=reason.value)

    def watch_signatures(self, cache: SignatureCache) -> None:
        """Export what ENV-12's record of checked signatures saved."""
        Gauge("p2pnode_signature_verifications", "Ed25519 verifications of envelopes",
              registry=self.registry).set_function(lambda: cache.verifications)
        Gauge("p2pnode_signature_cache_hits", "Envelopes whose signature was checked before "
              "(not verified again, spec 01 ENV-12)",
              registry=self.registry).set_function(lambda: cache.hits)

    def reject(self, topic: str, reason: Reason) -> None:
        self.messages_rejected.labels(topic=topic, reason=reason.value).inc()

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))

    def snapshot(self) -> dict[str, Any]:
        """Counters as plain numbers, for the admin API's ``status``."""
        def by_reason(counter: Counter) -> dict[str, int]:
            out = {}
            for metric in counter.collect():
                for s in metric.samples:
                    if s.name.endswith("_total") and s.value:
                        out[s.labels["reason"]] = int(s.value)
            return out

        return {
            "ads_accepted": int(self.ads_accepted._value.get()),
            "ads_published": int(self.ads_published._value.get()),
            "ads_rejected": by_reason(self.ads_rejected),
            "ads_ignored": by_reason(self.ads_ignored),
        }
