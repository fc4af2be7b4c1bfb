"""A hostile peer's held-ads answers (spec 02 §9, SYNC-4 to SYNC-6): garbage, forged,
oversized and overlong answers are refused and counted, nothing of them reaches the table,
and the victim keeps answering honest requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from libp2p.peer.id import ID

from p2pnode.caps.model import CapabilityAd
from p2pnode.caps.sync import SYNC_MAX_ADS, AnswerReader
from p2pnode.caps.table import validate_ad
from p2pnode.identity import Identity
from p2pnode.net.caps_sync import caps_sync_protocol_id
from p2pnode.node import Node
from p2pnode.services.caps import FWD_BURST, FWD_RATE_PER_S
from p2pnode.wire import cbor
from p2pnode.wire.framing import encode_frame
from tests.adversarial.attacker import attacker_against, read_all
from tests.integration.helpers import running_nodes, wait_for

NET = "testnet"


def _sample(node: Node, name: str, labels: dict[str, str]) -> float:
    return node.metrics.registry.get_sample_value(name, labels) or 0.0


def _ad(identity: Identity, node: Node, **kw: Any) -> CapabilityAd:
    now = node.now_ms()
    base = dict(net=NET, seq=now, ts=now, ttl=120, cores=1, threads=1, arch="x86_64",
                mem=1 << 30)
    base.update(kw)
    return CapabilityAd(**base)  # type: ignore[arg-type]


async def test_hostile_held_ads_answers_are_refused_and_counted(tmp_path: Path) -> None:
    async with running_nodes(tmp_path, 1) as (victim,), attacker_against(victim) as evil:
        answer: list[bytes] = []

        async def serve(stream: Any) -> None:
            await stream.write(b"".join(answer))
            await stream.close()

        evil.host.set_stream_handler(caps_sync_protocol_id(NET), serve)
        assert victim.caps is not None
        caps = victim.caps

        async def pull() -> int:
            return await caps.pull(evil.peer_id)

        forged = _ad(evil.identity, victim).encode(evil.identity)
        env = cbor.decode(forged)
        env["s"] = bytes(64)
        mallory = Identity.generate()
        answer[:] = [encode_frame(b"\x1c garbage"),
                     encode_frame(cbor.encode(env)),
                     encode_frame(_ad(mallory, victim, net="mainnet").encode(mallory)),
                     encode_frame(_ad(mallory, victim, ts=victim.now_ms() + 600_000)
                                  .encode(mallory))]
        assert await pull() == 0
        for outcome in ("malformed", "bad_signature", "wrong_network", "clock_skew"):
            assert _sample(victim, "p2pnode_caps_sync_ads_total",
                           {"outcome": outcome}) == 1, outcome

        # A frame over AD_MAX_SIZE is refused at its prefix; the answer is cut there. (The
        # victim also pulls the attacker on its own when it appears on the topic, SYNC-1,
        # and such a pull may meet the same answer: each explicit pull adds at least one.)
        def too_large() -> float:
            return _sample(victim, "p2pnode_caps_sync_pulls_total", {"result": "too_large"})

        answer[:] = [b"\xff\x3f" + b"x" * 100]
        before = too_large()
        assert await pull() == 0
        assert too_large() >= before + 1
        # More ads than SYNC_MAX_ADS: those within the bound are checked, the rest not.
        answer[:] = [encode_frame(b"\x1c")] * (SYNC_MAX_ADS + 5)

        def malformed() -> float:
            return _sample(victim, "p2pnode_caps_sync_ads_total", {"outcome": "malformed"})

        before, checked = too_large(), malformed()
        assert await pull() == 0
        pulls = too_large() - before
        assert pulls >= 1 and malformed() - checked <= pulls * SYNC_MAX_ADS
        assert mallory.peer_id not in caps.table

        # A relayed ad of another signer is the one thing an answer is for (SYNC-5). The
        # 200 checked above emptied the attacker's forwarder bucket (RL-3): wait until it
        # is full again, or the ad is dropped as rate_limited. The victim also asks the
        # attacker on its own (SYNC-1) and may take the ad that way first; then this pull
        # finds it held already. Either way it is accepted exactly once.
        await wait_for(lambda: caps.fwd_limiter.available(evil.peer_id, caps.clock())
                       >= FWD_BURST, timeout=3 * FWD_BURST / FWD_RATE_PER_S)
        answer[:] = [encode_frame(_ad(mallory, victim).encode(mallory))]
        assert await pull() in (0, 1)
        assert _sample(victim, "p2pnode_caps_sync_ads_total", {"outcome": "valid"}) == 1
        assert mallory.peer_id in caps.table

        # The victim still answers: its own ad and the one it just learnt.
        stream = await evil.host.new_stream(ID.from_base58(victim.peer_id),
                                            [caps_sync_protocol_id(NET)])
        got = AnswerReader().feed(await read_all(stream))
        signers = {v.peer_id for a in got
                   if (v := validate_ad(a, net=NET, now_ms=victim.now_ms(), source=None,
                                        held_seq=lambda _: None, synced=True)[1])}
        assert {victim.peer_id, mallory.peer_id} <= signers
