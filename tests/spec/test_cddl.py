"""Real messages from the reference code against the CDDL schemas of spec/schemas/.

pycddl 0.6 takes the first rule of a schema as its root. It has six gaps, each pinned by
``test_pycddl_gaps_still_exist`` so that an upgrade that closes one shows what to simplify:
it does not check the major type of a ``.size`` target (``tstr .size 3`` accepts a 3-byte
byte string, or the integer 1), which the schemas avoid by spelling sized strings
``Text<Size>`` / ``Bytes<Size>``; it cannot apply a control to a map key, so the length of
price keys is beyond the schema; it does not look inside recursive rules (``Value``); it
lets a map inside an array have extra keys (an unknown GPU field passes); a choice of types
(``int / bool``) accepts any non-empty array; and a choice of maps lets a map with the keys
of one and an extra key through. The job and blob schemas are checked in test_cddl_jobs.py.
"""

from __future__ import annotations

import dataclasses
import re
from functools import cache
from pathlib import Path
from typing import Any

import pycddl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import runner
from conformance.cases.common import ALICE, BASE_AD, BOB, H100, key
from p2pnode.caps import model
from p2pnode.caps.model import CapabilityAd, Gpu
from p2pnode.wire import cbor
from p2pnode.wire.reasons import Reason, WireError

SPEC = Path(__file__).resolve().parents[2] / "spec"
SCHEMAS = SPEC / "schemas"
U64 = (1 << 64) - 1


@cache
def schema(root: str) -> Any:
    text = "".join(f.read_text() + "\n" for f in sorted(SCHEMAS.glob("*.cddl")))
    return pycddl.Schema(f"root = {root}\n{text}")


def conforms(root: str, data: bytes) -> bool:
    try:
        schema(root).validate_cbor(data)
    except pycddl.ValidationError:
        return False
    return True


def test_rule_names_are_the_reference_class_names() -> None:
    text = (SCHEMAS / "caps.cddl").read_text() + (SCHEMAS / "envelope.cddl").read_text()
    rules = set(re.findall(r"^([A-Za-z][A-Za-z0-9]*)(?:<[^>]*>)?\s*=", text, re.M))
    assert {"SignedEnvelope", "CapabilityAd", "Gpu"} <= rules
    assert model.CapabilityAd.__name__ == "CapabilityAd" and model.Gpu.__name__ == "Gpu"


AD_VARIANTS = {
    "cpu_only": BASE_AD,
    "gpus": dataclasses.replace(BASE_AD, gpus=(H100, H100, Gpu("", 0))),
    "empty_lists": dataclasses.replace(BASE_AD, gpus=(), kinds=(), price=(), addrs=(),
                                       agent="", arch=""),
    "max_sizes": CapabilityAd(
        net="n" * 32, seq=U64, ts=U64, ttl=86_400, cores=U64, threads=U64, arch="a" * 64,
        mem=U64, gpus=tuple(Gpu("%064d" % i, U64) for i in range(16)),
        kinds=tuple("%032d" % i for i in range(16)),
        price=tuple(("%032d" % i, U64) for i in range(16)),
        addrs=tuple("/" + "%0127d" % i for i in range(8)), agent="x" * 64),
    "unicode": dataclasses.replace(BASE_AD, arch="\u00e9" * 32, agent="\u6c34" * 21,
                                   kinds=("\U00010151" * 8,)),
    "min_values": dataclasses.replace(BASE_AD, seq=0, ts=0, ttl=10, cores=0, threads=0, mem=0),
}


@pytest.mark.parametrize("name", sorted(AD_VARIANTS))
@pytest.mark.parametrize("signer", ["alice", "bob", "carol"])
def test_sealed_ads_match_the_schemas(name: str, signer: str) -> None:
    ad = AD_VARIANTS[name]
    data = ad.encode(key(signer))
    assert len(data) <= model.AD_MAX_SIZE
    assert conforms("CapabilityAdEnvelope", data)
    assert conforms("SignedEnvelope", data)
    env = cbor.decode(data)
    assert conforms("CapabilityAd", cbor.encode(env["b"]))
    assert conforms("Cpu", cbor.encode(env["b"]["cpu"]))
    for g in env["b"]["gpus"]:
        assert conforms("Gpu", cbor.encode(g))
    # and the reference accepts what the schema accepts
    assert CapabilityAd.from_body(env["b"]) == ad


def test_the_maximal_ad_has_the_size_the_spec_states() -> None:
    assert len(AD_VARIANTS["max_sizes"].encode(ALICE)) == 4045  # spec 01 §4, spec 02 §8


