"""[environments.<name>.fleet]: the keys as the issue writes them, and a clear error for each bad value."""
from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import FleetConfig, load_config
from bot.errors import ConfigError
from bot.fleet import wave_numbers

FULL = """
[project]
layout = "prisma"
[environments.tenants]
database_url_env = "TENANTS_DATABASE_URL"
approvers = ["S0DBAS"]
[environments.tenants.fleet]
schemas = "tenant_*"
canary = 1
wave = 25
parallel = 8
per_server = 4
halt_after_failures = 1
health_query = "SELECT count(*) = 0 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
pause = "30s"
"""


def _load(tmp_path: Path, text: str):
    path = tmp_path / "guardian.toml"
    path.write_text(text)
    return load_config(path, required=True)


def test_the_issue_example_loads_with_every_key(tmp_path: Path) -> None:
    fleet = _load(tmp_path, FULL).environment("tenants").fleet
    assert (fleet.schemas, fleet.canary, fleet.wave, fleet.parallel, fleet.per_server,
            fleet.halt_after_failures, fleet.pause_s) == ("tenant_*", 1, 25, 8, 4, 1, 30.0)
    assert "pg_stat_activity" in fleet.health_query


def test_database_per_tenant_by_query_or_url_envs(tmp_path: Path) -> None:
    by_query = FULL.replace('schemas = "tenant_*"', 'query = "SELECT name, url_env FROM tenants WHERE active"')
    assert _load(tmp_path, by_query).environment("tenants").fleet.query.startswith("SELECT name")
    listed = FULL.replace('schemas = "tenant_*"', 'url_envs = ["SHARD_1_URL", "SHARD_2_URL"]')
    assert _load(tmp_path, listed).environment("tenants").fleet.url_envs == ["SHARD_1_URL", "SHARD_2_URL"]


@pytest.mark.parametrize("change, words", [
    (('schemas = "tenant_*"', 'schemas = "tenant_*"\nurl_envs = ["A_URL"]'), "name the targets one way"),
    (('schemas = "tenant_*"', ''), "got none"),
    (('schemas = "tenant_*"', 'url_envs = ["postgresql://u:pw@h/db"]'), "NAMES of environment variables"),
    (('schemas = "tenant_*"', 'schemas = "tenant; DROP"'), "schema glob"),
    (("wave = 25", 'wave = "ten%"'), "share of the targets"),
    (("wave = 25", 'wave = "150%"'), "up to 100%"),
    (("wave = 25", "wave = 0"), "at least 1"),
    (("parallel = 8", "parallel = 0"), "fleet.parallel"),
    (('pause = "30s"', 'pause = "soon"'), "duration"),
    (("canary = 1", "canary = 1\nwaves = 3"), "unknown key"),
])
def test_bad_fleet_values_say_what_is_wrong(tmp_path: Path, change: tuple[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, FULL.replace(*change))
    assert words in str(exc.value)
    assert "environments.tenants.fleet" in str(exc.value)
    assert "pw@" not in str(exc.value)


def test_schema_per_tenant_needs_a_ledger_per_schema(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, FULL.replace('layout = "prisma"', 'layout = "sql"'))
    assert "only the prisma layout keeps" in str(exc.value) and "use query or url_envs" in str(exc.value)


def test_waves_canary_alone_then_counts_or_shares() -> None:
    assert wave_numbers(7, FleetConfig(schemas="t_*", canary=1, wave=3)) == [0, 1, 1, 1, 2, 2, 2]
    assert wave_numbers(11, FleetConfig(schemas="t_*", canary=1, wave="25%")) == [0] + [1] * 3 + [2] * 3 + [3] * 3 + [4]
    assert wave_numbers(2, FleetConfig(schemas="t_*", canary=5, wave=2)) == [0, 0]
    assert wave_numbers(0, FleetConfig(schemas="t_*")) == []
