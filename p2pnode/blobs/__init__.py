"""Content-addressed blobs: the store and the sans-IO half of ``/p2pnode/<net>/blob/1``."""

from p2pnode.blobs.protocol import CHUNK_SIZE, MAX_BLOB_SIZE
from p2pnode.blobs.store import BlobStore, BlobWriter
from p2pnode.wire.cid import CID_SIZE, check_cid, cid_of

__all__ = [
    "CHUNK_SIZE",
    "CID_SIZE",
    "MAX_BLOB_SIZE",
    "BlobStore",
    "BlobWriter",
    "check_cid",
    "cid_of",
]
