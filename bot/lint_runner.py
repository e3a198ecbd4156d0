"""`guardian lint`'s runner: the input files, and analysing a big one on two cores (fork and pipe)."""
from __future__ import annotations

import os
import pickle
import re
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from bot import lint_render
from bot.errors import UsageError

if TYPE_CHECKING:
    from bot.risk import Context, Report

# Run as a command, the process ends right after writing: freeing millions of parse-tree objects
# and report models first would only cost time (~0.2 s on a 5 MB file), so they are kept (bot.lint
# sets this to a list) and the process leaves through os._exit once the output is flushed.
_keep: list | None = None

PARALLEL_MIN_BYTES = 3 * 2**20  # below this, forking costs more than the second core saves
# Above this, one process: the parent keeps the parse trees of its share until the child's state
# arrives (a 20 MB file: 7.0 s and 680 MB on two cores, 9.8 s and 260 MB on one).
PARALLEL_MAX_BYTES = 8 * 2**20


def analyze_file(data: bytes, ctx: Context, rendered: dict | None = None) -> Report:
    """analyze(), on two cores for a big file: a forked child analyses the leading ~40% completely
    while this process parses the rest and does its statement-local work, then finishes in order
    from the child's state (bot.risk.engine.Split). The Report is the same as analyze()'s.

    The fork comes first, before the parser and the rules are imported: each process imports them
    and starts libpg_query on its own pieces (on a helper thread, as libpg_query releases the GIL)
    while it imports the rest, so nothing but reading the file happens on one core.

    With `rendered` (a dict, for --format json), the child, idle while this process finishes,
    also renders the JSON of its statements and findings: rendered[id(report)] is then
    ((statements text, findings text), Split.head_span) for json_chunks, and the Report returned
    leaves the head's statement records out (they are in that text)."""
    if not PARALLEL_MIN_BYTES <= len(data) <= PARALLEL_MAX_BYTES or not _two_cores():
        from bot.risk import analyze

        return analyze(data, ctx)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its part, pickled down the pipe; it never returns
        status = 1
        try:
            os.close(read_end)
            split = _split(data, ctx, head=True)
            if split is not None:
                # For JSON the head's statement records never cross the pipe: the parent can start on
                # its part as soon as it has the state, and the child renders the records itself.
                head = split.head(records=rendered is None)
                _send(write_end, pickle.dumps(head, protocol=pickle.HIGHEST_PROTOCOL))
                if rendered is not None:
                    statements, found = split.head_done
                    excerpts = {s.index: s for s in statements}
                    _send(write_end, pickle.dumps(("".join(lint_render.statements_json(statements)),
                                                   "".join(lint_render.findings_json(found, excerpts))),
                                                  protocol=pickle.HIGHEST_PROTOCOL))
                status = 0
        finally:
            os._exit(status)  # no atexit handlers, no flushing of the parent's buffered output
    os.close(write_end)
    waited = False
    try:
        split = _split(data, ctx, head=False)
        from bot.risk import analyze
        from bot.risk.parse import NeedsWhole

        if split is None:  # no statement boundary to share the work at
            os.kill(pid, signal.SIGKILL)  # our own child: its part is of no use now
            return analyze(data, ctx)
        if _keep is not None:
            _keep.append(split)
        try:
            split.ahead()
        except NeedsWhole:
            os.kill(pid, signal.SIGKILL)
            return analyze(data, ctx)
        head = _receive(read_end)
        if head is None:  # a piece of the head did not parse on its own (or the child failed)
            return analyze(data, ctx)
        report = split.finish(pickle.loads(head))
        if rendered is not None:
            text = _receive(read_end)
            waited = True
            if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0 or text is None:
                return analyze(data, ctx)  # the report lacks the head's statements, which never came
            rendered[id(report)] = (pickle.loads(text), split.head_span)
        return report
    finally:
        os.close(read_end)
        if not waited:
            os.waitpid(pid, 0)


def _split(data: bytes, ctx: Context, head: bool):
    """The engine.Split of a big file, with libpg_query already working on this process's pieces
    (the head's in the child, the tail's here) while the rules import; None if it has no split point."""
    from bot.risk import parse as risk_parse

    text, bad, data = risk_parse.source(data)
    head_cuts, tail_cuts = risk_parse.split_pieces(text, risk_parse.SHARE)
    if not head_cuts or not tail_cuts or risk_parse.scanner_trap(text) is not None:
        return None  # (a scanner trap is never handed to the parser as a piece: see parse._chunks)
    parsed = risk_parse.Preparse(text, head_cuts if head else tail_cuts)
    from bot.risk.engine import Split  # the rules: while the pieces parse

    return Split((text, bad, data), ctx, parsed=parsed.futures)


def _send(fd: int, blob: bytes) -> None:
    """One message down the pipe: its length (8 bytes), then the bytes."""
    view = memoryview(len(blob).to_bytes(8, "little") + blob)
    while view:
        view = view[os.write(fd, view):]


def _receive(fd: int) -> bytes | None:
    """The next whole message, or None if the pipe ends first."""
    def exactly(n: int) -> bytes | None:
        chunks, left = [], n
        while left:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    size = exactly(8)
    return None if size is None else exactly(int.from_bytes(size, "little"))


def _two_cores() -> bool:
    """Whether forking is both safe (this process has no other thread) and worth it (a second core)."""
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return False
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except (AttributeError, OSError):
        return (os.cpu_count() or 1) >= 2


_PRISMA_FILE = re.compile(r"(^|/)\d{14}_[^/]+/migration\.sql$")


def for_file(ctx: Context, path: str) -> Context:
    """A Prisma migration (`<14-digit timestamp>_<name>/migration.sql`) is judged as `prisma migrate` runs it:
    the whole file as one query, one implicit transaction."""
    if ctx.runner == "guardian" and _PRISMA_FILE.search(path.replace(os.sep, "/")):
        from dataclasses import replace

        return replace(ctx, runner="prisma")
    return ctx


def read_inputs(paths: list[str]):
    for p in paths:
        if p == "-":
            yield "-", sys.stdin.buffer.read()
            continue
        path = Path(p)
        if path.is_dir():
            files = sorted(f for f in path.rglob("*.sql") if f.is_file())
            if not files:
                raise UsageError(f"{p}: no .sql files in this directory")
        else:
            files = [path]
        for f in files:
            try:
                yield str(f), f.read_bytes()
            except OSError as exc:
                raise UsageError(f"cannot read {f}: {exc.strerror}") from exc
