"""Target-side fixtures: a populated database, and a second real PostgreSQL that checks passwords."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
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


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        pytest.fail(f"{name} is not installed; the wrong-password test needs a PostgreSQL with password auth")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def password_server_url():
    """``(url_without_password, user, port, password)`` of a throwaway PostgreSQL with scram-sha-256 auth."""
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    base = Path(tempfile.mkdtemp(prefix="gt-scram-"))
    data, pwfile = base / "data", base / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if as_root:
        shutil.chown(base, "postgres")
        shutil.chown(pwfile, "postgres")
    port = _free_port()
    user = "guardian_admin"
    try:
        subprocess.run([*prefix, _pg_bin("initdb"), "-D", str(data), "-U", user, "--auth=scram-sha-256",
                        f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
        subprocess.run([*prefix, _pg_bin("pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o",
                        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"could not start a password-checking PostgreSQL: {exc.stderr.decode(errors='replace')}")
    try:
        yield f"postgresql://{user}@127.0.0.1:{port}/postgres", user, port, PASSWORD
    finally:
        subprocess.run([*prefix, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
