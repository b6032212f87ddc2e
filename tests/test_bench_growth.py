"""
The growth benchmark (``bench/growth.py``) runs: two small databases,
a few seconds of syncs.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from farmlib import NoPostgres, postgres_database

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


def test_growth_measures_every_size():
    try:
        _, drop = postgres_database()
    except NoPostgres as error:
        pytest.skip(str(error))
    drop()
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "growth.py"), "--sizes",
         "2100,6000", "--runs", "1", "--seconds", "2", "--claims", "10",
         "--agents", "4", "--workers", "1"],
        capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert result.returncode in (0, 1), result.stderr
    out = result.stdout
    summary = json.loads(out[out.index("\n{") + 1:out.rindex("\n}") + 2])
    assert [size["tasks"] for size in summary["sizes"]] == [2100, 6000]
    for size in summary["sizes"]:
        assert size["decision_p50_ms"] > 0 and size["sync_p50_ms"] > 0
        [run] = size["runs"]
        assert run["syncs"] > 0 and not run["errors"], run
    assert set(summary["ratios_largest_to_smallest"]) == {
        "decision", "sync_p50", "sync_p99"}
    assert ("PASS" if summary["pass"] else "FAIL") in out
