"""
The memory benchmark (``bench/memory.py``) runs: a small database, a
master serving it, an idle agent.
"""

import pytest
from benchrun import bench_summary, require_postgres, run_bench

pytestmark = pytest.mark.e2e


def test_memory_measures_the_master_and_an_idle_agent():
    require_postgres()
    status, out, err = run_bench(
        "memory", "--tasks", "5000", "--runs", "1", "--seconds", "1",
        "--agents", "3", "--workers", "1", "--settle", "0.5")
    assert status in (0, 1), err
    summary = bench_summary(out, err)
    assert summary["tasks"] == 5000
    [run] = summary["runs"]
    assert run["served"]["jobs_listed"] > 0
    assert run["served"]["syncs"] > 0
    assert len(run["master_mb"]["workers"]) == 1
    assert 10 < summary["largest_master_process_mb"] < 2000
    assert 10 < summary["idle_agent_mb"] < 1000
    assert ("PASS" if summary["pass"] else "FAIL") in out
