"""A request's MigrationRef back to the sources' Migration: the one place that knows how a ref names its ledger row."""
from __future__ import annotations

from bot.models import MigrationRef
from bot.sources.models import Migration


def to_migration(ref: MigrationRef, layout: str) -> Migration:
    """The sources' Migration for a request's MigrationRef (`<version>_<name>`; Prisma's ledger key is the folder)."""
    version = getattr(ref, "version", None)
    if version and ref.name.startswith(version + "_"):
        rest = ref.name[len(version) + 1:]
    else:
        parsed, _, rest = ref.name.partition("_")
        version = version or parsed
    ledger = getattr(ref, "ledger_name", None) or (ref.name if layout == "prisma" else version)
    name = rest if layout == "prisma" else (rest or ref.name)  # a Prisma folder may have no `_name` part
    return Migration(version=version, name=name, ledger_name=ledger,
                     path=ref.path or ref.name, sql=ref.sql, sha256=ref.sha256, size=len(ref.sql.encode("utf-8")),
                     down_sql=ref.down_sql, verify_sql=ref.verify_sql)