# Each limit of CAPS-4: (field path, value at the limit, value just beyond it).
BOUNDARIES: list[tuple[str, Any, Any]] = [
    ("net", "n" * 32, "n" * 33),
    ("net", "n", ""),
    ("seq", U64, -1),
    ("ts", 0, -1),
    ("ttl", 10, 9),
    ("ttl", 86_400, 86_401),
    ("mem", 0, -1),
    ("cpu.cores", U64, -1),
    ("cpu.threads", 0, -1),
    ("cpu.arch", "a" * 64, "a" * 65),
    ("cpu.arch", "\u00e9" * 32, "\u00e9" * 32 + "a"),
    ("gpus", [{"name": "g", "mem": 1}] * 16, [{"name": "g", "mem": 1}] * 17),
    ("gpus", [{"name": "g" * 64, "mem": U64}], [{"name": "g" * 65, "mem": U64}]),
    ("gpus", [{"name": "", "mem": 0}], [{"name": "", "mem": -1}]),
    ("kinds", ["k%d" % i for i in range(16)], ["k%d" % i for i in range(17)]),
    ("kinds", ["k" * 32], ["k" * 33]),
    ("kinds", ["k"], [""]),
    ("price", {"k%d" % i: 1 for i in range(16)}, {"k%d" % i: 1 for i in range(17)}),
    ("price", {"k": 0}, {"k": -1}),
    ("addrs", ["/a"] * 8, ["/a"] * 9),
    ("addrs", ["a" * 128], ["a" * 129]),
    ("addrs", ["a"], [""]),
    ("agent", "x" * 64, "x" * 65),
    ("agent", "", None),
]


def _with(path: str, value: Any) -> dict[str, Any]:
    body = BASE_AD.to_body()
    target = body
    *parents, last = path.split(".")
    for p in parents:
        target = target[p]
    target[last] = value
    return body


def _reference_accepts(body: Any) -> bool:
    try:
        CapabilityAd.from_body(body)
    except WireError as e:
        assert e.reason in (Reason.BAD_FIELD, Reason.UNKNOWN_FIELD)
        return False
    return True


@pytest.mark.parametrize(("path", "ok", "bad"), BOUNDARIES,
                         ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(BOUNDARIES)])
def test_schema_and_reference_agree_on_every_limit(path: str, ok: Any, bad: Any) -> None:
    good_body, bad_body = _with(path, ok), _with(path, bad)
    assert conforms("CapabilityAd", cbor.encode(good_body))
    assert _reference_accepts(good_body)
    assert not conforms("CapabilityAd", cbor.encode(bad_body))
    assert not _reference_accepts(bad_body)


# Rejections of CAPS-4 that the schema cannot express (see caps.cddl), and one that it
# expresses but pycddl does not check (an extra key in a map inside an array).
BEYOND_CDDL = {"kinds_repeat", "price_key_empty", "price_key_too_long"}
PYCDDL_GAPS = {"unknown_gpu_field"}


def test_caps_vectors_against_the_schema() -> None:
    accepted = refused = 0
    for v in runner.load(runner.DEFAULT_VECTORS, "caps/validate/"):
        exp = v.meta["expected"]
        data = v.inputs["input.cbor"]
        if exp["result"] == "valid":
            assert conforms("CapabilityAdEnvelope", data), v.id
            accepted += 1
        elif "CAPS-4" in v.meta["rules"]:
            body = cbor.encode(cbor.decode(data)["b"])
            name = v.id.split("/")[-1]
            assert conforms("CapabilityAd", body) == (name in BEYOND_CDDL | PYCDDL_GAPS), v.id
            refused += 1
    assert accepted >= 10 and refused >= 40


# envelope/open vectors that the decoder accepts but whose structure is wrong
STRUCTURAL = {"bad_envelope", "bad_key", "unknown_field"}
SIGNATURE_SHAPE = {"s_63_bytes", "s_65_bytes", "s_text"}
# vectors the schema cannot refuse (none since Text<> and Bytes<> check the major type)
TYPE_CONFUSION: set[str] = set()


def test_envelope_vectors_against_the_schema() -> None:
    refused = 0
    for v in runner.load(runner.DEFAULT_VECTORS, "envelope/open/"):
        exp = v.meta["expected"]
        data = v.inputs["input.cbor"]
        name = v.id.split("/")[-1]
        if exp["result"] == "valid":
            assert conforms("SignedEnvelope", data), v.id
        elif exp["reason"] in STRUCTURAL or name in SIGNATURE_SHAPE:
            assert conforms("SignedEnvelope", data) == (name in TYPE_CONFUSION), v.id
            refused += 1
    assert refused >= 15


