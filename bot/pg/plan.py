"""`guardian plan`: lint + lock rehearsal of migration files against a rehearsal database, text or JSON.

Usage::

    guardian plan --target-url "$REHEARSAL_URL" --format json prisma/migrations/2024*/migration.sql
    guardian plan --env staging migrations/        # staging's rehearsal_database_url_env, or staging itself
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bot.config import EnvironmentConfig, GuardianConfig, RehearsalCopyConfig
from bot.errors import ConfigError, GuardianError
from bot.pg.connect import connect_target
from bot.pg.copy import Copy, copy_of
from bot.pg.introspect import gather_facts
from bot.pg.rehearsal import Rehearsal, RehearsalRefused, rehearse
from bot.pg.summary import rehearsal_headline

DEFAULT_LOCK_TIMEOUT = "5s"
DEFAULT_STATEMENT_TIMEOUT = "5min"
CLI_COPY_ID = 2_000_000_000  # + pid: `guardian plan --rehearse-copy` copies' ids, apart from requests' ids


def applied_context(facts, config: GuardianConfig, **overrides: object):
    """The risk context of files Guardian applies (the Slack preview's and `plan --env`'s): its apply step sets
    lock_timeout and statement_timeout itself, [lint] disabled/enabled hold, and a Prisma project's files must
    also run under `prisma migrate deploy`."""
    values: dict[str, object] = {
        "pg_version": facts.pg_version, "disabled": frozenset(config.lint.disabled),
        "enabled": frozenset(config.lint.enabled), "runner_lock_timeout": True, "runner_statement_timeout": True,
        "runner": "prisma" if config.project.layout == "prisma" else "guardian"}
    return facts.to_risk_context(**{**values, **overrides})


def rehearsal_target(config: GuardianConfig, env_name: str) -> tuple[str, str, str]:
    """(url, lock_timeout, statement_timeout) to rehearse for an environment; production is refused
    unless it names a rehearsal database (rehearsal_database_url_env) or sets allow_rehearsal = true.
    Rehearsing on the environment itself is said on stderr (in a transaction that is always rolled back,
    but its locks are real)."""
    env = config.environment(env_name)
    if env.rehearsal_database_url_env:
        url = os.environ.get(env.rehearsal_database_url_env, "")
        if not url:
            raise ConfigError(
                f"environment {env_name!r}: variable {env.rehearsal_database_url_env} (rehearsal_database_url_env) "
                "is not set; export the rehearsal database URL in it", code="missing-env")
    elif env.production and not env.allow_rehearsal:
        raise RehearsalRefused(
            f"environment {env_name!r} is production and has no rehearsal database; set "
            "rehearsal_database_url_env to a copy of it (or allow_rehearsal = true to rehearse on it, in a "
            "transaction that is always rolled back)")
    else:
        url = env.database_url().get_secret_value()
        print(f"guardian plan: {env_name} has no rehearsal database (rehearsal_database_url_env), so this rehearses "
              f"on {env_name} itself, in a transaction that is always rolled back; its locks are real while it runs",
              file=sys.stderr)
    return url, env.lock_timeout, env.statement_timeout


def _collect(paths: list[str]) -> list[tuple[str, str]]:
    files: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(raw)
        found = sorted(p for p in path.rglob("*.sql") if p.is_file()) if path.is_dir() else [path]
        for item in found:
            try:
                files.append((str(item), item.read_bytes().decode("utf-8")))
            except FileNotFoundError:
                raise GuardianError(f"{item}: no such file", code="unreadable-input") from None
            except UnicodeDecodeError:
                raise GuardianError(f"{item}: not UTF-8 text; re-save it as UTF-8", code="unreadable-input") from None
            except OSError as exc:
                raise GuardianError(f"{item}: cannot read ({exc.strerror})", code="unreadable-input") from None
    if not files:
        raise GuardianError("no .sql files in the given paths", code="unreadable-input")
    return files


def _analyze(sql: str, context):
    from bot.risk import analyze

    return analyze(sql, context)


def _traced(report, sql: str, rehearsed, context, result: Rehearsal):
    """The report corrected by what the rehearsal saw (bot/risk/rules/trace.py): raised where it saw a rewrite,
    an index rebuilt or built, a scan under a write-blocking lock or a failure the SQL did not say; lowered
    where it saw that a predicted rewrite or scan did not happen, which it may only decide when it ran on the
    analysed PostgreSQL major version with scan counters on. The rehearsal runs with the session settings its
    connection gets (TimeZone among them), as the apply's does on the same database or a faithful copy."""
    from bot.risk.rules.trace import attach_rehearsal

    faithful = result.scans_counted and result.server_version.split(".")[0] == str(report.pg_version)
    return attach_rehearsal(report, sql, rehearsed, context, faithful=faithful)


