"""
The growth benchmark (``bench/growth.py``) runs: two small databases,
a few seconds of syncs.
"""

import pytest
from benchrun import bench_summary, require_postgres, run_bench

pytestmark = pytest.mark.e2e


def test_growth_measures_every_size():
    require_postgres()
    status, out, err = run_bench(
        "growth", "--sizes", "2100,6000", "--runs", "1", "--seconds", "2",
        "--claims", "10", "--agents", "4", "--workers", "1")
    assert status in (0, 1), err
    summary = bench_summary(out, err)
    assert [size["tasks"] for size in summary["sizes"]] == [2100, 6000]
    for size in summary["sizes"]:
        assert size["decision_p50_ms"] > 0 and size["sync_p50_ms"] > 0
        [run] = size["runs"]
        assert run["syncs"] > 0 and not run["errors"], run
    assert set(summary["ratios_largest_to_smallest"]) == {
        "decision", "sync_p50", "sync_p99"}
    assert ("PASS" if summary["pass"] else "FAIL") in out
