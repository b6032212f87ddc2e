"""
Benchmark: memory of the master with a large database, and of an idle
agent.

Fills a fresh PostgreSQL database with ``--tasks`` tasks (default
1,000,000, most done, with their attempts: the builder of
``growth.py``), starts a real master (``pyfarm-master serve``, gunicorn)
and has it serve what a busy farm asks: the jobs list (every page of it
through the API), one job and its tasks, and the syncs of simulated
agents taking and finishing frames. Then it measures the resident memory
(RSS, by psutil) of every master process: the gunicorn arbiter and each
worker. It also starts a real agent (``pyfarm-agent start --no-daemon``)
and measures its RSS (children included) once it has registered and sits
idle.

Prints the machine, the load average and the median of ``--runs``
measurements; exits 1 when a master process is at 300 MB or more, or the
idle agent at 60 MB or more (the targets).

    .venv/bin/python bench/memory.py [--tasks 1000000] [--runs 3]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402
from benchlib import machine  # noqa: E402
from farmlib import (  # noqa: E402
    POSTGRES_SERVER,
    postgres_database,
    wait_until,
)
from growth import build_history, submit_open_work  # noqa: E402
from scale import (  # noqa: E402
    BenchFarm,
    bench_settings,
    stop_on_sigterm,
)
from simagents import simulate  # noqa: E402

MASTER_TARGET_MB = 300
AGENT_TARGET_MB = 60


def rss_mb(pid, children=False):
    """Return the resident memory of ``pid`` (and its children) in MB."""
    process = psutil.Process(pid)
    processes = [process] + (process.children(recursive=True)
                             if children else [])
    return round(sum(item.memory_info().rss for item in processes)
                 / 2**20, 1)


def serve_requests(farm, agents, seconds, pages=20):
    """Ask the master what a busy farm asks; return what was asked.

    The first ``pages`` pages of the jobs list (the newest jobs first, as
    people read it), the oldest and the newest job with all their tasks,
    then ``seconds`` of syncs of ``agents`` simulated agents.
    """
    listed = 0
    for page in range(1, pages + 1):
        listed += len(farm.client.jobs(page=page, per_page=100))
    newest = farm.client.jobs(page=1, per_page=1)
    tasks = 0
    for job_id in {1, newest[0]["id"] if newest else 1}:
        farm.client.job(job_id)
        tasks += len(farm.client.tasks(job_id))
    syncs = simulate(farm.urls, farm.agent_token, agents=agents,
                     seconds=seconds, mode="burst", interval=1.0,
                     warmup=0.5, protocol="calls")
    return {"job_pages": pages, "jobs_listed": listed,
            "tasks_listed": tasks, "syncs": syncs["syncs"],
            "assignments": syncs["assignments"],
            "errors": syncs["errors"]}


def master_memory(farm):
    """Return ``{"arbiter": MB, "workers": [MB, ...]}`` of the master."""
    arbiter = psutil.Process(farm.processes["master-0"].pid)
    return {"arbiter": rss_mb(arbiter.pid),
            "workers": sorted(rss_mb(child.pid) for child in
                              arbiter.children(recursive=True))}


def agent_memory(farm, settle):
    """Start a real agent, wait until it registered and idles; return its
    RSS in MB (children included)."""
    before = {agent["id"] for agent in farm.client.agents()}
    process = farm.start_agent("memory-agent", cpus=1)
    wait_until(lambda: any(agent["id"] not in before
                           for agent in farm.client.agents()),
               60, message="the agent's registration")
    time.sleep(settle)
    return rss_mb(process.pid, children=True)


def main(argv=None):
    """Run the benchmark; print the figures as text and JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--agents", type=int, default=50,
                        help="simulated agents syncing")
    parser.add_argument("--seconds", type=float, default=10,
                        help="seconds of syncing per run")
    parser.add_argument("--workers", type=int, default=2,
                        help="gunicorn workers of the master")
    parser.add_argument("--settle", type=float, default=5,
                        help="seconds the agent idles before measuring")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    url, drop = postgres_database()
    runs = []
    with tempfile.TemporaryDirectory(prefix="pyfarm-memory-") as root:
        farm = BenchFarm(root, url)
        farm.env.update(bench_settings(1.0))
        try:
            farm.run("pyfarm-master", "db", "upgrade")
            built = build_history(url, args.tasks - 2000)
            print(f"{args.tasks} tasks built in {built['seconds']} s",
                  flush=True)
            farm.start(masters=1, workers=args.workers, scheduler=False)
            submit_open_work(farm)
            for number in range(1, args.runs + 1):
                load = [round(value, 2) for value in os.getloadavg()]
                served = serve_requests(farm, args.agents, args.seconds)
                memory = master_memory(farm)
                runs.append({"run": number, "load": load,
                             "served": served, "master_mb": memory})
                print(f"run {number}: master arbiter {memory['arbiter']} "
                      f"MB, workers {memory['workers']} MB, load "
                      f"{load[0]}", flush=True)
            agent = agent_memory(farm, args.settle)
            print(f"idle agent: {agent} MB", flush=True)
        except BaseException:
            farm.dump_logs()
            raise
        finally:
            farm.stop()
            drop()
    largest = statistics.median(max(run["master_mb"]["workers"]
                                    + [run["master_mb"]["arbiter"]])
                                for run in runs)
    ok = largest < MASTER_TARGET_MB and agent < AGENT_TARGET_MB
    result = {
        "benchmark": "memory",
        "tasks": built["tasks"] + 2000,
        "workers": args.workers,
        "runs": runs,
        "largest_master_process_mb": largest,
        "idle_agent_mb": agent,
        "targets_mb": {"master_process": MASTER_TARGET_MB,
                       "idle_agent": AGENT_TARGET_MB},
        "pass": ok,
        "machine": machine(POSTGRES_SERVER),
    }
    print(json.dumps(result, indent=2))
    print(f"largest master process {largest} MB (target < "
          f"{MASTER_TARGET_MB}), idle agent {agent} MB (target < "
          f"{AGENT_TARGET_MB}); {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
