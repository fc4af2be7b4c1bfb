"""The reward ledger (spec 07): receipts and slashes as grow-only sets, epochs, cumulative
Merkle roots, set reconciliation and the SQLite store."""
