"""Cases for the deterministic CBOR profile (spec/01-encoding.md §2).

``cbor``: decode ``input.cbor``; valid input yields ``decoded.json`` (typed JSON form).
``cbor_encode``: encode ``value.json``; yields ``encoded.cbor``.
Valid examples are checked in both directions from one table; most come from RFC 8949
Appendix A, so their bytes were not produced by the reference encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from conformance.jsonform import to_json
from conformance.model import Case, Inputs, reject, valid
from p2pnode.wire.reasons import Reason

# (name, hex, value, rules, description)
EXAMPLES: list[tuple[str, str, Any, tuple[str, ...], str]] = [
    ("uint_0", "00", 0, ("ENC-3",), "0 in the initial byte"),
    ("uint_23", "17", 23, ("ENC-3",), "23, the largest value in the initial byte"),
    ("uint_24", "1818", 24, ("ENC-3",), "24, the smallest one-byte argument"),
    ("uint_100", "1864", 100, ("ENC-3",), "RFC 8949 Appendix A"),
    ("uint_255", "18ff", 255, ("ENC-3",), "the largest one-byte argument"),
    ("uint_256", "190100", 256, ("ENC-3",), "the smallest two-byte argument"),
    ("uint_1000", "1903e8", 1000, ("ENC-3",), "RFC 8949 Appendix A"),
    ("uint_65535", "19ffff", 65535, ("ENC-3",), "the largest two-byte argument"),
    ("uint_65536", "1a00010000", 65536, ("ENC-3",), "the smallest four-byte argument"),
    ("uint_1000000", "1a000f4240", 1000000, ("ENC-3",), "RFC 8949 Appendix A"),
    ("uint_4294967295", "1affffffff", 4294967295, ("ENC-3",), "the largest four-byte argument"),
    ("uint_4294967296", "1b0000000100000000", 4294967296, ("ENC-3",),
     "the smallest eight-byte argument"),
    ("uint_1000000000000", "1b000000e8d4a51000", 1000000000000, ("ENC-3",),
     "RFC 8949 Appendix A"),
    ("uint_max", "1bffffffffffffffff", 18446744073709551615, ("ENC-2", "ENC-3"),
     "2^64-1, the largest integer of the profile"),
    ("nint_1", "20", -1, ("ENC-3",), "RFC 8949 Appendix A"),
    ("nint_10", "29", -10, ("ENC-3",), "RFC 8949 Appendix A"),
    ("nint_100", "3863", -100, ("ENC-3",), "RFC 8949 Appendix A"),
    ("nint_1000", "3903e7", -1000, ("ENC-3",), "RFC 8949 Appendix A"),
    ("nint_min", "3bffffffffffffffff", -18446744073709551616, ("ENC-2", "ENC-3"),
     "-2^64, the smallest integer of the profile"),
    ("bytes_empty", "40", b"", ("ENC-1",), "RFC 8949 Appendix A"),
    ("bytes_4", "4401020304", bytes.fromhex("01020304"), ("ENC-1",), "RFC 8949 Appendix A"),
    ("bytes_24", "5818" + "ab" * 24, b"\xab" * 24, ("ENC-3",),
     "a 24-byte string takes a one-byte length"),
    ("bytes_not_utf8", "42c328", b"\xc3\x28", ("ENC-8",),
     "byte strings need not be UTF-8"),
    ("text_empty", "60", "", ("ENC-1",), "RFC 8949 Appendix A"),
    ("text_a", "6161", "a", ("ENC-1",), "RFC 8949 Appendix A"),
    ("text_ietf", "6449455446", "IETF", ("ENC-1",), "RFC 8949 Appendix A"),
    ("text_escapes", "62225c", "\"\\", ("ENC-1",), "RFC 8949 Appendix A"),
    ("text_u_umlaut", "62c3bc", "\u00fc", ("ENC-8",), "RFC 8949 Appendix A: two-byte UTF-8"),
    ("text_cjk", "63e6b0b4", "\u6c34", ("ENC-8",), "RFC 8949 Appendix A: three-byte UTF-8"),
    ("text_4byte", "64f0908591", "\U00010151", ("ENC-8",),
     "RFC 8949 Appendix A: four-byte UTF-8"),
    ("text_bom", "64efbbbf61", "\ufeffa", ("ENC-8",),
     "a text string that starts with U+FEFF keeps it: a byte order mark is a character like "
     "any other, not a signature to drop"),
    ("text_bom_alone", "63efbbbf", "\ufeff", ("ENC-8",), "the text string U+FEFF alone"),
    ("map_bom_key", "a2616100" + "64efbbbf6101", {"a": 0, "\ufeffa": 1}, ("ENC-6", "ENC-8"),
     'the keys "a" and U+FEFF "a" are distinct (a decoder that drops the mark sees a '
     "duplicate)"),
    ("text_not_normalized", "6365cc81", "e\u0301", ("ENC-8",),
     "a decomposed e-acute is kept as it is: no Unicode normalization"),
    ("array_empty", "80", [], ("ENC-1",), "RFC 8949 Appendix A"),
    ("array_123", "83010203", [1, 2, 3], ("ENC-1",), "RFC 8949 Appendix A"),
    ("array_nested", "8301820203820405", [1, [2, 3], [4, 5]], ("ENC-1",),
     "RFC 8949 Appendix A"),
    ("array_25", "98190102030405060708090a0b0c0d0e0f101112131415161718181819",
     list(range(1, 26)), ("ENC-3",), "RFC 8949 Appendix A: a count of 25 takes one byte"),
    ("map_empty", "a0", {}, ("ENC-1",), "RFC 8949 Appendix A"),
    ("map_int_keys", "a201020304", {1: 2, 3: 4}, ("ENC-5", "ENC-6"), "RFC 8949 Appendix A"),
    ("map_text_keys", "a26161016162820203", {"a": 1, "b": [2, 3]}, ("ENC-5", "ENC-6"),
     "RFC 8949 Appendix A"),
    ("array_with_map", "826161a161626163", ["a", {"b": "c"}], ("ENC-1",),
     "RFC 8949 Appendix A"),
    ("map_five", "a56161614161626142616361436164614461656145",
     {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}, ("ENC-6",), "RFC 8949 Appendix A"),
    ("map_shorter_key_first", "a2616201626161" + "02", {"b": 1, "aa": 2}, ("ENC-6",),
     "bytewise order of encoded keys puts the shorter text key first"),
    ("map_int_before_text", "a300002001616102", {0: 0, -1: 1, "a": 2}, ("ENC-5", "ENC-6"),
     "unsigned (0x00) before negative (0x20) before text (0x61) keys"),
    ("map_bytewise_not_length_first", "a2186400" + "2001", {100: 0, -1: 1}, ("ENC-6",),
     "100 (0x1864) sorts before -1 (0x20): RFC 8949 order, not RFC 7049 length-first"),
    ("false", "f4", False, ("ENC-1",), "RFC 8949 Appendix A"),
    ("true", "f5", True, ("ENC-1",), "RFC 8949 Appendix A"),
    ("null", "f6", None, ("ENC-1",), "RFC 8949 Appendix A"),
    ("depth_16", "81" * 16 + "00", 0, ("ENC-11",),
     "sixteen nested arrays: the integer is at depth 16, the deepest allowed"),
]


def _nest(n: int, inner: Any) -> Any:
    for _ in range(n):
        inner = [inner]
    return inner


def _value(name: str, value: Any) -> Any:
    return _nest(16, 0) if name == "depth_16" else value


# (name, hex, reason, rules, description)
INVALID: list[tuple[str, str, Reason, tuple[str, ...], str]] = [
    # ENC-3: shortest form
    ("non_canonical_uint_0_one_byte", "1800", Reason.NON_CANONICAL, ("ENC-3",),
     "0 with a one-byte argument"),
    ("non_canonical_uint_23_one_byte", "1817", Reason.NON_CANONICAL, ("ENC-3",),
     "23 with a one-byte argument"),
    ("non_canonical_uint_255_two_bytes", "1900ff", Reason.NON_CANONICAL, ("ENC-3",),
     "255 with a two-byte argument"),
    ("non_canonical_uint_65535_four_bytes", "1a0000ffff", Reason.NON_CANONICAL, ("ENC-3",),
     "65535 with a four-byte argument"),
    ("non_canonical_uint_eight_bytes", "1b00000000ffffffff", Reason.NON_CANONICAL, ("ENC-3",),
     "2^32-1 with an eight-byte argument"),
    ("non_canonical_nint", "3800", Reason.NON_CANONICAL, ("ENC-3",),
     "-1 with a one-byte argument"),
    ("non_canonical_bytes_length", "580101", Reason.NON_CANONICAL, ("ENC-3",),
     "a one-byte string with a one-byte length"),
    ("non_canonical_text_length", "780161", Reason.NON_CANONICAL, ("ENC-3",),
     "a one-byte text with a one-byte length"),
    ("non_canonical_array_count", "980100", Reason.NON_CANONICAL, ("ENC-3",),
     "an array of one with a one-byte count"),
    ("non_canonical_map_count", "b8010000", Reason.NON_CANONICAL, ("ENC-3",),
     "a map of one with a one-byte count"),
    ("non_canonical_in_map_value", "a161611817", Reason.NON_CANONICAL, ("ENC-3",),
     "a non-canonical integer as a map value"),
    ("non_canonical_tag_number", "d80100", Reason.NON_CANONICAL, ("ENC-3", "ENC-1"),
     "a tag number is an argument too: tag 1 in a one-byte argument is refused for its "
     "form before the tag is refused for being a tag (spec 01 §2.3)"),
    # ENC-6: key order and uniqueness
    ("unsorted_keys", "a2616201616102", Reason.NON_CANONICAL, ("ENC-6",),
     '{"b": 1, "a": 2}: keys out of order'),
    ("unsorted_keys_length_first", "a2626161016162" + "02", Reason.NON_CANONICAL, ("ENC-6",),
     '{"aa": 1, "b": 2}: "aa" sorts after "b" because its encoding starts 0x62'),
    ("unsorted_int_keys", "a201000000", Reason.NON_CANONICAL, ("ENC-6",),
     "{1: 0, 0: 0}: integer keys out of order"),
    ("unsorted_nint_before_uint", "a220000000", Reason.NON_CANONICAL, ("ENC-6",),
     "{-1: 0, 0: 0}: a negative key (0x20) before an unsigned one (0x00)"),
    ("unsorted_text_before_int", "a261610100" + "02", Reason.NON_CANONICAL, ("ENC-6",),
     '{"a": 1, 0: 2}: a text key before an integer key'),
    ("unsorted_length_first_order", "a220011864" + "00", Reason.NON_CANONICAL, ("ENC-6",),
     "{-1: 1, 100: 0}: RFC 7049 length-first order is not the profile's order"),
    ("duplicate_text_key", "a2616101616102", Reason.DUPLICATE_KEY, ("ENC-6",),
     '{"a": 1, "a": 2}'),
    ("duplicate_int_key", "a201010102", Reason.DUPLICATE_KEY, ("ENC-6",), "{1: 1, 1: 2}"),
    # ENC-4: definite lengths
    ("indefinite_bytes", "5f41014102ff", Reason.INDEFINITE_LENGTH, ("ENC-4",),
     "an indefinite-length byte string"),
    ("indefinite_text", "7f616161" + "62ff", Reason.INDEFINITE_LENGTH, ("ENC-4",),
     "an indefinite-length text string"),
    ("indefinite_array", "9f0102ff", Reason.INDEFINITE_LENGTH, ("ENC-4",),
     "an indefinite-length array"),
    ("indefinite_map", "bf616101ff", Reason.INDEFINITE_LENGTH, ("ENC-4",),
     "an indefinite-length map"),
    ("break_alone", "ff", Reason.INDEFINITE_LENGTH, ("ENC-4",), "a stray break byte"),
    ("break_in_array", "8201ff", Reason.INDEFINITE_LENGTH, ("ENC-4",),
     "a break byte where an array element should be"),
    # ENC-1: floats, tags, simple values
    ("float16", "f93c00", Reason.FLOAT_FORBIDDEN, ("ENC-1",), "half-precision 1.0"),
    ("float32", "fa47c35000", Reason.FLOAT_FORBIDDEN, ("ENC-1",), "single-precision 100000.0"),
    ("float64", "fb3ff199999999999a", Reason.FLOAT_FORBIDDEN, ("ENC-1",),
     "double-precision 1.1"),
    ("float_in_array", "8201f93c00", Reason.FLOAT_FORBIDDEN, ("ENC-1",),
     "a float inside an array"),
    ("float_as_map_key", "a1f93c0001", Reason.FLOAT_FORBIDDEN, ("ENC-1", "ENC-5"),
     "a float as a map key"),
    ("float_nan", "f97e00", Reason.FLOAT_FORBIDDEN, ("ENC-1",), "half-precision NaN"),
    ("tag_datetime", "c074323031332d30332d32315432303a30343a30305a", Reason.UNSUPPORTED_TYPE,
     ("ENC-1",), "tag 0, a date/time string (RFC 8949 Appendix A)"),
    ("tag_bignum", "c249010000000000000000", Reason.UNSUPPORTED_TYPE, ("ENC-1", "ENC-2"),
     "tag 2, the bignum 2^64: integers beyond 64 bits are outside the profile"),
    ("tag_self_describe", "d9d9f700", Reason.UNSUPPORTED_TYPE, ("ENC-1",),
     "the self-described CBOR tag 55799"),
    ("tag_in_map", "a16161c11a514b67b0", Reason.UNSUPPORTED_TYPE, ("ENC-1",),
     "tag 1 (epoch time) as a map value"),
    ("undefined", "f7", Reason.UNSUPPORTED_TYPE, ("ENC-1",), "the simple value undefined"),
    ("simple_16", "f0", Reason.UNSUPPORTED_TYPE, ("ENC-1",), "simple value 16 (unassigned)"),
    ("simple_255", "f8ff", Reason.UNSUPPORTED_TYPE, ("ENC-1",), "the two-byte simple value 255"),
    # ENC-5: map key types
    ("map_key_bytes", "a1410000", Reason.UNSUPPORTED_TYPE, ("ENC-5",), "a byte-string key"),
    ("map_key_array", "a18000", Reason.UNSUPPORTED_TYPE, ("ENC-5",), "an array key"),
    ("map_key_map", "a1a000", Reason.UNSUPPORTED_TYPE, ("ENC-5",), "a map key"),
    ("map_key_true", "a1f500", Reason.UNSUPPORTED_TYPE, ("ENC-5",),
     "the key true: booleans are not integers"),
    ("map_key_null", "a1f600", Reason.UNSUPPORTED_TYPE, ("ENC-5",), "the key null"),
    # ENC-7: reserved additional information
    ("reserved_ai_28", "1c", Reason.MALFORMED, ("ENC-7",),
     "major type 0 with additional information 28"),
    ("reserved_ai_29_bytes", "5d", Reason.MALFORMED, ("ENC-7",),
     "major type 2 with additional information 29"),
    ("reserved_ai_30_simple", "fe", Reason.MALFORMED, ("ENC-7",),
     "major type 7 with additional information 30"),
    # ENC-8: UTF-8
    ("utf8_invalid_continuation", "62c328", Reason.MALFORMED, ("ENC-8",),
     "0xc3 followed by a byte that is not a continuation byte"),
    ("utf8_overlong", "62c0af", Reason.MALFORMED, ("ENC-8",), "an overlong encoding of '/'"),
    ("utf8_surrogate", "63eda080", Reason.MALFORMED, ("ENC-8",), "an encoded surrogate U+D800"),
    ("utf8_above_max", "64f4908080", Reason.MALFORMED, ("ENC-8",),
     "a code point above U+10FFFF"),
    ("utf8_truncated_sequence", "61c3", Reason.MALFORMED, ("ENC-8",),
     "a text string that ends inside a two-byte sequence"),
    ("utf8_invalid_in_map_key", "a162ff0001", Reason.MALFORMED, ("ENC-8", "ENC-5"),
     "invalid UTF-8 in a text map key"),
    # ENC-9: exactly one item
    ("trailing_byte", "0000", Reason.TRAILING_BYTES, ("ENC-9",), "a second item after the first"),
    ("trailing_after_map", "a0ff", Reason.TRAILING_BYTES, ("ENC-9",),
     "a byte after a complete map"),
    ("empty", "", Reason.TRUNCATED, ("ENC-9",), "no input at all"),
    ("truncated_argument", "1901", Reason.TRUNCATED, ("ENC-9",),
     "a two-byte argument with one byte"),
    ("truncated_uint64", "1b000000", Reason.TRUNCATED, ("ENC-9",),
     "an eight-byte argument with three bytes"),
    ("truncated_text", "6261", Reason.TRUNCATED, ("ENC-9",), "a two-byte text with one byte"),
    ("truncated_array", "830102", Reason.TRUNCATED, ("ENC-9", "ENC-12"),
     "an array of three with two elements"),
    ("truncated_map_value", "a16161", Reason.TRUNCATED, ("ENC-9",), "a map key without its value"),
    ("truncated_nested", "a1616182", Reason.TRUNCATED, ("ENC-9",),
     "an array in a map value that ends before its elements"),
    # ENC-12: no allocation beyond the input
    ("huge_bytes_length", "5bffffffffffffffff00", Reason.TRUNCATED, ("ENC-12",),
     "a byte string claiming 2^64-1 bytes"),
    ("huge_array_count", "9b000000010000000000", Reason.TRUNCATED, ("ENC-12",),
     "an array claiming 2^32 elements in 10 bytes: refused before allocating"),
    ("huge_map_count", "bb0000000100000000" + "0000", Reason.TRUNCATED, ("ENC-12",),
     "a map claiming 2^32 entries"),
    ("count_checked_before_elements", "8301ff", Reason.TRUNCATED, ("ENC-12",),
     "an array of three with two bytes left: refused for its count before any element is "
     "read (the second would be a stray break; spec 01 §2.3)"),
    ("map_count_checked_before_entries", "a300ff", Reason.TRUNCATED, ("ENC-12",),
     "a map of three entries with two bytes left: refused for its count before any entry "
     "is read (spec 01 §2.3)"),
    ("count_equal_to_remaining", "8201ff", Reason.INDEFINITE_LENGTH, ("ENC-12", "ENC-4"),
     "an array of two with two bytes left passes the count check; its second element is a "
     "stray break (spec 01 §2.3)"),
    ("map_count_equal_to_remaining", "a200ff", Reason.INDEFINITE_LENGTH, ("ENC-12", "ENC-4"),
     "a map of two entries with two bytes left passes the count check, which counts "
     "entries, not their keys and values; its first value is a stray break (spec 01 §2.3)"),
    # ENC-5 and ENC-6: a key is read whole, then its type, then its order (spec 01 §2.3)
    ("map_key_bytes_truncated", "a14200", Reason.TRUNCATED, ("ENC-5", "ENC-9"),
     "a byte-string key that ends early: a key is read as a whole item before its type is "
     "checked (spec 01 §2.3)"),
    ("map_key_bytes_non_canonical", "a158010000", Reason.NON_CANONICAL, ("ENC-5", "ENC-3"),
     "a byte-string key with a one-byte length: the key's own defect comes first "
     "(spec 01 §2.3)"),
    ("map_key_array_with_float", "a181f93c0000", Reason.FLOAT_FORBIDDEN, ("ENC-5", "ENC-1"),
     "an array key holding a float: the float is met while the key is read "
     "(spec 01 §2.3)"),
    ("map_key_type_before_order", "a2616100" + "410000", Reason.UNSUPPORTED_TYPE,
     ("ENC-5", "ENC-6"),
     '{"a": 0, h\'00\': 0}: the byte-string key is of the wrong type and sorts before "a"; '
     "its type is checked before its order (spec 01 §2.3)"),
    ("map_key_order_before_value", "a2616200" + "6161f93c00", Reason.NON_CANONICAL,
     ("ENC-6", "ENC-1"),
     '{"b": 0, "a": 1.0}: the keys are out of order and the second value is a float; the '
     "order is checked before the value is read (spec 01 §2.3)"),
    # ENC-11: depth
    ("too_deep_arrays", "81" * 17 + "00", Reason.TOO_DEEP, ("ENC-11",),
     "seventeen nested arrays: the integer is at depth 17"),
    ("too_deep_maps", "a16161" * 17 + "00", Reason.TOO_DEEP, ("ENC-11",),
     "seventeen nested maps: the entries of the innermost are at depth 17"),
    ("too_deep_before_content", "81" * 17 + "ff", Reason.TOO_DEEP, ("ENC-11", "ENC-4"),
     "depth is checked before the item's byte is read: the byte at depth 17 is a stray "
     "break, yet too_deep is reported (spec 01 §2.3)"),
    # order of checks (spec 01 §2.3)
    ("first_defect_wins", "180000", Reason.NON_CANONICAL, ("ENC-3", "ENC-9"),
     "a non-canonical integer followed by a trailing byte: the first defect in reading "
     "order is reported"),
]


def cbor() -> Iterator[Case]:
    for name, hx, value, rules, desc in EXAMPLES:
        yield Case(name, Inputs({"input.cbor": bytes.fromhex(hx)}),
                   valid({"decoded.json": to_json(_value(name, value))}), desc, rules)
    for name, hx, reason, rules, desc in INVALID:
        yield Case(name, Inputs({"input.cbor": bytes.fromhex(hx)}), reject(reason), desc, rules)
    # ENC-10 with a small limit: a 1 MiB vector would be a poor thing to commit.
    yield Case("at_size_limit", Inputs({"input.cbor": bytes.fromhex("4f" + "00" * 15)},
                                        {"max_size": 16}),
               valid({"decoded.json": to_json(bytes(15))}),
               "16 bytes with a limit of 16 (the limit is a parameter of the decoder; "
               "MAX_MESSAGE_SIZE is its default)", ("ENC-10",))
    yield Case("too_large", Inputs({"input.cbor": bytes.fromhex("50" + "00" * 16)},
                                    {"max_size": 16}),
               reject(Reason.TOO_LARGE), "17 bytes with a limit of 16", ("ENC-10",))
    yield Case("too_large_before_decoding", Inputs({"input.cbor": bytes.fromhex("ff" * 17)},
                                                    {"max_size": 16}),
               reject(Reason.TOO_LARGE),
               "the size is checked before any byte is decoded", ("ENC-10",))


def _reversed_maps(obj: Any) -> Any:
    """The typed JSON form with every map's entries in reverse canonical order."""
    if isinstance(obj, list):
        return [_reversed_maps(v) for v in obj]
    if isinstance(obj, dict) and set(obj) == {"map"}:
        return {"map": [[_reversed_maps(k), _reversed_maps(v)] for k, v in reversed(obj["map"])]}
    return obj


