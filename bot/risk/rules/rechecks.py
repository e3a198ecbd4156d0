"""Type changes on columns that CHECK constraints use: the constraints are re-checked under the table lock."""
from __future__ import annotations

from typing import Iterator

from ..nodes import column_refs, rv_name
from ..state import State, Stmt
from . import Hit, rule

R = rule("rechecks")
RULES = (
    R(code="MG901", name="type-change-rechecks-check", severity="high",
      summary="ALTER COLUMN ... TYPE on a column a CHECK constraint uses re-checks every row under ACCESS EXCLUSIVE.",
      why="PostgreSQL re-creates the constraints that depend on the column and validates each CHECK again against "
          "the whole table while the type change holds ACCESS EXCLUSIVE: reads and writes wait for a full scan, "
          "even when the new type is binary-coercible and nothing is rewritten. A NOT VALID CHECK is re-created "
          "NOT VALID and not re-checked.",
      fix="ALTER TABLE acct DROP CONSTRAINT acct_bal_pos;\nALTER TABLE acct ALTER COLUMN bal TYPE bigint;\n"
          "ALTER TABLE acct ADD CONSTRAINT acct_bal_pos CHECK (bal >= 0) NOT VALID;\n"
          "-- separate transaction (SHARE UPDATE EXCLUSIVE only, writes continue):\n"
          "ALTER TABLE acct VALIDATE CONSTRAINT acct_bal_pos;",
      bad="ALTER TABLE acct ADD CONSTRAINT acct_bal_pos CHECK (bal >= 0);\nALTER TABLE acct ALTER COLUMN bal TYPE bigint;",
      good="ALTER TABLE acct DROP CONSTRAINT acct_bal_pos;\nALTER TABLE acct ALTER COLUMN bal TYPE bigint;\n"
           "ALTER TABLE acct ADD CONSTRAINT acct_bal_pos CHECK (bal >= 0) NOT VALID;", hazards=(27,), size=True),
)

# check() reads State.checks (the CHECK constraints this file added, validated or dropped), which the engine's
# state update keeps with checks_after() below, so it runs in the in-order pass.
STATELESS = False

# Statement types this family looks at (None: all).
TYPES: frozenset[str] | None = frozenset({"AlterTableStmt"})


def check(s: Stmt, st: State) -> Iterator[Hit]:
    found = _changes(s.raw.node)
    if found is None or not found[1]:
        return
    relation, retyped, dropped, _ = found
    if st.is_new(relation):
        return
    table = _table(relation)
    known = _after_drops(st.checks.get(table), dropped, relation, st)
    short = table.rsplit(".", 1)[-1]
    for col in retyped:
        yield from _rechecked(relation, short, col, known, st)


def checks_after(s: Stmt, st: State) -> tuple[str, dict] | None:
    """(table, its entry of State.checks after this statement), or None when the statement leaves State.checks
    as it is. Pure (a new dict, never State's own): the engine's state update (bot/risk/update.py) stores it.

    PostgreSQL runs an ALTER TABLE's drops first, then its type changes, then its additions."""
    found = _changes(s.raw.node)
    if found is None:
        return None
    relation, _, dropped, added = found
    table = _table(relation)
    before = st.checks.get(table)
    known = _after_drops(before, dropped, relation, st)
    short = table.rsplit(".", 1)[-1]
    for cmd in added:
        if known is None:
            if cmd.get("subtype") == "AT_ValidateConstraint":
                continue  # not a CHECK this file added NOT VALID
            known = {}
        elif known is before:
            known = dict(before)
        _remember(cmd, short, known)
    return None if known is before else (table, known)


def _changes(n: dict) -> tuple[str, list[str], list[str], list[dict]] | None:
    """(relation, columns retyped, constraints dropped, CHECKs added or validated) of an ALTER TABLE, None when
    it does none of these."""
    retyped, dropped, added = [], [], []
    for item in n.get("cmds") or ():
        cmd = item["AlterTableCmd"]
        sub = cmd.get("subtype")
        if sub == "AT_AddConstraint":  # the common case (foreign keys): only a CHECK matters
            if (cmd.get("def") or {}).get("Constraint", {}).get("contype") == "CONSTR_CHECK":
                added.append(cmd)
        elif sub == "AT_DropConstraint":
            dropped.append(cmd.get("name") or "")
        elif sub == "AT_AlterColumnType":
            retyped.append(cmd.get("name") or "")
        elif sub == "AT_ValidateConstraint" or (sub == "AT_AddColumn" and _column_check(cmd)):
            added.append(cmd)
    if not (retyped or dropped or added) or n.get("objtype", "OBJECT_TABLE") != "OBJECT_TABLE":
        return None
    return rv_name(n.get("relation")), retyped, dropped, added


