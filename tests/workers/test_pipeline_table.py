"""The run is one table (bot/run.py): the queue, the steps, the reconciler and the final transition all read it,
so a test-only pipeline with one more step runs a request through that step on real PostgreSQL, Redis and RQ."""
from __future__ import annotations

import psycopg
import pytest
from rq import Queue

from bot.models import DbState, RequestStatus
from bot.run import RUN, Pipeline, RunStep
from workers import pipeline
from workers.enqueue import QUEUE_NAME, QUEUE_NAMES, deliver, jobs
from workers.reconciler import reconcile
from workers.runtime import runtime
from workers.worker import GuardianSimpleWorker

CREATE = "CREATE TABLE items (id bigint PRIMARY KEY, v int NOT NULL);\nINSERT INTO items SELECT g, g FROM generate_series(1, 42) g;\n"

# A smoke check between apply and verify that keeps the request in `applying` (no status of its own).
SMOKE = RunStep("smoke", "test_pipeline_table.smoke_check", 60, RequestStatus.APPLYING, DbState.APPLIED,
                "the worker running the smoke check died; the migrations are applied: verify by hand")
WITH_SMOKE = Pipeline((RUN["backup"], RUN["apply"], SMOKE, RUN["verify"]))


def smoke_check(request_id: int) -> None:
    """The dummy step's job: what any step does — begin, work on the target, succeed (the table says what's next)."""
    rt = runtime()
    step = pipeline.begin(rt, request_id, "smoke")
    if step is None:
        return
    env = rt.config.environment(step.request.environment)
    with psycopg.connect(env.database_url().get_secret_value()) as conn:
        rows = conn.execute("SELECT count(*) FROM items").fetchone()[0]
    status = rt.store.get_request(request_id).status.value
    pipeline.succeed(step, {"rows": rows, "status_seen": status}, [f"{rows} rows in items"])


def work(p, run: Pipeline) -> None:
    """Pump the outbox with ``run``'s jobs and work the queues in-process until nothing is left."""
    for _ in range(10):
        sent = deliver(p.store, p.redis, pipeline=run)
        queues = [Queue(name, connection=p.redis) for name in QUEUE_NAMES]
        if not sent and not any(q.count for q in queues):
            return
        GuardianSimpleWorker(queues, connection=p.redis).work(burst=True)


def test_the_run_is_backup_apply_verify_and_the_queue_takes_its_jobs_from_the_table():
    assert [s.name for s in RUN.steps] == ["backup", "apply", "verify"]
    assert [RUN.expects(s.name) for s in RUN.steps] == [
        RequestStatus.QUEUED, RequestStatus.BACKING_UP, RequestStatus.APPLYING]
    assert RUN.after("apply") is RUN["verify"] and RUN.after("verify") is None
    assert jobs(RUN)["apply"] == ("workers.apply.run", 12 * 3600, QUEUE_NAME)
    assert "smoke" not in jobs(RUN) and jobs(WITH_SMOKE)["smoke"] == ("test_pipeline_table.smoke_check", 60, QUEUE_NAME)
    assert "rollback" not in jobs(RUN)  # it named workers.rollback.run, which never existed


def test_a_table_with_a_repeated_step_or_a_status_split_by_another_is_refused():
    with pytest.raises(ValueError, match="distinct names"):
        Pipeline((RUN["backup"], RUN["backup"]))
    with pytest.raises(ValueError, match="backing_up"):
        Pipeline((RUN["backup"], RUN["apply"], RunStep("again", "x.run", 1, RequestStatus.BACKING_UP, None)))


def test_a_request_runs_through_a_step_added_to_a_test_only_pipeline(make_pipeline):
    p = make_pipeline()
    p.rt.pipeline = WITH_SMOKE
    req = p.request([("001_create_items", CREATE)])

    assert pipeline.start_run(p.rt, req.id, connection=p.redis) is True
    work(p, WITH_SMOKE)

    done = p.store.get_request(req.id)
    assert done.status is RequestStatus.SUCCEEDED, done.error
    steps = p.store.list_steps(req.id)
    assert [(s.step, s.status) for s in steps] == [
        ("backup", "succeeded"), ("apply", "succeeded"), ("smoke", "succeeded"), ("verify", "succeeded")]
    smoke = next(s for s in steps if s.step == "smoke")
    assert smoke.outcome == {"rows": 42, "status_seen": "applying"}  # after apply committed, before verify began
    kinds = [e.kind for e in p.store.list_events(request_id=req.id) if e.kind.startswith("step.")]
    assert kinds.index("step.apply.succeeded") < kinds.index("step.smoke.started") < kinds.index("step.verify.started")
    thread = "\n".join(p.thread_texts(done))
    assert "*smoke* succeeded" in thread and "42 rows in items" in thread
    assert f"Request #{req.id} succeeded in" in thread  # the one final transition posted the summary


def test_the_real_pipeline_does_not_know_the_test_step(make_pipeline):
    p = make_pipeline()  # the runtime's default table: the same request never meets a smoke step
    req = p.request([("001_create_items", CREATE)])
    assert pipeline.start_run(p.rt, req.id, connection=p.redis) is True
    work(p, RUN)
    assert [s.step for s in p.store.list_steps(req.id)] == ["backup", "apply", "verify"]
    assert p.store.get_request(req.id).status is RequestStatus.SUCCEEDED


def test_the_reconciler_follows_the_table_past_a_step_that_keeps_its_status(make_pipeline):
    p = make_pipeline()
    p.rt.pipeline = WITH_SMOKE
    req = p.request([("001_create_items", CREATE)], status=RequestStatus.APPLYING)
    for name in ("apply", "smoke"):  # both done under `applying`; verify's job never got queued
        row = p.store.start_step(req.id, name)
        p.store.finish_step(row.id, "succeeded", outcome={})
    assert reconcile(p.rt, redis=p.redis, min_age_s=0) == [
        f"request {req.id}: smoke done but the verify job was gone: enqueued again"]
    verify = p.store.latest_job(req.id, "verify")
    assert verify is not None and verify.sent_at is not None  # on the queue, by its table-given job
