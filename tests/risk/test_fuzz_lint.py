"""bench/fuzz.py's fuzzer, smaller: mutated corpus files through `guardian lint` never raise and always
give valid contract JSON (the bench runs 10,000 and measures time; nothing here is timed)."""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from risk_helpers import CORPUS

ROOT = Path(__file__).resolve().parents[2]


def _fuzz():
    spec = importlib.util.spec_from_file_location("bench_fuzz", ROOT / "bench" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = _fuzz()


@pytest.fixture(scope="module")
def corpus() -> list[bytes]:
    files = fuzz.corpus_files(CORPUS)
    assert len(files) >= 100, f"the corpus at {CORPUS} looks incomplete"
    return files


def test_the_fuzzer_is_deterministic_for_a_seed(corpus):
    first = [hashlib.sha256(data).hexdigest() for _, data, _ in fuzz.inputs(50, 5, corpus)]
    again = [hashlib.sha256(data).hexdigest() for _, data, _ in fuzz.inputs(50, 5, corpus)]
    other = [hashlib.sha256(data).hexdigest() for _, data, _ in fuzz.inputs(50, 6, corpus)]
    assert first == again and first != other


def test_the_fuzzer_uses_every_mutation(corpus):
    kinds = {what.split(" ")[0] for _, _, desc in fuzz.inputs(300, 13, corpus) for what in desc.split(", ")}
    assert {"byte", "truncation", "duplication", "splice", "nesting", "opener", "run", "NUL/invalid"} <= kinds


def test_300_fuzzed_inputs_lint_without_an_exception_and_with_valid_json(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("GUARDIAN_CONFIG", str(tmp_path / "none.toml"))
    risks = set()
    for i, data, what in fuzz.inputs(300, 2026, corpus):
        path = tmp_path / f"in-{i}.sql"
        path.write_bytes(data)
        status, out, err = fuzz.lint_in_process(path)  # an exception escaping fails the test here
        assert fuzz.check(status, out, err) is None, (i, what, fuzz.check(status, out, err))
        risks.add(json.loads(out)["files"][0]["risk"])
    assert {"critical", "low"} <= risks  # the mutations reach both ends of the scale


def test_a_fuzzed_input_through_the_real_cli(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("GUARDIAN_CONFIG", str(tmp_path / "none.toml"))
    for i, data, what in fuzz.inputs(3, 99, corpus):
        path = tmp_path / f"cli-{i}.sql"
        path.write_bytes(b"SELECT " + b"(SELECT " * 200 + b"1" + b")" * 200 + b";\n" + data)
        status, out, err = fuzz.lint_cli(path)
        assert "Traceback" not in err and fuzz.check(status, out, err) is None, (what, err[-500:])
        assert any(f["code"] == "MG006" for f in json.loads(out)["files"][0]["findings"])
