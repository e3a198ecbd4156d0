"""Fixtures for end-to-end flow tests (see flow_harness.py)."""
from flow_harness import harness  # noqa: F401  (pytest fixture)
