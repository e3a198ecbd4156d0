"""Data-dependent failures explained: the rows that made a statement fail, counted, with a few shown.

A UNIQUE index or constraint over duplicates, SET NOT NULL (or a primary key) over NULLs, a CHECK or a
foreign key that existing rows violate: from the failing statement we build the query that finds those rows
(e.g. ``SELECT cols, count(*) … GROUP BY cols HAVING count(*) > 1``) and run it, read-only, on the database
as it was before the migration. An ALTER COLUMN … TYPE … [USING …] whose conversion fails on some rows
(22P02 invalid input, 22003 out of range, 22007/22008 bad dates, 22001 too long for varchar(n)): each row is
converted as the ALTER converts it (the USING expression, then an assignment to the new type) inside a
read-only DO block that counts the rows failing with a data exception and keeps the first few with their key.

Usage::

    found = offending_rows(conn, "CREATE UNIQUE INDEX ON users (email)")
    found.summary     # '3 duplicated (email) in users, 7 rows'
    found.examples    # ("email=a@x.io ×3", …)
"""
from __future__ import annotations

import json
from typing import Any, NamedTuple

import psycopg
from pglast import ast, parse_sql
from pglast.enums import AlterTableType, ConstrType
from pglast.parser import ParseError
from pglast.stream import RawStream
from pglast.visitors import Visitor
from psycopg import sql
from pydantic import BaseModel, ConfigDict

EXAMPLES = 3
CAST_EXAMPLES = 5
_CLIP = 40
_CAST_COUNT, _CAST_EXAMPLES = "guardian.cast_failures", "guardian.cast_examples"


class OffendingRows(BaseModel):
    """Rows that violate what a statement asked for; ``examples`` are clipped values, plain text."""

    model_config = ConfigDict(frozen=True)

    problem: str  # duplicates | nulls | check | foreign-key | cast
    table: str
    columns: tuple[str, ...]
    count: int  # offending rows
    groups: int | None = None  # duplicated keys (duplicates only)
    examples: tuple[str, ...] = ()
    query: str  # what found them
    cast_to: str | None = None  # cast: the column's new type

    @property
    def summary(self) -> str:
        cols = ", ".join(self.columns)
        if self.problem == "duplicates":
            return f"{self.groups:,} duplicated ({cols}) in {self.table}, {self.count:,} rows"
        if self.problem == "nulls":
            return f"{self.count:,} rows of {self.table} with {cols} NULL"
        if self.problem == "cast":
            return f"{self.count:,} rows of {self.table} whose {cols} cannot become {self.cast_to}"
        if self.problem == "check":
            return f"{self.count:,} rows of {self.table} violate CHECK ({cols})"
        return f"{self.count:,} rows of {self.table} whose ({cols}) match no referenced row"


def _clip(value: object) -> str:
    text = "NULL" if value is None else str(value)
    text = " ".join(text.split())
    return text if len(text) <= _CLIP else text[: _CLIP - 1] + "…"


def _table(rangevar) -> sql.Composable:
    parts = [p for p in (rangevar.schemaname, rangevar.relname) if p]
    return sql.Identifier(*parts)


def _name(rangevar) -> str:
    return ".".join(p for p in (rangevar.schemaname, rangevar.relname) if p)


class _Cast(NamedTuple):
    """An ALTER COLUMN … TYPE whose conversion is tried row by row (`_cast_failures`)."""

    name: str
    column: str
    table: sql.Composable
    coldef: Any  # pglast's ColumnDef: the new type and the USING expression


