"""Precision of the findings approvers read, on a hand-judged corpus of real Prisma migrations.

Usage::

    .venv/bin/python bench/precision.py              # prints precision, false alarms by rule, fix property
    .venv/bin/python bench/precision.py --label      # writes labels for findings not judged yet (verdict "?")

The corpus: tests/fixtures/corpus/ (langfuse 432 and formbricks 167 Prisma migrations, licenses beside
them). The context is what the Slack preview uses for a Prisma project: `prisma migrate` semantics
(runner "prisma") and Guardian's apply setting lock_timeout / statement_timeout itself. Every finding at
medium or above was judged once by hand: bench/precision/labels.csv (file, line, rule, statement,
verdict real|false alarm, one-line reason). Precision = judged real / findings at medium or above (a
finding without a label counts against it); "lost" = labels judged real that no longer fire; the fix
property = fixes whose SQL names only their statement's objects (bot.risk.fixes.foreign_names).
"""
from __future__ import annotations

import argparse
import collections
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.risk import Context, Severity, analyze  # noqa: E402
from bot.risk.fixes import foreign_names  # noqa: E402
from bot.risk.parse import RawStatement, parse, source  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "corpus"
LABELS = ROOT / "bench" / "precision" / "labels.csv"
CONTEXT = Context(runner="prisma", runner_lock_timeout=True, runner_statement_timeout=True)
FIELDS = ("file", "line", "rule", "nth", "statement", "verdict", "reason")


def findings(corpus: Path = CORPUS, ctx: Context = CONTEXT):
    """(file, finding, statement text) of every finding on the corpus."""
    for path in sorted(p for p in corpus.rglob("*.sql") if p.is_file()):
        text = path.read_text(encoding="utf-8")
        t, _, data = source(text)
        statements = {x.index: x.text for x in parse(t, data) if isinstance(x, RawStatement)}
        for f in analyze(text, ctx).findings:
            yield str(path.relative_to(corpus)), f, statements.get(f.statement, "")


def load_labels() -> dict[tuple[str, int, str], dict]:
    if not LABELS.exists():
        return {}
    with LABELS.open(encoding="utf-8", newline="") as fh:
        return {(r["file"], int(r["line"]), r["rule"], int(r["nth"])): r for r in csv.DictReader(fh)}


def _one_line(text: str) -> str:
    return " ".join(text.split())[:160]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", action="store_true", help="add rows with verdict ? for unjudged findings")
    args = parser.parse_args()
    labels = load_labels()
    serious, real, fixes_ok, fixes = 0, 0, 0, 0
    false_by_rule: collections.Counter = collections.Counter()
    unjudged: list[tuple] = []
    seen: set = set()
    nth: collections.Counter = collections.Counter()
    files = sum(1 for p in CORPUS.rglob("*.sql") if p.is_file())
    for name, f, stmt in findings():
        fixes += 1
        if f.statement is None or not foreign_names(f.fix, stmt):
            fixes_ok += 1
        if f.severity.rank < Severity.MEDIUM.rank or f.accepted:
            continue
        serious += 1
        key = (name, f.line, f.code, nth[(name, f.line, f.code)])
        nth[key[:3]] += 1
        seen.add(key)
        label = labels.get(key)
        if label is None or label["verdict"] == "?":
            unjudged.append((name, f, stmt))
            false_by_rule[f"{f.code} (unjudged)"] += 1
        elif label["verdict"] == "real":
            real += 1
        else:
            false_by_rule[f"{f.code} {f.name}"] += 1
    lost = [k for k, r in labels.items() if r["verdict"] == "real" and k not in seen]
    judged_false = collections.Counter(r["rule"] for r in labels.values() if r["verdict"] == "false alarm")
    precision = real / serious if serious else 1.0
    print(f"corpus: {CORPUS.relative_to(ROOT)} ({files} files); labels: {LABELS.relative_to(ROOT)} ({len(labels)})")
    print(f"findings at medium or above: {serious}; judged real: {real}; precision: {precision:.1%} "
          f"(issue 15 baseline: 73 %; target >= 95 %)")
    print(f"judged real risks no longer found: {len(lost)}" + "".join(f"\n  lost: {k}" for k in lost[:20]))
    print(f"judged false alarms in the labels (most from the engine before issue 15): {sum(judged_false.values())} "
          f"({', '.join(f'{r} {n}' for r, n in judged_false.most_common())}); "
          f"still reported: {sum(1 for k, r in labels.items() if r['verdict'] == 'false alarm' and k in seen)}")
    print("false alarms by rule, now:" + ("".join(f"\n  {rule}: {n}" for rule, n in false_by_rule.most_common())
                                     or " none"))
    print(f"fixes naming only their statement's objects: {fixes_ok}/{fixes} ({fixes_ok / max(fixes, 1):.1%}; "
          f"issue 15 baseline: 5 of 510)")
    if args.label and unjudged:
        rows = list(labels.values()) + [
            {"file": n, "line": f.line, "rule": f.code, "nth": 0, "statement": _one_line(s), "verdict": "?",
             "reason": ""} for n, f, s in unjudged]
        write_labels(rows)
        print(f"wrote {len(unjudged)} unjudged rows to {LABELS.relative_to(ROOT)}")
    return 0 if precision >= 0.95 and not lost and fixes_ok == fixes else 1


def write_labels(rows: list[dict]) -> None:
    LABELS.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda r: (r["file"], int(r["line"]), r["rule"], int(r["nth"])))
    with LABELS.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
