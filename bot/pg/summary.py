"""A rehearsal in one line, and its per-statement timings: what the preview shows before approval and what the
real apply is compared with afterwards.

Usage::

    rehearsal_headline(rehearsal, copy, app, "production")
    # 'rehearsed on a copy of production from 03:00 UTC (2.1 GB, backup #12): 4.2 s; ACCESS EXCLUSIVE on orders
    #  held 3.9 s; 1.2 GB WAL; 0 data failures; 1,204 app queries checked, 2 break'
    statement_timings(rehearsal)   # [{"file", "index", "line", "duration_ms", "held_ms", "locks", ...}, …]
    outcome = rehearsal_outcome(rehearsal, app)   # what an approval binds; outcome_digest(outcome) goes in the preview
    outcome_change(approved, outcome)  # 'now finds 1 duplicated (email) in users, 4 rows (001_x line 1)'
"""
from __future__ import annotations

import hashlib
import json
from datetime import timedelta, timezone
from typing import Any

from bot.pg.datafail import OffendingRows

_STRENGTH = ("ACCESS EXCLUSIVE", "EXCLUSIVE", "SHARE ROW EXCLUSIVE", "SHARE", "SHARE UPDATE EXCLUSIVE")


def size_text(n: float) -> str:
    """Bytes as people read them: '812 kB', '1.2 GB'."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit in ("B", "kB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def copy_line(copy: Any, env_name: str) -> str:
    """'a copy of production from 03:00 (2.1 GB, backup #12)'; stale copies say so."""
    size = size_text(copy.size_bytes or 0)
    when = copy.taken_at.astimezone(timezone.utc)
    at = when.strftime("%H:%M UTC") if copy.age_s() < 86400 else when.strftime("%Y-%m-%d %H:%M UTC")
    stale = (f" — stale: older than max_age ({timedelta(seconds=int(copy.age_s()))})" if copy.stale else "")
    return f"a copy of {env_name} from {at} ({size}, {copy.source}){stale}"


def statement_timings(rehearsal: Any) -> list[dict]:
    """Each statement that ran: duration, how long its locks were held, the locks, WAL and rows changed."""
    return [{"file": f.path, "index": s.index, "line": s.line, "duration_ms": s.duration_ms, "held_ms": s.held_ms,
             "locks": [[lk.relation, lk.mode] for lk in s.observed_locks], "wal_bytes": s.wal_bytes,
             "rows_changed": s.rows_changed, "rewrites": list(s.rewrites)}
            for f in rehearsal.files for s in f.statements if s.rehearsed]


def longest_hold(rehearsal: Any) -> tuple[str, str, float] | None:
    """(mode, relation, ms) of the strongest table lock held longest: what blocks the app the most."""
    best: tuple[int, float, int, str, str] | None = None
    for f in rehearsal.files:
        for s in f.statements:
            for lk in s.observed_locks:
                if lk.mode in _STRENGTH and s.held_ms is not None:  # on a tie, the table before its indexes
                    key = (-_STRENGTH.index(lk.mode), s.held_ms, -len(lk.relation), lk.mode, lk.relation)
                    best = max(best, key) if best else key
    return (best[3], best[4], best[1]) if best else None


def rehearsal_headline(rehearsal: Any, copy: Any, app: Any, env_name: str) -> str:
    """One line: where it ran, total time, the longest strong lock, WAL, data failures, the app's queries."""
    where = copy_line(copy, env_name) if copy is not None else "the rehearsal database (rolled back)"
    ran = [s for f in rehearsal.files for s in f.statements if s.rehearsed]
    parts = [f"{sum(s.duration_ms or 0 for s in ran) / 1000:.1f} s"]
    hold = longest_hold(rehearsal)
    if hold:
        parts.append(f"{hold[0]} on {hold[1]} held {hold[2] / 1000:.1f} s")
    parts.append(f"{size_text(sum(s.wal_bytes or 0 for s in ran))} WAL")
    failures = len(rehearsal.data_failures)
    parts.append(f"{failures} data failure{'s' if failures != 1 else ''}")
    if app is not None:
        parts.append(app.summary)
    warmed = getattr(rehearsal, "warmed", None)  # the copy's touched tables read in first (bot/pg/warm.py)
    if warmed is not None:
        parts.append(warmed.summary)
    kept = getattr(rehearsal, "warnings", ())  # server-wide effects kept off the copy (bot/pg/serverwide.py)
    if kept:
        more = f"; and {len(kept) - 2} more" if len(kept) > 2 else ""
        parts.append("kept off the copy's server: " + "; ".join(kept[:2]) + more)
    return f"rehearsed on {where}: " + "; ".join(parts)


