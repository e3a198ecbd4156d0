"""The installed package's version, as `guardian --version` prints it.

Usage::

    version()   # -> "0.2.0"
"""
from __future__ import annotations

import re
from pathlib import Path

DISTRIBUTION = "migration-guardian"


def version() -> str:
    """The version pip recorded for migration-guardian; from a checkout that was never installed, pyproject.toml's."""
    from importlib.metadata import PackageNotFoundError, version as installed  # only when asked: lint starts without it

    try:
        return installed(DISTRIBUTION)
    except PackageNotFoundError:
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        found = re.search(r'(?m)^version\s*=\s*"([^"]+)"', pyproject.read_text("utf-8")) if pyproject.is_file() else None
        return f"{found.group(1)} (not installed)" if found else "unknown (not installed)"
