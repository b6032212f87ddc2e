"""Smoke test of ``bench/throughput.py``: tiny sizes, checks it runs and
that its output is sane (the real figures come from the full run)."""

import shutil
import sys

import pytest
from benchrun import ROOT, bench_summary, run_bench

pytestmark = pytest.mark.e2e

BENCH = ROOT / "bench" / "throughput.py"


def test_pyfarm_side_runs_and_reports_frames_per_second():
    status, out, err = run_bench(
        "throughput", "--frames", "6", "--runs", "1", "--database",
        "sqlite", "--no-celery", "--set", "PYFARM_SYNC_INTERVAL=0.5")
    assert status == 0, out + err
    assert "PyFarm on SQLite" in out
    report = bench_summary(out, err)
    [sqlite] = report["pyfarm"]
    assert report["frames"] == 6 and report["celery"] is None
    assert len(sqlite["runs"]) == 1 and sqlite["frames_per_second"] > 0
    assert len(sqlite["load"][0]) == 3
    assert report["settings"] == {"PYFARM_SYNC_INTERVAL": "0.5"}


def test_celery_side_runs_where_it_is_installed():
    sys.path.insert(0, str(BENCH.parent))
    try:
        import throughput
    finally:
        sys.path.remove(str(BENCH.parent))
    target = throughput.cache_dir()
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    if not (target / ".installed").exists():
        pytest.skip(f"Celery is not installed in {target} (the benchmark "
                    f"installs it on its first run)")
    seconds, version = throughput.celery_runs(10, 1, target)
    assert len(seconds) == 1 and 0 < seconds[0] < 60
    assert version.startswith("5.")
