"""The fuzzer's inputs through the bot: no request is left stuck, whatever a migration file holds.

Usage::

    .venv/bin/python bench/fuzz_bot.py                       # 10,000 inputs, 20 files per plan, seed 13
    .venv/bin/python bench/fuzz_bot.py -n 400 --per-plan 20 --seed 7

The inputs are bench/fuzz.py's (mutations of ../shared/corpus: byte flips, truncation, splices, deep nesting,
unterminated quotes, NUL and invalid UTF-8 bytes). Each plan commits ``--per-plan`` of them as Prisma migration
folders to a git repository (the previous plan's folders removed), then runs what the bot runs for
`/migrate plan staging pending`: the flow records the request and posts its card to the strict Slack stand-in,
and the analysis job (workers.analyze.run, the real RQ job's code, in this process) reads the files at the
pinned commit, analyses them in a child process under the [analysis] budget and posts the preview. Each
request must end awaiting approval, failed with a message, or cancelled, with its analysis step finished; an
exception escaping the job, a request left analysing, or a message Slack would refuse is a failure.
Prints: inputs, plans, outcomes, failures (must be 0), messages refused (must be 0), the slowest plan and
the seed; exits 1 when a must-be-0 figure is not. Services: GUARDIAN_BENCH_DATABASE_URL, else local PostgreSQL.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fuzz import DEFAULT_CORPUS, corpus_files, inputs  # noqa: E402
from bot.config import EnvironmentConfig, GuardianConfig, ProjectConfig, Settings, SlackConfig  # noqa: E402
from bot.local_services import create_database, drop_database, ensure_postgres  # noqa: E402
from bot.models import RequestStatus  # noqa: E402
from bot.schema import upgrade  # noqa: E402
from bot.slack.standin import SlackStandIn  # noqa: E402
from workers import analyze  # noqa: E402
from workers.runtime import Runtime, install  # noqa: E402

ENV, ENV_VAR, CHANNEL, REQUESTER = "staging", "GUARDIAN_FUZZ_TARGET_URL", "C0FUZZ", "U0FUZZ"
SETTLED = {RequestStatus.AWAITING_APPROVAL, RequestStatus.FAILED, RequestStatus.CANCELLED}


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def commit_batch(repo: Path, plan: int, batch: list[tuple[int, bytes, str]]) -> None:
    migrations = repo / "prisma" / "migrations"
    shutil.rmtree(migrations, ignore_errors=True)  # the previous plan's files: gone from the branch, not pending
    for k, (i, data, _what) in enumerate(batch):
        folder = migrations / f"{20300101000000 + plan * 1000 + k}_fuzz_{i}"
        folder.mkdir(parents=True)
        (folder / "migration.sql").write_bytes(data)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", f"plan {plan}", "--allow-empty")


def check(rt: Runtime, request_id: int) -> str | None:
    """None when the request settled honestly, else what is wrong."""
    request = rt.store.get_request(request_id)
    if request.status not in SETTLED:
        return f"left {request.status.value}"
    if request.status is RequestStatus.FAILED and not request.error:
        return "failed without saying why"
    running = [s.step for s in rt.store.list_steps(request_id) if s.status == "running"]
    if running:
        return f"step(s) {running} left running"
    return None


def _readable(data: bytes) -> bool:
    """UTF-8 without NUL: what the bot reads; a plan holding any other file fails at reading as a whole."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in data


