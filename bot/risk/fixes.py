"""Tailored fixes: the safe recipe for one finding, written with the statement's own names.

Every finding's `fix` is a small SQL script: prose as `--` comments, statements that parse. The SQL
names only what the statement names (quoted as the file quotes it, schema-qualified as the file
qualifies it) and names derived from those the way PostgreSQL derives them (`<table>_<cols>_idx`,
`_key`, `_fkey`, `_pkey`, `_not_null`, clipped to 63 bytes). Where the recipe needs more than one
migration each file is shown separately with the reason; for Prisma a file holding a CONCURRENTLY
statement is its own migration folder. A rule without a tailored recipe gets its advice as comments
(no SQL that could name someone else's table).

    >>> from bot.risk import analyze
    >>> print(analyze('CREATE INDEX ON "User" ("email");').findings[0].fix.splitlines()[1])
    CREATE INDEX CONCURRENTLY IF NOT EXISTS "User_email_idx" ON "User" ("email");
"""
from __future__ import annotations

import re
from typing import Callable

from pglast.keywords import RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS

from .nodes import const_value, rv_name, strings

NAMEDATALEN = 64
_PLAIN = re.compile(r"^[a-z_][a-z0-9_$]*$")
_KEYWORDS = frozenset(RESERVED_KEYWORDS) | frozenset(TYPE_FUNC_NAME_KEYWORDS)
_SQL_LINE = re.compile(r"^\s*(ALTER|CREATE|DROP|UPDATE|DELETE|INSERT|SELECT|SET|REINDEX|BEGIN|COMMIT|VACUUM|"
                       r"CLUSTER|REFRESH|TRUNCATE|LOCK|GRANT|REVOKE|--)\b", re.IGNORECASE)


def make_object_name(name1: str, name2: str | None, label: str | None) -> str:
    """PostgreSQL's makeObjectName: name1_name2_label, name1 and name2 clipped (longest first) to 63 bytes.

    >>> make_object_name("users", "email", "idx")
    'users_email_idx'
    >>> len(make_object_name("a" * 60, "b" * 30, "fkey").encode())
    63
    """
    b1, b2 = name1.encode(), (name2 or "").encode()
    overhead = (len(label) + 1 if label else 0) + (1 if name2 else 0)
    avail = NAMEDATALEN - 1 - overhead
    n1, n2 = len(b1), len(b2)
    while n1 + n2 > avail:
        if n1 > n2:
            n1 -= 1
        else:
            n2 -= 1
    parts = [_clip(b1, n1)]
    if name2:
        parts.append(_clip(b2, n2))
    if label:
        parts.append(label)
    return "_".join(parts)


def _clip(b: bytes, n: int) -> str:
    return b[:n].decode("utf-8", "ignore")  # never cut a multibyte character in half (pg_mbcliplen)


