"""
The dispatch-at-scale benchmark (``bench/scale.py``) and its simulated
agents (``bench/simagents.py``) run: a few agents, a few seconds.
"""

import json

import pytest
from benchrun import bench_summary, require_postgres, run_bench

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def needs_postgres():
    """The scale benchmark runs on PostgreSQL only."""
    require_postgres()


@pytest.mark.usefixtures("needs_postgres")
@pytest.mark.parametrize(("masters", "protocol"), [
    ("1", "batch"), ("2", "batch"), ("1", "calls")])
def test_scale_hands_out_frames_and_checks_them(masters, protocol):
    status, out, err = run_bench(
        "scale", "--agents", "8", "--frames", "300", "--runs", "1",
        "--seconds", "2", "--warmup", "0.5", "--sync-interval", "0.5",
        "--workers", "1", "--masters", masters, "--log-chunk",
        "--protocol", protocol)
    # The targets are not reachable at this size: the exit status says
    # only whether they were met.
    assert status in (0, 1), err
    result = bench_summary(out, err)
    assert result["machine"]["database"].startswith("PostgreSQL")
    assert result["protocol"] == protocol and result["prefetch"] == 0
    assert f"protocol {protocol}, prefetch 0" in out
    counts = [1, 2] if masters == "2" else [1]
    for count in counts:
        summary_ = result[f"masters_{count}"]["summary"]
        [run] = result[f"masters_{count}"]["runs"]
        assert summary_["assignments_per_second"] > 0
        assert summary_["never_two_agents"] is True
        assert summary_["database_check"]["attempts"] > 0
        assert run["burst"]["done"] > 0 and run["paced"]["syncs"] > 0
        for phase in ("paced", "burst"):
            assert run[phase]["protocol"] == protocol
            assert not run[phase]["errors"], run[phase]["errors"]
        # The batch protocol times its updates with the sync they go
        # with; the calls protocol times each call.
        if protocol == "batch":
            assert summary_["update_p99_ms"] is None
            assert run["burst"]["log_ms"] is None
        else:
            assert summary_["update_p99_ms"] is not None
            assert run["burst"]["log_ms"] is not None
        assert len(run["load_before"]) == 3
    if masters == "2":
        assert result["scale_out_ratio"] > 0
    assert ("PASS" if result["pass"] else "FAIL") in out


@pytest.mark.parametrize("prefetch", [0, 2])
def test_simagents_selftest_speaks_the_batch_protocol(prefetch):
    status, out, err = run_bench(
        "simagents", "--selftest", "--agents", "20", "--seconds", "1",
        "--log-chunk", "--protocol", "batch", "--prefetch", str(prefetch),
        timeout=120)
    assert status == 0, err
    result = json.loads(out)
    assert result["protocol"] == "batch"
    assert result["prefetch"] == prefetch
    assert result["agents"] == 20 and not result["errors"], result["errors"]
    assert result["held_by_two_agents"] == 0 and result["conflicts"] == 0
    assert result["syncs"] > 0 and result["done"] > 0
    # The stand-in master hands out one assignment per sync and as many
    # more as the agent asks to prefetch.
    assert (prefetch + 0.5) * result["syncs"] \
        < result["assignments"] <= (prefetch + 1) * result["syncs"]
    assert result["sync_ms"]["p50"] > 0
    assert result["update_ms"] is None and result["log_ms"] is None


def test_simagents_prefetch_needs_the_batch_protocol():
    status, _, err = run_bench("simagents", "--selftest", "--protocol",
                               "calls", "--prefetch", "1", timeout=60)
    assert status == 2 and "--prefetch" in err
