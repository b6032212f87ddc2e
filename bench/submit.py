"""
Benchmark: how long ``POST /api/v1/jobs/`` takes to accept a big job.

Starts a real master (gunicorn) on a fresh database, submits a job of
100,000 frames over HTTP, and measures the time until the 201 answer:
the job and every task are then stored and committed. Prints the machine,
each run and the median per database, and PASS or FAIL against the
target (3 s).

    .venv/bin/python bench/submit.py [--frames 100000] [--runs 3]
                                     [--database sqlite --database postgresql]
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

TARGET_SECONDS = 3.0


def measure(database, frames, runs):
    """Return ``(seconds of each run, the database's name and version)``."""
    with bench_farm(database) as farm:
        farm.start_master()
        about = machine(farm.env["PYFARM_DATABASE_URL"]).get("database")
        # Warm up the worker (imports, connection pool, schema cache).
        farm.client.submit_job(title="warm-up", jobtype="command",
                               start=1, end=10, data={"argv": ["true"]})
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            job = farm.client.submit_job(
                title="big", jobtype="command", start=1, end=frames,
                data={"argv": ["true"]})
            times.append(time.perf_counter() - started)
            counted = sum(farm.client.job(job["id"])["tasks"].values())
            if counted != frames:
                raise AssertionError(f"the job has {counted} tasks, "
                                     f"not {frames}")
        return times, about


def main(argv=None):
    """Run the benchmark; print each run, then a JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database", action="append",
                        choices=["sqlite", "postgresql"])
    args = parser.parse_args(argv)
    results = []
    for database in args.database or ["sqlite", "postgresql"]:
        times, about = measure(database, args.frames, args.runs)
        median = statistics.median(times)
        verdict = "PASS" if median < TARGET_SECONDS else "FAIL"
        print(f"{about}: runs {', '.join(f'{t:.2f}' for t in times)} s; "
              f"median {median:.2f} s ({verdict}, target "
              f"< {TARGET_SECONDS:g} s)", flush=True)
        results.append({"database": about, "runs": [round(t, 3)
                                                    for t in times],
                        "median_seconds": round(median, 3),
                        "target_seconds": TARGET_SECONDS,
                        "passed": median < TARGET_SECONDS})
    print(json.dumps({"benchmark": "submit", "frames": args.frames,
                      "results": results, "machine": machine()}, indent=2))
    return 0 if all(item["passed"] for item in results) else 1


if __name__ == "__main__":
    sys.exit(main())
