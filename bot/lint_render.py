"""`guardian lint`'s renderers: text, the contract JSON (DESIGN §7), SARIF and GitHub annotations."""
from __future__ import annotations

import json
import os
from itertools import islice
from json.encoder import encode_basestring as _ENC  # the C encoder json.dumps uses
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from bot.risk import Report

def render_json(reports: list[tuple[str, Report]], color: bool = False) -> str:
    """The contract JSON: exactly `json.dumps({"files": [...]}, ensure_ascii=False)` of the records below
    (see render_json_reference), written with string templates: a 30,000-statement file renders ~3x faster
    than building the dicts and encoding them."""
    return "".join(json_chunks(reports))


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


def json_chunks(reports: list[tuple[str, Report]], pre: dict | None = None):
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
            yield from statements_json(r.statements)
            yield '], "findings": ['
            yield from findings_json(r.findings, excerpts)
        else:
            (text_s, text_f), (n_s, k0, n_f) = done
            if text_s:
                yield text_s
            yield from statements_json(r.statements[n_s:], ", " if text_s else "")
            yield '], "findings": ['
            before = "".join(findings_json(r.findings[:k0], excerpts))
            sep = ", " if before else ""
            if before:
                yield before
            if text_f:
                yield sep + text_f
                sep = ", "
            yield from findings_json(r.findings[k0 + n_f:], excerpts, sep)
        yield "]}"
    yield "]}\n"


def _joined(records, sep: str = ""):
    """`records` (JSON texts) joined by ", ", in chunks of _BATCH; `sep` goes before the first."""
    records = iter(records)
    while chunk := list(islice(records, _BATCH)):
        yield sep + ", ".join(chunk)
        sep = ", "


def statements_json(statements, sep: str = ""):
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


def findings_json(findings, excerpts: dict, sep: str = ""):
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


def use_color(stream: TextIO) -> bool:
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
