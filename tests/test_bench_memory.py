"""
The memory benchmark (``bench/memory.py``) runs: a small database, a
master serving it, an idle agent.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from farmlib import NoPostgres, postgres_database

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


def test_memory_measures_the_master_and_an_idle_agent():
    try:
        _, drop = postgres_database()
    except NoPostgres as error:
        pytest.skip(str(error))
    drop()
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "memory.py"), "--tasks",
         "5000", "--runs", "1", "--seconds", "1", "--agents", "3",
         "--workers", "1", "--settle", "0.5"],
        capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert result.returncode in (0, 1), result.stderr
    out = result.stdout
    summary = json.loads(out[out.index("\n{") + 1:out.rindex("\n}") + 2])
    assert summary["tasks"] == 5000
    [run] = summary["runs"]
    assert run["served"]["jobs_listed"] > 0
    assert run["served"]["syncs"] > 0
    assert len(run["master_mb"]["workers"]) == 1
    assert 10 < summary["largest_master_process_mb"] < 2000
    assert 10 < summary["idle_agent_mb"] < 1000
    assert ("PASS" if summary["pass"] else "FAIL") in out