class Names:
    """Quotes identifiers the way the statement's file quotes them."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def q(self, name: str) -> str:
        if not _PLAIN.match(name) or name in _KEYWORDS or f'"{name}"' in self.text:
            return '"' + name.replace('"', '""') + '"'
        return name

    def rel(self, rv: dict | None) -> str:
        if rv and "RangeVar" in rv:
            rv = rv["RangeVar"]
        if not rv:
            return "?"
        name = self.q(rv.get("relname", "?"))
        return f"{self.q(rv['schemaname'])}.{name}" if rv.get("schemaname") else name

    def cols(self, cols: list[str] | tuple[str, ...]) -> str:
        return ", ".join(self.q(c) for c in cols)

    def qualified(self, items: list[str]) -> str:
        return ".".join(self.q(i) for i in items)

    def typ(self, tn: dict | None) -> str:
        """A column type as SQL: built-ins by their usual spelling, user types quoted as the file does."""
        if not tn:
            return "?"
        names = strings(tn.get("names"))
        if names[:1] == ["pg_catalog"]:
            base = _BUILTIN.get(names[-1], names[-1])
        else:
            base = ".".join(self.q(x) if x.lower() not in _BUILTIN_NAMES else x for x in names)
        mods = [str(const_value(m)) for m in tn.get("typmods") or ()]
        out = f"{base}({','.join(mods)})" if mods else base
        return out + "[]" * len(tn.get("arrayBounds") or ())


_BUILTIN = {"int4": "integer", "int8": "bigint", "int2": "smallint", "bool": "boolean", "float8": "double precision",
            "float4": "real", "bpchar": "char", "varchar": "varchar", "timestamptz": "timestamptz",
            "timestamp": "timestamp", "numeric": "numeric", "interval": "interval", "time": "time", "timetz": "timetz",
            "bit": "bit", "varbit": "varbit"}
_BUILTIN_NAMES = frozenset({"text", "uuid", "jsonb", "json", "date", "citext", "bytea", "inet", "cidr", "money",
                            "tsvector", "xml", "serial", "bigserial", "smallserial", "int", "integer", "bigint",
                            "smallint", "boolean", "real", "decimal", "numeric", "varchar", "char"})


def derived_table(rv: dict | None) -> str:
    """The relation name PostgreSQL uses in derived names: the name without its schema."""
    if rv and "RangeVar" in rv:
        rv = rv["RangeVar"]
    return (rv or {}).get("relname", "t")


def index_name(table: str, cols: list[str], unique: bool = False, primary: bool = False) -> str:
    """ChooseIndexName: `<table>_pkey`, `<table>_<cols>_key` (constraint) or `<table>_<cols>_idx`."""
    if primary:
        return make_object_name(table, None, "pkey")
    return make_object_name(table, "_".join(cols) or "expr", "key" if unique else "idx")


class Recipe:
    """The lines of one fix: comments and statements, with migration files numbered."""

    def __init__(self, prisma: bool) -> None:
        self.lines: list[str] = []
        self.prisma = prisma
        self.files = 0

    def say(self, text: str) -> "Recipe":
        self.lines += ["-- " + line if line else "--" for line in text.splitlines()]
        return self

    def sql(self, *statements: str) -> "Recipe":
        self.lines += [s.rstrip().rstrip(";") + ";" for s in statements]
        return self

    def file(self, why: str, alone: bool = False) -> "Recipe":
        """Start the next migration file of a multi-migration recipe; `alone`: it must hold only its
        statement (CONCURRENTLY cannot run in a transaction)."""
        self.files += 1
        where = "a separate, later migration file"
        if alone:
            where = ("a new migration folder holding only this statement, because Prisma runs a multi-statement "
                     "file as one transaction, where CONCURRENTLY fails" if self.prisma
                     else "a migration file holding only this statement, because it cannot run inside a "
                          "transaction")
        head = "this migration" if self.files == 1 and not alone else where
        return self.say(f"Migration {self.files}, {head}: {why}.")

    def text(self) -> str:
        return "\n".join(self.lines)


def body(text: str) -> str:
    """The statement's text without its trailing semicolon."""
    return text.strip().rstrip(";").rstrip()


_CREATE_INDEX = re.compile(r"^(\s*CREATE\s+(?:UNIQUE\s+)?INDEX)(\s+CONCURRENTLY)?(\s+IF\s+NOT\s+EXISTS)?",
                           re.IGNORECASE)
_ON = re.compile(r"\s+ON\s+", re.IGNORECASE)


def online_index(text: str, n: dict, names: Names) -> tuple[str, str]:
    """(CREATE INDEX CONCURRENTLY IF NOT EXISTS ..., its name) from a CREATE INDEX statement's own text."""
    table = derived_table(n.get("relation"))
    name = n.get("idxname") or index_name(table, _index_cols(n))
    sql = body(text)
    m = _CREATE_INDEX.match(sql)
    if sql and m:
        rest = sql[m.end():]
        if not n.get("idxname"):
            on = _ON.search(rest)
            rest = f" {names.q(name)}" + rest[on.start():] if on and not rest[:on.start()].strip() else rest
        return f"{m.group(1)} CONCURRENTLY IF NOT EXISTS{rest}", name
    unique = "UNIQUE " if n.get("unique") else ""
    cols = _index_cols(n)
    return (f"CREATE {unique}INDEX CONCURRENTLY IF NOT EXISTS {names.q(name)} ON {names.rel(n.get('relation'))} "
            f"({names.cols(cols)})", name)


def _index_cols(n: dict) -> list[str]:
    out = []
    for p in n.get("indexParams") or ():
        e = p.get("IndexElem", {})
        if e.get("name"):
            out.append(e["name"])
        else:
            fc = (e.get("expr") or {}).get("FuncCall")
            out.append(strings(fc.get("funcname"))[-1] if fc else "expr")
    return out


FixFn = Callable[..., "str | None"]