@dataclass
class Tally:
    """What the plans came to: outcomes, why requests failed, what went wrong, the slowest plan."""

    plans: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # why requests failed, by the start of their error
    failures: list[tuple[int, str]] = field(default_factory=list)
    slowest: tuple[float, int] = (0.0, -1)

    def plan(self, rt: Runtime, repo: Path, batch: list[tuple[int, bytes, str]]) -> None:
        """Commit ``batch``, plan it as `/migrate plan staging pending` would, run the analysis job, count it."""
        commit_batch(repo, self.plans, batch)
        t0 = time.perf_counter()
        request_id = None
        try:
            request_id = rt.flow.start_plan(ENV, REQUESTER, CHANNEL).id
            analyze.run(request_id)
            problem = check(rt, request_id)
        except BaseException:  # noqa: BLE001 - what escapes the bot is what this bench counts
            problem = "exception: " + traceback.format_exc(limit=4)
        self.slowest = max(self.slowest, (time.perf_counter() - t0, self.plans))
        if request_id is not None:
            settled = rt.store.get_request(request_id)
            self.outcomes[settled.status.value] += 1
            if settled.error:
                self.errors[re.sub(r"\S*migration\.sql|\d+", "#", settled.error)[:90]] += 1
        if problem:
            self.failures.append((self.plans, f"inputs #{batch[0][0]}-#{batch[-1][0]}: {problem}"))
        self.plans += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000, help="inputs (default 10,000)")
    parser.add_argument("--per-plan", type=int, default=20, help="migration files per plan (default 20)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args(argv)
    corpus = corpus_files(args.corpus)
    work = Path(tempfile.mkdtemp(prefix="guardian-fuzz-bot-"))
    repo = work / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "fuzz@example.invalid")
    _git(repo, "config", "user.name", "fuzz")
    admin = ensure_postgres(os.environ.get("GUARDIAN_BENCH_DATABASE_URL"), work)
    state_name, state_url = create_database(admin, "fuzz_state")
    target_name, target_url = create_database(admin, "fuzz_target")
    upgrade(state_url)
    os.environ[ENV_VAR] = target_url
    standin = SlackStandIn().start()
    standin.add_bot_to(CHANNEL)
    config = GuardianConfig(project=ProjectConfig(repo=repo, layout="prisma", path="prisma/migrations"),
                            slack=SlackConfig(channel=CHANNEL),
                            environments={ENV: EnvironmentConfig(name=ENV, database_url_env=ENV_VAR)})
    settings = Settings(database_url=state_url, slack_bot_token=standin.token, slack_api_url=standin.url)
    rt = Runtime(settings=settings, config=config)
    install(rt)
    tally, started = Tally(), time.perf_counter()
    # A plan with one file that is not UTF-8 or holds a NUL fails as a whole at reading (one line naming the
    # file), so such inputs are planned together and the rest reach the analysis.
    pending: dict[bool, list[tuple[int, bytes, str]]] = {True: [], False: []}
    try:
        for item in inputs(args.n, args.seed, corpus):
            readable = _readable(item[1])
            pending[readable].append(item)
            last = item[0] == args.n - 1
            for kind in ([readable] if not last else [True, False]):
                batch = pending[kind]
                if not batch or (len(batch) < args.per_plan and not last):
                    continue
                pending[kind] = []
                tally.plan(rt, repo, batch)
        refused = [c for c in standin.calls() if c.response and c.response.get("ok") is False
                   and c.response.get("error") not in ("ratelimited",)]
    finally:
        rt.close()
        standin.stop()
        for name in (state_name, target_name):
            drop_database(admin, name)
        shutil.rmtree(work, ignore_errors=True)
    total = time.perf_counter() - started
    print(f"inputs              {args.n:,} (mutations of {len(corpus)} corpus files), {args.per_plan} per plan")
    print(f"plans               {tally.plans}")
    print(f"outcomes            {', '.join(f'{k} {v}' for k, v in sorted(tally.outcomes.items()))}")
    for why, count in tally.errors.most_common(5):
        print(f"  failed because    {count} x {why}")
    print(f"failures            {len(tally.failures)}")
    print(f"messages refused    {len(refused)}")
    print(f"slowest plan        {tally.slowest[0]:.2f} s (plan {tally.slowest[1]})")
    print(f"total               {total:.1f} s ({args.n / total:.1f} inputs/s)")
    print(f"seed                {args.seed}")
    for plan, problem in tally.failures[:5]:
        print(f"--- plan {plan}: {problem}")
    for call in refused[:5]:
        print(f"--- refused: {call.method}: {call.response.get('error')}")
    return 1 if tally.failures or refused else 0


if __name__ == "__main__":
    sys.exit(main())
