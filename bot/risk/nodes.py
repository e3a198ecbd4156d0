"""Helpers to read libpg_query JSON parse-tree nodes (names, types, expressions)."""
from __future__ import annotations

_TYPE_ALIASES = {
    "int4": "integer", "int8": "bigint", "int2": "smallint", "bool": "boolean",
    "float8": "double precision", "float4": "real", "bpchar": "char", "varchar": "varchar",
    "timestamp": "timestamp", "timestamptz": "timestamptz", "numeric": "numeric",
}

# Built-in functions whose result differs per row (a DEFAULT using them rewrites the table).
VOLATILE_FUNCTIONS = frozenset({
    "random", "gen_random_uuid", "uuid_generate_v1", "uuid_generate_v1mc", "uuid_generate_v4",
    "uuidv4", "uuidv7", "clock_timestamp", "timeofday", "nextval", "setval", "gen_random_bytes",
    "txid_current", "pg_current_xact_id", "random_normal", "currval", "lastval",
})
# Built-ins known to be stable or immutable (cheap as a default on PostgreSQL >= 11).
NONVOLATILE_FUNCTIONS = frozenset({
    "now", "current_timestamp", "transaction_timestamp", "statement_timestamp", "current_date",
    "localtimestamp", "lower", "upper", "coalesce", "to_timestamp", "make_interval", "jsonb_build_object",
    "json_build_object", "jsonb_build_array", "array", "concat", "length", "abs", "round",
    "date_trunc", "to_char", "current_setting", "current_user", "session_user", "timezone",
})


def rv_name(rv: dict | None) -> str:
    """RangeVar -> 'schema.name' (or 'name'), as PostgreSQL folded it."""
    if not rv:
        return "?"
    if "RangeVar" in rv:
        rv = rv["RangeVar"]
    name = rv.get("relname", "?")
    schema = rv.get("schemaname")
    return f"{schema}.{name}" if schema else name


def strings(items: list | None) -> list[str]:
    return [i["String"]["sval"] for i in items or () if "String" in i]


def qualified(items: list | None) -> str:
    return ".".join(strings(items))


def type_name(tn: dict | None) -> str:
    """TypeName -> a short spelling such as 'varchar(20)', 'bigint', 'text[]' (memoised on the node)."""
    if not tn:
        return "?"
    done = tn.get("_spelled")
    if done is None:
        done = tn["_spelled"] = _spell(tn)
    return done


def _spell(tn: dict) -> str:
    names = strings(tn.get("names"))
    base = names[-1] if names else "?"
    if len(names) > 1 and names[0] != "pg_catalog":
        base = ".".join(names)
    base = _TYPE_ALIASES.get(base, base)
    mods = [str(const_value(m)) for m in tn.get("typmods") or ()]
    out = f"{base}({','.join(mods)})" if mods else base
    if tn.get("arrayBounds"):
        out += "[]"
    return out


def const_value(node: dict):
    """A_Const -> python value (or None)."""
    c = node.get("A_Const") if isinstance(node, dict) else None
    if not c:
        return None
    for key in ("ival", "sval", "fval", "boolval"):
        if key in c:
            v = c[key]
            return v.get(key, 0 if key == "ival" else False if key == "boolval" else "") if isinstance(v, dict) else v
    return None


# Node types that hold no table reference, function call or expression: walk(node, wanted) does not
# look inside them.
_LEAVES = frozenset({"A_Const", "ColumnRef", "String", "Integer", "Float", "Boolean", "BitString", "ParamRef",
                     "A_Star", "TypeName", "SetToDefault"})


def walk(node, wanted: frozenset[str] | None = None) -> list[tuple[str, dict]]:
    """Depth-first (node type, body) pairs of every typed node under `node`; with `wanted`, only the
    nodes of those types, and constants, column references and type names are not looked into (a
    quicker walk for a big INSERT ... SELECT)."""
    out = []
    stack = [node]
    pop, push, extend, append = stack.pop, stack.append, stack.extend, out.append
    skip = _LEAVES.difference(wanted) if wanted is not None else ()
    while stack:
        cur = pop()
        if type(cur) is dict:
            for k, v in cur.items():
                tv = type(v)
                if tv is dict:
                    if wanted is None:
                        if "A" <= k[0] <= "Z":
                            append((k, v))
                    elif k in wanted:
                        append((k, v))
                    elif k in skip:
                        continue
                    push(v)
                elif tv is list:
                    extend(v)
        elif type(cur) is list:
            extend(cur)
    return out


def func_names(expr) -> list[str]:
    out = []
    for kind, body in walk({"x": expr}):
        if kind == "FuncCall":
            names = strings(body.get("funcname"))
            if names:
                out.append(names[-1].lower())
    return out


def volatility(expr, known: dict[str, str]) -> str:
    """'volatile', 'unknown' (a function we cannot classify) or 'stable' for a default expression."""
    verdict = "stable"
    if _bad_arity(expr):
        return "unknown"
    for name in func_names(expr):
        v = known.get(name)
        if v:
            if v.startswith("v"):
                return "volatile"
            continue
        if name in VOLATILE_FUNCTIONS:
            return "volatile"
        if name not in NONVOLATILE_FUNCTIONS:
            verdict = "unknown"
    return verdict


_NO_ARGS = frozenset({"now", "transaction_timestamp", "statement_timestamp", "clock_timestamp", "timeofday",
                      "gen_random_uuid", "random"})


def _bad_arity(expr) -> bool:
    """A call such as now(123): no built-in of that name takes arguments, so it is some other function."""
    fc = expr.get("FuncCall") if isinstance(expr, dict) else None
    if not fc:
        return False
    names = strings(fc.get("funcname"))
    return bool(names) and names[-1] in _NO_ARGS and bool(fc.get("args"))


def column_constraints(coldef: dict) -> list[dict]:
    return [c["Constraint"] for c in coldef.get("constraints") or () if "Constraint" in c]


def def_names(options: list | None) -> dict[str, object]:
    out = {}
    for o in options or ():
        d = o.get("DefElem")
        if d:
            arg = d.get("arg")
            if arg and "A_Const" in arg:
                arg = const_value(arg)
            elif arg and "String" in arg:
                arg = arg["String"]["sval"]
            elif arg and "Integer" in arg:
                arg = arg["Integer"].get("ival", 0)
            out[d.get("defname", "")] = True if arg is None else arg
    return out



def column_refs(node) -> list[str]:
    """The column names an expression (or a query) refers to, in order, "*" for a star.

    >>> column_refs({"FuncCall": {"args": [{"ColumnRef": {"fields": [{"String": {"sval": "email"}}]}}]}})
    ['email']
    """
    out = []
    for kind, body in walk({"x": node}):
        if kind == "ColumnRef":
            fields = body.get("fields") or ()
            if fields and "A_Star" in fields[-1]:
                out.append("*")
            else:
                out.extend(strings(fields)[-1:])
    return out


def const_null(expr: dict | None) -> bool:
    """No expression, or the NULL constant (DEFAULT NULL adds nothing to the rows)."""
    return expr is None or ("A_Const" in expr and bool(expr["A_Const"].get("isnull")))
