"""Content ids: the sha2-256 multihash of the content (spec/01 ENV-10, spec/05 BLOB-1).

    cid = 0x12 0x20 || sha2-256(content)        ; 34 bytes

The one content-id function of the project: envelopes (a job's id), blobs and outputs all
use :func:`cid_of`; this module also has the shape check and the incremental form that
streaming writers and receivers need.
"""

from __future__ import annotations

import hashlib

from p2pnode.wire.reasons import Reason, WireError

CID_PREFIX = b"\x12\x20"
DIGEST_SIZE = 32
CID_SIZE = len(CID_PREFIX) + DIGEST_SIZE


def check_cid(cid: object) -> bytes:
    """Return ``cid`` if it is a well-formed sha2-256 multihash, else WireError(BAD_FIELD)."""
    if not isinstance(cid, bytes):
        raise WireError(Reason.BAD_FIELD, "cid must be a byte string")
    if len(cid) != CID_SIZE:
        raise WireError(Reason.BAD_FIELD, "cid of %d bytes, expected %d" % (len(cid), CID_SIZE))
    if not cid.startswith(CID_PREFIX):
        raise WireError(Reason.BAD_FIELD, "cid is not a sha2-256 multihash")
    return cid


def cid_of(data: bytes | bytearray | memoryview) -> bytes:
    return CID_PREFIX + hashlib.sha256(data).digest()


class CidHasher:
    """Incremental content id: ``update`` with the pieces, then ``cid()``."""

    __slots__ = ("_h",)

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)

    def cid(self) -> bytes:
        return CID_PREFIX + self._h.digest()
