"""Render docs/rules.md from the rule records (a test fails when the file drifts)."""
from __future__ import annotations

from .catalogue import FAMILIES, RULES, covered_hazards, example_context
from .models import Rule

HEADER = """# Migration Guardian rules

Generated from the rule records in `bot/risk/rules/` by `python -m bot.risk.docs > docs/rules.md`;
do not edit by hand. Severities are defaults: with table sizes in the context, size-sensitive rules
drop to low on small tables and rise on large ones. Accept a finding with
`-- guardian: accept CODE because <reason>` on the statement. Opt-in rules run only when listed in
`[lint] enabled`. `#` numbers refer to `reference/postgres-hazards.md`. Each finding's `fix` is written from
its own statement (its names, quoted as the file quotes them; derived names as PostgreSQL derives them;
each migration of a multi-migration recipe shown separately): the "Tailored fix" blocks below are what
the engine prints for each rule's problematic example.
"""


def _safe(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _cell(text: str) -> str:
    return _safe(text).replace("|", "\\|").replace("\n", " ")


def tailored_fix(r: Rule) -> str:
    """The fix the engine writes for the rule's problematic example: what a user of that SQL reads."""
    from .engine import analyze

    fixes = [f.fix for f in analyze(r.bad, example_context(r)).findings if f.code == r.code]
    return fixes[0] if fixes else ""


def render() -> str:
    """The whole docs/rules.md text."""
    lines = [HEADER, f"{len(RULES)} rules covering {len(covered_hazards())} of the 81 reference hazards.", "",
             "| Code | Name | Family | Severity | Summary |", "|---|---|---|---|---|"]
    for r in RULES:
        opt = " (opt-in)" if not r.default_enabled else ""
        lines.append(f"| [{r.code}](#{r.code.lower()}-{r.name}) | `{r.name}` | {r.family} | {r.severity.value}{opt} "
                     f"| {_cell(r.summary)} |")
    for fam in FAMILIES:
        family = fam.RULES[0].family
        lines += ["", f"## {family.capitalize()}", "", _safe(fam.__doc__ or "").strip()]
        for r in fam.RULES:
            meta = [f"severity **{r.severity.value}**"]
            if r.size_sensitive:
                meta.append("size-sensitive")
            if not r.default_enabled:
                meta.append("opt-in")
            if r.hazards:
                meta.append("hazards " + ", ".join(f"#{h}" for h in r.hazards))
            if r.example_pg_version:
                meta.append(f"examples assume PostgreSQL {r.example_pg_version}")
            lines += ["", f"### {r.code} {r.name}", "", f"{' · '.join(meta)}", "",
                      f"**What it flags.** {_safe(r.summary)}", "", f"**Why it is risky.** {_safe(r.why)}", "",
                      "**Problematic SQL**", "", "```sql", _safe(r.bad), "```", "",
                      "**Safer SQL**", "", "```sql", _safe(r.good), "```", "",
                      "**Tailored fix for the problematic SQL** (generated from the statement, as a finding shows it)",
                      "", "```sql", _safe(tailored_fix(r)), "```", "",
                      "**Recipe**", "", "```sql", _safe(r.fix), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
