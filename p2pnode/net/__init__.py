"""The libp2p shell: the only package that imports py-libp2p (spec 03)."""
