"""Trio shells around the sans-IO core: the parts of a node that own processes and time.

A service may import trio; the core (``jobs/``, ``caps/``, ``wire/`` ...) may not.
"""
