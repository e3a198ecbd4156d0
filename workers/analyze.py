"""Analysis step: read the migrations at a pinned commit, analyse them, post the preview, await approval."""
from __future__ import annotations

import logging

from rq import get_current_job

from workers.liveness import hold_lease
from workers.runtime import runtime

log = logging.getLogger(__name__)


def run(request_id: int) -> None:
    """RQ entry point; the flow does the work and is a no-op unless the request is still analysing."""
    log.info("request %s: analyze started", request_id)
    job = get_current_job()
    if job is not None:
        hold_lease(job.connection, job.id)  # a flushed Redis must not make this analysis look dead
    request = runtime().flow.analyze(request_id)
    log.info("request %s: analyze finished, status %s", request_id, request.status.value)