def advice(fix: str) -> str:
    """A rule's generic recipe reduced to its prose, as comments: its example SQL names example tables."""
    kept = []
    for line in fix.splitlines():
        if _SQL_LINE.match(line):
            continue
        line = re.split(r"(?<=[:;])\s+(?=(ALTER|CREATE|DROP|UPDATE|SELECT|SET|REINDEX|name|CREATE)\b)", line)[0]
        line = re.sub(r"\s*\([^)]*\b(SELECT|ALTER|CREATE|DROP)\b[^)]*\)", "", line).strip()
        if line:
            kept.append(line.rstrip(":") + ("" if line.endswith((".", ":")) else "."))
    return "\n".join("-- " + k for k in kept) or "-- See docs/rules.md for the safe recipe."


_LABELS = ("idx", "key", "fkey", "pkey", "not_null", "seq", "new", "old", "check", "excl")
_NAME_KEYS = frozenset({"relname", "schemaname", "idxname", "conname", "indexname", "colname", "subname", "newname"})


def names_in(sql: str) -> set[str]:
    """The object names (relations, columns, indexes, constraints) a piece of SQL mentions; ValueError
    when it does not parse."""
    import json

    from pglast import parser

    try:
        tree = json.loads(parser.parse_sql_json(sql))
    except parser.ParseError as exc:
        raise ValueError(str(exc)) from None
    out: set[str] = set()

    def walk(node, parent: str = "") -> None:
        if isinstance(node, dict):
            if "VariableSetStmt" in node:
                return
            for k, v in node.items():
                if k in _NAME_KEYS and isinstance(v, str):
                    out.add(v)
                elif k == "name" and isinstance(v, str) and parent in ("AlterTableCmd", "IndexElem"):
                    out.add(v)
                elif k in ("fields", "objects", "fk_attrs", "pk_attrs", "keys") and isinstance(v, list):
                    out.update(_svals(v))
                    walk(v, k)
                else:
                    walk(v, k)
        elif isinstance(node, list):
            for x in node:
                walk(x, parent)

    walk(tree)
    return out


def _svals(v) -> list[str]:
    found: list[str] = []
    if isinstance(v, dict):
        if "String" in v and isinstance(v["String"], dict):
            found.append(v["String"].get("sval", ""))
        else:
            for x in v.values():
                found += _svals(x)
    elif isinstance(v, list):
        for x in v:
            found += _svals(x)
    return found


def statement_words(sql: str) -> set[str]:
    """Every string in a statement's parse tree (names, values): what a fix may name or derive from."""
    import json

    from pglast import parser

    out: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for x in node:
                walk(x)
        elif isinstance(node, str):
            out.add(node)

    walk(json.loads(parser.parse_sql_json(sql)))
    return out


def foreign_names(fix: str, statement_sql: str) -> list[str]:
    """The names in the SQL of `fix` that are neither in the statement nor derived from its names the way
    PostgreSQL derives them (`<table>_<columns>_<label>`, clipped): what a tailored fix must never show.

    >>> foreign_names('CREATE INDEX CONCURRENTLY "User_email_idx" ON "User" ("email");', 'CREATE INDEX ON "User"(email)')
    []
    >>> foreign_names("CREATE INDEX CONCURRENTLY idx ON t (c);", 'CREATE INDEX ON "User"(email)')
    ['c', 'idx', 't']
    """
    words = statement_words(statement_sql)
    tokens = {tok for w in words for tok in w.split("_") if tok}
    return sorted(n for n in names_in(fix) if n not in words and not _derived(n, words, tokens))


def _derived(name: str, words: set[str], tokens: set[str]) -> bool:
    for label in _LABELS:
        if name.endswith("_" + label):
            stem = name[: -len(label) - 1]
            if stem in words:
                return True
            parts = [p for p in stem.split("_") if p]
            if parts and all(p in tokens for p in parts[:-1]) and any(t.startswith(parts[-1]) for t in tokens):
                return True
            # makeObjectName clips the table name and the column part separately: <table[:n]>_<cols[:m]>
            for i, ch in enumerate(stem):
                if ch == "_" and any(w.startswith(stem[:i]) for w in words):
                    right = [p for p in stem[i + 1:].split("_") if p]
                    if right and all(p in tokens for p in right[:-1]) and any(t.startswith(right[-1]) for t in tokens):
                        return True
    return False


__all__ = ["Names", "Recipe", "advice", "body", "derived_table", "index_name", "make_object_name", "online_index",
           "foreign_names", "names_in", "rv_name"]
