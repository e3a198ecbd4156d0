"""Secrets by value: a target password however its URL is written, Slack tokens and webhook secrets never
leave the process — not to Slack, the logs, the bot's state database or a person's error reply."""
from __future__ import annotations

import json
import logging
import secrets as random_tokens
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import psycopg
import pytest
from psycopg import sql
from redis import Redis
from rq import Queue

from bot import cli, redaction
from bot.config import Settings, load_config
from bot.errors import TargetError
from bot.models import RequestStatus
from bot.pg.connect import connect_target, scrub as connect_scrub
from bot.slack.app import build_app
from bot.slack.outbound import ScrubbingWebClient
from bot.slack.sender import SlackSender, SlackUser
from bot.slack.server import EVENTS_PATH, build_wsgi_app, stop_server
from bot.slack.standin import SlackStandIn
from bot.store import NewMigration, Store
from workers import analyze as analyze_step
from workers import backup as backup_step
from workers import runtime as runtime_module
from workers.enqueue import QUEUE_NAME
from workers.worker import GuardianSimpleWorker

CHANNEL = "C0SECRETS"
REQUESTER, APPROVER = "U_REQ", "U_APP"


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """An empty process-wide registry and the stock log record factory, both put back afterwards."""
    previous, factory = redaction.install(redaction.Secrets()), logging.getLogRecordFactory()
    try:
        yield
    finally:
        redaction.install(previous)
        logging.setLogRecordFactory(factory)


# ------------------------------------------------------------------ the registry


def test_forms_of_a_password_however_the_url_is_written():
    assert {"p%41ss-word", "pAss-word"} <= redaction.secret_forms("postgresql://app:p%41ss-word@db:5432/x")
    unparseable = "postgresql://app:pa%ss-word@127.0.0.1:5432/db"  # libpq: invalid percent-encoded token
    assert {"pa%ss-word", unparseable} <= redaction.secret_forms(unparseable)
    assert "p@ss-word" in redaction.secret_forms("postgresql://app:p@ss-word@db/x")  # '@' in the password
    assert "hunter22" in redaction.secret_forms("postgresql://app@db/x?sslmode=require&password=hunter22")
    assert "a b'c" in redaction.secret_forms("host=db password='a b\\'c' user=app")
    assert "s3cr3t-redis" in redaction.secret_forms("redis://:s3cr3t-redis@127.0.0.1:6379/0")
    assert redaction.secret_forms("xoxb-123-456") == {"xoxb-123-456"}
    assert redaction.secret_forms("postgresql://postgres@127.0.0.1:5432/app") == set()  # nothing secret in it
    assert redaction.secret_forms("postgresql://app:abc@db/x") == set()  # too short to scrub without shredding text


def test_scrub_replaces_longest_first_and_url_userinfo_generically():
    secrets = redaction.Secrets(["abcd-1", "abcd-1234", "xy"])
    assert secrets.values == ("abcd-1234", "abcd-1")  # "xy" is too short to register
    assert secrets.scrub("a abcd-1234 b abcd-1 c xy") == "a [secret] b [secret] c xy"
    text = "see https://u:not-registered@h:1/x and redis://:pw@h and ftp://anon@h and http://h/p"
    assert secrets.scrub(text) == ("see https://u:[secret]@h:1/x and redis://:[secret]@h and ftp://anon@h and "
                                   "http://h/p")
    # a password with '@' and '/' in it, in a URL libpq refuses: from the first ':' to the last '@'
    assert redaction.scrub_userinfo("x postgresql://a:p@s/s%zz@h:5432/d y") == "x postgresql://a:[secret]@h:5432/d y"
    big = "://a:" * 50_000 + "@h " + "b" * 200_000  # one pass per token, not per position
    assert redaction.scrub_userinfo(big).startswith("://a:[secret]@h ")


def test_scrub_value_reaches_every_string_and_leaves_the_rest(clean_registry):
    redaction.register("tok-en-123")
    value = {"text": "tok-en-123", "blocks": [{"t": ("x tok-en-123", 3)}], "n": 5, "none": None}
    assert redaction.scrub_value(value) == {"text": "[secret]", "blocks": [{"t": ("x [secret]", 3)}], "n": 5,
                                            "none": None}


