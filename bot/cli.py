"""The ``guardian`` command line (DESIGN §7): lint, plan, status, serve, socket, worker, db, dev, manifest.

Usage::

    guardian --version
    guardian --log-format json worker        # or GUARDIAN_LOG_FORMAT=json
    guardian lint --format json migrations/
    guardian db upgrade
    guardian serve --port 3000
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from bot.errors import ConfigError, GuardianError, UsageError

log = logging.getLogger("guardian")


# bot.config (pydantic-settings) costs ~0.25 s to import: only the commands that read settings load it,
# so `guardian lint` starts as fast as `python -m bot.lint`.
def load_settings():
    from bot.config import load_settings as load

    return load()


def load_config(path):
    """The config file; one that GUARDIAN_CONFIG names explicitly must exist (a typo there would otherwise
    run with no environments at all)."""
    from bot.config import load_config as load

    named = os.environ.get("GUARDIAN_CONFIG")
    if named and str(path) == named and not os.path.exists(named):
        raise ConfigError(f"GUARDIAN_CONFIG names {named}, which does not exist; fix the path (or unset "
                          "GUARDIAN_CONFIG to read ./guardian.toml)", code="config-missing")
    return load(path)


def _state_url(settings) -> str:
    """DATABASE_URL, set and well formed."""
    from bot.reachability import check_postgres_url

    settings.require("database_url")
    url = settings.database_url.get_secret_value()
    check_postgres_url(url, "DATABASE_URL")
    return url


def _protect(settings, config=None, *extra: str) -> None:
    """Scrub every configured secret (and ``extra``) from what this process logs, sends or stores (bot/redaction.py)."""
    from bot import redaction

    redaction.register_configured(settings, config)
    redaction.register(*(e for e in extra if e))
    redaction.install_log_scrubbing()


def _scrubbed(message: str) -> str:
    from bot.redaction import scrub  # only on the way out with an error: `guardian lint` starts without it

    return scrub(message)


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from bot.schema import upgrade

    settings = load_settings()
    _protect(settings)
    applied = upgrade(_state_url(settings))
    print(f"applied {len(applied)} schema file{'' if len(applied) == 1 else 's'}"
          + (": " + ", ".join(applied) if applied else "; already current"))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from bot.slack.server import serve

    settings = load_settings()
    config = load_config(settings.guardian_config)
    _protect(settings, config)
    if settings.database_url is not None:
        _state_url(settings)
    port = args.port if args.port is not None else int(os.environ.get("PORT", "3000"))
    serve(settings, config, host=args.host, port=port)
    return 0


def _cmd_socket(args: argparse.Namespace) -> int:
    from bot.slack.socket import run_socket

    settings = load_settings()
    config = load_config(settings.guardian_config)
    _protect(settings, config)
    if settings.database_url is not None:
        _state_url(settings)
    run_socket(settings, config)
    return 0


def _cmd_manifest(args: argparse.Namespace) -> int:
    from bot.slack.manifest import build_manifest

    if not args.request_url and not args.socket_mode:
        raise UsageError("give --request-url https://YOUR-HOST/slack/events (where Slack reaches `guardian serve`) "
                         "or --socket-mode (for `guardian socket`)")
    manifest = build_manifest(args.name, args.request_url, args.socket_mode)
    print(json.dumps(manifest, indent=2))
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from workers.worker import run_worker

    from bot.reachability import check_redis

    settings = load_settings()
    _protect(settings, load_config(settings.guardian_config))  # forked job processes inherit it
    if settings.database_url is not None:
        _state_url(settings)
    if not os.environ.get("GUARDIAN_WORKER_PARENT"):  # at start; Redis lost later is ridden out (workers/worker.py)
        check_redis(settings.redis_url.get_secret_value())
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    return run_worker(settings, burst=args.burst, queues=queues)


def _cmd_status(args: argparse.Namespace) -> int:
    from bot.fleet import fleet_status
    from bot.sources.status import run_status_command

    settings = load_settings()
    config = load_config(settings.guardian_config)
    _protect(settings, config)
    return run_status_command(config, args, fleet=fleet_status)


def _cmd_plan(args: argparse.Namespace) -> int:
    from bot.pg.plan import run_plan

    settings = load_settings()
    config = load_config(settings.guardian_config)
    _protect(settings, config, args.target_url)
    return run_plan(config, args)


def _cmd_snapshot(args: argparse.Namespace) -> int:
    from bot.pg.plan import run_snapshot

    settings = load_settings()
    config = load_config(settings.guardian_config)
    _protect(settings, config, args.target_url)
    return run_snapshot(config, args)


def _cmd_postmortem(args: argparse.Namespace) -> int:
    from bot.flow import Flow
    from bot.incidents import IncidentService
    from bot.slack.notifier import Notifier
    from bot.store import Store

    from bot.reachability import probe_postgres

    settings = load_settings()
    _protect(settings, load_config(settings.guardian_config))
    url = _state_url(settings)
    probe_postgres(url, "DATABASE_URL", "the bot's database")  # down: one line in seconds, not the pool's 15 s
    with Store(url, max_size=2) as store:
        service = IncidentService(Flow(settings, load_config(settings.guardian_config), store, None, Notifier(None)))
        incident = store.get_incident(args.incident)
        print(incident.postmortem if incident.postmortem and not args.fresh else service.postmortem(args.incident))
    return 0


def _cmd_dev(args: argparse.Namespace) -> int:
    from bot.dev import run_dev

    return run_dev(args)


class _VersionAction(argparse.Action):
    """``guardian --version``: the version is looked up only when asked (importlib.metadata costs every start)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from bot.version import version

        print(f"guardian {version()}")
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guardian", description="Review, approve and safely run PostgreSQL migrations.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    parser.add_argument("--version", action=_VersionAction, help="print the installed version and exit")
    parser.add_argument("--log-format", choices=["text", "json"], default=None,
                        help="text lines, or one JSON object per line with the request id (default: "
                             "$GUARDIAN_LOG_FORMAT, else text); processes it starts log the same way")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    lint = add("lint", _cmd_lint, "analyse migration files for locking, rewrite and data-loss hazards")
    from bot import lint as lint_module

    lint_module.add_arguments(lint)

    plan = add("plan", _cmd_plan, "lint and rehearse migrations against a rehearsal database")
    plan.add_argument("--target-url", help="rehearsal database URL (the transaction is always rolled back)")
    plan.add_argument("--env", help="rehearse on this environment's rehearsal database")
    plan.add_argument("--format", choices=["text", "json"], default="text")
    plan.add_argument("--rehearse-copy", action="store_true",
                      help="rehearse on a fresh copy of the target (the environment's [rehearsal] copy, else "
                           "CREATE DATABASE … TEMPLATE), committed there, dropped afterwards: durations, lock hold "
                           "times, WAL, data-dependent failures; the target is never changed")
    plan.add_argument("--pg-version", type=int)
    plan.add_argument("--fail-on", choices=["low", "medium", "high", "critical"], default=None,
                      help="exit 1 when a file's risk is at or above this level, as `guardian lint` "
                           "(default: [lint] fail_on, else high); a failed rehearsal always exits 1")
    plan.add_argument("--snapshot-out", metavar="FILE", help="also write the target's schema snapshot there "
                      "(as `guardian snapshot`), for `guardian lint --context FILE`")
    plan.add_argument("paths", nargs="+", metavar="PATH")

    snapshot = add("snapshot", _cmd_snapshot, "write a target's schema snapshot (catalog facts, sizes, TimeZone) "
                   "as JSON for `guardian lint --context`; read-only")
    snapshot.add_argument("--env", help="the environment's database (and how Guardian applies files there)")
    snapshot.add_argument("--target-url", help="a database URL")
    snapshot.add_argument("-o", "--output", metavar="FILE", help="write it here (default: stdout)")

    status = add("status", _cmd_status, "applied, pending, failed and modified migrations per environment")
    status.add_argument("env", nargs="?", help="one environment (default: all)")
    status.add_argument("--format", choices=["text", "json"], default="text")
    status.add_argument("--ref", help="git ref to read migrations at (default: the configured branch)")

    serve = add("serve", _cmd_serve, "run the Slack HTTP endpoint (POST /slack/events, GET /healthz)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default $PORT or 3000")

    add("socket", _cmd_socket, "run the Slack app over Socket Mode (needs SLACK_APP_TOKEN)")

    worker = add("worker", _cmd_worker, "run an RQ worker on the 'guardian' and 'guardian-analyze' queues")
    worker.add_argument("--burst", action="store_true", help="run what is queued, then exit")
    worker.add_argument("--queues", metavar="Q1,Q2", help="only these queues, in priority order (default: "
                        "guardian,guardian-analyze; a worker with --queues guardian-analyze takes analyses only)")

    db = add("db", lambda a: (db.print_help(), 2)[1], "the bot's own database")
    db_sub = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    up = db_sub.add_parser("upgrade", help="apply the bot's pending schema files")
    up.set_defaults(handler=_cmd_db_upgrade)

    dev = add("dev", _cmd_dev, "run everything locally with a Slack-like page in the browser")
    dev.add_argument("--port", type=int, default=3000, help="port of the bot's HTTP endpoint (default 3000; 0 picks "
                     "a free one)")
    dev.add_argument("--page-port", type=int, default=None, help="port of the Slack-like page (default "
                     "$GUARDIAN_DEV_PAGE_PORT or 3001; 0 picks a free one, as does --port 0)")
    dev.add_argument("--no-browser", action="store_true")

    postmortem = add("postmortem", _cmd_postmortem, "print an incident's post-mortem draft (Markdown)")
    postmortem.add_argument("incident", type=int)
    postmortem.add_argument("--fresh", action="store_true", help="rebuild it from the timeline now")

    manifest = add("manifest", _cmd_manifest, "print a Slack app manifest to paste when creating the app")
    manifest.add_argument("--name", default="Migration Guardian")
    manifest.add_argument("--request-url", help="the public URL Slack posts to (https://HOST/slack/events); "
                          "required unless --socket-mode")
    manifest.add_argument("--socket-mode", action="store_true")
    return parser


def _cmd_lint(args: argparse.Namespace) -> int:
    from bot import lint as lint_module

    return lint_module.run(args)



def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return int(exc.code or 0)
    if args.log_format == "json" or os.environ.get("GUARDIAN_LOG_FORMAT"):
        from bot import logs

        try:
            logs.configure(logs.resolve_format(args.log_format), verbose=args.verbose)
        except ConfigError as exc:
            print(f"guardian: {exc.message}", file=sys.stderr)
            return 2
    else:  # text, without importing bot.logs: `guardian lint` starts as fast as it can
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    if argv is None and args.handler is _cmd_lint:  # the process's own command line: leave when done
        from bot import lint as lint_module

        lint_module.run_as_command(args)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"guardian: {_scrubbed(exc.message)}", file=sys.stderr)
        return 2
    except GuardianError as exc:
        print(f"guardian: {_scrubbed(exc.message)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
