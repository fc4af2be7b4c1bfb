"""Content-addressed blobs: the store and the sans-IO half of ``/p2pnode/<net>/blob/1``."""