def test_connect_scrub_delegates_and_knows_an_unparseable_urls_password(clean_registry):
    url = "postgresql://app:pa%ss-word9@127.0.0.1:5432/db"
    text = 'invalid percent-encoded token: "pa%ss-word9"'
    assert "pa%ss-word9" in connect_scrub(text)  # nothing registered, no secret given: not known
    assert "pa%ss-word9" not in connect_scrub(text, url)  # given the URL, its password in every form
    redaction.register(url)
    assert "pa%ss-word9" not in connect_scrub(text)  # registered: known by value everywhere
    assert "pa%ss-word9" not in connect_scrub("host=h password=pa%ss-word9", url)


def test_a_malformed_target_url_is_refused_without_its_password():
    password = f"pa%ss{random_tokens.token_hex(6)}"
    with pytest.raises(TargetError) as info:
        connect_target(f"postgresql://app:{password}@127.0.0.1:5432/db", "staging")
    assert info.value.code == "target-url" and "staging" in info.value.message
    assert password not in str(info.value) and "[secret]" in str(info.value)


def test_configured_values_cover_slack_state_targets_and_webhooks(tmp_path):
    config_path = tmp_path / "guardian.toml"
    config_path.write_text("""
[environments.staging]
database_url_env = "T_STAGING_URL"
rehearsal_database_url_env = "T_REHEARSAL_URL"
[[webhooks]]
name = "pager"
url = "https://hooks.example.com/x"
secret_env = "T_HOOK_SECRET"
""")
    config = load_config(config_path, required=True)
    settings = Settings(slack_bot_token="xoxb-bot-1", slack_signing_secret="signing-1", slack_app_token="xapp-1",
                        database_url="postgresql://bot:state-pw@db/bot", redis_url="redis://:redis-pw@r:6379/0",
                        guardian_config=config_path)
    environ = {"T_STAGING_URL": "postgresql://app:st%aging@db/app", "T_REHEARSAL_URL": "host=db password=rehearse",
               "T_HOOK_SECRET": "hook-secret"}
    known = redaction.Secrets().with_values(*redaction.configured_values(settings, config, environ)).values
    for value in ("xoxb-bot-1", "signing-1", "xapp-1", "state-pw", "redis-pw", "st%aging", "rehearse",
                  "hook-secret"):
        assert value in known, value


# ------------------------------------------------------------------ each way out


def test_log_records_are_scrubbed_whatever_handler_writes_them(clean_registry, caplog):
    redaction.register("log-secret-42")
    redaction.install_log_scrubbing()
    redaction.install_log_scrubbing()  # twice is once
    own = logging.getLogger("tests.secrets.own")
    stream = []
    handler = logging.Handler()
    handler.emit = lambda record: stream.append(handler.format(record))  # a handler of its own, not the root's
    own.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        own.warning("request %s: failed with %s", 7, "log-secret-42 and postgresql://u:other-pw@h/d")
        try:
            raise RuntimeError("boom log-secret-42")
        except RuntimeError:
            own.exception("request %s: unexpected", 7)
    finally:
        own.removeHandler(handler)
    written = caplog.text + "\n".join(stream)
    assert "log-secret-42" not in written and "other-pw" not in written
    assert "request 7: failed with [secret]" in written and "RuntimeError: boom [secret]" in written


def test_web_api_calls_and_uploads_are_scrubbed(clean_registry):
    with SlackStandIn() as standin:
        redaction.register(standin.token, "upload-secret-9")
        client = ScrubbingWebClient(token=standin.token, base_url=standin.url)
        client.chat_postMessage(channel="C1", text=f"token {standin.token}",
                                blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "upload-secret-9"}}])
        client.files_upload_v2(channel="C1", content="a post-mortem with upload-secret-9", filename="pm.md",
                               title="upload-secret-9")
        sent = json.dumps([c.params for c in standin.calls()]) + "".join(
            c.body.decode("utf-8", "replace") for c in standin.calls())
        files = b"".join(standin.file_content(f) or b"" for f in standin.files).decode()
    assert standin.token not in sent and "upload-secret-9" not in sent and "[secret]" in sent
    assert "upload-secret-9" not in files and "a post-mortem with [secret]" in files