def _queries(text: str) -> list[tuple[str, str, tuple[str, ...], sql.Composable, sql.Composable | None] | _Cast]:
    """(problem, table, columns, count query, examples query) for each check the statement implies, or a _Cast."""
    try:
        stmt = parse_sql(text)[0].stmt
    except ParseError:  # an unparsable statement has no rows to find
        return []
    kind = type(stmt).__name__
    if kind == "IndexStmt" and stmt.unique:
        keys = [sql.Identifier(p.name) if p.name else sql.SQL("({})").format(sql.SQL(RawStream()(p.expr)))
                for p in stmt.indexParams]
        names = tuple(p.name or RawStream()(p.expr) for p in stmt.indexParams)
        where = RawStream()(stmt.whereClause) if stmt.whereClause else None
        return [_duplicates(_table(stmt.relation), _name(stmt.relation), keys, names, where,
                            nulls_distinct=not getattr(stmt, "nulls_not_distinct", False))]
    if kind != "AlterTableStmt":
        return []
    out = []
    table, name = _table(stmt.relation), _name(stmt.relation)
    for cmd in stmt.cmds or ():
        if cmd.subtype == AlterTableType.AT_AlterColumnType and type(cmd.def_).__name__ == "ColumnDef":
            out.append(_Cast(name, cmd.name, table, cmd.def_))
        elif cmd.subtype == AlterTableType.AT_SetNotNull:
            out.append(_nulls(table, name, (cmd.name,)))
        elif cmd.subtype == AlterTableType.AT_AddConstraint and type(cmd.def_).__name__ == "Constraint":
            con = cmd.def_
            keys = tuple(k.sval for k in con.keys or ())
            if con.contype in (ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_PRIMARY) and keys:
                out.append(_duplicates(table, name, [sql.Identifier(k) for k in keys], keys, None,
                                       nulls_distinct=True))
                if con.contype == ConstrType.CONSTR_PRIMARY:
                    out.append(_nulls(table, name, keys))
            elif con.contype == ConstrType.CONSTR_CHECK and con.raw_expr is not None:
                expr = RawStream()(con.raw_expr)
                cond = sql.SQL("NOT ({})").format(sql.SQL(expr))  # NULL passes a CHECK, as PostgreSQL judges it
                out.append(("check", name, (expr,), sql.SQL("SELECT count(*) FROM {} WHERE {}").format(table, cond),
                            sql.SQL("SELECT * FROM {} WHERE {} LIMIT {}").format(table, cond, EXAMPLES)))
            elif con.contype == ConstrType.CONSTR_FOREIGN and con.fk_attrs:
                fk = tuple(a.sval for a in con.fk_attrs)
                pk = tuple(a.sval for a in con.pk_attrs or ()) or None
                out.append(_orphans(table, name, fk, _table(con.pktable), pk))
    return out


def _duplicates(table, name, keys, names, predicate: str | None, *, nulls_distinct: bool):
    cols = sql.SQL(", ").join(keys)
    conds = [sql.SQL("({})").format(sql.SQL(predicate))] if predicate else []
    if nulls_distinct:  # NULL keys never collide in a UNIQUE index (unless NULLS NOT DISTINCT)
        conds += [sql.SQL("{} IS NOT NULL").format(k) for k in keys]
    where = sql.SQL(" WHERE {}").format(sql.SQL(" AND ").join(conds)) if conds else sql.SQL("")
    grouped = sql.SQL("SELECT {cols}, count(*) AS n FROM {t}{w} GROUP BY {cols} HAVING count(*) > 1").format(
        cols=cols, t=table, w=where)
    return ("duplicates", name, tuple(names),
            sql.SQL("SELECT count(*), coalesce(sum(n), 0) FROM ({}) d").format(grouped),
            sql.SQL("{} ORDER BY n DESC LIMIT {}").format(grouped, EXAMPLES))


def _nulls(table, name, cols):
    cond = sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(sql.Identifier(c)) for c in cols)
    return ("nulls", name, tuple(cols), sql.SQL("SELECT count(*) FROM {} WHERE {}").format(table, cond),
            sql.SQL("SELECT * FROM {} WHERE {} LIMIT {}").format(table, cond, EXAMPLES))


def _orphans(table, name, fk, parent, pk):
    match = sql.SQL(" AND ").join(
        sql.SQL("p.{} = c.{}").format(sql.Identifier(p), sql.Identifier(f)) for p, f in zip(pk or fk, fk))
    if pk is None:  # REFERENCES parent without columns: its primary key; compare by row to keep it simple
        match = sql.SQL("true")
    present = sql.SQL(" AND ").join(sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(f)) for f in fk)
    cond = sql.SQL("{} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})").format(present, parent, match)
    return ("foreign-key", name, fk, sql.SQL("SELECT count(*) FROM {} c WHERE {}").format(table, cond),
            sql.SQL("SELECT {} FROM {} c WHERE {} LIMIT {}").format(
                sql.SQL(", ").join(sql.SQL("c.{}").format(sql.Identifier(f)) for f in fk), table, cond, EXAMPLES))


def _example(cols: list[str], row: tuple, problem: str) -> str:
    if problem == "duplicates":
        return ", ".join(f"{c}={_clip(v)}" for c, v in zip(cols[:-1], row[:-1])) + f" ×{row[-1]}"
    return ", ".join(f"{c}={_clip(v)}" for c, v in list(zip(cols, row))[:4])


