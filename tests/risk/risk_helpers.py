"""Small helpers shared by the risk tests."""
import os
from pathlib import Path

from bot.risk import Context, Report, analyze

# The documenso Prisma migrations: ../shared/corpus beside the checkout, or GUARDIAN_CORPUS.
CORPUS = Path(os.environ.get("GUARDIAN_CORPUS", Path(__file__).resolve().parents[3] / "shared" / "corpus"
                             / "documenso-prisma"))


def codes(sql: str | bytes, ctx: Context | None = None) -> list[str]:
    return [f.code for f in analyze(sql, ctx).findings]


def finding(report: Report, code: str):
    found = [f for f in report.findings if f.code == code]
    assert found, f"{code} not in {[f.code for f in report.findings]}"
    return found[0]


def locks(report: Report, index: int) -> dict[str, str]:
    return {lk.relation: lk.mode for lk in report.statements[index].locks}
