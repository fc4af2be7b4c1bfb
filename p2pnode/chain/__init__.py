"""Anchoring the ledger's epoch roots to a chain, and claims against them (spec 08, draft):
backends behind one interface (``base.Chain``): ``devchain`` (embedded, SQLite) and
``evm`` (a contract over JSON-RPC)."""
