"""Fixtures for `guardian dev` tests (see dev_harness.py)."""
from __future__ import annotations

import pytest

from dev_harness import DEV_LOG_TAIL, DevRun, browser, dev_run, page  # noqa: F401  (pytest fixtures)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A failed scenario's report ends with the tails of `guardian dev`'s bot and worker logs, so a failure seen
    only in CI says what the bot did meanwhile (a rate-limited post, a worker's traceback)."""
    report = yield
    run = getattr(item, "funcargs", {}).get("dev_run")
    if report.failed and isinstance(run, DevRun):
        for name, text in run.logs().items():
            lines = text.splitlines(keepends=True)
            report.sections.append((f"`guardian dev` {name} (last {min(len(lines), DEV_LOG_TAIL)} of {len(lines)} "
                                    "lines)", "".join(lines[-DEV_LOG_TAIL:])))
    return report
