"""Content-addressed blobs: the store and the sans-IO half of ``/p2pnode/<net>/blob/1``."""

from p2pnode.blobs.cid import CID_SIZE, check_cid, cid_of
from p2pnode.blobs.protocol import CHUNK_SIZE, MAX_BLOB_SIZE
from p2pnode.blobs.store import BlobStore, BlobWriter

__all__ = [
    "CHUNK_SIZE",
    "CID_SIZE",
    "MAX_BLOB_SIZE",
    "BlobStore",
    "BlobWriter",
    "check_cid",
    "cid_of",
]
