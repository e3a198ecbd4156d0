"""End-to-end harness: a git repo of migrations, a target database, the bot over real HTTP with signed
requests, the Slack stand-in, real PostgreSQL and Redis, and an in-process RQ worker."""
from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from redis import Redis
from rq import Queue
from slack_sdk import WebClient

from bot.config import GuardianConfig, Settings
from bot.flow import Flow
from bot.slack.app import build_app
from bot.slack.notifier import Notifier
from bot.slack.sender import SentResponse, SlackSender, SlackUser
from bot.slack.server import EVENTS_PATH, build_wsgi_app, stop_server
from bot.slack.standin import SlackStandIn
from bot.store import Store
from workers import runtime as runtime_module
from workers.enqueue import QUEUE_NAMES, deliver
from workers.worker import GuardianSimpleWorker
from bot.sources.ledgers import PRISMA_DDL

SIGNING_SECRET = "flow-signing-secret-0123456789"
CHANNEL = "C0MIGRATE"
REQUESTER, APPROVER_A, APPROVER_B, DBA, OUTSIDER = "U_REQ", "U_A", "U_B", "U_DBA", "U_OUT"

USERS_SQL = """
CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);
INSERT INTO users SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 2000) g;
ANALYZE users;
""" + PRISMA_DDL + ";\n"  # a baselined Prisma database: history (empty) next to existing tables, so no P3005


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class Harness:
    repo: Path
    config: GuardianConfig
    settings: Settings
    store: Store
    redis: Redis
    standin: SlackStandIn
    sender: SlackSender
    flow: Flow
    targets: dict[str, str]
    _responses: int = field(default=0)
    layout: str = "prisma"

    # ---- the repository
    def add_migration(self, name: str, sql: str, message: str | None = None) -> str:
        if self.layout == "supabase":  # supabase/migrations/<version>_<name>.sql
            folder = self.repo / "supabase" / "migrations"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.sql").write_text(sql)
        else:
            folder = self.repo / "prisma" / "migrations" / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "migration.sql").write_text(sql)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-qm", message or f"migration {name}")
        return git(self.repo, "rev-parse", "HEAD")

    # ---- Slack traffic (signed, over HTTP)
    def command(self, text: str, user: str = REQUESTER) -> tuple[SentResponse, str]:
        self._responses += 1
        rid = f"cmd{self._responses}"
        sent = self.sender.slash_command(text, user=SlackUser(id=user, name=user), channel_id=CHANNEL,
                                         response_url=self.standin.response_url(rid))
        assert sent.status == 200, sent  # every signed command is acknowledged, refusals included
        return sent, rid

    def click(self, action_id: str, request_id: int, user: str, *, block_id: str | None = None) -> tuple[SentResponse, str]:
        """A click on the request's card as Slack shows it now (its buttons' block id carries the preview's
        fingerprint); ``block_id`` replays a click on a card as it was shown earlier."""
        self._responses += 1
        rid = f"act{self._responses}"
        sent = self.sender.block_action(action_id, value=str(request_id), user=SlackUser(id=user, name=user),
                                        block_id=block_id or self.card_block_id(request_id),
                                        channel_id=CHANNEL, response_url=self.standin.response_url(rid))
        assert sent.status == 200, sent  # every signed click is acknowledged, refusals included
        return sent, rid

    def replies(self, rid: str, timeout: float = 10.0) -> list[str]:
        """Texts posted to one response_url (waits for the first)."""
        self.standin.wait_for("response_url", lambda c: c.path.endswith("/" + rid), timeout=timeout)
        return [str(c.params.get("text", "")) for c in self.standin.responses(rid)]

    # ---- worker
    def run_jobs(self) -> None:
        """Run every queued job in-process; a job that raised fails the test with its traceback."""
        deliver(self.store, self.redis)  # intents written while no pump ran
        queues = [Queue(name, connection=self.redis) for name in QUEUE_NAMES]
        GuardianSimpleWorker(queues, connection=self.redis).work(burst=True)
        problems = []
        for queue in queues:
            for job_id in queue.failed_job_registry.get_job_ids():
                job = queue.fetch_job(job_id)
                result = job.latest_result() if job else None
                problems.append(f"{job_id}: {getattr(result, 'exc_string', None)}")
        assert not problems, "jobs failed:\n" + "\n".join(problems)

    def queued_job_ids(self) -> list[str]:
        return [j for name in QUEUE_NAMES for j in Queue(name, connection=self.redis).get_job_ids()]

    # ---- what Slack shows
    def card(self, request_id: int) -> dict[str, Any]:
        request = self.store.get_request(request_id)
        return next(m for m in self.standin.messages(request.channel) if m["ts"] == request.message_ts)

    def card_block_id(self, request_id: int) -> str:
        """The block id of the card's buttons as Slack shows them now ("actions" when it has none)."""
        blocks = self.card(request_id).get("blocks") or []
        return next((b.get("block_id") or "actions" for b in blocks if b.get("type") == "actions"), "actions")

    def thread_texts(self, request_id: int) -> list[str]:
        request = self.store.get_request(request_id)
        out = []
        for m in self.standin.messages(request.channel):
            if m.get("thread_ts") == request.thread_ts and m["ts"] != request.thread_ts:
                out.append(m.get("text", "") + "\n" + json.dumps(m.get("blocks", [])))
        return out

    def latest_request_id(self) -> int:
        return self.store.list_requests(limit=1)[0].id


