"""
Benchmark: dispatch at scale, with simulated agents (and scale out).

Starts a master on a fresh PostgreSQL database (``pyfarm-master serve``,
gunicorn with several workers) and its scheduler, submits jobs of
``true`` until ``--frames`` frames are queued, and runs the simulated
agents of ``simagents.py`` (the real agent protocol over HTTP, no
subprocess) against it, in two phases per run:

``paced``
    every agent syncs once per ``--sync-interval`` (10 s) and finishes
    what it gets at once: the sync latency (p99) of a busy farm at its
    normal pace;
``burst``
    every agent syncs again as soon as its frames are done, as the real
    agent does: the sustained frame assignments per second.

The simulated agents speak ``--protocol batch`` (the default, as the real
agent: the frames done and the next sync in one ``POST
/api/v1/agents/<id>/updates``, whose latency is the sync latency) or
``--protocol calls`` (a sync, then one call per task update and log
chunk). ``--prefetch N`` (batch only, default 0) has every sync of the
``burst`` phase ask for up to ``N`` more assignments of the job of the
agent's last assignment, as the real agent asks for frames that end at
once (the master grants up to its ``prefetch_limit``); the ``paced``
phase never prefetches, as the real agent does not for frames that last
a sync interval.

The queue is topped up to ``--frames`` before every run. With
``--masters 2`` two master processes (each with ``--workers`` gunicorn
workers) and two schedulers share the database and the agents are spread
over both (benchmark 6): its throughput is compared with the same run on
one master. After the runs the database is checked: no task attempt held
by two agents at once and no frame done twice (every frame here finishes
at once, so a frame handed to two agents would be done twice).

    .venv/bin/python bench/scale.py [--agents 1000] [--frames 100000]
                                    [--runs 3] [--masters 1|2]
                                    [--workers 4] [--seconds 30]
                                    [--protocol batch|calls]
                                    [--prefetch 0]

Prints the machine, the settings, the load average and the median of the
runs; exits 1 when a target is missed (1,000 assignments/s and sync p99
under 100 ms; with two masters: more throughput than one and no double
assignment).
"""

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import sqlalchemy as sa  # noqa: E402
from benchlib import machine  # noqa: E402
from farmlib import (  # noqa: E402
    POSTGRES_SERVER,
    Farm,
    free_port,
    postgres_database,
    wait_until,
)
from simagents import PROTOCOLS, simulate  # noqa: E402

from pyfarm.core.client import Client  # noqa: E402

TARGET_ASSIGNMENTS = 1000
TARGET_SYNC_P99_MS = 100
#: Frames per submitted job (the queue is made of such jobs).
JOB_FRAMES = 1000


def bench_settings(sync_interval, scheduler_interval=1.0):
    """Return the farm's settings (environment) for the benchmark."""
    return {
        "PYFARM_SYNC_INTERVAL": str(sync_interval),
        "PYFARM_SCHEDULER_INTERVAL": str(scheduler_interval),
        # Several intervals: the agents of one phase must not be lost
        # while another phase sets up.
        "PYFARM_LOST_TIMEOUT": str(max(60, 6 * sync_interval)),
        "PYFARM_LOGLEVEL": "warning",
    }


class BenchFarm(Farm):
    """A farm of ``masters`` master processes (and as many schedulers)
    with ``workers`` gunicorn workers each, on one database."""

    def start(self, masters=1, workers=4, threads=4, scheduler=True):
        """Upgrade the database, make users and tokens, start everything;
        return the masters' URLs."""
        self.run("pyfarm-master", "db", "upgrade")
        self.run("pyfarm-master", "users", "create", "admin",
                 "--role", "admin")
        self.admin_token = self.run(
            "pyfarm-master", "tokens", "create", "admin").strip()
        self.run("pyfarm-master", "users", "create", "agents",
                 "--role", "agent")
        self.agent_token = self.run(
            "pyfarm-master", "tokens", "create", "agents").strip()
        self.urls = []
        for number in range(masters):
            port = self.port if number == 0 else free_port()
            self.spawn(f"master-{number}", "pyfarm-master", "serve",
                       "--host", "127.0.0.1", "--port", str(port),
                       "--workers", str(workers), "--threads",
                       str(threads))
            if scheduler:
                self.spawn(f"scheduler-{number}", "pyfarm-master",
                           "scheduler")
            self.urls.append(f"http://127.0.0.1:{port}")
        for url in self.urls:
            self.url = url
            wait_until(self._answers, 60, message=f"the master at {url}")
        self.url = self.urls[0]
        self.client = Client(self.url, self.admin_token)
        return self.urls

    def master_pids(self):
        """Return the pids of the masters' gunicorn processes (arbiters
        and workers)."""
        import psutil

        pids = []
        for name, process in self.processes.items():
            if name.startswith("master-"):
                parent = psutil.Process(process.pid)
                pids += [parent.pid] + [child.pid for child in
                                        parent.children(recursive=True)]
        return pids


