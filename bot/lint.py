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
import pickle
import re
import signal
import sys
import threading
from itertools import islice
from json.encoder import encode_basestring as _ENC  # the C encoder json.dumps uses
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

if TYPE_CHECKING:
    from bot.risk import Context, Report

FORMATS = ("text", "json", "sarif", "github")
LEVELS = ("low", "medium", "high", "critical")  # Severity values, weakest first (a test keeps them in step)
DEFAULTS = {"pg_version": 16, "fail_on": "high", "disabled": [], "enabled": [], "assume_in_transaction": True}


class UsageError(Exception):
    """Bad arguments, config or unreadable input: exit status 2."""


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
        inputs = list(_inputs(args.paths))
        rendered: dict | None = {} if args.format == "json" else None
        reports = [(path, _analyze(data, _for_file(ctx, path), rendered if len(inputs) == 1 else None))
                   for path, data in inputs]
        if _keep is not None:
            _keep.append(reports)
    except UsageError as exc:
        print(f"guardian lint: {exc}", file=err)
        return 2
    status = 1 if any(r.risk.rank >= fail_on.rank for _, r in reports) else 0
    try:
        if args.format == "json":
            out.writelines(_json_chunks(reports, rendered))  # = render_json(reports), in pieces
        else:
            if args.format == "text":
                out.write(render_text(reports, color=_color(out), compact=getattr(args, "compact", False),
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


PARALLEL_MIN_BYTES = 3 * 2**20  # below this, forking costs more than the second core saves
# Above this, one process: the parent keeps the parse trees of its share until the child's state
# arrives (a 20 MB file: 7.0 s and 680 MB on two cores, 9.8 s and 260 MB on one).
PARALLEL_MAX_BYTES = 8 * 2**20


def _analyze(data: bytes, ctx: Context, rendered: dict | None = None) -> Report:
    """analyze(), on two cores for a big file: a forked child analyses the leading ~40% completely
    while this process parses the rest and does its statement-local work, then finishes in order
    from the child's state (bot.risk.engine.Split). The Report is the same as analyze()'s.

    The fork comes first, before the parser and the rules are imported: each process imports them
    and starts libpg_query on its own pieces (on a helper thread, as libpg_query releases the GIL)
    while it imports the rest, so nothing but reading the file happens on one core.

    With `rendered` (a dict, for --format json), the child, idle while this process finishes,
    also renders the JSON of its statements and findings: rendered[id(report)] is then
    ((statements text, findings text), Split.head_span) for _json_chunks, and the Report returned
    leaves the head's statement records out (they are in that text)."""
    if not PARALLEL_MIN_BYTES <= len(data) <= PARALLEL_MAX_BYTES or not _two_cores():
        from bot.risk import analyze

        return analyze(data, ctx)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its part, pickled down the pipe; it never returns
        status = 1
        try:
            os.close(read_end)
            split = _split(data, ctx, head=True)
            if split is not None:
                # For JSON the head's statement records never cross the pipe: the parent can start on
                # its part as soon as it has the state, and the child renders the records itself.
                head = split.head(records=rendered is None)
                _send(write_end, pickle.dumps(head, protocol=pickle.HIGHEST_PROTOCOL))
                if rendered is not None:
                    statements, found = split.head_done
                    excerpts = {s.index: s for s in statements}
                    _send(write_end, pickle.dumps(("".join(_statements_json(statements)),
                                                   "".join(_findings_json(found, excerpts))),
                                                  protocol=pickle.HIGHEST_PROTOCOL))
                status = 0
        finally:
            os._exit(status)  # no atexit handlers, no flushing of the parent's buffered output
    os.close(write_end)
    waited = False
    try:
        split = _split(data, ctx, head=False)
        from bot.risk import analyze
        from bot.risk.parse import NeedsWhole

        if split is None:  # no statement boundary to share the work at
            os.kill(pid, signal.SIGKILL)  # our own child: its part is of no use now
            return analyze(data, ctx)
        if _keep is not None:
            _keep.append(split)
        try:
            split.ahead()
        except NeedsWhole:
            os.kill(pid, signal.SIGKILL)
            return analyze(data, ctx)
        head = _receive(read_end)
        if head is None:  # a piece of the head did not parse on its own (or the child failed)
            return analyze(data, ctx)
        report = split.finish(pickle.loads(head))
        if rendered is not None:
            text = _receive(read_end)
            waited = True
            if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0 or text is None:
                return analyze(data, ctx)  # the report lacks the head's statements, which never came
            rendered[id(report)] = (pickle.loads(text), split.head_span)
        return report
    finally:
        os.close(read_end)
        if not waited:
            os.waitpid(pid, 0)


def _split(data: bytes, ctx: Context, head: bool):
    """The engine.Split of a big file, with libpg_query already working on this process's pieces
    (the head's in the child, the tail's here) while the rules import; None if it has no split point."""
    from bot.risk import parse as risk_parse

    text, bad, data = risk_parse.source(data)
    head_cuts, tail_cuts = risk_parse.split_pieces(text, risk_parse.SHARE)
    if not head_cuts or not tail_cuts or risk_parse.scanner_trap(text) is not None:
        return None  # (a scanner trap is never handed to the parser as a piece: see parse._chunks)
    parsed = risk_parse.Preparse(text, head_cuts if head else tail_cuts)
    from bot.risk.engine import Split  # the rules: while the pieces parse

    return Split((text, bad, data), ctx, parsed=parsed.futures)


def _send(fd: int, blob: bytes) -> None:
    """One message down the pipe: its length (8 bytes), then the bytes."""
    view = memoryview(len(blob).to_bytes(8, "little") + blob)
    while view:
        view = view[os.write(fd, view):]


def _receive(fd: int) -> bytes | None:
    """The next whole message, or None if the pipe ends first."""
    def exactly(n: int) -> bytes | None:
        chunks, left = [], n
        while left:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    size = exactly(8)
    return None if size is None else exactly(int.from_bytes(size, "little"))


def _two_cores() -> bool:
    """Whether forking is both safe (this process has no other thread) and worth it (a second core)."""
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return False
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except (AttributeError, OSError):
        return (os.cpu_count() or 1) >= 2


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


_PRISMA_FILE = re.compile(r"(^|/)\d{14}_[^/]+/migration\.sql$")


def _for_file(ctx: Context, path: str) -> Context:
    """A Prisma migration (`<14-digit timestamp>_<name>/migration.sql`) is judged as `prisma migrate` runs it:
    the whole file as one query, one implicit transaction."""
    if ctx.runner == "guardian" and _PRISMA_FILE.search(path.replace(os.sep, "/")):
        from dataclasses import replace

        return replace(ctx, runner="prisma")
    return ctx


def _inputs(paths: list[str]):
    for p in paths:
        if p == "-":
            yield "-", sys.stdin.buffer.read()
            continue
        path = Path(p)
        if path.is_dir():
            files = sorted(f for f in path.rglob("*.sql") if f.is_file())
            if not files:
                raise UsageError(f"{p}: no .sql files in this directory")
        else:
            files = [path]
        for f in files:
            try:
                yield str(f), f.read_bytes()
            except OSError as exc:
                raise UsageError(f"cannot read {f}: {exc.strerror}") from exc


# ---------------------------------------------------------------- renderers

def render_json(reports: list[tuple[str, Report]], color: bool = False) -> str:
    """The contract JSON: exactly `json.dumps({"files": [...]}, ensure_ascii=False)` of the records below
    (see render_json_reference), written with string templates: a 30,000-statement file renders ~3x faster
    than building the dicts and encoding them."""
    return "".join(_json_chunks(reports))


def render_json_reference(reports: list[tuple[str, Report]], color: bool = False) -> str:
    """The contract's definition (plain dicts through json.dumps); render_json must match it byte for byte."""
    files = []
    for path, r in reports:
        excerpts = {s.index: s.excerpt for s in r.statements}
        files.append({
            "path": path, "risk": r.risk.value, "reasons": list(r.reasons), "pg_version": r.pg_version,
            "statements": [{
                "index": s.index, "line": s.line, "column": s.column, "kind": s.kind,
                "transactional": s.transactional, "in_transaction": s.in_transaction,
                "locks": [{"relation": lk.relation, "mode": lk.mode} for lk in s.locks],
                "rewrite": s.rewrite, "scan": s.scan, "destructive": s.destructive,
                "incompatible": s.incompatible, "data_changing": s.data_changing,
            } for s in r.statements],
            "findings": [{
                "code": f.code, "name": f.name, "severity": f.severity.value, "line": f.line, "column": f.column,
                "statement": f.statement, "message": f.message, "fix": f.fix, "accepted": f.accepted,
                "accept_reason": f.accept_reason, "excerpt": excerpts.get(f.statement, ""),
            } for f in r.findings],
        })
    return json.dumps({"files": files}, ensure_ascii=False) + "\n"  # no indent: the C encoder


_B = {True: "true", False: "false"}


def _json_int(v: Any) -> str:
    return json.dumps(v) if type(v) is not int else int.__repr__(v)


_BATCH = 2048  # records per yielded chunk: the CLI writes them as they come (memory)


def _json_chunks(reports: list[tuple[str, Report]], pre: dict | None = None):
    """render_json's text in pieces. `pre`: id(report) -> (statements text, head span) for a report
    whose leading statements and their findings the Split child has rendered already."""
    enc = _ENC
    yield '{"files": ['
    for fi, (path, r) in enumerate(reports):
        if fi:
            yield ", "
        reasons = ", ".join(map(enc, r.reasons))
        yield (f'{{"path": {enc(path)}, "risk": {enc(r.risk.value)}, "reasons": [{reasons}], '
               f'"pg_version": {_json_int(r.pg_version)}, "statements": [')
        done = pre.get(id(r)) if pre else None
        excerpts = {s.index: s for s in r.statements}
        if done is None:
            yield from _statements_json(r.statements)
            yield '], "findings": ['
            yield from _findings_json(r.findings, excerpts)
        else:
            (text_s, text_f), (n_s, k0, n_f) = done
            if text_s:
                yield text_s
            yield from _statements_json(r.statements[n_s:], ", " if text_s else "")
            yield '], "findings": ['
            before = "".join(_findings_json(r.findings[:k0], excerpts))
            sep = ", " if before else ""
            if before:
                yield before
            if text_f:
                yield sep + text_f
                sep = ", "
            yield from _findings_json(r.findings[k0 + n_f:], excerpts, sep)
        yield "]}"
    yield "]}\n"


def _joined(records, sep: str = ""):
    """`records` (JSON texts) joined by ", ", in chunks of _BATCH; `sep` goes before the first."""
    records = iter(records)
    while chunk := list(islice(records, _BATCH)):
        yield sep + ", ".join(chunk)
        sep = ", "


def _statements_json(statements, sep: str = ""):
    """The JSON records of these statements, joined by ", ", in chunks; `sep` goes before the first."""
    return _joined(_statement_records(statements), sep)


def _statement_records(statements):
    """The JSON record of each statement. A big file repeats a few shapes (kind, flags, locks), so the
    part of the record after the position is made once per shape."""
    enc, B = _ENC, _B
    shapes: dict[tuple, str] = {}
    for s in statements:
        lk = s.locks  # the statements keep their lock tuples alive, so id() names one while rendering
        key = (s.kind, s.transactional, s.in_transaction, id(lk), s.rewrite, s.scan, s.destructive,
               s.incompatible, s.data_changing)
        shape = shapes.get(key)
        if shape is None:
            locks = ", ".join(f'{{"relation": {enc(x.relation)}, "mode": {enc(x.mode)}}}' for x in lk)
            shape = shapes[key] = (
                f'"kind": {enc(s.kind)}, "transactional": {B[s.transactional]}, '
                f'"in_transaction": {B[s.in_transaction]}, "locks": [{locks}], "rewrite": {B[s.rewrite]}, '
                f'"scan": {B[s.scan]}, "destructive": {B[s.destructive]}, "incompatible": {B[s.incompatible]}, '
                f'"data_changing": {B[s.data_changing]}}}')
        index, line, column = s.index, s.line, s.column
        if type(index) is not int or type(line) is not int or type(column) is not int:
            index, line, column = _json_int(index), _json_int(line), _json_int(column)
        yield f'{{"index": {index}, "line": {line}, "column": {column}, {shape}'


def _findings_json(findings, excerpts: dict, sep: str = ""):
    """The JSON records of these findings (excerpt from `excerpts`: statement index -> record), joined
    by ", ", in chunks; `sep` goes before the first."""
    return _joined(_finding_records(findings, excerpts), sep)


def _finding_records(findings, excerpts: dict):
    """The JSON record of each finding; its excerpt comes from `excerpts` (statement index -> record). The
    parts findings share (the rule's; fix and acceptance; a statement's excerpt) are encoded once each."""
    enc, B = _ENC, _B
    rules: dict[tuple, str] = {}
    tails: dict[tuple, str] = {}
    quoted: dict[int | None, str] = {}
    for f in findings:
        key = (f.code, f.name, f.severity.value)
        head = rules.get(key)
        if head is None:
            head = rules[key] = f'{{"code": {enc(f.code)}, "name": {enc(f.name)}, "severity": {enc(f.severity.value)}'
        reason = f.accept_reason
        key = (f.fix, f.accepted, reason)
        tail = tails.get(key)
        if tail is None:
            tail = tails[key] = (f'"fix": {enc(f.fix)}, "accepted": {B[f.accepted]}, '
                                 f'"accept_reason": {"null" if reason is None else enc(reason)}, "excerpt": ')
        excerpt = quoted.get(f.statement)
        if excerpt is None:
            st = excerpts.get(f.statement)
            excerpt = quoted[f.statement] = enc(st.excerpt) if st is not None else '""'
        yield (
            f'{head}, "line": {_json_int(f.line)}, "column": {_json_int(f.column)}, '
            f'"statement": {"null" if f.statement is None else _json_int(f.statement)}, '
            f'"message": {enc(f.message)}, {tail}{excerpt}}}')


_SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}


def render_sarif(reports: list[tuple[str, Report]], color: bool = False) -> str:
    from bot.risk import RULES

    rules = [{
        "id": r.code, "name": r.name, "shortDescription": {"text": r.summary}, "fullDescription": {"text": r.why},
        "help": {"text": r.fix}, "defaultConfiguration": {"level": _SARIF_LEVEL[r.severity.value]},
        "properties": {"family": r.family, "severity": r.severity.value},
    } for r in RULES]
    results = []
    for path, report in reports:
        for f in report.findings:
            res = {
                "ruleId": f.code, "level": _SARIF_LEVEL[f.severity.value], "message": {"text": f.message},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": path},
                                                    "region": {"startLine": f.line, "startColumn": f.column}}}],
                "properties": {"severity": f.severity.value, "name": f.name, "fileRisk": report.risk.value},
            }
            if f.accepted:
                res["suppressions"] = [{"kind": "inSource", "justification": f.accept_reason or ""}]
            results.append(res)
    doc = {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
           "runs": [{"tool": {"driver": {"name": "migration-guardian", "version": _version(), "rules": rules}},
                     "results": results}]}
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def _version() -> str:
    from bot.version import version

    return version()


