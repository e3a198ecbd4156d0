"""Fixtures for `guardian dev` tests (see dev_harness.py)."""
from dev_harness import browser, dev_run, page  # noqa: F401  (pytest fixtures)
