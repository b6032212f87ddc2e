"""
Benchmark: frames of ``true`` through a real master and two agents.

Starts a master (gunicorn), the scheduler and two agents as real processes
(the same harness as the end-to-end tests), submits one job of N frames of
``true`` with batch 1, and measures the time from submission until the
job is done. Prints the machine's details and the median of the runs.

    .venv/bin/python bench/dispatch.py [--frames 500] [--runs 3]
                                       [--database sqlite|postgresql]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from benchlib import bench_farm, machine  # noqa: E402
from farmlib import wait_until  # noqa: E402


def one_run(database, frames, slots, settings):
    """Run one farm and one job; return seconds from submit to done."""
    with bench_farm(database, settings) as farm:
        farm.start_master()
        farm.start_agent("agent-a", cpus=slots)
        farm.start_agent("agent-b", cpus=slots)
        farm.wait_for_agents(2)
        started = time.perf_counter()
        job = farm.client.submit_job(
            title="bench", jobtype="command", start=1, end=frames,
            data={"argv": ["true"]})
        wait_until(
            lambda: farm.client.job(job["id"])["state"] == "done",
            timeout=max(60, frames * 2), interval=0.05,
            message=f"{frames} frames")
        return time.perf_counter() - started


def main(argv=None):
    """Run the benchmark and print the result as text and JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slots", type=int, default=1,
                        help="cpus (slots) per agent")
    parser.add_argument("--database", choices=["sqlite", "postgresql"],
                        default="sqlite")
    args = parser.parse_args(argv)
    settings = {"PYFARM_SYNC_INTERVAL": "5",
                "PYFARM_SCHEDULER_INTERVAL": "1"}
    times = []
    for number in range(1, args.runs + 1):
        seconds = one_run(args.database, args.frames, args.slots, settings)
        times.append(seconds)
        print(f"run {number}: {seconds:.2f} s "
              f"({args.frames / seconds:.1f} frames/s)", flush=True)
    median = statistics.median(times)
    result = {
        "benchmark": "dispatch",
        "frames": args.frames,
        "agents": 2,
        "slots_per_agent": args.slots,
        "database": args.database,
        "settings": settings,
        "runs": [round(t, 3) for t in times],
        "median_seconds": round(median, 3),
        "frames_per_second": round(args.frames / median, 1),
        "machine": machine(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
