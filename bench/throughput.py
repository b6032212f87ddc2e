"""
Benchmark: frames of ``true`` end to end, PyFarm against Celery.

PyFarm: a real master (gunicorn), the scheduler and two real agents of two
slots each (``--cpus 2``) as processes, on SQLite and on PostgreSQL; one
job of N frames of ``true`` (batch 1) per run, timed from just before its
submission to the moment the master stored the last ``done`` (the job's
``finished_at``).

Celery, in the same run: a Redis broker and result backend (Debian's
``redis-server``, started here on a free port bound to 127.0.0.1) and two
Celery worker processes with the prefork pool and a concurrency of 2, so
that four ``true`` subprocesses run at once, as on PyFarm's four slots; N
tasks that each ``subprocess.run(["true"])``, timed from the first submit
to the last result. Celery is installed (``pip install --target``) into a
cache folder of its own, never into the project's environment.

Prints the machine, the load, each run, the medians in frames per second
and the ratio PyFarm / Celery per database; exits 1 when a ratio is below
the target (1.0).

    .venv/bin/python bench/throughput.py [--frames 2000] [--runs 3]
        [--database sqlite --database postgresql] [--no-celery]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from benchlib import bench_farm, machine  # noqa: E402
from farmlib import free_port, wait_until  # noqa: E402

TARGET_RATIO = 1.0
AGENTS = 2
SLOTS = 2
CELERY_REQUIREMENT = "celery[redis]>=5.3,<6"
PEERS = ROOT / "bench" / "peers"


def load():
    """Return the 1, 5 and 15 minute load averages, rounded."""
    return [round(value, 2) for value in os.getloadavg()]


def parse_time(text):
    """Return the datetime of an ISO 8601 timestamp of the API."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- PyFarm --------------------------------------------------------------


def pyfarm_runs(database, frames, runs, settings):
    """Return ``(seconds of each run, database description, loads)``."""
    with bench_farm(database) as farm:
        # The master's defaults, except for its logging and what the
        # command line asks for.
        for name in ("PYFARM_SYNC_INTERVAL", "PYFARM_SCHEDULER_INTERVAL",
                     "PYFARM_LOST_TIMEOUT"):
            farm.env.pop(name, None)
        farm.env.update(settings)
        farm.start_master()
        about = machine(farm.env["PYFARM_DATABASE_URL"]).get("database")
        for number in range(AGENTS):
            farm.start_agent(f"agent-{'ab'[number]}", cpus=SLOTS)
        farm.wait_for_agents(AGENTS)
        one_job(farm, min(frames, 20))  # warm up workers and agents
        seconds, loads = [], []
        for _ in range(runs):
            wait_idle(farm)
            loads.append(load())
            seconds.append(one_job(farm, frames))
        return seconds, about, loads


def one_job(farm, frames):
    """Submit a job of ``frames`` frames of ``true``; return the seconds
    from submission to its last ``done``."""
    client = farm.client
    submitted = datetime.now(timezone.utc)
    job = client.submit_job(title=f"throughput {frames}", jobtype="command",
                            start=1, end=frames, data={"argv": ["true"]})
    finished = wait_until(
        lambda: finished_job(client, job["id"]), timeout=frames + 120,
        interval=0.2, message=f"a job of {frames} frames to finish")
    if finished["state"] != "done" or finished["tasks"].get("done") != \
            frames:
        raise AssertionError(f"the job ended {finished['state']} with "
                             f"tasks {finished['tasks']}")
    return (parse_time(finished["finished_at"]) - submitted).total_seconds()


def finished_job(client, job_id):
    """Return the job once it is done or failed, else None."""
    job = client.job(job_id)
    return job if job["state"] in ("done", "failed") else None


def wait_idle(farm):
    """Wait until no agent holds work."""
    wait_until(lambda: all(agent["state"] == "online"
                           for agent in farm.agents()),
               60, interval=0.2, message="the agents to be idle")


# -- Celery --------------------------------------------------------------


def cache_dir():
    """Return the folder Celery is installed in for the benchmark."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return Path(base) / "pyfarm-bench" / f"celery-py{version}"


def install_celery(target):
    """Install Celery with its Redis transport into ``target`` (once)."""
    marker = target / ".installed"
    if marker.exists():
        return
    print(f"installing {CELERY_REQUIREMENT} into {target} (once)",
          file=sys.stderr, flush=True)
    if target.exists():
        shutil.rmtree(target)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", "--target", str(target),
         CELERY_REQUIREMENT], check=True)
    marker.write_text(CELERY_REQUIREMENT + "\n")


def redis_server():
    """Return the path of ``redis-server`` or exit saying how to get it."""
    path = shutil.which("redis-server")
    if path is None:
        raise SystemExit("redis-server is not installed; on Debian or "
                         "Ubuntu: apt-get install redis-server (or run "
                         "with --no-celery)")
    return path


def wait_for_port(port, timeout=30.0):
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    def accepts():
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0
    wait_until(accepts, timeout, message=f"a server on port {port}")


def stop(process):
    """Stop ``process`` and its process group."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


