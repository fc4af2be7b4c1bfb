"""Signed envelopes: structure, domain separation, keys, types, versions (spec 01 §3)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import nacl.signing
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from p2pnode.identity import Identity, peer_id_str
from p2pnode.wire import cbor, envelope
from p2pnode.wire.envelope import open_envelope, seal, signing_input
from p2pnode.wire.reasons import Reason, WireError
from tests.wire.strategies import nesting, values

ALICE = Identity(bytes(range(32)))
MALLORY = Identity(bytes(range(1, 33)))
BODY = {"n": 1, "s": "text", "b": b"\x00\x01", "l": [1, 2, 3], "m": {"k": None}}


@pytest.fixture(autouse=True)
def test_types() -> Iterator[None]:
    """Register two test message types; put the registry back afterwards."""
    saved = dict(envelope.SIZE_LIMITS), dict(envelope.VERSIONS)
    envelope.register_type("test.a", {1, 2}, 1024)
    envelope.register_type("test.b", {1, 2}, 1024)
    envelope.register_type("test.small", {1}, 200)
    try:
        yield
    finally:
        envelope.SIZE_LIMITS.clear()
        envelope.SIZE_LIMITS.update(saved[0])
        envelope.VERSIONS.clear()
        envelope.VERSIONS.update(saved[1])


def raw_envelope(**fields: Any) -> bytes:
    """An envelope map written field by field, bypassing ``seal``."""
    return cbor.encode(fields)


def reason_of(data: bytes, expected_type: str | None = None) -> Reason:
    with pytest.raises(WireError) as exc:
        open_envelope(data, expected_type)
    return exc.value.reason


def test_seal_then_open() -> None:
    data = seal(ALICE, "test.a", 1, BODY)
    env = open_envelope(data, "test.a")
    assert (env.t, env.v, env.body, env.signer) == ("test.a", 1, BODY, ALICE.public_key)
    assert env.raw == data
    assert env.signer_peer_id == ALICE.peer_id == peer_id_str(ALICE.public_key)
    assert env.content_id[:2] == b"\x12\x20" and len(env.content_id) == 34
    assert open_envelope(data).body == BODY  # without an expected type too


def test_envelope_is_canonical_cbor_of_five_fields() -> None:
    data = seal(ALICE, "test.a", 1, BODY)
    obj = cbor.decode(data)
    assert set(obj) == {"t", "v", "b", "k", "s"}
    assert cbor.encode(obj) == data
    nacl.signing.VerifyKey(obj["k"]).verify(
        b"p2pnode/v1/test.a/1\x00" + cbor.encode(BODY), obj["s"])


def test_signing_input_layout() -> None:
    assert signing_input("caps.ad", 1, b"\xa0") == b"p2pnode/v1/caps.ad/1\x00\xa0"
    assert signing_input("x", 12, b"") == b"p2pnode/v1/x/12\x00"


def test_sealing_is_deterministic() -> None:
    # Ed25519 signatures are deterministic and the encoding canonical: equal inputs,
    # equal bytes (and so equal content ids).
    assert seal(ALICE, "test.a", 1, BODY) == seal(ALICE, "test.a", 1, dict(reversed(BODY.items())))


# -- domain separation -----------------------------------------------------------------


def resigned_as(data: bytes, **changes: Any) -> bytes:
    obj = cbor.decode(data)
    obj.update(changes)
    return cbor.encode(obj)


def test_signature_for_one_type_does_not_verify_as_another() -> None:
    data = seal(ALICE, "test.a", 1, BODY)
    assert reason_of(resigned_as(data, t="test.b")) == Reason.BAD_SIGNATURE


def test_signature_for_one_version_does_not_verify_as_another() -> None:
    data = seal(ALICE, "test.a", 1, BODY)
    assert reason_of(resigned_as(data, v=2)) == Reason.BAD_SIGNATURE
    data2 = seal(ALICE, "test.a", 2, BODY)
    assert open_envelope(data2).v == 2
    assert reason_of(resigned_as(data2, v=1)) == Reason.BAD_SIGNATURE


def test_raw_signature_over_the_body_alone_does_not_verify() -> None:
    # A key that signs bare CBOR elsewhere cannot have those signatures taken as ours.
    sig = nacl.signing.SigningKey(ALICE.seed).sign(cbor.encode(BODY)).signature
    data = raw_envelope(t="test.a", v=1, b=BODY, k=ALICE.public_key, s=sig)
    assert reason_of(data) == Reason.BAD_SIGNATURE


def test_body_change_breaks_the_signature() -> None:
    data = seal(ALICE, "test.a", 1, BODY)
    assert reason_of(resigned_as(data, b={**BODY, "n": 2})) == Reason.BAD_SIGNATURE


def test_another_key_cannot_claim_a_signature() -> None:
    data = seal(ALICE, "test.a", 1, BODY)
    assert reason_of(resigned_as(data, k=MALLORY.public_key)) == Reason.BAD_SIGNATURE


# -- structure ---------------------------------------------------------------------------


def fields(**over: Any) -> dict[str, Any]:
    obj = cbor.decode(seal(ALICE, "test.a", 1, BODY))
    obj.update(over)
    return {k: v for k, v in obj.items() if v is not ...}


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ([1, 2], Reason.BAD_ENVELOPE),
        ("envelope", Reason.BAD_ENVELOPE),
        (fields(x=1), Reason.UNKNOWN_FIELD),
        (fields(sig=b""), Reason.UNKNOWN_FIELD),
        (fields(t=...), Reason.BAD_ENVELOPE),
        (fields(s=...), Reason.BAD_ENVELOPE),
        (fields(t=1), Reason.BAD_ENVELOPE),
        (fields(t=""), Reason.BAD_ENVELOPE),
        (fields(t="x" * 33), Reason.BAD_ENVELOPE),
        (fields(v=-1), Reason.BAD_ENVELOPE),
        (fields(v="1"), Reason.BAD_ENVELOPE),
        (fields(v=True), Reason.BAD_ENVELOPE),
        (fields(k=ALICE.public_key[:31]), Reason.BAD_KEY),
        (fields(k=ALICE.public_key + b"\x00"), Reason.BAD_KEY),
        (fields(k=b""), Reason.BAD_KEY),
        (fields(k=ALICE.public_key.hex()), Reason.BAD_KEY),
        (fields(s=b"\x00" * 63), Reason.BAD_SIGNATURE),
        (fields(s=b"\x00" * 65), Reason.BAD_SIGNATURE),
        (fields(s=b"\x00" * 64), Reason.BAD_SIGNATURE),
        (fields(s=None), Reason.BAD_SIGNATURE),
        (fields(t="test.unknown"), Reason.UNKNOWN_TYPE),
        (fields(v=3), Reason.UNSUPPORTED_VERSION),
        (fields(v=2**64 - 1), Reason.UNSUPPORTED_VERSION),
    ],
)
def test_structure_reasons(obj: Any, reason: Reason) -> None:
    assert reason_of(cbor.encode(obj)) == reason


def test_unknown_fields_are_refused_before_the_signature_is_checked() -> None:
    # A valid signature does not make extra fields acceptable.
    assert reason_of(cbor.encode(fields(extra="x"))) == Reason.UNKNOWN_FIELD


def test_unknown_type_even_when_validly_signed() -> None:
    data = seal(ALICE, "test.unregistered", 1, BODY)
    assert reason_of(data) == Reason.UNKNOWN_TYPE


def test_expected_type_mismatch() -> None:
    data = seal(ALICE, "test.a", 1, BODY)
    assert reason_of(data, expected_type="test.b") == Reason.UNKNOWN_TYPE


def test_unsupported_version_even_when_validly_signed() -> None:
    assert reason_of(seal(ALICE, "test.small", 2, {})) == Reason.UNSUPPORTED_VERSION


def test_size_limit_of_the_type() -> None:
    def padded(n: int) -> bytes:
        return seal(ALICE, "test.small", 1, {"p": "x" * n})

    n = 0
    while len(padded(n + 1)) <= 200:
        n += 1
    fits, over = padded(n), padded(n + 1)
    assert len(fits) <= 200 < len(over)
    assert open_envelope(fits, "test.small").body == {"p": "x" * n}
    assert reason_of(over, "test.small") == Reason.TOO_LARGE
    # Without an expected type the type's own limit still applies once it is known.
    assert reason_of(over) == Reason.TOO_LARGE


def test_too_large_input_is_refused_before_decoding() -> None:
    garbage = b"\xff" * (max(envelope.SIZE_LIMITS.values()) + 1)
    assert reason_of(garbage) == Reason.TOO_LARGE
    assert reason_of(b"\xff" * 1025, "test.a") == Reason.TOO_LARGE


def test_codec_reasons_pass_through() -> None:
    data = seal(ALICE, "test.a", 1, BODY)
    assert reason_of(data + b"\x00") == Reason.TRAILING_BYTES
    assert reason_of(data[:-1]) == Reason.TRUNCATED
    assert reason_of(b"\xf9\x00\x00") == Reason.FLOAT_FORBIDDEN


def test_register_type_rejects_bad_names() -> None:
    with pytest.raises(ValueError):
        envelope.register_type("", {1}, 100)
    with pytest.raises(ValueError):
        envelope.register_type("x" * 33, {1}, 100)


# -- one encoding of the body, verified over its bytes in the input --------------------


@given(values, st.sampled_from(["test.a", "test.b"]), st.sampled_from([1, 2]))
def test_seal_writes_the_canonical_encoding_of_the_envelope_map(body: Any, t: str,
                                                                v: int) -> None:
    assume(nesting(body) < cbor.MAX_DEPTH)
    data = seal(ALICE, t, v, body)
    sig = ALICE.sign(signing_input(t, v, cbor.reference_encode(body)))
    assert data == cbor.reference_encode(
        {"t": t, "v": v, "b": body, "k": ALICE.public_key, "s": sig})


@given(values, st.sampled_from([1, 2]))
def test_the_signed_body_bytes_are_a_slice_of_the_envelope(body: Any, v: int) -> None:
    assume(nesting(body) < cbor.MAX_DEPTH)
    data = seal(ALICE, "test.a", v, body)
    body_bytes = envelope._body_bytes(data, "test.a", v)
    assert body_bytes == cbor.reference_encode(body)
    assert data.find(body_bytes) == 3  # right after the map head and the key "b"


def test_versions_with_wider_heads_slice_the_body_exactly() -> None:
    envelope.register_type("test.wide", {0, 23, 24, 255, 256, 70_000, 2**32, 2**64 - 1}, 1024)
    for v in sorted(envelope.VERSIONS["test.wide"]):
        data = seal(ALICE, "test.wide", v, BODY)
        assert envelope._body_bytes(data, "test.wide", v) == cbor.encode(BODY)
        assert open_envelope(data, "test.wide").v == v


def test_a_body_nested_to_the_limit_inside_the_envelope() -> None:
    # The body sits one level below the envelope map (ENC-11).
    deepest: Any = 0
    for _ in range(cbor.MAX_DEPTH - 1):
        deepest = [deepest]
    assert open_envelope(seal(ALICE, "test.a", 1, deepest)).body == deepest
    with pytest.raises(WireError) as exc:
        seal(ALICE, "test.a", 1, [deepest])
    assert exc.value.reason == Reason.TOO_DEEP


def test_open_takes_any_bytes_like_input() -> None:
    data = seal(ALICE, "test.a", 1, BODY)
    for copy in (bytearray(data), memoryview(data)):
        env = open_envelope(copy, "test.a")  # type: ignore[arg-type]
        assert env.body == BODY and env.raw == data and type(env.raw) is bytes
