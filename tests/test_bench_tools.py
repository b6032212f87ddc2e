"""
The benchmarks in ``bench/`` run: each one at a tiny size, so that a change
that breaks a tool fails here and not on the day someone measures.
"""

import pytest
from benchrun import bench_summary, run_bench

pytestmark = pytest.mark.e2e


def test_dispatch_runs_a_small_job_through_two_agents():
    status, out, err = run_bench("dispatch", "--frames", "6", "--runs", "1")
    assert status == 0, err
    result = bench_summary(out, err)
    assert result["frames"] == 6 and len(result["runs"]) == 1
    assert result["frames_per_second"] > 0
    assert result["machine"]["cores"] >= 1


def test_submit_times_a_job_and_checks_its_tasks():
    status, out, err = run_bench("submit", "--database", "sqlite",
                                 "--frames", "500", "--runs", "1")
    assert status == 0, err
    [result] = bench_summary(out, err)["results"]
    assert result["database"].startswith("SQLite ")
    assert result["passed"] and 0 < result["median_seconds"] < 3


def test_ui_pages_times_every_page(tmp_path):
    status, out, err = run_bench(
        "ui_pages", "--jobs", "30", "--frames", "5", "--runs", "3",
        "--cache-dir", str(tmp_path))
    assert status == 0, out + err
    assert "FAIL" not in out
    for page in ("/api/v1/jobs/", "/ui/overview"):
        assert page in out