@pytest.fixture
def harness(tmp_path: Path, make_database, state_db_url: str, redis_url: str, monkeypatch,
            request: pytest.FixtureRequest) -> Iterator[Harness]:
    """The bot over HTTP with a Prisma project; `@pytest.mark.parametrize("harness", ["supabase"], indirect=True)`
    gives a Supabase project instead, and a param ``("prisma", "<more TOML>")`` appends to guardian.toml."""
    param = getattr(request, "param", "prisma")
    layout, more_toml = (param, "") if isinstance(param, str) else param
    repo = tmp_path / "app"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "Dev")
    (repo / "README").write_text("app\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")

    targets = {"staging": make_database(prefix="gt_staging"), "production": make_database(prefix="gt_prod")}
    for url in targets.values():
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(USERS_SQL)
    monkeypatch.setenv("GT_STAGING_URL", targets["staging"])
    monkeypatch.setenv("GT_PRODUCTION_URL", targets["production"])
    config_path = tmp_path / "guardian.toml"
    config_path.write_text(f"""
[project]
repo = "{repo}"
layout = "{layout}"
path = "{layout}/migrations"
branch = "main"

[backup]
dir = "{tmp_path / 'backups'}"

[environments.staging]
database_url_env = "GT_STAGING_URL"
approvers = ["{APPROVER_A}", "{APPROVER_B}", "S0DBAS"]
approvals = {{ low = 1, medium = 1, high = 2, critical = 2 }}
allow_adhoc_sql = true

[environments.production]
database_url_env = "GT_PRODUCTION_URL"
approvers = ["{APPROVER_A}", "{APPROVER_B}"]
approvals = {{ low = 1, medium = 1, high = 2, critical = 2 }}
requires = ["staging"]
production = true
""" + more_toml)
    from bot.config import load_config

    config = load_config(config_path, required=True)
    standin = SlackStandIn().start()
    standin.usergroups["S0DBAS"] = [DBA]
    standin.add_bot_to(CHANNEL)  # people invited @Guardian where they type /migrate
    settings = Settings(slack_bot_token=standin.token, slack_signing_secret=SIGNING_SECRET,
                        slack_api_url=standin.url, database_url=state_db_url, redis_url=redis_url,
                        guardian_config=config_path)
    client = WebClient(token=standin.token, base_url=standin.url)
    store = Store(state_db_url, max_size=20)
    redis = Redis.from_url(redis_url)
    flow = Flow(settings, config, store, redis, Notifier(client), dispatch=lambda: deliver(store, redis))  # as the worker wires it
    app = build_app(settings, config, client, flow=flow)

    import waitress

    server = waitress.create_server(build_wsgi_app(app), host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    sender = SlackSender(f"http://127.0.0.1:{server.effective_port}{EVENTS_PATH}", signing_secret=SIGNING_SECRET)
    rt = runtime_module.Runtime(settings=settings, config=config)
    runtime_module.install(rt)
    try:
        yield Harness(repo=repo, config=config, settings=settings, store=store, redis=redis, standin=standin,
                      sender=sender, flow=flow, targets=targets, layout=layout)
    finally:
        runtime_module.install(None)
        stop_server(server)
        thread.join(timeout=5)
        standin.stop()
        store.close()
        redis.close()
