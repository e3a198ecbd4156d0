"""Harness for `guardian dev` tests: the real command in a subprocess, and headless Chromium driven by Playwright."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "dev"
CHROMIUM = "/usr/bin/chromium"
EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
APT_PACKAGES = ("chromium", "fonts-noto-color-emoji")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 180
REMIND_AFTER = "20s"
BOT_REPLY_TIMEOUT_MS = 30_000  # how long a browser assertion waits for the bot (see the page fixture)
DEV_LOG_TAIL = 150  # lines of each `guardian dev` log a failed scenario's report ends with


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class DevRun:
    """A running `guardian dev` subprocess and what it printed."""

    proc: subprocess.Popen
    workdir: Path
    prefix: str
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = re.search(pattern, line)
                if match:
                    return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"`guardian dev` never printed /{pattern}/ (exit {self.proc.poll()}):\n{self.output}")

    def logs(self) -> dict[str, str]:
        """What it printed (``output``) and its bot's and worker's log files, by name."""
        found = {"output": self.output}
        for name in ("guardian.log", "worker.log"):
            path = self.workdir / name
            found[name] = path.read_text(errors="replace") if path.exists() else ""
        return found

    @property
    def page_url(self) -> str:
        return self.wait_for_line(r"Page:\s+(http://\S+)", 1).group(1)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 60) -> int:
        """The exit code. A process still there after ``timeout`` fails the test with every thread's stack (it
        prints them on SIGUSR1, bot/dev.py) and the end of what it printed: where the stop hung."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(2)
            raise AssertionError(f"`guardian dev` did not exit within {timeout:.0f} s; its threads and output:\n"
                                 + self.output[-20000:]) from None


def _redis_db(url: str) -> int:
    match = re.search(r"(?:db=|/)(\d+)$", url)
    assert match, f"no database number in the test Redis URL ({url.split('@')[-1]})"
    return int(match.group(1))


def _dev_env(tmp: Path, prefix: str, pg_admin_url: str, redis_server_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GUARDIAN_CONFIG", "DATABASE_URL", "REDIS_URL")}
    env.update(GUARDIAN_DEV_DIR=str(tmp), GUARDIAN_DEV_PAGE_PORT="0", GUARDIAN_DEV_DB_PREFIX=prefix,
               GUARDIAN_DEV_REDIS_DB=str(_redis_db(redis_server_url)), DATABASE_ADMIN_URL=pg_admin_url,
               PYTHONUNBUFFERED="1", **extra)
    return env


def dev_command(tmp: Path, pg_admin_url: str, redis_server_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`guardian dev --no-browser ARGS` run to its end (for start-up failures); its databases dropped after."""
    prefix = f"gdt{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        return subprocess.run([sys.executable, "-m", "bot.cli", "dev", "--no-browser", *args], cwd=ROOT,
                              env=_dev_env(tmp, prefix, pg_admin_url, redis_server_url), capture_output=True,
                              text=True, timeout=START_TIMEOUT_S)
    finally:
        _drop_databases(pg_admin_url, prefix)


def start_dev(tmp: Path, pg_admin_url: str, redis_server_url: str, *, sigint: Any = signal.SIG_DFL,
              **extra_env: str) -> DevRun:
    """`python -m bot.cli dev --port 0 --no-browser` with its own workdir, database names and Redis database.
    ``sigint``: the SIGINT disposition it starts with (SIG_IGN: as a shell script's background job), whatever
    the test run's own is."""
    prefix = f"gdt{uuid.uuid4().hex[:8]}"
    env = _dev_env(tmp, prefix, pg_admin_url, redis_server_url, **extra_env)
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "dev", "--port", "0", "--no-browser"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
    run = DevRun(proc=proc, workdir=tmp, prefix=prefix)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            run.lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    run.wait_for_line(r"Page:\s+http://", START_TIMEOUT_S)
    return run


def cleanup_dev(run: DevRun, pg_admin_url: str) -> None:
    if run.proc.poll() is None:
        run.proc.kill()
        run.proc.wait(timeout=30)
    _drop_databases(pg_admin_url, run.prefix)


def _drop_databases(pg_admin_url: str, prefix: str) -> None:
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for suffix in ("dev_demo", "demo_staging", "demo_production", "demo_template"):
            conn.execute(f'DROP DATABASE IF EXISTS "{prefix}_{suffix}" WITH (FORCE)')


@pytest.fixture(scope="module")
def dev_run(tmp_path_factory: pytest.TempPathFactory, pg_admin_url: str, _redis_server_url: str,
            request: pytest.FixtureRequest) -> Iterator[DevRun]:
    """One `guardian dev` for a test module (the browser scenarios share it); what it printed is kept in
    test-artifacts/dev/<module>-{output,guardian.log,worker.log}."""
    # reminders after 20 s instead of 4 h, so one arrives while a test watches (issue 17)
    run = start_dev(tmp_path_factory.mktemp("guardian-dev"), pg_admin_url, _redis_server_url,
                    GUARDIAN_DEV_REMIND_AFTER=REMIND_AFTER)
    try:
        yield run
    finally:
        code = run.stop()
        cleanup_dev(run, pg_admin_url)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for name, text in run.logs().items():
            (ARTIFACTS / f"{request.module.__name__}-{name}").write_text(text)
        assert code == 0, f"`guardian dev` exited with {code} on SIGTERM:\n{run.output}"


def _ensure_chromium() -> str:
    """Debian's chromium (and an emoji font, for readable screenshots), installed with apt-get when missing.

    Never a browser download of Playwright's own.
    """
    if Path(CHROMIUM).exists() and Path(EMOJI_FONT).exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} or the emoji font is missing and cannot be installed here (needs root and "
                    f"apt-get): run `apt-get install -y {' '.join(APT_PACKAGES)}`")
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *APT_PACKAGES]):
        proc = subprocess.run(cmd, env=apt_env, capture_output=True, text=True, timeout=1200)
        if proc.returncode != 0:
            pytest.fail(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr[-2000:]}")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} is still missing")
    return CHROMIUM


def _ensure_playwright() -> None:
    """Playwright for Python (the `dev` extra); pip-installed when missing. Its own browser download is never used."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "playwright>=1.45"],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.fail(f"playwright is not installed and `pip install playwright` failed: {proc.stderr[-2000:]}")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    executable = _ensure_chromium()
    _ensure_playwright()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, dev_run: DevRun, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh tab on the dev page; a screenshot of how it ended is saved under test-artifacts/dev/."""
    from playwright.sync_api import expect

    # Slack paces posts to one channel at about one a second after a burst of ten, and the stand-in does too
    # (bot/slack/standin_limits.py): a reply queued behind a run's posts can take several seconds, so every
    # assertion waits up to BOT_REPLY_TIMEOUT_MS rather than Playwright's 5 s (CI once saw a rollback's
    # "started" reply arrive later than that).
    expect.set_options(timeout=BOT_REPLY_TIMEOUT_MS)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    tab.goto(dev_run.page_url)
    try:
        yield tab
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}-end.png"), full_page=True)
        context.close()
