"""The agents API as people use it: list, detail, PATCH, DELETE."""

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from pyfarm.core.enums import AgentState, WorkState
from pyfarm.master.db import utcnow
from pyfarm.master.models import (
    Agent,
    AgentJobFailure,
    Job,
    JobType,
    Tag,
    Task,
    TaskAttempt,
)
from pyfarm.master.models.task import ATTEMPT_LOST
from pyfarm.master.services.catalog import (
    ensure_software_version,
    ensure_tags,
)

AGENT_KEYS = {"id", "hostname", "os", "os_version", "cpus", "ram",
              "free_ram", "gpus", "disks", "tags", "software", "state",
              "version", "remote_addr", "registered_at", "last_heard_at"}


def error_of(response, status):
    """Assert ``status`` and return the JSON error message."""
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()["error"]


def make_agent(session, hostname="node01", state=AgentState.ONLINE,
               tags=(), software=()):
    """Insert an agent as registration would; return its id."""
    now = utcnow()
    agent = Agent(
        id=str(uuid.uuid4()), hostname=hostname, os="linux",
        os_version="6.1", cpus=16, ram=65536, free_ram=60000,
        gpus=[{"name": "RTX 4090", "ram": 24564}],
        disks=[{"path": "/", "total": 1000000, "free": 500000}],
        version="0.1.0", remote_addr="10.0.0.5", state=state,
        registered_at=now, last_heard_at=now)
    agent.tags = ensure_tags(session, tags)
    agent.software = [ensure_software_version(session, name, version)
                      for name, version in software]
    session.add(agent)
    session.commit()
    return agent.id


def make_job(session, frames=3):
    """Insert a job with one task per frame; return ``(job, tasks)``."""
    jobtype = session.execute(
        select(JobType).where(JobType.name == "command")).scalar_one()
    now = utcnow()
    job = Job(title="shot", jobtype_id=jobtype.id, start=1, end=frames,
              state=WorkState.RUNNING, created_at=now, updated_at=now,
              started_at=now, data={"argv": ["true"]})
    session.add(job)
    session.flush()
    tasks = [Task(job_id=job.id, frame=frame, created_at=now,
                  updated_at=now) for frame in range(1, frames + 1)]
    session.add_all(tasks)
    session.commit()
    return job, tasks


def hold(session, agent_id, task, state, attempt_state=None, at=None):
    """Give ``task`` to the agent as a new attempt in ``state``."""
    at = at or utcnow()
    assignment = str(uuid.uuid4())
    task.state = state
    task.attempt += 1
    if state in (WorkState.ASSIGNED, WorkState.RUNNING):
        task.agent_id = agent_id
        task.assignment_id = assignment
    task.assigned_at = at
    session.add(TaskAttempt(
        task_id=task.id, attempt=task.attempt, agent_id=agent_id,
        assignment_id=assignment, state=attempt_state or state,
        assigned_at=at,
        finished_at=at if state in (WorkState.DONE, WorkState.FAILED)
        else None))
    session.commit()


# -- list ----------------------------------------------------------------


def test_list_agents_shows_the_agent_json(alice, session):
    agent_id = make_agent(
        session, tags=["linux", "gpu"],
        software=[("maya", "2025"), ("blender", "10.0"),
                  ("blender", "4.2")])
    response = alice.get("/api/v1/agents/")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["total"], body["page"], body["per_page"]) == (1, 1, 100)
    (agent,) = body["agents"]
    assert set(agent) == AGENT_KEYS
    assert agent["id"] == agent_id
    assert agent["tags"] == ["gpu", "linux"]
    assert agent["software"] == [
        {"software": "blender", "version": "4.2"},
        {"software": "blender", "version": "10.0"},
        {"software": "maya", "version": "2025"}]
    assert (agent["cpus"], agent["ram"], agent["free_ram"]) == (
        16, 65536, 60000)
    assert agent["gpus"] == [{"name": "RTX 4090", "ram": 24564}]
    assert agent["disks"][0]["path"] == "/"
    assert agent["state"] == "online" and agent["os"] == "linux"
    assert agent["remote_addr"] == "10.0.0.5"
    assert agent["last_heard_at"].endswith("+00:00")


def test_list_agents_filters_by_state(alice, session):
    make_agent(session, "node01", AgentState.ONLINE)
    off = make_agent(session, "node02", AgentState.OFFLINE)
    body = alice.get("/api/v1/agents/?state=offline").get_json()
    assert [a["id"] for a in body["agents"]] == [off]
    assert body["total"] == 1


def test_list_agents_unknown_state_is_400(alice):
    message = error_of(alice.get("/api/v1/agents/?state=asleep"), 400)
    assert "'state'" in message and "disabled" in message


