"""Start step for approved requests that waited for a freeze to end or a maintenance window to open."""
from __future__ import annotations

import logging

from workers.runtime import runtime

log = logging.getLogger(__name__)


def run(request_id: int) -> None:
    """Re-check the gate; start the run if it is open, else the flow schedules the next check."""
    log.info("request %s: gate check", request_id)
    runtime().flow.schedule_run(request_id)
