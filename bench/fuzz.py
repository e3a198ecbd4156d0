"""Fuzz `guardian lint` with mutations of the real corpus: no traceback, and how slow the slowest input is.

Usage::

    .venv/bin/python bench/fuzz.py                    # 10,000 inputs, seed 13
    .venv/bin/python bench/fuzz.py -n 500 --seed 7    # GUARDIAN_CORPUS=/path/to/corpus to override

Each input is one to three mutations of a file of ../shared/corpus (byte flips, truncation, duplication of
a slice, a splice of two files, deeply nested sub-selects/operators/arrays, unterminated quote, comment and
dollar-quote openers, long runs of overlapping characters, NUL and invalid UTF-8 bytes). Each goes through
the lint entry point in-process (bot.lint.run with --format json, as `guardian lint` runs it), and a
handful through the real CLI in a subprocess. Prints: inputs, tracebacks (must be 0), invalid outputs
(must be 0), the slowest input and its time, inputs over 2 s (must be 0), and the seed; exits 1 when a
must-be-0 figure is not. Deterministic for a seed (the inputs, not the times).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_CORPUS = Path(os.environ.get("GUARDIAN_CORPUS", ROOT.parent / "shared" / "corpus" / "documenso-prisma"))
SLOW_SECONDS = 2.0

OPENERS = ["'", '"', "E'", "$$", "$tag$", "$a", "/*", "*/", "--", "(", "[", "U&'", "B'", "\\", ";"]
RUNS = [" ", "\n", "\t \n", "-", "/", "*", "/**/", "'", "''", '"', "$", "$$", "a", "_", "(", ")", ",", ";", "0"]


def corpus_files(corpus: Path) -> list[bytes]:
    files = sorted(corpus.glob("*/migration.sql")) or sorted(corpus.rglob("*.sql"))
    if not files:
        sys.exit(f"bench/fuzz: no migration files under {corpus} (set GUARDIAN_CORPUS)")
    return [f.read_bytes() for f in files]


def _at(rnd: random.Random, data: bytes) -> int:
    return rnd.randint(0, len(data))


def flip(rnd, data, corpus):
    out = bytearray(data or b" ")
    for _ in range(rnd.randint(1, 20)):
        out[rnd.randrange(len(out))] = rnd.randrange(256)
    return bytes(out), "byte flips"


def truncate(rnd, data, corpus):
    return data[:_at(rnd, data)], "truncation"


def duplicate(rnd, data, corpus):
    a = _at(rnd, data)
    b = min(len(data), a + rnd.randint(1, 4000))
    copies = rnd.choice([1, 2, 10, 100])
    at = _at(rnd, data)
    return data[:at] + data[a:b] * copies + data[at:], f"duplication x{copies}"


def splice(rnd, data, corpus):
    other = rnd.choice(corpus)
    return data[:_at(rnd, data)] + other[_at(rnd, other):], "splice"


def nesting(rnd, data, corpus):
    n = rnd.choice([50, 150, 200, 400, 1000, 3000])
    kind = rnd.choice(["subselect", "minus", "array", "paren", "not", "case"])
    inner = {
        "subselect": "(SELECT " * n + "1" + ")" * n,
        "minus": "1" + "-1" * n,
        "array": "ARRAY[" * n + "1" + "]" * n,
        "paren": "(" * n + "1" + ")" * n,
        "not": "NOT " * n + "true",
        "case": "CASE WHEN true THEN " * n + "1" + " END" * n,
    }[kind]
    stmt = rnd.choice([f"SELECT {inner};\n", f"UPDATE t SET a = {inner};\n", f"ALTER TABLE t ADD COLUMN c int DEFAULT {inner};\n"])
    at = _line_start(data, _at(rnd, data))
    return data[:at] + stmt.encode() + data[at:], f"nesting {kind} x{n}"


def opener(rnd, data, corpus):
    token = rnd.choice(OPENERS)
    count = rnd.choice([1, 1, 1, 5, 100, 1000])
    at = _at(rnd, data)
    return data[:at] + token.encode() * count + data[at:], f"opener {token!r} x{count}"


def run(rnd, data, corpus):
    atom = rnd.choice(RUNS)
    size = rnd.choice([100, 1000, 10_000, 40_000])
    at = _at(rnd, data)
    tail = rnd.choice([b"", b"x", b"\x00", b"'"])
    return data[:at] + atom.encode() * (size // len(atom)) + tail + data[at:], f"run {atom!r} x{size // len(atom)}"


def bad_bytes(rnd, data, corpus):
    out = data
    for _ in range(rnd.randint(1, 5)):
        at = _at(rnd, out)
        out = out[:at] + rnd.choice([b"\x00", b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80"]) + out[at:]
    return out, "NUL/invalid UTF-8"


MUTATORS = [flip, truncate, duplicate, splice, nesting, opener, run, bad_bytes]


def _line_start(data: bytes, at: int) -> int:
    return data.rfind(b"\n", 0, at) + 1


def inputs(n: int, seed: int, corpus: list[bytes]):
    """(index, bytes, description) for n mutated inputs; the same for the same seed and corpus."""
    rnd = random.Random(seed)
    for i in range(n):
        data = rnd.choice(corpus)
        done = []
        for _ in range(rnd.choice([1, 1, 2, 3])):
            data, what = rnd.choice(MUTATORS)(rnd, data, corpus)
            done.append(what)
        yield i, data, ", ".join(done)


def lint_in_process(path: Path) -> tuple[int, str, str]:
    """bot.lint.run on one file, --format json, as `guardian lint` runs it: (status, stdout, stderr)."""
    from bot import lint

    args = argparse.Namespace(paths=[str(path)], format="json", pg_version=None, fail_on=None, context=None)
    out, err = io.StringIO(), io.StringIO()
    status = lint.run(args, out, err)
    return status, out.getvalue(), err.getvalue()


def check(status: int, out: str, err: str) -> str | None:
    """Why a lint result is wrong (None if it is right): exit 0/1, valid contract JSON, nothing on stderr."""
    if status not in (0, 1):
        return f"exit status {status}: {err.strip()[:200]}"
    if err:
        return f"stderr: {err.strip()[:200]}"
    try:
        doc = json.loads(out)
        files = doc["files"]
        assert len(files) == 1 and files[0]["risk"] in ("low", "medium", "high", "critical")
        assert all({"code", "severity", "line", "message"} <= set(f) for f in files[0]["findings"])
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        return f"invalid JSON output ({type(exc).__name__}): {out[:200]!r}"
    return None


def lint_cli(path: Path) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "bot.lint", "--format", "json", str(path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc.returncode, proc.stdout, proc.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000, help="inputs (default 10,000)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--cli", type=int, default=8, help="inputs also run through the real CLI (default 8)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args(argv)
    corpus = corpus_files(args.corpus)
    work = Path(tempfile.mkdtemp(prefix="guardian-fuzz-"))
    os.environ["GUARDIAN_CONFIG"] = str(work / "no-config.toml")  # the defaults, whatever the cwd holds
    tracebacks, invalid, slow, slowest = [], [], [], (0.0, -1, "")
    cli_picked = set(random.Random(args.seed).sample(range(args.n), min(args.cli, args.n)))
    cli_runs, started = 0, time.perf_counter()
    for i, data, what in inputs(args.n, args.seed, corpus):
        path = work / f"input-{i}.sql"
        path.write_bytes(data)
        t0 = time.perf_counter()
        try:
            result = lint_in_process(path)
        except BaseException:  # noqa: BLE001 - counting what escapes is the point of the fuzzer
            tracebacks.append((i, what, traceback.format_exc()))
            result = None
        elapsed = time.perf_counter() - t0
        if result is not None and (problem := check(*result)):
            invalid.append((i, what, problem))
        if elapsed > slowest[0]:
            slowest = (elapsed, i, f"{what} ({len(data):,} bytes)")
        if elapsed > SLOW_SECONDS:
            slow.append((i, what, elapsed, len(data)))
        if i in cli_picked:
            cli_runs += 1
            status, out, err = lint_cli(path)
            if "Traceback" in err:
                tracebacks.append((i, what + " [cli]", err))
            elif problem := check(status, out, err):
                invalid.append((i, what + " [cli]", problem))
        path.unlink()
    total = time.perf_counter() - started
    print(f"inputs              {args.n:,} (mutations of {len(corpus)} corpus files)")
    print(f"through the CLI     {cli_runs}")
    print(f"tracebacks          {len(tracebacks)}")
    print(f"invalid outputs     {len(invalid)}")
    print(f"slowest input       {slowest[0]:.3f} s (#{slowest[1]}: {slowest[2]})")
    print(f"inputs over {SLOW_SECONDS:g} s    {len(slow)}")
    print(f"total               {total:.1f} s ({args.n / total:.0f} inputs/s)")
    print(f"seed                {args.seed}")
    for i, what, text in tracebacks[:3]:
        print(f"\n--- traceback, input #{i} ({what}):\n{text}")
    for i, what, problem in invalid[:5]:
        print(f"--- invalid output, input #{i} ({what}): {problem}")
    for i, what, elapsed, size in slow[:10]:
        print(f"--- slow, input #{i} ({what}, {size:,} bytes): {elapsed:.2f} s")
    return 1 if tracebacks or invalid or slow else 0


if __name__ == "__main__":
    sys.exit(main())