def cbor_encode() -> Iterator[Case]:
    for name, hx, value, rules, desc in EXAMPLES:
        if not isinstance(value, dict):
            doc = desc
        else:
            doc = desc + "; the input lists the entries in reverse order, the encoder sorts them"
        yield Case(name, Inputs({"value.json": _reversed_maps(to_json(_value(name, value)))}),
                   valid({"encoded.cbor": bytes.fromhex(hx)}), doc, (*rules, "ENC-13"))
    bad: list[tuple[str, Any, Reason, tuple[str, ...], str]] = [
        ("uint_too_big", {"int": str(1 << 64)}, Reason.UNSUPPORTED_TYPE, ("ENC-2",),
         "2^64 does not fit in 64 bits"),
        ("nint_too_small", {"int": str(-(1 << 64) - 1)}, Reason.UNSUPPORTED_TYPE, ("ENC-2",),
         "-2^64-1 does not fit in 64 bits"),
        ("too_deep", to_json(_nest(17, 0)), Reason.TOO_DEEP, ("ENC-11",),
         "seventeen nested arrays"),
        ("duplicate_key", {"map": [["a", {"int": "1"}], ["a", {"int": "2"}]]},
         Reason.DUPLICATE_KEY, ("ENC-6",), "a map listing the key \"a\" twice"),
        ("map_key_bytes", {"map": [[{"bytes": "00"}, {"int": "0"}]]}, Reason.UNSUPPORTED_TYPE,
         ("ENC-5",), "a byte-string key"),
        ("map_key_true", {"map": [[True, {"int": "0"}]]}, Reason.UNSUPPORTED_TYPE,
         ("ENC-5",), "a boolean key"),
        ("map_key_null", {"map": [[None, {"int": "0"}]]}, Reason.UNSUPPORTED_TYPE,
         ("ENC-5",), "a null key"),
    ]
    for name, obj, reason, rules, desc in bad:
        yield Case(name, Inputs({"value.json": obj}), reject(reason), desc, rules)


HANDLERS: dict[str, Callable[[], Iterator[Case]]] = {"cbor": cbor, "cbor_encode": cbor_encode}