def queued_frames(url):
    """Return the number of queued tasks in the database at ``url``."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql(
                "SELECT count(*) FROM tasks WHERE state = 'queued'").scalar()
    finally:
        engine.dispose()


def top_up(farm, url, frames):
    """Submit jobs of ``true`` until ``frames`` frames are queued."""
    missing = frames - queued_frames(url)
    submitted = 0
    while missing > 0:
        size = min(JOB_FRAMES, missing)
        farm.client.submit_job(title=f"scale {submitted}", jobtype="command",
                               start=1, end=size, data={"argv": ["true"]})
        missing -= size
        submitted += size
    return submitted


def check_database(url):
    """Check from the database that no frame was assigned twice at once.

    Returns counts that must all be 0 but ``attempts``:

    ``double_done``
        tasks with two ``done`` attempts: every frame here ends at once,
        so a frame handed to a second agent while the first held it
        would be done twice;
    ``double_active``
        tasks with two attempts still assigned or running;
    ``earlier_still_active``
        attempts still assigned or running although a later attempt of
        the task exists (the later one was handed out while the earlier
        was held);
    ``attempt_behind``
        tasks whose ``attempt`` is not their highest attempt row.

    (Timestamps are not compared: each is taken when its request starts,
    and under this load a request may wait seconds for a lock.)
    """
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            def count(statement):
                return connection.exec_driver_sql(statement).scalar()

            return {
                "attempts": count("SELECT count(*) FROM task_attempts"),
                "double_done": count(
                    "SELECT count(*) FROM (SELECT task_id FROM "
                    "task_attempts WHERE state = 'done' GROUP BY task_id "
                    "HAVING count(*) > 1) AS twice"),
                "double_active": count(
                    "SELECT count(*) FROM (SELECT task_id FROM "
                    "task_attempts WHERE state IN ('assigned', 'running') "
                    "GROUP BY task_id HAVING count(*) > 1) AS twice"),
                "earlier_still_active": count(
                    "SELECT count(*) FROM task_attempts a "
                    "WHERE a.state IN ('assigned', 'running') AND EXISTS "
                    "(SELECT 1 FROM task_attempts b WHERE b.task_id = "
                    "a.task_id AND b.attempt > a.attempt)"),
                "attempt_behind": count(
                    "SELECT count(*) FROM tasks t JOIN (SELECT task_id, "
                    "max(attempt) AS last FROM task_attempts "
                    "GROUP BY task_id) m ON m.task_id = t.id "
                    "WHERE t.attempt <> m.last"),
            }
    finally:
        engine.dispose()


def stop_on_sigterm():
    """Turn SIGTERM into SystemExit, so that the farm's processes are
    stopped and its database dropped on the way out."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def load_average():
    """Return the 1, 5 and 15 minute load averages."""
    return [round(value, 2) for value in os.getloadavg()]


def run_farm(args, masters):
    """Run ``args.runs`` runs on a farm of ``masters`` masters; return
    the runs' figures and the database check."""
    settings = bench_settings(args.sync_interval)
    url, drop = postgres_database()
    with tempfile.TemporaryDirectory(prefix="pyfarm-scale-") as root:
        farm = BenchFarm(root, url)
        farm.env.update(settings)
        try:
            urls = farm.start(masters=masters, workers=args.workers,
                              threads=args.threads)
            runs = []
            for number in range(1, args.runs + 1):
                added = top_up(farm, url, args.frames)
                load = load_average()
                paced = simulate(
                    urls, farm.agent_token, agents=args.agents,
                    seconds=args.seconds, mode="paced",
                    interval=args.sync_interval,
                    log_chunk=args.log_chunk, seed=masters,
                    protocol=args.protocol, prefetch=0)
                burst = simulate(
                    urls, farm.agent_token, agents=args.agents,
                    seconds=args.seconds, mode="burst",
                    interval=args.sync_interval, warmup=args.warmup,
                    log_chunk=args.log_chunk, seed=masters,
                    protocol=args.protocol, prefetch=args.prefetch)
                run = {"run": number, "submitted_frames": added,
                       "load_before": load, "load_after": load_average(),
                       "paced": paced, "burst": burst}
                runs.append(run)
                print(f"[{masters} master(s)] run {number}: "
                      f"{burst['assignments_per_second']} assignments/s "
                      f"(burst), sync p99 {paced['sync_ms']['p99']} ms "
                      f"(paced, {paced['syncs_per_second']} syncs/s), "
                      f"load {run['load_after'][0]}", flush=True)
            # Let the in-flight work settle before checking.
            time.sleep(1)
            check = check_database(url)
        except BaseException:
            farm.dump_logs()
            raise
        finally:
            farm.stop()
            drop()
    return runs, check