def test_list_agents_filters_by_hostname_substring(alice, session):
    make_agent(session, "Render-Node-01")
    make_agent(session, "render-node-02")
    make_agent(session, "workstation_7")
    body = alice.get("/api/v1/agents/?hostname=node").get_json()
    assert [a["hostname"] for a in body["agents"]] == [
        "Render-Node-01", "render-node-02"]
    # Wildcards are plain characters: "_" and "%" match only themselves.
    for text, expected in (("t_o", []), ("%", []),
                           ("n_", ["workstation_7"])):
        body = alice.get(f"/api/v1/agents/?hostname={text}").get_json()
        assert [a["hostname"] for a in body["agents"]] == expected, text


def test_list_agents_filters_by_tag(alice, session):
    gpu = make_agent(session, "a", tags=["gpu"])
    make_agent(session, "b", tags=["bigmem"])
    body = alice.get("/api/v1/agents/?tag=gpu").get_json()
    assert [a["id"] for a in body["agents"]] == [gpu]
    assert alice.get("/api/v1/agents/?tag=none").get_json()["agents"] == []


def test_list_agents_is_paginated_by_hostname(alice, session):
    for name in ("c", "a", "b"):
        make_agent(session, name)
    body = alice.get("/api/v1/agents/?page=2&per_page=2").get_json()
    assert [a["hostname"] for a in body["agents"]] == ["c"]
    assert (body["total"], body["page"], body["per_page"]) == (3, 2, 2)
    assert "'page'" in error_of(alice.get("/api/v1/agents/?page=x"), 400)


def test_agent_tokens_cannot_read_agents(agent_api, session):
    agent_id = make_agent(session)
    assert error_of(agent_api.get("/api/v1/agents/"), 403)
    assert error_of(agent_api.get(f"/api/v1/agents/{agent_id}"), 403)


# -- detail --------------------------------------------------------------


def test_agent_detail_shows_held_tasks_and_recent_attempts(alice,
                                                           session):
    agent_id = make_agent(session)
    other = make_agent(session, "node02")
    job, (done, running, assigned) = make_job(session, 3)
    start = utcnow() - timedelta(hours=1)
    hold(session, agent_id, done, WorkState.DONE, at=start)
    hold(session, agent_id, running, WorkState.RUNNING,
         at=start + timedelta(minutes=1))
    hold(session, agent_id, assigned, WorkState.ASSIGNED,
         at=start + timedelta(minutes=2))
    _, (elsewhere,) = make_job(session, 1)
    hold(session, other, elsewhere, WorkState.RUNNING)
    response = alice.get(f"/api/v1/agents/{agent_id}")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == AGENT_KEYS | {"tasks", "recent_attempts"}
    assert [(t["id"], t["state"], t["agent"]) for t in body["tasks"]] == [
        (running.id, "running", agent_id),
        (assigned.id, "assigned", agent_id)]
    assert body["tasks"][0]["job"] == job.id
    assert body["tasks"][0]["frame"] == 2
    recent = body["recent_attempts"]
    assert [(a["task"], a["state"]) for a in recent] == [
        (assigned.id, "assigned"), (running.id, "running"),
        (done.id, "done")]
    assert recent[2] == {
        "task": done.id, "job": job.id, "frame": 1, "attempt": 1,
        "state": "done", "error": None,
        "assigned_at": start.isoformat(),
        "finished_at": start.isoformat()}


def test_agent_detail_shows_the_latest_50_attempts(alice, session):
    agent_id = make_agent(session)
    _, (task,) = make_job(session, 1)
    start = utcnow() - timedelta(days=1)
    for minute in range(55):
        hold(session, agent_id, task, WorkState.FAILED,
             at=start + timedelta(minutes=minute))
    recent = alice.get(f"/api/v1/agents/{agent_id}").get_json()[
        "recent_attempts"]
    assert [a["attempt"] for a in recent] == list(range(55, 5, -1))
    assert alice.get(f"/api/v1/agents/{agent_id}").get_json()[
        "tasks"] == []


def test_unknown_agent_is_404(alice, admin):
    missing = str(uuid.uuid4())
    assert missing in error_of(alice.get(f"/api/v1/agents/{missing}"), 404)
    assert error_of(admin.patch(f"/api/v1/agents/{missing}",
                                json={"state": "disabled"}), 404)
    assert error_of(admin.delete(f"/api/v1/agents/{missing}"), 404)


# -- PATCH ---------------------------------------------------------------


def test_admin_disables_and_enables_an_agent(admin, session):
    agent_id = make_agent(session)
    path = f"/api/v1/agents/{agent_id}"
    response = admin.patch(path, json={"state": "disabled"})
    assert response.status_code == 200
    assert response.get_json()["state"] == "disabled"
    assert set(response.get_json()) == AGENT_KEYS
    assert admin.get(path).get_json()["state"] == "disabled"
    assert admin.patch(path, json={"state": "online"}).get_json()[
        "state"] == "online"
    session.expire_all()
    assert session.get(Agent, agent_id).state == AgentState.ONLINE


