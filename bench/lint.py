"""Benchmark `guardian lint` against squawk on the documenso corpus and a >= 5 MB joined file.

Usage::

    .venv/bin/python bench/lint.py            # GUARDIAN_CORPUS=/path/to/corpus to override
    .venv/bin/python bench/lint.py --runs 5

Prints, per input and tool: wall time (best of N runs, process start included), throughput (MB/s),
CPU seconds (user + system, of the fastest run, children included: `guardian lint` forks a helper
for files >= 3 MB), peak RSS of the largest process, the median wall time, and the ratio ours/squawk
(< 1.0 means we are faster) three ways: of the best runs, of the medians, and the median of the
per-pair ratios. The two tools run alternately, so a burst of load on a shared machine hits both. It also times the engine alone (in-process sequential analyze of the large file and of a
1 MB migration). Wall times on a shared machine vary; compare runs made together.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "documenso-prisma"


def corpus_files(corpus: Path) -> list[Path]:
    files = sorted(corpus.glob("*/migration.sql")) or sorted(corpus.rglob("*.sql"))
    if not files:
        sys.exit(f"bench/lint: no migration files under {corpus} (set GUARDIAN_CORPUS)")
    return files


def build_large(files: list[Path], target: int, dest: Path) -> Path:
    """Join the corpus (with `;` lines between files) until the file reaches `target` bytes."""
    chunks, size = [], 0
    while size < target:
        for f in files:
            data = f.read_bytes()
            chunks.append(data + b"\n;\n")
            size += len(data) + 3
    dest.write_bytes(b"".join(chunks))
    return dest


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, int, int, float]:
    """Wall seconds, peak RSS in KiB, exit status and CPU seconds of one run of `cmd`."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode not in (0, 1):
        sys.exit(f"bench/lint: {' '.join(cmd[:3])} ... exited {proc.returncode}: {err.strip()[:500]}")
    return wall, usage.ru_maxrss, proc.returncode, usage.ru_utime + usage.ru_stime


def paired(ours: list[str], theirs: list[str], env: dict[str, str], runs: int) -> tuple[tuple, tuple, list[float]]:
    """Run the two commands alternately (so both see the same machine load), `runs` times each: for each,
    (best wall, peak RSS, CPU of the best run, median wall), and the per-pair ratios ours/theirs."""
    a, b = [], []
    for _ in range(runs):
        a.append(run(ours, env))
        b.append(run(theirs, env))

    def summary(results: list) -> tuple:
        fastest = min(results, key=lambda r: r[0])
        return fastest[0], max(r[1] for r in results), fastest[3], statistics.median(r[0] for r in results)

    return summary(a), summary(b), [x[0] / y[0] for x, y in zip(a, b)]


def squawk_binary() -> str:
    local = Path(sys.executable).parent / "squawk"
    found = str(local) if local.exists() else shutil.which("squawk")
    if not found:
        sys.exit("bench/lint: squawk not found (pip install squawk-cli)")
    return found


def engine_only(large: Path) -> list[str]:
    sys.path.insert(0, str(ROOT))
    from bot.risk import analyze  # noqa: E402  (the repo root is only importable after the path tweak)

    lines = []
    data = large.read_bytes()
    for label, blob in (("large file", data), ("1 MB migration", data[: 2**20].rsplit(b"\n;\n", 1)[0])):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            report = analyze(blob)
            times.append(time.perf_counter() - t)
        lines.append(f"engine only, {label}: {len(blob) / 2**20:.2f} MB, {len(report.statements)} statements, "
                     f"{min(times):.3f} s ({len(blob) / 2**20 / min(times):.1f} MB/s), risk {report.risk.value}")
    from pglast import parser as pg  # noqa: E402

    sql = data[: 2**20].rsplit(b"\n;\n", 1)[0].decode("utf-8")
    for label, fn in (("parse_sql (Python AST objects)", pg.parse_sql), ("parse_sql_json (JSON text)", pg.parse_sql_json)):
        t = time.perf_counter()
        fn(sql)
        lines.append(f"pglast {label} on 1 MB: {time.perf_counter() - t:.3f} s")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mb", type=float, default=5.5)
    args = parser.parse_args()
    corpus = Path(os.environ.get("GUARDIAN_CORPUS", DEFAULT_CORPUS))
    files = corpus_files(corpus)
    squawk = squawk_binary()
    env = dict(os.environ, GUARDIAN_CONFIG=os.devnull + ".absent", NO_COLOR="1")
    env.pop("GITHUB_ACTIONS", None)
    # As installed from a wheel: with bytecode (an editable install under PYTHONDONTWRITEBYTECODE has none,
    # and every run would compile the modules first). scripts/bootstrap does the same.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "bot"], cwd=ROOT, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"corpus: {corpus} ({len(files)} files); squawk: {squawk}; python: {sys.executable}")
    print(f"{'input':<26}{'MB':>7}  {'tool':<8}{'seconds':>9}{'MB/s':>8}{'cpu s':>8}{'peak MB':>9}{'median s':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        large = build_large(files, int(args.size_mb * 2**20), Path(tmp) / "large.sql")
        inputs = [("documenso corpus", [str(f) for f in files], sum(f.stat().st_size for f in files)),
                  (f"joined file", [str(large)], large.stat().st_size)]
        ratios = []
        for label, paths, size in inputs:
            mb = size / 2**20
            ours, theirs, pairs = paired([sys.executable, "-m", "bot.lint", "--format", "json", *paths],
                                         [squawk, "--reporter", "json", *paths], env, args.runs)
            for tool, (secs, rss, cpu, median) in (("ours", ours), ("squawk", theirs)):
                print(f"{label:<26}{mb:>7.2f}  {tool:<8}{secs:>9.3f}{mb / secs:>8.1f}{cpu:>8.2f}{rss / 1024:>9.1f}"
                      f"{median:>10.3f}")
            ratios.append((label, ours[0] / theirs[0], ours[3] / theirs[3], statistics.median(pairs)))
        for label, ratio, medians, pair in ratios:
            print(f"ratio ours/squawk, {label}: {ratio:.2f} (best of each), {medians:.2f} (medians), "
                  f"{pair:.2f} (median of back-to-back pairs)")
        worst = max(ratios[-1][1:])
        print(f"target (throughput at least squawk's on the large input, ratio <= 1.0): "
              f"{'met' if worst <= 1.0 else 'NOT met'} (worst of the three ratios: {worst:.2f})")
        for line in engine_only(large):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
