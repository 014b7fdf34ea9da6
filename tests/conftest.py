"""Hypothesis profiles for the whole suite.

Select one with the environment variable HYPOTHESIS_PROFILE (default "ci"):

- ``ci``: the full budget. Derandomized, so every run explores the same examples and a failure in
  CI reproduces locally with the same command.
- ``dev``: a tenth of the budget, for a quick loop while editing.

Both run without an example database (nothing is written next to the checkout) and without a
deadline (timings on a shared 2-core machine are noise). A test that needs more than the base
budget scales it with ``tests/core/strategies.scaled`` so that ``dev`` shrinks it too.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

CI_MAX_EXAMPLES = 100
"""The base budget of the "ci" profile; `scaled(n)` means n examples in "ci"."""

_COMMON = dict(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

settings.register_profile("ci", max_examples=CI_MAX_EXAMPLES, **_COMMON)
settings.register_profile("dev", max_examples=CI_MAX_EXAMPLES // 10, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
