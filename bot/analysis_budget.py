"""The risk analysis of one request's files in a child process, under a time and a memory budget.

A crafted file can make the parser or a rule run for minutes or eat memory; the worker that analyses it
must not be held up (issue 13). The child runs `python -m bot.analysis_budget`, limits itself with
setrlimit (CPU seconds, address space), analyses the files in order and streams each Report back as it
is done; the parent waits at most the time budget. Files whose analysis did not finish get the critical
MG006 too-complex-to-analyse report, so the request still reaches awaiting_approval with risk critical.

Usage::

    reports = analyse_within(["ALTER TABLE ...;"], context, config.analysis)   # [analysis] of guardian.toml
"""
from __future__ import annotations

import gc
import logging
import math
import os
import pickle
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from bot.errors import GuardianError

if TYPE_CHECKING:
    from bot.config import AnalysisConfig
    from bot.risk import Context, Report

log = logging.getLogger(__name__)
_NO_MEMORY = 3  # the child's exit status when it ran out of its address space
# libpg_query out of memory dumps its memory contexts and may end the process itself (exit status 1)
# (a thread's stack and malloc arena count against the address space too: a parse helper may not start)
_OUT_OF_MEMORY = (b"MemoryError", b"TopMemoryContext", b"out of memory", b"can't start new thread")


class AnalysisCrashed(GuardianError):
    """The analysis child failed for a reason other than its budget (a bug): the request fails, saying so."""

    code = "analysis-crashed"


def analyse_within(sqls: list[str], context: "Context", budget: "AnalysisConfig", request_id: int | None = None
                   ) -> list["Report"]:
    """One Report per SQL text, in order; those not analysed within the budget (seconds of wall-clock and
    CPU time, MB of address space) are too-complex reports."""
    from bot.risk.engine import too_complex_report

    if not sqls:
        return []
    command = [sys.executable, "-m", "bot.analysis_budget", str(math.ceil(budget.seconds)), str(budget.memory_mb)]
    blob = pickle.dumps((sqls, context), protocol=pickle.HIGHEST_PROTOCOL)
    timed_out = False
    try:
        proc = subprocess.run(command, input=blob, capture_output=True, timeout=budget.seconds,
                              env=_child_env(), cwd=_ROOT)
        out, err, status = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:  # the child has been killed
        out, err, status, timed_out = exc.stdout or b"", exc.stderr or b"", -signal.SIGKILL, True
    except OSError as exc:  # no process could be started (process or memory limits of the worker's host)
        log.error("request %s: cannot start the analysis child: %s", request_id, exc)
        raise AnalysisCrashed(f"the risk analysis could not start ({exc.strerror or exc}); check the worker "
                              "host's process and memory limits, then retry with /migrate plan") from None
    reports = _received(out)[:len(sqls)]
    if len(reports) == len(sqls):
        return reports
    if timed_out or status in (-signal.SIGXCPU, -signal.SIGKILL):
        why = f"its analysis ran out of the request's time budget ({budget.seconds:g} s)"
    elif status == _NO_MEMORY or any(sign in err for sign in _OUT_OF_MEMORY):
        why = f"its analysis ran out of the request's memory budget ({budget.memory_mb} MB)"
    else:
        log.error("request %s: the analysis child failed (exit status %s): %s", request_id, status,
                  err.decode("utf-8", "replace")[-2000:])
        raise AnalysisCrashed(f"the risk analysis failed unexpectedly (exit status {status}); the worker log has "
                              "the details; retry with /migrate plan, and report it if it happens again")
    log.warning("request %s: file %d of %d is too complex to analyse: %s", request_id, len(reports) + 1,
                len(sqls), why)
    return reports + [too_complex_report(why, context) for _ in sqls[len(reports):]]


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child_env() -> dict[str, str]:
    """The child imports bot from this checkout whatever the worker's working directory is."""
    env = dict(os.environ)
    env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _received(out: bytes) -> list["Report"]:
    """The whole messages (8-byte length, then a pickled Report) the child wrote before it stopped."""
    reports, at = [], 0
    was = gc.isenabled()
    gc.disable()  # a big file's report is ~10 objects per statement: the cyclic GC would triple the load
    try:
        while at + 8 <= len(out):
            size = int.from_bytes(out[at:at + 8], "little")
            if at + 8 + size > len(out):
                break
            reports.append(pickle.loads(out[at + 8:at + 8 + size]))
            at += 8 + size
    finally:
        if was:
            gc.enable()
    return reports


def _child(cpu_seconds: int, memory_mb: int) -> int:
    """Limit this process, then analyse what the parent sent, writing each Report as soon as it is done."""
    import resource

    _die_with_parent()
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))  # SIGXCPU, then SIGKILL
    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        sqls, context = pickle.loads(sys.stdin.buffer.read())
        from bot.risk import analyze

        out = sys.stdout.buffer
        for sql in sqls:
            blob = pickle.dumps(analyze(sql, context), protocol=pickle.HIGHEST_PROTOCOL)
            out.write(len(blob).to_bytes(8, "little") + blob)
            out.flush()
    except MemoryError:
        return _NO_MEMORY
    return 0


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the worker that started it dies (prctl PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # RLIMIT_CPU still bounds it


if __name__ == "__main__":
    sys.exit(_child(int(sys.argv[1]), int(sys.argv[2])))
