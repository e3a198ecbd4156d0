"""Rule families: each module holds its RULES records and one `check(stmt, state)` generator."""
from __future__ import annotations

from typing import Callable, Iterator, NamedTuple

from ..models import Rule, Severity


class Hit(NamedTuple):
    """A rule firing on a statement; `relation` lets the engine scale severity by table size."""

    code: str
    message: str
    relation: str | None = None
    severity: Severity | None = None  # override the rule's default (e.g. version-dependent)
    item: dict | None = None  # the part of the statement it is about (a subcommand, a constraint): for the fix


def rule(family: str) -> Callable[..., Rule]:
    def make(*, code: str, name: str, severity: str, summary: str, why: str, fix: str, bad: str, good: str,
             hazards: tuple[int, ...] = (), size: bool = False, default: bool = True, pg: int | None = None) -> Rule:
        return Rule(code=code, name=name, family=family, severity=Severity(severity), summary=summary,
                    why=why, fix=fix, bad=bad, good=good, hazards=hazards, size_sensitive=size,
                    default_enabled=default, example_pg_version=pg)
    return make


CheckFn = Callable[..., Iterator[Hit]]
