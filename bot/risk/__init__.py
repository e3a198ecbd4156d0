"""Pure migration risk analysis: `analyze(sql, context) -> Report` (no I/O, no clock, no settings).

The names below are loaded on first use, so `import bot.risk.parse` (pglast only) does not pull in
the models and rule catalogue (pydantic): `guardian lint` starts parsing a big file while those load.
"""
from importlib import import_module

__all__ = ["analyze", "Context", "Finding", "Lock", "Report", "Rule", "RULES", "Severity", "StatementInfo",
           "TableStats", "lookup", "rule_codes", "transactional",
           "transaction_refusal"]
_WHERE = {"RULES": ".catalogue", "lookup": ".catalogue", "rule_codes": ".catalogue", "analyze": ".engine",
          "transactional": ".locks", "transaction_refusal": ".locks", **{
    name: ".models" for name in ("Context", "Finding", "Lock", "Report", "Rule", "Severity", "StatementInfo",
                                 "TableStats")}}


def __getattr__(name: str):
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(where, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