def summarise(runs, check):
    """Return the medians of ``runs`` and the database check."""
    def median(phase, *keys):
        values = []
        for run in runs:
            value = run[phase]
            for key in keys:
                value = value[key] if value is not None else None
            values.append(value)
        # None: not measured (the batch protocol has no update calls).
        if any(value is None for value in values):
            return None
        return statistics.median(values)

    return {
        "assignments_per_second": median("burst", "assignments_per_second"),
        "tasks_per_second": median("burst", "tasks_per_second"),
        "burst_sync_p99_ms": median("burst", "sync_ms", "p99"),
        "paced_sync_p50_ms": median("paced", "sync_ms", "p50"),
        "paced_sync_p99_ms": median("paced", "sync_ms", "p99"),
        "paced_syncs_per_second": median("paced", "syncs_per_second"),
        # Calls protocol only: the batch protocol times its updates
        # with the sync that goes in the same request.
        "update_p99_ms": median("burst", "update_ms", "p99"),
        "tool_cpu_ms_per_assignment": median(
            "burst", "tool_cpu_ms_per_assignment"),
        "held_by_two_agents_seen": sum(
            run[phase]["held_by_two_agents"] for run in runs
            for phase in ("paced", "burst")),
        "database_check": check,
    }


def main(argv=None):
    """Run the benchmark; print the figures as text and JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=100_000,
                        help="frames queued at the start of every run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30,
                        help="measured seconds of each phase")
    parser.add_argument("--warmup", type=float, default=5,
                        help="seconds of the burst phase not counted")
    parser.add_argument("--masters", type=int, choices=[1, 2], default=1,
                        help="2: also run two masters and two schedulers "
                        "and compare (benchmark 6)")
    parser.add_argument("--workers", type=int, default=4,
                        help="gunicorn workers per master")
    parser.add_argument("--threads", type=int, default=4,
                        help="threads per gunicorn worker")
    parser.add_argument("--sync-interval", type=float, default=10.0)
    parser.add_argument("--log-chunk", action="store_true",
                        help="each assignment also sends a log chunk")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="batch",
                        help="how the simulated agents report: batch "
                        "(default, as the real agent: the frames done and "
                        "the next sync in one request) or calls (one call "
                        "each)")
    parser.add_argument("--prefetch", type=int, default=0,
                        help="batch protocol: every sync asks for up to "
                        "this many more assignments of the agent's last "
                        "job (default 0: none)")
    args = parser.parse_args(argv)
    if args.prefetch < 0 or (args.prefetch and args.protocol != "batch"):
        parser.error("--prefetch must be 0, or positive with --protocol "
                     "batch")
    stop_on_sigterm()
    result = {
        "benchmark": "scale",
        "agents": args.agents,
        "frames_queued": args.frames,
        "frames_per_job": JOB_FRAMES,
        "seconds_per_phase": args.seconds,
        "workers_per_master": args.workers,
        "threads_per_worker": args.threads,
        "protocol": args.protocol,
        "prefetch": args.prefetch,
        "log_chunk": args.log_chunk,
        "settings": bench_settings(args.sync_interval),
        "machine": machine(POSTGRES_SERVER),
    }
    ok = True
    counts = [1, 2] if args.masters == 2 else [1]
    for masters in counts:
        runs, check = run_farm(args, masters)
        summary = summarise(runs, check)
        result[f"masters_{masters}"] = {"summary": summary, "runs": runs}
        clean = (summary["held_by_two_agents_seen"] == 0
                 and not any(value for key, value in check.items()
                             if key != "attempts"))
        summary["never_two_agents"] = clean
        ok = ok and clean
        if masters == 1:
            ok = ok and (summary["assignments_per_second"]
                         >= TARGET_ASSIGNMENTS
                         and summary["paced_sync_p99_ms"]
                         < TARGET_SYNC_P99_MS)
    if args.masters == 2:
        one = result["masters_1"]["summary"]["assignments_per_second"]
        two = result["masters_2"]["summary"]["assignments_per_second"]
        result["scale_out_ratio"] = round(two / one, 2) if one else None
        ok = ok and two > one
    result["pass"] = ok
    print(json.dumps(result, indent=2))
    for masters in counts:
        summary = result[f"masters_{masters}"]["summary"]
        print(f"{masters} master(s): {summary['assignments_per_second']} "
              f"assignments/s (target {TARGET_ASSIGNMENTS}), paced sync "
              f"p99 {summary['paced_sync_p99_ms']} ms (target "
              f"< {TARGET_SYNC_P99_MS}), never two agents: "
              f"{summary['never_two_agents']}")
    print(f"simulated agents: {args.agents}, protocol {args.protocol}, "
          f"prefetch {args.prefetch}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
