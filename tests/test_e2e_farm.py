"""
The farm end to end: a real master, scheduler and two agents running real
subprocesses, on SQLite and on PostgreSQL.
"""

import sys
import time
import uuid

import psutil
import pytest
from farmlib import wait_until

pytestmark = pytest.mark.e2e

PYTHON = sys.executable


def command_job(client, title, argv, start=1, end=1, **fields):
    """Submit a ``command`` job."""
    return client.submit_job(title=title, jobtype="command", start=start,
                             end=end, data={"argv": argv}, **fields)


def test_batched_job_finishes_with_every_frame_and_log(farm):
    client = farm.client
    job = command_job(
        client, "twenty frames",
        [PYTHON, "-c", "import sys; print('rendering', sys.argv[1:])",
         "{start}", "{end}", "{by}"],
        start=1, end=20, batch=4)
    done = client.wait_for_job(job["id"], timeout=120)
    assert done["state"] == "done"
    assert done["tasks"]["done"] == 20
    tasks = client.tasks(job["id"])
    assert sorted(task["frame"] for task in tasks) == list(range(1, 21))
    assert {task["state"] for task in tasks} == {"done"}
    for task in tasks:
        text = client.task_log(job["id"], task["id"], task["attempt"]).text
        # A batch of four frames ran as one process: frames 1-4, 5-8...
        first = task["frame"] - (task["frame"] - 1) % 4
        assert f"rendering ['{first}', '{first + 3}', '1']" in text


def test_child_waits_for_parent(farm):
    client = farm.client
    parent = command_job(client, "parent",
                         [PYTHON, "-c", "import time; time.sleep(2)"])
    child = command_job(client, "child", ["true"],
                        parents=[parent["id"]])
    assert client.job(child["id"])["waiting_for"] == [parent["id"]]
    finished = client.wait_for_job(child["id"], timeout=60)
    parent = client.job(parent["id"])
    assert parent["state"] == "done"
    assert finished["state"] == "done"
    assert finished["started_at"] >= parent["finished_at"]


def test_failing_command_runs_requeue_plus_one_times(farm):
    client = farm.client
    job = command_job(
        client, "always fails",
        [PYTHON, "-c", "import sys; print('boom on frame', sys.argv[1]); "
                       "sys.exit(3)", "{frame}"],
        requeue=2)
    failed = client.wait_for_job(job["id"], timeout=60)
    assert failed["state"] == "failed"
    (task,) = client.tasks(job["id"])
    assert task["state"] == "failed"
    assert task["attempt"] == 3
    assert task["failures"] == 3
    assert "3" in task["last_error"]
    logs = client.task_logs(job["id"], task["id"])
    assert [log["attempt"] for log in logs] == [1, 2, 3]
    assert all(log["state"] == "failed" for log in logs)
    # A failed frame goes to the other agent next time when it can.
    assert logs[0]["agent"] != logs[1]["agent"]
    assert "boom on frame 1" in client.task_log(job["id"], task["id"], 1).text


def test_cancel_stops_a_running_frame(farm):
    client = farm.client
    marker = f"pyfarm-e2e-cancel-{uuid.uuid4().hex}"
    job = command_job(client, "long",
                      [PYTHON, "-c", "import time; time.sleep(300)", marker])
    wait_until(lambda: client.tasks(job["id"])[0]["state"] == "running",
               30, message="the frame to run")
    assert processes_with(marker)
    cancelled_at = time.monotonic()
    client.cancel(job["id"])
    wait_until(lambda: not processes_with(marker), 15,
               message="the frame's process to end")
    assert time.monotonic() - cancelled_at < 15
    job = client.job(job["id"])
    assert job["state"] == "failed"
    (task,) = client.tasks(job["id"])
    assert task["state"] == "failed"
    assert "cancelled" in task["last_error"]


def processes_with(marker):
    """Processes whose command line holds ``marker``."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if marker in (process.info["cmdline"] or []):
            found.append(process)
    return found
