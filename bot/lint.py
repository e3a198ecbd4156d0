"""`guardian lint`: analyse migration files and report in text, json, sarif or github format (DESIGN §7).

Usage::

    guardian lint --format json --fail-on high migrations/
    python -m bot.lint --pg-version 14 - < migration.sql
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from bot import lint_runner
from bot.errors import UsageError
from bot.lint_render import (json_chunks, render_github, render_json, render_json_reference,  # noqa: F401
                             render_sarif, render_text, use_color)
from bot.lint_runner import analyze_file, for_file, read_inputs

if TYPE_CHECKING:
    from bot.risk import Context

FORMATS = ("text", "json", "sarif", "github")
LEVELS = ("low", "medium", "high", "critical")  # Severity values, weakest first (a test keeps them in step)
DEFAULTS = {"pg_version": 16, "fail_on": "high", "disabled": [], "enabled": [], "assume_in_transaction": True}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="SQL files or directories (searched for *.sql); '-' reads standard input")
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    parser.add_argument("--pg-version", type=int, default=None, metavar="N",
                        help="target PostgreSQL major version (default: [lint] pg_version, else 16)")
    parser.add_argument("--fail-on", choices=LEVELS, default=None,
                        help="exit 1 when a file's risk is at or above this level (default: [lint] fail_on, else high)")
    parser.add_argument("--compact", action="store_true",
                        help="text output: one line per finding and files without findings left out (large directories)")
    parser.add_argument("--context", metavar="FILE.json", default=None,
                        help="a schema snapshot (`guardian snapshot`) or table sizes and function volatility: "
                             "{\"tables\": {\"users\": {\"rows\": 5e7}}, ...} (README: the snapshot JSON)")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    gc_was_enabled = gc.isenabled()
    gc.disable()  # short-lived command building large trees and reports: the cyclic GC only costs time
    try:
        return _run(args, out, err)
    finally:
        if gc_was_enabled:
            gc.enable()


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from bot.risk import Severity  # the values only (dataclasses): the parser and the rules load later

    try:
        config = load_lint_config(Path(os.environ.get("GUARDIAN_CONFIG", "guardian.toml")))
        ctx = _context(args, config)
        fail_on = Severity(args.fail_on or config["fail_on"])
        inputs = list(read_inputs(args.paths))
        rendered: dict | None = {} if args.format == "json" else None
        reports = [(path, analyze_file(data, for_file(ctx, path), rendered if len(inputs) == 1 else None))
                   for path, data in inputs]
        if lint_runner._keep is not None:
            lint_runner._keep.append(reports)
    except UsageError as exc:
        print(f"guardian lint: {exc}", file=err)
        return 2
    status = 1 if any(r.risk.rank >= fail_on.rank for _, r in reports) else 0
    try:
        if args.format == "json":
            out.writelines(json_chunks(reports, rendered))  # = render_json(reports), in pieces
        else:
            if args.format == "text":
                out.write(render_text(reports, color=use_color(out), compact=getattr(args, "compact", False),
                                      fail_on=fail_on.value))
            else:
                render = {"sarif": render_sarif, "github": render_github}[args.format]
                out.write(render(reports))
        out.flush()
    except BrokenPipeError:  # the reader stopped early (`guardian lint ... | head`): the status still holds
        _quiet_stdout(out)
        return status
    except OSError as exc:
        print(f"guardian lint: cannot write the report: {exc.strerror or exc}; check the output path or disk",
              file=err)
        _quiet_stdout(out)
        return 2
    return status


def _quiet_stdout(out: TextIO) -> None:
    """After a failed write to standard output, point it at /dev/null so the interpreter's final
    flush does not fail again with a traceback."""
    if out is sys.stdout:
        try:
            fd = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(fd, sys.stdout.fileno())
            finally:
                os.close(fd)
        except (OSError, ValueError):
            pass


def load_lint_config(path: Path) -> dict[str, Any]:
    """The [lint] table of guardian.toml, validated; a missing file means defaults."""
    conf = dict(DEFAULTS)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return conf
    except OSError as exc:
        raise UsageError(f"{path}: cannot read config: {exc.strerror}") from exc
    import tomllib  # only when there is a config file

    try:
        section = tomllib.loads(raw.decode("utf-8")).get("lint", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: invalid TOML: {exc}") from exc
    if not isinstance(section, dict):
        raise UsageError(f"{path}: [lint] must be a table")
    for key, value in section.items():
        if key not in DEFAULTS:
            raise UsageError(f"{path}: [lint].{key} is not a known key ({', '.join(DEFAULTS)})")
        if key == "pg_version" and (not isinstance(value, int) or isinstance(value, bool) or not 9 <= value <= 30):
            raise UsageError(f"{path}: [lint].pg_version must be a major version number such as 16")
        if key == "fail_on" and value not in LEVELS:
            raise UsageError(f"{path}: [lint].fail_on must be one of {' | '.join(LEVELS)}")
        if key in ("disabled", "enabled"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UsageError(f"{path}: [lint].{key} must be a list of rule codes or names")
            from bot.risk import rule_codes  # the rule catalogue: only when the config names rules

            try:
                value = rule_codes(value)
            except ValueError as exc:
                raise UsageError(f"{path}: [lint].{key}: {exc}") from None
        if key == "assume_in_transaction" and not isinstance(value, bool):
            raise UsageError(f"{path}: [lint].assume_in_transaction must be true or false")
        conf[key] = value
    return conf


def _context(args: argparse.Namespace, config: dict[str, Any]) -> Context:
    from bot.risk import Context

    version = args.pg_version if args.pg_version is not None else config["pg_version"]
    if not 9 <= version <= 30:
        raise UsageError(f"--pg-version {version}: expected a PostgreSQL major version such as 16")
    extra: dict[str, Any] = {}
    if getattr(args, "context", None):
        from bot.risk.snapshot import context_values

        try:
            extra = context_values(json.loads(Path(args.context).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--context {args.context}: {exc}") from exc
        if args.pg_version is None and "pg_version" in extra:
            version = extra["pg_version"]  # the snapshot's server, unless --pg-version says otherwise
        extra.pop("pg_version", None)
    return Context(pg_version=version, disabled=frozenset(config["disabled"]), enabled=frozenset(config["enabled"]),
                   assume_in_transaction=config["assume_in_transaction"], **extra)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guardian lint", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run(_parser().parse_args(argv))


def run_as_command(args: argparse.Namespace) -> NoReturn:
    """run(), then leave the process (`python -m bot.lint` and `guardian lint`)."""
    lint_runner._keep = []  # keep the reports: freeing them would only cost time before os._exit
    # Off for good: run() would switch the cyclic GC back on, and the first allocation after that
    # (flushing the output) would sweep the millions of objects made meanwhile, ~0.2 s on a 5 MB file.
    gc.disable()
    status = run(args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    run_as_command(_parser().parse_args())