def _lint_entry(path: str, report) -> dict:
    """The DESIGN §7 lint JSON for one file."""
    from bot.lint import render_json  # the contract's own serializer, so plan JSON = lint JSON + rehearsal

    return json.loads(render_json([(path, report)]))["files"][0]


def merge(lint: list[dict], result: Rehearsal, copy=None) -> dict:
    """Lint JSON plus, per statement (matched by statement index): observed_locks, rewrites, rebuilt_indexes,
    built_indexes, scans, duration_ms, rehearsed, reason, error. `locks` also lists every observed lock the
    analysis did not predict, marked ``"observed": true``."""
    files = []
    for entry, rehearsed in zip(lint, result.files):
        by_index = {linted["index"]: linted for linted in entry["statements"]}
        statements = []
        for s in rehearsed.statements:
            base = dict(by_index.get(s.index) or {"index": s.index, "line": s.line, "kind": s.kind,
                                                  "transactional": s.transactional, "locks": []})
            observed = [lk.model_dump() for lk in s.observed_locks]
            predicted = {(lk["relation"].removeprefix("public."), lk["mode"]) for lk in base["locks"]}
            base.update({
                "locks": base["locks"] + [{**lk, "observed": True} for lk in observed
                                          if (lk["relation"].removeprefix("public."), lk["mode"]) not in predicted],
                "observed_locks": observed, "rewrites": list(s.rewrites),
                "rebuilt_indexes": [c.model_dump() for c in s.rebuilt_indexes],
                "built_indexes": [c.model_dump() for c in s.built_indexes], "scans": [t.model_dump() for t in s.scans],
                "duration_ms": s.duration_ms, "rehearsed": s.rehearsed, "reason": s.reason, "error": s.error,
                "held_ms": s.held_ms, "wal_bytes": s.wal_bytes, "rows_changed": s.rows_changed,
                "offending": [{**o.model_dump(exclude={"query"}), "summary": o.summary} for o in s.offending],
            })
            statements.append(base)
        files.append({**entry, "statements": statements})
    return {
        "files": files,
        "rehearsal": {"server_version": result.server_version, "lock_timeout": result.lock_timeout,
                      "statement_timeout": result.statement_timeout, "rolled_back": copy is None,
                      "copy": copy.summary() if copy is not None else None,
                      "scans_counted": result.scans_counted, "timezone": result.timezone,
                      "warnings": list(result.warnings), "observed_ms": result.observed_ms,
                      "warmed": result.warmed.model_dump() if result.warmed is not None else None},
    }