def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


_GH_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "notice"}


def render_github(reports: list[tuple[str, Report]], color: bool = False) -> str:
    lines = []
    for path, r in reports:
        for f in r.findings:
            if f.accepted:
                continue
            title = _gh_escape(f"{f.code} {f.name} ({f.severity.value})", prop=True)
            lines.append(f"::{_GH_LEVEL[f.severity.value]} file={_gh_escape(path, True)},line={f.line},col={f.column},"
                         f"title={title}::{_gh_escape(f.message + ' Fix: ' + f.fix)}")
    return "\n".join(lines) + ("\n" if lines else "")


_ANSI = {"critical": "\033[1;35m", "high": "\033[1;31m", "medium": "\033[33m", "low": "\033[36m",
         "dim": "\033[2m", "bold": "\033[1m", "reset": "\033[0m"}


def _color(stream: TextIO) -> bool:
    return hasattr(stream, "isatty") and stream.isatty() and not os.environ.get("NO_COLOR")


def _n(count: int, word: str) -> str:
    """`1 statement`, `2 statements`, `1,204 findings`."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def render_text(reports: list[tuple[str, Report]], color: bool = False, compact: bool = False,
                fail_on: str | None = None) -> str:
    """The human report: per file its risk and findings (with why and the tailored fix; `compact`: one line
    each, files without findings left out), then the totals and, given `fail_on`, why the exit status is
    what it is."""
    from bot.risk import lookup

    c = (lambda key, s: f"{_ANSI[key]}{s}{_ANSI['reset']}") if color else (lambda key, s: s)
    out: list[str] = []
    for path, r in reports:
        live = [f for f in r.findings if not f.accepted]
        accepted = len(r.findings) - len(live)
        if compact:
            for f in sorted(r.findings, key=lambda f: (f.line, -f.severity.rank)):
                tag = "ACCEPTED " if f.accepted else ""
                out.append(f"{path}:{f.line}:{f.column}  {c(f.severity.value, tag + f.severity.value.upper())}  "
                           f"{f.code} {f.name}: {f.message}")
            continue
        out.append(c("bold", f"{path}") + f"  risk {c(r.risk.value, r.risk.value.upper())}  "
                   f"({_n(len(r.statements), 'statement')}, {_n(len(live), 'finding')}"
                   + (f", {accepted} accepted" if accepted else "") + ")")
        for reason in r.reasons:
            out.append(f"  - {reason}")
        by_index = {s.index: s for s in r.statements}
        for f in sorted(r.findings, key=lambda f: (f.line, -f.severity.rank)):
            tag = "ACCEPTED " if f.accepted else ""
            out.append("")
            out.append(f"{path}:{f.line}:{f.column}  {c(f.severity.value, tag + f.severity.value.upper())}  "
                       f"{f.code} {f.name}")
            stmt = by_index.get(f.statement) if f.statement is not None else None
            if stmt is not None:
                for line in _excerpt(stmt.excerpt):
                    out.append(c("dim", f"    | {line}"))
            out.append(f"    {f.message}")
            rule = lookup(f.code)
            if rule is not None:
                out.append(f"    why: {rule.why}")
            fix = f.fix.splitlines() or [""]
            out.append(f"    fix: {fix[0]}")
            out.extend(f"         {line}" for line in fix[1:])
            if f.accepted:
                out.append(f"    accepted because {f.accept_reason}")
        out.append("")
    if compact and out:
        out.append("")
    out += _totals(reports, fail_on)
    return "\n".join(out) + "\n"


_LEVELS_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def _totals(reports: list[tuple[str, Report]], fail_on: str | None) -> list[str]:
    from collections import Counter

    live = [f for _, r in reports for f in r.findings if not f.accepted]
    accepted = sum(len(r.findings) for _, r in reports) - len(live)
    by_severity = Counter(f.severity.value for f in live)
    by_rule = Counter(f"{f.code} {f.name}" for f in live)
    severities = ", ".join(f"{by_severity[s]} {s}" for s in ("critical", "high", "medium", "low") if by_severity[s])
    lines = [f"Total: {_n(len(reports), 'file')}, {_n(sum(len(r.statements) for _, r in reports), 'statement')}, "
             f"{_n(len(live), 'finding')}" + (f" ({severities})" if severities else "")
             + (f", {accepted} accepted" if accepted else "")]
    if by_rule:
        lines.append("By rule: " + ", ".join(f"{rule} {n}" for rule, n in by_rule.most_common()))
    if fail_on is not None:
        failing = [p for p, r in reports if _LEVELS_RANK[r.risk.value] >= _LEVELS_RANK[fail_on]]
        if failing:
            lines.append(f"Exit status 1: {_n(len(failing), 'file')} at or above --fail-on {fail_on} "
                         f"(first: {failing[0]}).")
        else:
            lines.append(f"Exit status 0: no file at or above --fail-on {fail_on}.")
    return lines


def _excerpt(text: str, lines: int = 3, width: int = 100) -> list[str]:
    rows = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    shown = [ln if len(ln) <= width else ln[: width - 3] + "..." for ln in rows[:lines]]
    if len(rows) > lines:
        shown.append("...")
    return shown


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guardian lint", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run(_parser().parse_args(argv))


# Run as a command, the process ends right after writing: freeing millions of parse-tree objects
# and report models first would only cost time (~0.2 s on a 5 MB file), so they are kept and the
# process leaves through os._exit once the output is flushed.
_keep: list | None = None


def run_as_command(args: argparse.Namespace) -> NoReturn:
    """run(), then leave the process (`python -m bot.lint` and `guardian lint`)."""
    global _keep
    _keep = []
    # Off for good: run() would switch the cyclic GC back on, and the first allocation after that
    # (flushing the output) would sweep the millions of objects made meanwhile, ~0.2 s on a 5 MB file.
    gc.disable()
    status = run(args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    run_as_command(_parser().parse_args())
