"""
Running the benchmarks of ``bench/`` from their smoke tests: each test
runs a tool at a tiny size and checks the summary it prints.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from farmlib import NoPostgres, postgres_database

ROOT = Path(__file__).resolve().parent.parent


def run_bench(name, *args, timeout=240):
    """Run ``bench/<name>.py args``; return ``(status, stdout, stderr)``."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return result.returncode, result.stdout, result.stderr


def bench_summary(stdout, stderr=""):
    """Return the JSON summary a benchmark prints (an object starting and
    ending on lines of their own, after its text report).

    A benchmark that stopped before its summary fails the test with the
    end of its output and of ``stderr`` (its processes' logs).
    """
    if "\n{" not in stdout or "\n}" not in stdout:
        raise AssertionError(f"no summary in the output:\n{stdout[-2000:]}"
                             f"\n--- stderr ---\n{stderr[-8000:]}")
    return json.loads(stdout[stdout.index("\n{") + 1:
                             stdout.rindex("\n}") + 2])


def require_postgres():
    """Skip the calling test unless a PostgreSQL server answers."""
    try:
        _, drop = postgres_database()
    except NoPostgres as error:
        pytest.skip(str(error))
    drop()
