"""How a table's size turns a rule's severity into a finding's: small tables are low risk, huge ones higher."""
from __future__ import annotations

from .models import Severity, TableStats

SMALL_ROWS, LARGE_ROWS, HUGE_ROWS = 100_000, 10_000_000, 100_000_000
SMALL_BYTES, LARGE_BYTES = 100 * 2**20, 10 * 2**30


def sized(severity: Severity, stats: TableStats | None) -> tuple[Severity, str]:
    """(severity, note for the message) for a finding about a table with these statistics.

    >>> sized(Severity.HIGH, TableStats(rows=500))
    (<Severity.LOW: 'low'>, ' (~500 rows); small table, low risk')
    """
    if stats is None or (stats.rows is None and stats.bytes is None):
        return severity, ""
    rows, size = stats.rows, stats.bytes
    label = f" (~{rows:,} rows)" if rows is not None else f" (~{size // 2**20:,} MB)"
    if (rows is None or rows < SMALL_ROWS) and (size is None or size < SMALL_BYTES):
        return Severity.LOW, label + "; small table, low risk"
    if (rows or 0) >= HUGE_ROWS:
        return severity.raised(), label
    if (rows or 0) >= LARGE_ROWS or (size or 0) >= LARGE_BYTES:
        return max(severity, Severity.HIGH, key=lambda s: s.rank), label
    return severity, label