def test_bolt_listeners_get_a_scrubbing_client_respond_and_ack(clean_registry):
    """Bolt makes a plain WebClient per request and its own respond()/ack(): the middleware swaps all three."""
    from slack_bolt import BoltRequest, BoltResponse
    from slack_sdk import WebClient

    from bot.slack.outbound import ScrubbingAck, ScrubbingRespond, scrub_outgoing

    with SlackStandIn() as standin:
        redaction.register("bolt-secret-5")
        req = BoltRequest(body="command=%2Fmigrate&text=x&response_url=" + standin.response_url("r1"),
                          headers={"content-type": ["application/x-www-form-urlencoded"]})
        req.context["client"] = WebClient(token=standin.token, base_url=standin.url)
        resp = BoltResponse(status=200, body="")
        assert scrub_outgoing(req, resp, lambda: resp) is resp
        context = req.context
        assert isinstance(context.client, ScrubbingWebClient) and context.client.token == standin.token
        assert isinstance(context.respond, ScrubbingRespond) and isinstance(context.ack, ScrubbingAck)
        context.client.chat_postMessage(channel="C1", text="via client bolt-secret-5")
        context.respond(text="via respond bolt-secret-5", blocks=[{"type": "section",
                                                                   "text": {"type": "mrkdwn", "text": "bolt-secret-5"}}])
        acked = context.ack(text="via ack bolt-secret-5")
        sent = json.dumps([c.params for c in standin.calls()])
    assert "bolt-secret-5" not in sent + acked.body
    assert "via client [secret]" in sent and "via respond [secret]" in sent and "via ack [secret]" in acked.body


def test_ids_slack_resolves_or_we_read_back_are_left_alone(clean_registry, store):
    """A secret that happens to occur inside an id (a weak one, say) must not turn the id into another one:
    the message would be posted to, or its buttons answered for, something else."""
    redaction.register("beefcafe")
    with SlackStandIn() as standin:
        client = ScrubbingWebClient(token=standin.token, base_url=standin.url)
        client.chat_postMessage(channel="C1", text="beefcafe", blocks=[
            {"type": "actions", "block_id": "request_actions.beefcafe01", "elements": [
                {"type": "button", "action_id": "approve", "value": "beefcafe", "text": {"type": "plain_text",
                                                                                         "text": "beefcafe"}}]}])
        sent = standin.calls("chat.postMessage")[0].params
    blocks = sent["blocks"] if isinstance(sent["blocks"], list) else json.loads(sent["blocks"])
    assert sent["text"] == "[secret]" and blocks[0]["elements"][0]["text"]["text"] == "[secret]"
    assert blocks[0]["block_id"] == "request_actions.beefcafe01" and blocks[0]["elements"][0]["value"] == "beefcafe"
    event = store.record_event("incident.card", actor="guardian", detail={"ts": "17.beefcafe", "note": "beefcafe"})
    assert store.get_event(event.id).detail == {"ts": "17.beefcafe", "note": "[secret]"}


def test_store_writes_error_text_events_and_notes_scrubbed(clean_registry, store):
    redaction.register("store-secret-77")
    request = store.create_request("staging", REQUESTER, [NewMigration(name="m", sql="SELECT 1")],
                                   status=RequestStatus.QUEUED, source="adhoc")
    store.transition(request.id, RequestStatus.QUEUED, RequestStatus.FAILED, actor="guardian",
                     detail={"why": "store-secret-77"}, error="connect failed: store-secret-77")
    incident, _ = store.create_incident(request.id, opened_by="guardian", summary="summary store-secret-77")
    store.add_incident_note(incident.id, author=REQUESTER, text="pasted store-secret-77", source="command")
    voided = store.create_request("staging", REQUESTER, [NewMigration(name="m", sql="SELECT 2")],
                                  status=RequestStatus.AWAITING_APPROVAL, source="adhoc")
    store.record_decision(voided, APPROVER, "reject", reason="typed store-secret-77 by mistake")
    store.void_decisions(voided.id, reason="target changed: store-secret-77")
    assert store.get_request(request.id).error == "connect failed: [secret]"
    assert store.verify_event_chain() is None  # the chain hashes what was stored: the scrubbed detail
    assert "store-secret-77" not in _state_text(store)


def _redis_text(redis: Redis, *keys: bytes) -> bytes:
    """Every value of ``keys`` (else every key) in the Redis database: strings, hashes, lists, sets, streams."""
    out = []
    for key in keys or redis.scan_iter():
        kind = redis.type(key)
        if kind == b"string":
            out.append(redis.get(key) or b"")
        elif kind == b"hash":
            out.extend(k + b"=" + v for k, v in redis.hgetall(key).items())
        elif kind == b"list":
            out.extend(redis.lrange(key, 0, -1))
        elif kind in (b"set", b"zset"):
            out.extend(redis.zrange(key, 0, -1) if kind == b"zset" else redis.smembers(key))
        elif kind == b"stream":
            out.extend(repr(entry).encode() for entry in redis.xrange(key))
    return b"\n".join(out)