def prediction_vs_actual(statements: list[dict], files: list[dict]) -> list[dict]:
    """Per file the rehearsal's prediction (``statements``: the stored `statement_timings`) beside the apply's
    measure (``files``: name, duration_ms, and ``statements`` when the apply sent them one by one): duration, and
    lock hold time. With the apply's per-statement actuals, each statement rehearsed and run (matched by its index
    in the file) is compared too, and the file's actual hold is its longest statement's; a file sent whole is
    compared as a file, its hold being the file's transaction."""
    out = []
    for f in files:
        ran = [s for s in statements if s["file"] == f["name"]]
        if not ran:
            continue
        predicted = sum(s["duration_ms"] or 0 for s in ran)
        held = max((s["held_ms"] or 0 for s in ran), default=0)
        row = {"file": f["name"], "predicted_ms": round(predicted, 1), "actual_ms": f["duration_ms"],
               "predicted_hold_ms": round(held, 1), "actual_hold_ms": f["duration_ms"]}
        actual = f.get("statements")
        if actual:
            by_index = {s["index"]: s for s in ran}
            row["actual_hold_ms"] = round(max((a["held_ms"] or 0 for a in actual), default=0), 1)
            row["statements"] = [
                {"index": a["index"], "line": a["line"], "kind": a.get("kind"),
                 "predicted_ms": by_index[a["index"]]["duration_ms"], "actual_ms": a["duration_ms"],
                 "predicted_hold_ms": by_index[a["index"]]["held_ms"], "actual_hold_ms": a["held_ms"]}
                for a in actual if a["index"] in by_index and by_index[a["index"]]["duration_ms"] is not None]
        out.append(row)
    return out


def slowest_statement(rows: list[dict]) -> tuple[str, dict] | None:
    """(file, statement row) of the statement that took longest in the apply, among those compared one by one."""
    found = [(r["file"], s) for r in rows for s in r.get("statements") or ()]
    return max(found, key=lambda fs: fs[1]["actual_ms"] or 0, default=None)


def _pct(predicted: float | None, actual: float | None) -> str:
    return f" ({(actual / predicted - 1) * 100:+.0f} %)" if predicted and actual is not None else ""


def _s(ms: float | None) -> str:
    return "?" if ms is None else f"{ms / 1000:.2f} s" if ms >= 100 else f"{ms:.1f} ms"


def prediction_line(row: dict) -> str:
    """'`001_x`: rehearsed 0.9 s, took 1.2 s (+33 %); locks held 0.95 s in the rehearsal, 1.2 s now'."""
    return (f"{row['file']}: rehearsed {row['predicted_ms'] / 1000:.2f} s, took {row['actual_ms'] / 1000:.2f} s"
            f"{_pct(row['predicted_ms'], row['actual_ms'])}; locks held {row['predicted_hold_ms'] / 1000:.2f} s in the "
            f"rehearsal, {row['actual_hold_ms'] / 1000:.2f} s now{_pct(row['predicted_hold_ms'], row['actual_hold_ms'])}")


def rehearsal_outcome(rehearsal: Any, app: Any) -> dict:
    """What an approver decides on, without what varies from run to run (durations, hold times, WAL, examples):
    per statement whether it ran, its SQLSTATE when it failed, the data failures with their counts and the locks
    observed (in a transaction: a statement run alone has its locks sampled, not seen for sure); and the app
    queries the migration breaks."""
    statements = [
        {"file": f.path, "line": s.line, "rehearsed": s.rehearsed, "sqlstate": s.sqlstate,
         "offending": [{"problem": o.problem, "table": o.table, "columns": list(o.columns), "count": o.count,
                        "groups": o.groups, **({"cast_to": o.cast_to} if o.cast_to else {})} for o in s.offending],
         # a statement run alone has its locks sampled while it runs (bot/pg/rehearsal.py): seen or not by chance
         "locks": sorted([lk.relation, lk.mode] for lk in s.observed_locks) if s.transactional else []}
        for f in rehearsal.files for s in f.statements]
    broken = sorted(f"{p.query.role}: {p.query.query} ({p.error})" for p in (app.broken if app is not None else ()))
    return {"statements": statements, "app_broken": broken}