class _Row(Visitor):
    """Column references of a USING expression read from the DO block's loop variable ``r``."""

    def visit_ColumnRef(self, ancestors, node):  # noqa: N802 - pglast's visitor naming
        return ast.ColumnRef(fields=(ast.String(sval="r"), node.fields[-1]))


def _key(conn: psycopg.Connection, table: sql.Composable) -> list[str]:
    """The table's primary key columns, in order (empty without one)."""
    return [r[0] for r in conn.execute(
        """SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
           WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)""",
        (table.as_string(conn),))]


def _cast_failures(conn: psycopg.Connection, table: sql.Composable, column: str,
                   coldef: object) -> tuple[int, tuple[str, ...], str] | None:
    """(rows whose conversion fails, examples, the DO block) for ALTER COLUMN ``column`` TYPE (USING …): each row
    converted as the ALTER does it, a data exception caught per row; run in the caller's read-only transaction."""
    to_type = RawStream()(coldef.typeName)
    using = coldef.raw_default
    expr = RawStream()(_Row()(using)) if using is not None else f"r.{sql.Identifier(column).as_string(conn)}"
    key = _key(conn, table)
    shown = [sql.Identifier(k) for k in key] or [sql.Identifier("guardian_ctid")]
    body = sql.SQL(
        "DECLARE r record; v {to_type}; n bigint := 0; ex text[] := '{{}}';\n"
        "BEGIN\n"
        "  FOR r IN SELECT {ctid}* FROM {table} LOOP\n"
        "    BEGIN\n"
        "      v := {expr};\n"
        "    EXCEPTION WHEN data_exception THEN\n"
        "      n := n + 1;\n"
        "      IF n <= {limit} THEN ex := ex || jsonb_build_array({keys}, r.{column})::text; END IF;\n"
        "    END;\n"
        "  END LOOP;\n"
        "  PERFORM set_config({count_var}, n::text, true);\n"
        "  PERFORM set_config({examples_var}, array_to_json(ex)::text, true);\n"
        "END").format(
        to_type=sql.SQL(to_type), ctid=sql.SQL("" if key else "ctid AS guardian_ctid, "), table=table,
        expr=sql.SQL(expr), limit=CAST_EXAMPLES, keys=sql.SQL(", ").join(sql.SQL("r.{}").format(k) for k in shown),
        column=sql.Identifier(column), count_var=sql.Literal(_CAST_COUNT), examples_var=sql.Literal(_CAST_EXAMPLES),
    ).as_string(conn)
    if "$guardian$" in body:
        return None
    block = f"DO $guardian$\n{body}\n$guardian$"
    conn.execute(block.encode("utf-8"))
    count = int(conn.execute("SELECT current_setting(%s)", (_CAST_COUNT,)).fetchone()[0])
    names = key or ["ctid"]
    examples = tuple(", ".join(f"{c}={_clip(v)}" for c, v in zip([*names, column], json.loads(row)))
                     for row in json.loads(conn.execute("SELECT current_setting(%s)", (_CAST_EXAMPLES,)).fetchone()[0]))
    return count, examples, block


def offending_rows(conn: psycopg.Connection, statement: str, *, timeout: str = "30s") -> tuple[OffendingRows, ...]:
    """The rows that make ``statement`` fail, per check it implies that finds any (read-only, rolled back)."""
    found = []
    for check in _queries(statement):
        try:
            with conn.transaction(force_rollback=True):
                conn.execute("SET LOCAL transaction_read_only = on")
                conn.execute("SELECT set_config('statement_timeout', %s, true)", (timeout,))
                if isinstance(check, _Cast):
                    failures = _cast_failures(conn, check.table, check.column, check.coldef)
                    if failures and failures[0]:
                        found.append(OffendingRows(
                            problem="cast", table=check.name, columns=(check.column,), count=failures[0],
                            examples=failures[1], query=failures[2], cast_to=RawStream()(check.coldef.typeName)))
                    continue
                problem, table, columns, count_q, examples_q = check
                counted = conn.execute(count_q).fetchone()
                if not counted[-1]:
                    continue
                cur = conn.execute(examples_q)
                cols = [d.name for d in cur.description]
                examples = tuple(_example(cols, r, problem) for r in cur.fetchall())
        except psycopg.Error:  # e.g. the table is created earlier in the same migration: nothing to count here
            continue
        groups, count = (counted[0], int(counted[1])) if problem == "duplicates" else (None, counted[0])
        found.append(OffendingRows(problem=problem, table=table, columns=columns, count=count, groups=groups,
                                   examples=examples, query=count_q.as_string(conn)))
    return tuple(found)