RQ_SECRET = "rq-secret-4242"


def failing_job() -> None:
    """A job whose error names a secret it read at run time (its arguments carry none, as ours never do)."""
    raise TargetError(f"could not connect: password {RQ_SECRET} rejected")


def test_a_failed_jobs_traceback_keeps_no_secret_in_redis(clean_registry, redis_url):
    """RQ stores a failed job's traceback (job hash, its result stream): what it stores is scrubbed."""
    redaction.register(RQ_SECRET)
    redis = Redis.from_url(redis_url)
    job = Queue(QUEUE_NAME, connection=redis).enqueue(failing_job)
    GuardianSimpleWorker([Queue(QUEUE_NAME, connection=redis)], connection=redis).work(burst=True)
    job.refresh()
    assert job.is_failed
    stored = job.latest_result().exc_string
    assert "TargetError" in stored and "[secret]" in stored  # the traceback is kept, the secret is not
    leaks = [key for key in redis.scan_iter() if RQ_SECRET.encode() in _redis_text(redis, key)]
    assert leaks == []


# ------------------------------------------------------------------ end to end


def _state_text(store: Store) -> str:
    """Every row of every table of the bot's state, as JSON text."""
    with store._tx() as conn:
        tables = [r["table_name"] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'guardian_bot' "
            "AND table_type = 'BASE TABLE' ORDER BY 1").fetchall()]
        assert {"requests", "steps", "events", "incidents"} <= set(tables)
        rows = [r["row"] for t in tables for r in conn.execute(
            sql.SQL("SELECT row_to_json(t)::text AS row FROM guardian_bot.{} t").format(sql.Identifier(t))).fetchall()]
    return "\n".join(rows)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_a_percent_password_reaches_no_slack_call_log_line_or_state_row(
        clean_registry, tmp_path, state_db_url, redis_url, monkeypatch, caplog):
    """The reported case: a target URL whose password has an un-encoded '%' (libpq echoes it whole), driven
    through the real app as `guardian serve` builds it, the real pipeline, incidents and `/migrate status`."""
    password = f"pa%ss{random_tokens.token_hex(8)}"
    url = f"postgresql://guardian:{password}@127.0.0.1:5432/app"
    token, signing, hook = (f"xoxb-{random_tokens.token_hex(12)}", random_tokens.token_hex(16),
                            f"whsec-{random_tokens.token_hex(12)}")
    monkeypatch.setenv("GT_SECRET_TARGET_URL", url)
    monkeypatch.setenv("GT_SECRET_HOOK", hook)
    repo = tmp_path / "app"
    (repo / "prisma" / "migrations" / "20240101000000_add_nickname").mkdir(parents=True)
    (repo / "prisma" / "migrations" / "20240101000000_add_nickname" / "migration.sql").write_text(
        "ALTER TABLE users ADD COLUMN nickname text;\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "-c", "user.email=dev@example.com", "-c", "user.name=Dev", "commit", "-qm", "init", "--allow-empty")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.email=dev@example.com", "-c", "user.name=Dev", "commit", "-qm", "migration")
    config_path = tmp_path / "guardian.toml"
    config_path.write_text(f"""
[project]
repo = "{repo}"
layout = "prisma"
path = "prisma/migrations"
[slack]
channel = "{CHANNEL}"
[backup]
dir = "{tmp_path / 'backups'}"
[environments.staging]
database_url_env = "GT_SECRET_TARGET_URL"
approvers = ["{APPROVER}"]
allow_adhoc_sql = true
[[webhooks]]
name = "pager"
url = "https://hooks.example.com/guardian"
secret_env = "GT_SECRET_HOOK"
""")
    caplog.set_level(logging.DEBUG)
    standin = SlackStandIn(tokens=[token]).start()
    settings = Settings(slack_bot_token=token, slack_signing_secret=signing, slack_api_url=standin.url,
                        database_url=state_db_url, redis_url=redis_url, guardian_config=config_path)
    config = load_config(config_path, required=True)
    cli._protect(settings, config)  # what `guardian serve` and `guardian worker` do at start
    app = build_app(settings, config)  # as `guardian serve` builds it: its own client and flow

    import waitress

    server = waitress.create_server(build_wsgi_app(app), host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    sender = SlackSender(f"http://127.0.0.1:{server.effective_port}{EVENTS_PATH}", signing_secret=signing)
    rt = runtime_module.Runtime(settings=settings, config=config)
    runtime_module.install(rt)
    redis = Redis.from_url(redis_url)
    acks: list[str] = []  # HTTP replies to commands travel outside the stand-in
    try:
        def command(text: str, rid: str) -> list[str]:
            """The reply to a command: in the HTTP acknowledgement (a refusal) or posted to its response_url."""
            sent = sender.slash_command(text, user=SlackUser(id=REQUESTER, name="req"), channel_id=CHANNEL,
                                        response_url=standin.response_url(rid))
            assert sent.status == 200
            acks.append(sent.body)
            if not sent.body:
                standin.wait_for("response_url", lambda c: c.path.endswith("/" + rid), timeout=15)
            return [sent.body] + [json.dumps(c.params) for c in standin.responses(rid)]

        def work() -> None:
            GuardianSimpleWorker([Queue(QUEUE_NAME, connection=redis)], connection=redis).work(burst=True)

        # 1. plan: the analysis (the job's code, run here) connects to the target and fails on the URL
        command("plan staging pending", "plan1")
        planned = rt.store.list_requests(limit=1)[0]
        analyze_step.run(planned.id)
        work()
        planned = rt.store.get_request(planned.id)
        assert planned.status is RequestStatus.FAILED and "malformed" in (planned.error or "")
        # 2. a request queued to run: the pipeline's backup step fails on the URL, and an incident opens
        queued = rt.store.create_request("staging", REQUESTER, [NewMigration(name="m1", sql="SELECT 1;")],
                                         status=RequestStatus.QUEUED, source="adhoc",
                                         policy_version=rt.flow.policy("staging").version)
        ts = rt.slack.chat_postMessage(channel=CHANNEL, text=f"request {queued.id}")["ts"]
        rt.store.update_request(queued.id, channel=CHANNEL, message_ts=ts, thread_ts=ts)
        backup_step.run(queued.id)
        work()
        assert rt.store.get_request(queued.id).status is RequestStatus.FAILED
        assert rt.store.find_incident(request_id=queued.id) is not None  # its thread tells the error again
        # 3. status reads every environment's ledger: the same URL again
        status_replies = command("status", "status1")
        # 4. a person pastes the password where the bot echoes input back: the reply still hides it
        echoed = command(f"plan {password} pending", "plan2")  # "`…` is not a valid environment name"

        calls = standin.calls()
        slack_text = "\n".join([json.dumps(c.params) + c.path + c.body.decode("utf-8", "replace") for c in calls]
                               + acks)
        log_text = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
        state_text = _state_text(rt.store)
    finally:
        runtime_module.install(None)
        stop_server(server)
        thread.join(timeout=5)
        standin.stop()
        redis.close()

    # the failures did reach every way out, scrubbed
    assert {"chat.postMessage", "chat.update", "response_url"} <= {c.method for c in calls}
    assert "malformed" in slack_text and "[secret]" in slack_text
    assert "malformed" in log_text and "malformed" in state_text
    assert "malformed" in "".join(status_replies) and "`[secret]` is not a valid environment" in "".join(echoed)
    for secret in (password, unquote(password), url, token, signing, hook):
        assert secret not in slack_text, f"{secret!r} went to Slack"
        assert secret not in log_text, f"{secret!r} was logged"
        assert secret not in state_text, f"{secret!r} was stored"


def test_a_cli_error_names_no_registered_secret(clean_registry, tmp_path, monkeypatch, capsys):
    password = f"pa%ss{random_tokens.token_hex(6)}"
    repo = tmp_path / "app"
    (repo / "migrations").mkdir(parents=True)
    (repo / "migrations" / "001_a.sql").write_text("SELECT 1;\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.email=dev@example.com", "-c", "user.name=Dev", "commit", "-qm", "init")
    config_path = tmp_path / "guardian.toml"
    config_path.write_text(f'[project]\nrepo = "{repo}"\n[environments.staging]\n'
                           'database_url_env = "T_CLI_TARGET_URL"\n')
    monkeypatch.setenv("T_CLI_TARGET_URL", f"postgresql://app:{password}@127.0.0.1:5432/app")
    monkeypatch.setenv("GUARDIAN_CONFIG", str(config_path))
    cli.main(["status", "staging"])
    out = capsys.readouterr()
    assert "malformed" in out.out + out.err and "staging" in out.out + out.err
    assert password not in out.out + out.err
