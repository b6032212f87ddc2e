"""
The Celery side of ``bench/throughput.py``: the app, its one task and the
client that times a batch of tasks.

It runs with Celery (``celery[redis]``) on ``PYTHONPATH``, which the
benchmark installs in a folder of its own: Celery is not a dependency of
PyFarm. The broker and the result backend are the Redis server at
``PYFARM_BENCH_REDIS`` (``redis://127.0.0.1:PORT/0``).

Workers::

    python -m celery -A celery_peer worker --concurrency 2 ...

Client (prints one JSON object: the seconds of each run)::

    python celery_peer.py --tasks 2000 --runs 3
"""

import argparse
import json
import os
import subprocess
import sys
import time

from celery import Celery
from celery.result import ResultSet

REDIS = os.environ.get("PYFARM_BENCH_REDIS", "redis://127.0.0.1:6379/0")

app = Celery("celery_peer", broker=REDIS, backend=REDIS)
app.conf.update(
    # Celery's defaults, written down: the message is acknowledged when a
    # worker takes it (not when the task ends), results live in Redis.
    task_acks_late=False,
    worker_prefetch_multiplier=4,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.run_true")
def run_true():
    """Run ``true`` as a subprocess; return its exit status."""
    return subprocess.run(["true"], check=True).returncode


def wait_for_workers(count, timeout=60.0):
    """Wait until ``count`` workers answer a ping."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=0.5) or []
        if len(replies) >= count:
            return len(replies)
    raise SystemExit(f"only {len(replies)} of {count} Celery workers "
                     f"answered within {timeout:g} s")


def one_run(tasks):
    """Submit ``tasks`` tasks; return seconds from the first submit to the
    last result."""
    started = time.perf_counter()
    results = ResultSet([run_true.delay() for _ in range(tasks)])
    codes = results.join_native(timeout=600)
    elapsed = time.perf_counter() - started
    if len(codes) != tasks or any(codes):
        raise SystemExit(f"expected {tasks} results of 0, got "
                         f"{len(codes)} ({sorted(set(codes))})")
    results.forget()
    return elapsed


def main(argv=None):
    """Time ``--runs`` batches of ``--tasks`` tasks; print them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    wait_for_workers(args.workers)
    one_run(min(args.tasks, 50))  # warm up the pools and connections
    seconds = [one_run(args.tasks) for _ in range(args.runs)]
    import celery
    print(json.dumps({"seconds": seconds, "celery": celery.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
