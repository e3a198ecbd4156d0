"""Every documenso Prisma migration analyses without a crash, and the verdicts are plausible."""
import pytest

from bot.risk import Severity, analyze

from risk_helpers import CORPUS

FILES = sorted(CORPUS.glob("*/migration.sql"))


def test_corpus_is_present():
    assert len(FILES) >= 100, f"corpus not found at {CORPUS} (set GUARDIAN_CORPUS)"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.parent.name)
def test_every_corpus_file_analyses(path):
    r = analyze(path.read_bytes())
    assert r.statements
    assert "MG001" not in [f.code for f in r.findings]
    for f in r.findings:
        assert f.line >= 1 and f.column >= 1


def _codes(name: str) -> list[str]:
    return [f.code for f in analyze((CORPUS / name / "migration.sql").read_bytes()).findings]


def test_initial_migration_only_creates_so_no_lock_findings():
    found = _codes("20230404095503_initial_migration")
    for code in ("MG101", "MG201", "MG601", "MG603", "MG109"):
        assert code not in found


def test_known_risky_files():
    assert "MG213" in _codes("20240227003622_migrate_to_cuids_for_webhooks")  # primary key swapped to text
    assert "MG701" in _codes("20240606060033_add_public_profiles")  # DELETE FROM "UserProfile" with no WHERE
    assert "MG005" in _codes("20240205120648_create_delete_account")  # DO block
    r = analyze((CORPUS / "20240606060033_add_public_profiles" / "migration.sql").read_bytes())
    assert r.risk is Severity.CRITICAL