def _text(doc: dict, result: Rehearsal, headline: str | None = None) -> str:
    lines = [headline] if headline else []
    how = "committed on the copy, which is dropped" if headline else "rolled back"
    lines.append(f"rehearsal on PostgreSQL {result.server_version} ({how}; lock_timeout {result.lock_timeout})")
    for f in doc["files"]:
        lines.append(f"{f['path']}: risk {f['risk'] or 'unknown'}")
        for s in f["statements"]:
            head = f"  #{s['index'] + 1} line {s['line']} {s['kind'] or '?'}"
            if not s["rehearsed"]:
                lines.append(f"{head}: {s['error'] or s['reason']}")
                continue
            locks = ", ".join(f"{lk['relation']} {lk['mode']}" + (" (observed only)" if lk.get("observed") else "")
                              for lk in s["locks"]) or "none"
            seen = [f"rewrites {', '.join(s['rewrites'])}"] if s["rewrites"] else []
            seen += [f"rebuilds {c['index']} on {c['table']}" for c in s["rebuilt_indexes"]]
            seen += [f"builds {c['index']} on {c['table']}" for c in s["built_indexes"]]
            seen += [f"scans {t['relation']} ({t['seq_scans']} seq, {t['rows_read']:,} rows; {t['index_scans']} index)"
                     for t in s["scans"]]
            held = f", locks held {s['held_ms']:.1f} ms" if headline and s.get("held_ms") is not None else ""
            lines.append(f"{head}: {s['duration_ms']:.1f} ms{held}; locks {locks}" + "".join(f"; {x}" for x in seen))
        for s in f["statements"]:
            lines += [f"  DATA FAILURE line {s['line']}: {o['summary']}; e.g. {' | '.join(o['examples'])}"
                      for o in s.get("offending") or ()]
        for finding in f["findings"]:
            accepted = f" (accepted: {finding['accept_reason']})" if finding.get("accepted") else ""
            lines.append(f"  {finding['severity'].upper()} {finding['code']} line {finding['line']}{accepted}: "
                         f"{finding['message']}")
    return "\n".join(lines)


def _on_copy(config: GuardianConfig, env_name: str | None, url: str, files, reports, lock_timeout: str,
             statement_timeout: str) -> tuple[Rehearsal, Copy]:
    """The files committed on a fresh copy of ``url`` (the environment's [rehearsal] copy, else a template copy),
    dropped afterwards; the target is never changed."""
    env = config.environment(env_name) if env_name else None
    spec = env.rehearsal if env is not None and env.rehearsal else RehearsalCopyConfig(copy="template")
    # the URL is passed as is; the variable named here is never read
    copy_env = EnvironmentConfig(name=env_name or "target", database_url_env="GUARDIAN_PLAN_TARGET_URL", rehearsal=spec)
    with copy_of(copy_env, CLI_COPY_ID + os.getpid() % 100_000_000, url=url) as copy:
        with connect_target(copy.url, f"{copy_env.name} (copy)") as conn:
            return rehearse(conn, files, lock_timeout=lock_timeout, statement_timeout=statement_timeout,
                            reports=reports, commit=True), copy