def test_schema_refuses_other_types_and_versions() -> None:
    body = BASE_AD.to_body()
    for t, v in (("jobs.spec", 1), ("caps.ad", 2), ("caps.ad", 0)):
        data = cbor.encode({"t": t, "v": v, "b": body, "k": ALICE.public_key, "s": bytes(64)})
        assert conforms("SignedEnvelope", data)
        assert not conforms("CapabilityAdEnvelope", data)
    assert not conforms("SignedEnvelope", cbor.encode(
        {"t": "caps.ad", "v": 1, "b": body, "k": ALICE.public_key}))


def test_spec_chapters_quote_the_schema_files() -> None:
    """Every paragraph of a CDDL block in a chapter appears, line for line, in a schema file."""
    schema_text = "\n".join(
        line.rstrip() for f in sorted(SCHEMAS.glob("*.cddl"))
        for line in f.read_text().splitlines())
    blocks = [b for md in sorted(SPEC.glob("*.md"))
              for b in re.findall(r"```cddl\n(.*?)```", md.read_text(), re.S)]
    assert len(blocks) >= 2
    for block in blocks:
        for para in block.strip("\n").split("\n\n"):
            text = "\n".join(line.rstrip() for line in para.splitlines())
            assert text in schema_text, text[:80]


_text = st.text(max_size=8)
_uint = st.integers(min_value=0, max_value=U64)
_kind = st.text(min_size=1, max_size=8)


@st.composite
def _ads(draw: st.DrawFn) -> CapabilityAd:
    kinds = draw(st.lists(_kind, max_size=16, unique=True))
    return CapabilityAd(
        net=draw(st.text(min_size=1, max_size=8)), seq=draw(_uint), ts=draw(_uint),
        ttl=draw(st.integers(10, 86_400)), cores=draw(_uint), threads=draw(_uint),
        arch=draw(_text), mem=draw(_uint),
        gpus=tuple(draw(st.lists(st.builds(Gpu, _text, _uint), max_size=16))),
        kinds=tuple(kinds),
        price=tuple(sorted(draw(st.dictionaries(_kind, _uint, max_size=16)).items())),
        addrs=tuple(draw(st.lists(st.text(min_size=1, max_size=16), max_size=8))),
        agent=draw(_text),
    )


@settings(max_examples=60, deadline=None)
@given(ad=_ads())
def test_any_ad_within_the_limits_matches_the_schema(ad: CapabilityAd) -> None:
    data = ad.encode(BOB)
    assert conforms("CapabilityAdEnvelope", data)
    assert CapabilityAd.from_body(cbor.decode(data)["b"]) == ad


def test_pycddl_gaps_still_exist() -> None:
    """When one of these fails, pycddl closed a gap: drop the matching exemption above."""
    size = pycddl.Schema("A = tstr .size 3")
    size.validate_cbor(cbor.encode(b"abc"))  # a byte string passes as text
    key_control = pycddl.Schema("A = { * K => uint }\nK = tstr .size (1..4)")
    with pytest.raises(pycddl.ValidationError):
        key_control.validate_cbor(cbor.encode({"a": 1}))  # so price keys are unconstrained
    recursive = pycddl.Schema("A = V\nV = uint / [* V]")
    recursive.validate_cbor(cbor.encode([["x"]]))  # nothing inside is checked
    in_array = pycddl.Schema("A = [* G]\nG = { name: tstr }")
    in_array.validate_cbor(cbor.encode([{"name": "g", "uuid": 1}]))  # maps in arrays are open
    type_choice = pycddl.Schema("A = int / bool")
    type_choice.validate_cbor(cbor.encode([1]))  # so a ParamValue may be an array
    map_choice = pycddl.Schema("A = B / C\nB = { ok: true, size: uint }\n"
                               "C = { ok: false, reason: tstr }")
    map_choice.validate_cbor(cbor.encode({"ok": False, "reason": "x", "size": 1}))


def test_held_ads_answer_is_a_bounded_sequence_of_ad_envelopes() -> None:
    from p2pnode.caps.sync import SYNC_MAX_ADS

    ads = [cbor.decode(BASE_AD.encode(ALICE)), cbor.decode(BASE_AD.encode(BOB))]
    assert conforms("HeldAdsAnswer", cbor.encode([]))
    assert conforms("HeldAdsAnswer", cbor.encode(ads))
    assert conforms("HeldAdsAnswer", cbor.encode(ads[:1] * SYNC_MAX_ADS))
    assert not conforms("HeldAdsAnswer", cbor.encode(ads[:1] * (SYNC_MAX_ADS + 1)))
    assert not conforms("HeldAdsAnswer", cbor.encode([b"not an ad"]))
