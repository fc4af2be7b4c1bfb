"""Verifiable compute: checks far cheaper than recomputing (issue: proofs chapter)."""
