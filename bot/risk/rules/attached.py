"""What the rules that come from outside the SQL share (a file's place in the history, a rehearsal's trace):
their caller attaches their findings to a report the engine made, honouring `guardian: accept` comments."""
from __future__ import annotations

from ..models import Finding, Report, Rule, Severity
from ..parse import Directive, directives_of


def acceptances(sql: str | bytes, rule: Rule) -> list[Directive]:
    """The `-- guardian: accept <rule> because <reason>` comments of the file (with a reason)."""
    data = sql.encode("utf-8", "surrogateescape") if isinstance(sql, str) else sql
    return [d for d in directives_of(data) if d.reason and
            any(c.upper() == rule.code or c.lower() == rule.name for c in d.codes)]


def is_unmatched_note(f: Finding, lines: set[int], rule: Rule) -> bool:
    """The engine's MG004 ("not a rule that fired on this statement") about an acceptance of `rule` at one
    of `lines`: the engine could not see the finding that comment accepts; once attached, the note is wrong."""
    text = f.message.lower()
    return f.code == "MG004" and f.line in lines and (rule.code.lower() in text or rule.name in text)


def with_findings(report: Report, findings: list[Finding]) -> Report:
    """`report` with these findings: the risk and reasons the engine gives (engine._overall) recomputed."""
    live = sorted((f for f in findings if not f.accepted), key=lambda f: (-f.severity.rank, f.line))
    if live:
        reasons = [f"{f.severity.value}: {f.name} at line {f.line}" for f in live[:5]]
        if len(live) > 5:
            reasons.append(f"... and {len(live) - 5} more findings")
        reasons += [r for r in report.reasons if r.startswith("contains code the linter cannot see")]
        risk = live[0].severity
    else:
        risk, reasons = Severity.LOW, [f"no findings ({len(findings)} accepted)"]
    return Report(risk=risk, reasons=tuple(reasons), statements=report.statements, findings=tuple(findings),
                  pg_version=report.pg_version)