def celery_runs(tasks, runs, target):
    """Return ``(seconds of each run, Celery's version)``."""
    install_celery(target)
    server = redis_server()
    processes = []
    with tempfile.TemporaryDirectory(prefix="pyfarm-bench-celery-") as root:
        port = free_port()
        env = dict(os.environ,
                   PYTHONPATH=os.pathsep.join([str(target), str(PEERS)]),
                   PYFARM_BENCH_REDIS=f"redis://127.0.0.1:{port}/0")
        try:
            with open(Path(root) / "redis.log", "wb") as log:
                processes.append(subprocess.Popen(
                    [server, "--port", str(port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--dir", root],
                    stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True))
            wait_for_port(port)
            for number in range(AGENTS):
                with open(Path(root) / f"worker-{number}.log", "wb") as log:
                    processes.append(subprocess.Popen(
                        [sys.executable, "-m", "celery", "-A",
                         "celery_peer", "worker", "--pool", "prefork",
                         "--concurrency", str(SLOTS), "--loglevel",
                         "warning", "--hostname", f"worker{number}@%h",
                         "--without-gossip", "--without-mingle",
                         "--without-heartbeat"],
                        env=env, cwd=root, stdout=log,
                        stderr=subprocess.STDOUT, start_new_session=True))
            result = subprocess.run(
                [sys.executable, str(PEERS / "celery_peer.py"), "--tasks",
                 str(tasks), "--runs", str(runs), "--workers", str(AGENTS)],
                env=env, cwd=root, capture_output=True, text=True,
                timeout=600 + 60 * runs)
            if result.returncode != 0:
                for path in sorted(Path(root).glob("*.log")):
                    sys.stderr.write(f"--- {path.name} ---\n"
                                     f"{path.read_text()[-2000:]}\n")
                raise SystemExit(f"the Celery client failed:\n"
                                 f"{result.stdout}\n{result.stderr}")
            answer = json.loads(result.stdout.strip().splitlines()[-1])
            return answer["seconds"], answer["celery"]
        finally:
            for process in reversed(processes):
                stop(process)


# -- the benchmark -------------------------------------------------------


def main(argv=None):
    """Run the benchmark; print each figure, then a JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database", action="append",
                        choices=["sqlite", "postgresql"])
    parser.add_argument("--no-celery", action="store_true",
                        help="measure PyFarm only (no ratio, exit 0)")
    parser.add_argument("--celery-dir", type=Path, default=cache_dir(),
                        help="where Celery is installed (default "
                             "%(default)s)")
    parser.add_argument("--set", action="append", default=[],
                        metavar="NAME=VALUE",
                        help="a master or agent setting for the PyFarm "
                             "side, such as PYFARM_SYNC_INTERVAL=1")
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    frames = args.frames
    print(f"machine: {json.dumps(machine())}", flush=True)
    results = []
    for database in args.database or ["sqlite", "postgresql"]:
        seconds, about, loads = pyfarm_runs(database, frames, args.runs,
                                            settings)
        median = statistics.median(seconds)
        rate = frames / median
        print(f"PyFarm on {about}: runs "
              f"{', '.join(f'{value:.2f}' for value in seconds)} s; median "
              f"{median:.2f} s = {rate:.1f} frames/s (load before the runs "
              f"{loads})", flush=True)
        results.append({"database": about, "runs": [round(value, 3)
                                                    for value in seconds],
                        "median_seconds": round(median, 3),
                        "frames_per_second": round(rate, 1),
                        "load": loads})
    celery = None
    if not args.no_celery:
        load_before = load()
        seconds, version = celery_runs(frames, args.runs, args.celery_dir)
        median = statistics.median(seconds)
        celery = {"version": version,
                  "runs": [round(value, 3) for value in seconds],
                  "median_seconds": round(median, 3),
                  "frames_per_second": round(frames / median, 1),
                  "load": load_before}
        print(f"Celery {version} (Redis, 2 workers x prefork 2): runs "
              f"{', '.join(f'{value:.2f}' for value in seconds)} s; median "
              f"{median:.2f} s = {celery['frames_per_second']:.1f} tasks/s "
              f"(load before {load_before})", flush=True)
        for item in results:
            ratio = item["frames_per_second"] / celery["frames_per_second"]
            item["ratio"] = round(ratio, 3)
            item["passed"] = ratio >= TARGET_RATIO
            print(f"ratio PyFarm/Celery on {item['database']}: "
                  f"{ratio:.2f} ({'PASS' if item['passed'] else 'FAIL'}, "
                  f"target >= {TARGET_RATIO:g})", flush=True)
    print(json.dumps({"benchmark": "throughput", "frames": frames,
                      "agents": AGENTS, "slots_per_agent": SLOTS,
                      "settings": settings, "pyfarm": results,
                      "celery": celery, "load_after": load()}, indent=2))
    if celery is None:
        return 0
    return 0 if all(item["passed"] for item in results) else 1


if __name__ == "__main__":
    sys.exit(main())