def outcome_digest(outcome: dict) -> str:
    """A short, stable identity of a rehearsal's outcome (part of the preview's fingerprint)."""
    return hashlib.sha256(json.dumps(outcome, sort_keys=True).encode()).hexdigest()[:16]


def _failure(o: dict) -> str:
    return OffendingRows(**o, query="").summary


def outcome_change(before: dict, after: dict, limit: int = 3) -> str:
    """How the rehearsal's outcome ``after`` differs from ``before``, in words that follow "the rehearsal … now":
    'finds 1 duplicated (email) in users, 4 rows (001_x line 1)'."""
    old = {(s["file"], s["line"]): s for s in before.get("statements", ())}
    changes = []
    for s in after.get("statements", ()):
        where, was = f"{s['file']} line {s['line']}", old.pop((s["file"], s["line"]), None)
        if was is None:
            changes.append(f"runs {where}, which it did not before")
            continue
        seen = {json.dumps(o, sort_keys=True) for o in was["offending"]}
        new = [o for o in s["offending"] if json.dumps(o, sort_keys=True) not in seen]
        changes += [f"finds {_failure(o)} ({where})" for o in new]
        cleared = was["offending"] and not s["offending"]
        if cleared:
            changes.append(f"finds no data failure at {where} (it found {_failure(was['offending'][0])})")
        if new or cleared:
            pass
        elif s["sqlstate"] != was["sqlstate"]:
            changes.append(f"fails at {where} (SQLSTATE {s['sqlstate']})" if s["sqlstate"] else f"passes {where}")
        elif s["rehearsed"] != was["rehearsed"]:
            changes.append(f"{'runs' if s['rehearsed'] else 'does not run'} {where}")
        if s["locks"] != was["locks"] and s["rehearsed"] and was["rehearsed"]:
            gained = [f"{m} on {r}" for r, m in s["locks"] if [r, m] not in was["locks"]]
            changes.append(f"takes {', '.join(gained)} at {where}" if gained else f"takes fewer locks at {where}")
    changes += [f"no longer runs {f} line {n}" for f, n in old]
    gone = set(before.get("app_broken", ())) - set(after.get("app_broken", ()))
    broke = [q for q in after.get("app_broken", ()) if q not in set(before.get("app_broken", ()))]
    if broke:
        changes.append(f"breaks {len(broke)} more app quer{'y' if len(broke) == 1 else 'ies'} ({broke[0][:120]})")
    if gone:
        changes.append(f"no longer breaks {len(gone)} app quer{'y' if len(gone) == 1 else 'ies'}")
    if not changes:
        return "differs from the one approved"
    more = len(changes) - limit
    return "; ".join(changes[:limit]) + (f"; and {more} more change{'s' if more != 1 else ''}" if more > 0 else "")


def statement_prediction_line(file: str, st: dict) -> str:
    """'001_x #2 (line 5, IndexStmt): rehearsed 0.88 s, took 1.21 s (+37 %); locks held 0.95 s in the rehearsal,
    1.30 s now (+37 %)'."""
    return (f"{file} #{st['index'] + 1} (line {st['line']}{', ' + st['kind'] if st.get('kind') else ''}): rehearsed "
            f"{_s(st['predicted_ms'])}, took {_s(st['actual_ms'])}{_pct(st['predicted_ms'], st['actual_ms'])}; locks "
            f"held {_s(st['predicted_hold_ms'])} in the rehearsal, {_s(st['actual_hold_ms'])} now"
            f"{_pct(st['predicted_hold_ms'], st['actual_hold_ms'])}")
