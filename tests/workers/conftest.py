"""Pipeline fixtures: a runtime on real PostgreSQL/Redis, a target environment, the Slack stand-in, request helpers."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from redis import Redis
from rq import Queue
from slack_sdk import WebClient

from bot.config import BackupConfig, EnvironmentConfig, GuardianConfig, ProjectConfig, Settings, SlackConfig
from bot.models import Request, RequestStatus
from bot.slack.standin import SlackStandIn
from bot.store import NewMigration, Store
from workers.enqueue import QUEUE_NAMES, deliver
from workers.runtime import Runtime, install
from workers.worker import GuardianSimpleWorker

TARGET_ENV_VAR = "GT_WORKERS_TARGET_URL"
CHANNEL = "C0PIPELINE"


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn() as running:
        yield running


@dataclass
class Pipeline:
    rt: Runtime
    store: Store
    redis: Redis
    target_url: str
    standin: SlackStandIn
    backup_dir: Path
    config_path: Path
    settings_env: dict[str, str]
    env_var: str = TARGET_ENV_VAR

    def request(self, migrations: list[tuple[str, str]], *, verify_sql: dict[str, str] | None = None,
                status: RequestStatus = RequestStatus.APPROVED, thread: bool = True) -> Request:
        """A request in ``status`` with a Slack root message and thread, as the approval flow leaves it."""
        req = self.store.create_request(
            "staging", "U0REQUESTER",
            [NewMigration(name=name, sql=sql, path=f"migrations/{name}.sql",
                          verify_sql=(verify_sql or {}).get(name)) for name, sql in migrations],
            status=status, source="adhoc",  # pasted SQL: revalidation checks target and policy, not a git repo
            policy_version=self.rt.flow.policy("staging").version,
        )
        if thread:
            client = WebClient(token=self.standin.token, base_url=self.standin.url)
            ts = client.chat_postMessage(channel=CHANNEL, text=f"request {req.id}")["ts"]
            req = self.store.update_request(req.id, channel=CHANNEL, message_ts=ts, thread_ts=ts)
        return req

    def work(self) -> None:
        """Run every queued job in-process until the queues are empty (rq SimpleWorker, burst)."""
        deliver(self.store, self.redis)  # intents written while no pump ran
        queues = [Queue(name, connection=self.redis) for name in QUEUE_NAMES]
        GuardianSimpleWorker(queues, connection=self.redis).work(burst=True)

    def thread_texts(self, request: Request) -> list[str]:
        out = []
        for m in self.standin.messages(CHANNEL):
            if m.get("thread_ts") == request.thread_ts and m["ts"] != request.thread_ts:
                blocks = " ".join(b.get("text", {}).get("text", "") for b in m.get("blocks", []) if "text" in b)
                out.append(m.get("text", "") + " " + blocks)
        return out

    def target(self) -> psycopg.Connection:
        return psycopg.connect(self.target_url, autocommit=True)

    @staticmethod
    def session(conn: psycopg.Connection, application_name: str, *, running: str | None = None) -> int | None:
        """The pid of a session named ``application_name`` in ``conn``'s database (running a query containing
        ``running``), or None. Only that database's: a test session beside this one on the same server has its
        own request 1, with sessions of the same names."""
        query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s"
        params = [application_name]
        if running is not None:
            query += " AND query LIKE %s"
            params.append(f"%{running}%")
        row = conn.execute(query, params).fetchone()
        return row[0] if row else None


@pytest.fixture
def make_pipeline(state_db_url: str, target_db_url: str, redis_url: str, standin: SlackStandIn,
                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Pipeline]]:
    made: list[Pipeline] = []

    def make(*, layout: str = "sql", lock_timeout: str = "2s", apply_retries: int = 2,
             backup_mode: str = "full", rls_probes: list | None = None) -> Pipeline:
        monkeypatch.setenv(TARGET_ENV_VAR, target_db_url)
        backup_dir = tmp_path / "backups"
        env = EnvironmentConfig(name="staging", database_url_env=TARGET_ENV_VAR, lock_timeout=lock_timeout,
                                statement_timeout="2min", apply_retries=apply_retries)
        if rls_probes is not None:
            object.__setattr__(env, "rls_probes", rls_probes)  # the key the lead adds to EnvironmentConfig
        config = GuardianConfig(project=ProjectConfig(layout=layout), slack=SlackConfig(channel=CHANNEL),
                                environments={"staging": env}, backup=BackupConfig(dir=backup_dir, mode=backup_mode))
        settings = Settings(database_url=state_db_url, redis_url=redis_url, slack_bot_token=standin.token,
                            slack_api_url=standin.url)
        rt = Runtime(settings=settings, config=config)
        install(rt)
        config_path = tmp_path / "guardian.toml"
        config_path.write_text(
            f'[project]\nlayout = "{layout}"\n[slack]\nchannel = "{CHANNEL}"\n'
            f'[environments.staging]\ndatabase_url_env = "{TARGET_ENV_VAR}"\nlock_timeout = "{lock_timeout}"\n'
            f'statement_timeout = "2min"\napply_retries = {apply_retries}\n'
            f'[backup]\ndir = "{backup_dir}"\nmode = "{backup_mode}"\n'
        )
        settings_env = {"DATABASE_URL": state_db_url, "REDIS_URL": redis_url, "GUARDIAN_CONFIG": str(config_path),
                        "SLACK_BOT_TOKEN": standin.token, "SLACK_API_URL": standin.url,
                        TARGET_ENV_VAR: target_db_url}
        p = Pipeline(rt=rt, store=rt.store, redis=Redis.from_url(redis_url), target_url=target_db_url,
                     standin=standin, backup_dir=backup_dir, config_path=config_path, settings_env=settings_env)
        made.append(p)
        return p

    yield make
    install(None)
    for p in made:
        p.redis.close()