def test_enabling_an_agent_that_holds_tasks_makes_it_running(admin,
                                                             session):
    agent_id = make_agent(session, state=AgentState.DISABLED)
    _, (task,) = make_job(session, 1)
    hold(session, agent_id, task, WorkState.RUNNING)
    response = admin.patch(f"/api/v1/agents/{agent_id}",
                           json={"state": "online"})
    assert response.get_json()["state"] == "running"


def test_disabling_keeps_the_tasks_it_runs(admin, session):
    agent_id = make_agent(session, state=AgentState.RUNNING)
    _, (task,) = make_job(session, 1)
    hold(session, agent_id, task, WorkState.RUNNING)
    admin.patch(f"/api/v1/agents/{agent_id}", json={"state": "disabled"})
    session.expire_all()
    assert session.get(Task, task.id).state == WorkState.RUNNING
    assert session.get(Task, task.id).agent_id == agent_id


@pytest.mark.parametrize("state", [AgentState.OFFLINE, AgentState.RUNNING])
def test_enabling_an_agent_that_is_not_disabled_changes_nothing(
        admin, session, state):
    agent_id = make_agent(session, state=state)
    response = admin.patch(f"/api/v1/agents/{agent_id}",
                           json={"state": "online"})
    assert response.status_code == 200
    assert response.get_json()["state"] == state


@pytest.mark.parametrize("body, field", [
    ({"state": "offline"}, "state"),
    ({"state": "running"}, "state"),
    ({"state": None}, "state"),
    ({"tags": "gpu"}, "tags"),
    ({"tags": [1]}, "tags.0"),
    ({"tags": ["ok", "a/b"]}, "tags.1"),
    ({"hostname": "x"}, "hostname"),
])
def test_bad_patch_is_400_naming_the_field(admin, session, body, field):
    agent_id = make_agent(session, tags=["gpu"])
    assert f"'{field}'" in error_of(
        admin.patch(f"/api/v1/agents/{agent_id}", json=body), 400)
    agent = admin.get(f"/api/v1/agents/{agent_id}").get_json()
    assert (agent["state"], agent["tags"]) == ("online", ["gpu"])


def test_patch_tags_replaces_them_and_creates_missing_tags(admin, session):
    agent_id = make_agent(session, tags=["gpu", "linux"])
    response = admin.patch(f"/api/v1/agents/{agent_id}",
                           json={"tags": ["bigmem", "gpu", "bigmem"]})
    assert response.status_code == 200
    assert response.get_json()["tags"] == ["bigmem", "gpu"]
    assert sorted(session.execute(select(Tag.name)).scalars()) == [
        "bigmem", "gpu", "linux"]
    assert admin.get(f"/api/v1/agents/{agent_id}").get_json()[
        "tags"] == ["bigmem", "gpu"]
    cleared = admin.patch(f"/api/v1/agents/{agent_id}", json={"tags": []})
    assert cleared.get_json()["tags"] == []


def test_patch_state_and_tags_together(admin, session):
    agent_id = make_agent(session)
    body = admin.patch(f"/api/v1/agents/{agent_id}", json={
        "state": "disabled", "tags": ["maintenance"]}).get_json()
    assert (body["state"], body["tags"]) == ("disabled", ["maintenance"])


def test_only_admins_change_agents(alice, session):
    agent_id = make_agent(session)
    assert error_of(alice.patch(f"/api/v1/agents/{agent_id}",
                                json={"state": "disabled"}), 403)
    assert error_of(alice.delete(f"/api/v1/agents/{agent_id}"), 403)
    session.expire_all()
    assert session.get(Agent, agent_id).state == AgentState.ONLINE


# -- DELETE --------------------------------------------------------------


def test_delete_agent_requeues_its_tasks_as_lost(admin, session):
    agent_id = make_agent(session, tags=["gpu"],
                          software=[("blender", "4.2")])
    job, (done, running, assigned) = make_job(session, 3)
    hold(session, agent_id, done, WorkState.DONE)
    hold(session, agent_id, running, WorkState.RUNNING)
    hold(session, agent_id, assigned, WorkState.ASSIGNED)
    session.add(AgentJobFailure(agent_id=agent_id, job_id=job.id,
                                failures=1, last_failed_at=utcnow()))
    session.commit()

    response = admin.delete(f"/api/v1/agents/{agent_id}")
    assert response.status_code == 204
    assert admin.get(f"/api/v1/agents/{agent_id}").status_code == 404
    session.expire_all()
    for task in (running, assigned):
        task = session.get(Task, task.id)
        assert task.state == WorkState.QUEUED
        assert task.agent_id is None and task.failures == 0
        (attempt,) = task.attempts
        assert attempt.state == ATTEMPT_LOST
    assert session.get(Task, done.id).state == WorkState.DONE
    assert session.get(Task, done.id).attempts[0].state == WorkState.DONE
    assert session.get(AgentJobFailure, (agent_id, job.id)) is None
    assert session.execute(select(Tag.name)).scalars().all() == ["gpu"]
