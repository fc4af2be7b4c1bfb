"""Shared test configuration: hypothesis profiles.

``dev`` is fast and is the default; ``ci`` runs many more examples. ``HYPOTHESIS_PROFILE``
picks one by name; otherwise a set ``CI`` variable (CI services set ``CI=true``) picks ``ci``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# No deadlines: a slow shared runner must not turn a timing hiccup into a failure.
settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile(
    "ci",
    max_examples=400,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def _profile() -> str:
    explicit = os.environ.get("HYPOTHESIS_PROFILE")
    if explicit:
        return explicit
    ci = os.environ.get("CI", "").strip().lower()
    return "ci" if ci not in ("", "0", "false", "no") else "dev"


settings.load_profile(_profile())
