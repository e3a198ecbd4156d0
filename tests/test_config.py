"""Configuration errors are one clear line naming the file, the key and what is expected."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import load_config, load_settings, parse_duration
from bot.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "guardian.toml"
    path.write_text(text)
    return path


def test_example_config_is_valid():
    config = load_config(REPO / "guardian.example.toml", required=True)
    assert set(config.environments) >= {"staging", "production"}
    assert config.environments["production"].requires == ["staging"]
    assert config.environment("staging").name == "staging"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[environments.staging\n", "invalid TOML"),
        ('[environments.staging]\ndatabase_url_env = "postgres://u:pw@h/db"\n',
         "environments.staging.database_url_env: expected the NAME of an environment variable"),
        ('[environments.staging]\ndatabase_url_env = "X"\nlock_timeout = "3 sec"\n',
         "environments.staging.lock_timeout: expected a duration"),
        ('[environments.staging]\ndatabase_url_env = "X"\napprovers = "U1"\n',
         "environments.staging.approvers"),
        ('[project]\nlayot = "prisma"\n', "project.layot: unknown key"),
        ('[project]\nlayout = "flyway"\n', "project.layout"),
        ('[environments.production]\ndatabase_url_env = "X"\nrequires = ["staging"]\n',
         "names 'staging', which is not a configured environment"),
        ('[lint]\nenabled = ["no-such-rule"]\n', "lint.enabled: unknown rule 'no-such-rule' (codes and names are listed in docs/rules.md)"),
    ],
)
def test_malformed_config_is_one_line_naming_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert expected in message
    assert "pw@" not in message


def test_unknown_environment_lists_known(tmp_path):
    config = load_config(write(tmp_path, '[environments.staging]\ndatabase_url_env = "X"\n'))
    with pytest.raises(ConfigError, match="unknown environment 'prod'; known: staging"):
        config.environment("prod")


def test_database_url_comes_from_the_named_variable(tmp_path, monkeypatch):
    config = load_config(write(tmp_path, '[environments.staging]\ndatabase_url_env = "GT_STAGING_URL"\n'))
    monkeypatch.delenv("GT_STAGING_URL", raising=False)
    with pytest.raises(ConfigError, match="GT_STAGING_URL is not set"):
        config.environment("staging").database_url()
    monkeypatch.setenv("GT_STAGING_URL", "postgresql://u:secret@h/db")
    url = config.environment("staging").database_url()
    assert "secret" not in repr(url) and url.get_secret_value().endswith("@h/db")


def test_missing_signing_secret_is_one_line(monkeypatch):
    monkeypatch.delenv("SLACK_SIGNING_SECRET", raising=False)
    with pytest.raises(ConfigError) as info:
        load_settings().require("slack_signing_secret")
    assert str(info.value).count("\n") == 0
    assert "SLACK_SIGNING_SECRET" in str(info.value)


@pytest.mark.parametrize(("text", "seconds"), [("3s", 3), ("15min", 900), ("250ms", 0.25), ("2h", 7200), ("7d", 604800)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_cli_reports_bad_config_without_traceback(tmp_path):
    path = write(tmp_path, "[environments.staging\n")
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "status"],
        env={"GUARDIAN_CONFIG": str(path), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and "invalid TOML" in lines[0]


def test_every_commented_option_in_the_example_is_valid(tmp_path, monkeypatch):
    import re

    text = (REPO / "guardian.example.toml").read_text()
    uncommented = "\n".join(re.sub(r"^# (?=\[|[a-z_]+ = )", "", line) for line in text.splitlines())
    assert uncommented != text
    config = load_config(write(tmp_path, uncommented), required=True)
    staging = config.environments["staging"]
    assert staging.rls_probes[0].expect_rows == 3 and staging.rehearsal_database_url_env
    assert (staging.incident_notes, staging.incident_managers, staging.incident_responders) == (
        "anyone", "approvers_and_requester", ["S0ONCALL"])
    assert config.webhooks[0].wants("incident.opened") and not config.webhooks[0].wants("decision.approve")
    assert config.environments["production"].maintenance_windows[0].days == ["tue", "wed", "thu"]


def test_lint_rules_are_given_by_code_or_name_and_kept_as_codes(tmp_path):
    config = load_config(write(tmp_path, '[lint]\nenabled = ["naming-convention"]\ndisabled = ["mg101"]\n'))
    assert config.lint.enabled == ["MG921"] and config.lint.disabled == ["MG101"]


def test_incident_permission_keys_default_and_are_validated(tmp_path):
    base = '[environments.staging]\ndatabase_url_env = "STAGING_DATABASE_URL"\n'
    staging = load_config(write(tmp_path, base)).environments["staging"]
    assert (staging.incident_notes, staging.incident_managers, staging.incident_responders) == (
        "anyone", "approvers_and_requester", [])
    set_ = load_config(write(tmp_path, base + 'incident_notes = "approvers"\nincident_managers = "approvers"\n'
                                             'incident_responders = ["U0SRE", "S0ONCALL"]\n')).environments["staging"]
    assert (set_.incident_notes, set_.incident_managers, set_.incident_responders) == (
        "approvers", "approvers", ["U0SRE", "S0ONCALL"])
    path = write(tmp_path, base + 'incident_notes = "everyone"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in info.value.message and "environments.staging.incident_notes" in info.value.message
    assert "'anyone'" in info.value.message
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, base + 'incident_responders = ["@alice"]\n'))
    assert "environments.staging.incident_responders" in info.value.message and "'@alice'" in info.value.message
