"""Trio shells that run the sans-IO machines of ``p2pnode.jobs`` over typed ports."""