def _table(relation: str) -> str:
    return relation[7:] if relation.startswith("public.") else relation


def _after_drops(known: dict | None, dropped: list[str], relation: str, st: State) -> dict | None:
    """The file's CHECKs on the table once the statement's drops ran (a new dict when they change it). Drops
    matter only where a CHECK is known: added in this file, or in the target (the context)."""
    if not dropped or (known is None and not _target_checks(relation, st)):
        return known
    known = dict(known) if known is not None else {}
    for name in dropped:
        if known.get(name) is not None:
            del known[name]  # added by this file: gone again
        else:
            known[name] = None  # perhaps one the target has
    return known


def _column_check(cmd: dict) -> bool:
    """Does this ADD COLUMN define a CHECK?"""
    cons = ((cmd.get("def") or {}).get("ColumnDef") or {}).get("constraints")
    return bool(cons) and any(c.get("Constraint", {}).get("contype") == "CONSTR_CHECK" for c in cons)


def _target_checks(relation: str, st: State) -> tuple[str, ...]:
    if not st.ctx.tables:
        return ()
    stats = st.stats(relation)
    return stats.checks if stats is not None else ()


def _rechecked(relation: str, short: str, col: str, known: dict | None, st: State) -> Iterator[Hit]:
    for name, value in (known or {}).items():
        if value is not None and value[1] and col in value[0]:
            yield Hit("MG901", f"CHECK {name} uses {relation}.{col}: the type change re-checks it against every row "
                      "while ACCESS EXCLUSIVE is held, even if the table is not rewritten.", relation)
            return
    facts = st.facts(relation)
    if facts is not None:  # the catalog names the validated CHECKs; a drop earlier in this file removes one
        names = [c.name for c in facts.constraints if c.kind == "check" and c.validated and col in c.columns
                 and (known or {}).get(c.name, ()) is not None]
        if names:
            yield Hit("MG901", f"CHECK {', '.join(names)} uses {relation}.{col}: the type change re-checks "
                      f"{'it' if len(names) == 1 else 'them'} against every row while ACCESS EXCLUSIVE is held, even "
                      "if the table is not rewritten.", relation)
        return
    checks = _target_checks(relation, st)
    if col not in checks:
        return
    # The target knows the columns its CHECKs use, not their names: a constraint this file dropped that is
    # not the default-named CHECK of another column may have been this column's.
    others = {f"{short}_{c}_check" for c in checks if c != col}
    if known and any(value is None and name not in others for name, value in known.items()):
        return
    yield Hit("MG901", f"{relation}.{col} is used by a CHECK constraint in the target: the type change re-checks it "
              "against every row while ACCESS EXCLUSIVE is held, even if the table is not rewritten.", relation)


def _remember(cmd: dict, short: str, known: dict) -> None:
    sub = cmd.get("subtype")
    if sub == "AT_ValidateConstraint":
        value = known.get(cmd.get("name") or "")
        if value is not None:
            known[cmd["name"]] = (value[0], True)
        return
    d = cmd.get("def") or {}
    if sub == "AT_AddColumn":
        coldef = d.get("ColumnDef") or {}
        cons = [c["Constraint"] for c in coldef.get("constraints") or () if "Constraint" in c]
        default = f"{short}_{coldef.get('colname')}_check"
    else:
        cons = [d["Constraint"]] if "Constraint" in d else []
        default = None
    for c in cons:
        if c.get("contype") != "CONSTR_CHECK":
            continue
        cols = tuple(dict.fromkeys(col for col in column_refs(c.get("raw_expr")) if col != "*"))
        # PostgreSQL names an unnamed CHECK <table>_<first column>_check
        name = c.get("conname") or default or (f"{short}_{cols[0]}_check" if cols else f"{short}_check")
        known[name] = (cols, not c.get("skip_validation"))
