"""Pure migration risk analysis: `analyze(sql, context) -> Report` (no I/O, no clock, no settings)."""
from .catalogue import RULES, lookup
from .engine import analyze
from .models import Context, Finding, Lock, Report, Rule, Severity, StatementInfo, TableStats

__all__ = ["analyze", "Context", "Finding", "Lock", "Report", "Rule", "RULES", "Severity", "StatementInfo",
           "TableStats", "lookup"]