def run_plan(config: GuardianConfig, args: argparse.Namespace) -> int:
    """Exit codes as `guardian lint`'s, plus the rehearsal: 0 when every statement rehearsed (or was skipped as
    non-transactional) and every file's risk is below --fail-on (default: [lint] fail_on, else high); 1 when a
    statement failed or a file's risk is at or above it; 2 on usage or unreadable input."""
    target_url, env_name = getattr(args, "target_url", None), getattr(args, "env", None)
    if bool(target_url) == bool(env_name):
        print("guardian: give exactly one of --target-url URL or --env NAME", file=sys.stderr)
        return 2
    on_copy = bool(getattr(args, "rehearse_copy", False))
    if env_name and on_copy:  # the environment's own database, copied: the copy is what changes
        env = config.environment(env_name)
        url, lock_timeout, statement_timeout = env.database_url().get_secret_value(), env.lock_timeout, env.statement_timeout
        label = env_name
    elif env_name:
        url, lock_timeout, statement_timeout = rehearsal_target(config, env_name)
        label = f"{env_name} (rehearsal)"
    else:
        url, lock_timeout, statement_timeout, label = target_url, DEFAULT_LOCK_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT, "rehearsal"
    try:
        files = _collect(list(args.paths))
    except GuardianError as exc:
        print(f"guardian: {exc.message}", file=sys.stderr)
        return 2
    with connect_target(url, label) as conn:
        facts = gather_facts(conn, label)
        overrides = {"pg_version": args.pg_version} if getattr(args, "pg_version", None) else {}
        # --env: Guardian applies the files there, so they are judged as the Slack preview judges them
        context = applied_context(facts, config, **overrides) if env_name else facts.to_risk_context(**overrides)
        if getattr(args, "snapshot_out", None):
            write_snapshot(facts.to_snapshot(context), args.snapshot_out)
        reports = [_analyze(sql, context) for _, sql in files]
        if not on_copy:
            result = rehearse(conn, files, lock_timeout=lock_timeout, statement_timeout=statement_timeout,
                              reports=reports)
    copy = headline = None
    if on_copy:  # the target's connection is closed: a template copy wants no other session on it
        result, copy = _on_copy(config, env_name, url, files, reports, lock_timeout, statement_timeout)
        headline = rehearsal_headline(result, copy, None, env_name or "the target")
    reports = [_traced(report, sql, rehearsed.statements, context, result)
               for (_, sql), report, rehearsed in zip(files, reports, result.files)]
    lint = [_lint_entry(path, report) for (path, _), report in zip(files, reports)]
    doc = merge(lint, result, copy)
    if getattr(args, "format", "text") == "json":
        print(json.dumps({**doc, "headline": headline} if headline else doc, indent=2))
    else:
        print(_text(doc, result, headline))
    return 1 if result.failed or _at_or_above(doc, _fail_on(args)) else 0


def _fail_on(args: argparse.Namespace) -> str:
    from bot.lint import UsageError, load_lint_config

    chosen = getattr(args, "fail_on", None)
    if chosen:
        return chosen
    try:
        return str(load_lint_config(Path(os.environ.get("GUARDIAN_CONFIG", "guardian.toml")))["fail_on"])
    except UsageError as exc:
        raise ConfigError(str(exc)) from None


def _at_or_above(doc: dict, fail_on: str) -> bool:
    from bot.risk import Severity

    threshold = Severity(fail_on)
    return any(f["risk"] and Severity(f["risk"]).rank >= threshold.rank for f in doc["files"])



def run_snapshot(config: GuardianConfig, args: argparse.Namespace) -> int:
    """`guardian snapshot`: the target's catalog facts as the snapshot JSON (README) for `guardian lint --context`.
    Read-only catalogue queries; --env reads the environment's own database and records how Guardian applies
    files there (as the Slack preview judges them). Exit 0, or 2 on usage errors."""
    target_url, env_name = getattr(args, "target_url", None), getattr(args, "env", None)
    if bool(target_url) == bool(env_name):
        print("guardian: give exactly one of --target-url URL or --env NAME", file=sys.stderr)
        return 2
    url, label = (config.environment(env_name).database_url(), env_name) if env_name else (target_url, "target")
    with connect_target(url, label) as conn:
        facts = gather_facts(conn, label)
    context = applied_context(facts, config) if env_name else None
    write_snapshot(facts.to_snapshot(context), args.output)
    return 0


def write_snapshot(doc: dict, path: str | None) -> None:
    """The snapshot JSON to ``path`` (stdout when None or "-"); a summary line on stderr."""
    text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    if path in (None, "-"):
        sys.stdout.write(text)
    else:
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write the snapshot to {path}: {exc.strerror}; choose a writable path",
                                code="unwritable-output") from None
    tables = len(doc["tables"])
    print(f"guardian: snapshot of PostgreSQL {doc['pg_version']}: {tables} table{'s' * (tables != 1)}, {len(doc['types'])} "
          f"enums and domains{'' if path in (None, '-') else f' written to {path}'}; use it with "
          "`guardian lint --context FILE`", file=sys.stderr)
