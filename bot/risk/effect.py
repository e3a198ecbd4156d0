"""The effect of one statement: kind, lock mode per relation, rewrite/scan and other flags."""
from __future__ import annotations

from dataclasses import dataclass, field

from .models import LOCK_RANK

AEL, EXCL, SRE, SHARE, SUE = "ACCESS EXCLUSIVE", "EXCLUSIVE", "SHARE ROW EXCLUSIVE", "SHARE", "SHARE UPDATE EXCLUSIVE"
ROW_EXCL, ROW_SHARE, ACCESS_SHARE = "ROW EXCLUSIVE", "ROW SHARE", "ACCESS SHARE"


@dataclass(slots=True)
class Effect:
    kind: str
    locks: dict[str, str] = field(default_factory=dict)
    rewrite: bool = False
    scan: bool = False
    transactional: bool = True
    destructive: bool = False
    incompatible: bool = False
    data_changing: bool = False
    creates: list[str] = field(default_factory=list)
    target: str | None = None

    def lock(self, relation: str, mode: str) -> None:
        old = self.locks.get(relation)
        if old is None or LOCK_RANK[mode] > LOCK_RANK[old]:
            self.locks[relation] = mode
