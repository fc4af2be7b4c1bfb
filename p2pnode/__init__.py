"""p2pnode: reference node of an open, verifiable decentralized compute network."""

__version__ = "0.1.0"
PROTOCOL_MAJOR = 1
