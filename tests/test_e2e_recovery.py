"""
A render node dies mid-frame: its frames go back to the queue, without
using up their retries, and the other agent finishes them.
"""

import signal

import pytest
from farmlib import wait_until

pytestmark = pytest.mark.e2e


def agent_id(farm, name):
    """The UUID an agent keeps in its data folder."""
    return (farm.root / name / "agent_id").read_text().strip()


def test_killed_agent_frames_finish_on_the_other(farm):
    client = farm.client
    victim = agent_id(farm, "agent-a")
    survivor = agent_id(farm, "agent-b")
    job = client.submit_job(
        title="slow frames", jobtype="command", start=1, end=4, requeue=0,
        data={"argv": ["sleep", "2"]})

    def victim_running():
        return [t for t in client.tasks(job["id"])
                if t["agent"] == victim and t["state"] == "running"]

    (lost_task,) = wait_until(victim_running, 60,
                              message="a frame running on agent-a")[:1]
    farm.kill("agent-a", signal.SIGKILL)

    done = client.wait_for_job(job["id"], timeout=120)
    assert done["state"] == "done"
    task = next(t for t in client.tasks(job["id"])
                if t["id"] == lost_task["id"])
    assert task["state"] == "done"
    assert task["agent"] == survivor
    assert task["failures"] == 0
    logs = client.task_logs(job["id"], task["id"])
    assert [(log["agent"], log["state"]) for log in logs][:1] == [
        (victim, "lost")]
    assert logs[-1]["agent"] == survivor and logs[-1]["state"] == "done"
    states = {a["id"]: a["state"] for a in client.agents()}
    assert states[victim] == "offline"
