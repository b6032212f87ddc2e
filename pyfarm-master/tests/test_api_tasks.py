"""The tasks API: a job's tasks, one task, its attempts and their logs."""

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from pyfarm.master.models import Agent, Task, TaskAttempt

JOBS = "/api/v1/jobs/"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def job(alice):
    """A job of alice's with frames 1 to 5."""
    response = alice.post(JOBS, json={
        "title": "sq010 comp", "jobtype": "command", "start": 1, "end": 5,
        "data": {"argv": ["comp", "{frame}"]}})
    assert response.status_code == 201
    return response.get_json()


@pytest.fixture
def agent(session):
    """An agent row."""
    row = Agent(id=str(uuid.uuid4()), hostname="node07", os="linux",
                cpus=16, ram=65536)
    session.add(row)
    session.commit()
    return row


@pytest.fixture
def store(app):
    """The application's log store."""
    return app.extensions["pyfarm.logstore"]


def task(session, job_id, frame):
    """Return the task of ``frame`` of job ``job_id``."""
    return session.execute(sa.select(Task).where(
        Task.job_id == job_id, Task.frame == frame)).scalar_one()


def attempt(session, row, agent, state, assignment_id=None, minutes=0):
    """Add attempt ``row.attempt + 1`` of task ``row`` on ``agent``."""
    row.attempt += 1
    row.agent_id = agent.id
    row.assignment_id = assignment_id or str(uuid.uuid4())
    row.assigned_at = T0 + timedelta(minutes=minutes)
    session.add(TaskAttempt(
        task_id=row.id, attempt=row.attempt, agent_id=agent.id,
        assignment_id=row.assignment_id, state=state,
        assigned_at=row.assigned_at))
    session.commit()
    return row.assignment_id


def logs_url(job, task_id, suffix=""):
    """Return the logs URL of a task of ``job``."""
    return f"{JOBS}{job['id']}/tasks/{task_id}/logs/{suffix}"


# -- task list ---------------------------------------------------------------

def test_list_tasks_by_frame(alice, job):
    response = alice.get(f"{JOBS}{job['id']}/tasks/")
    assert response.status_code == 200
    body = response.get_json()
    assert [item["frame"] for item in body["tasks"]] == [1, 2, 3, 4, 5]
    assert (body["total"], body["page"], body["per_page"]) == (5, 1, 100)
    first = body["tasks"][0]
    assert first["job"] == job["id"]
    assert first["state"] == "queued"
    assert (first["agent"], first["attempt"], first["failures"],
            first["progress"], first["last_error"]) == (None, 0, 0, 0.0,
                                                        None)
    assert first["created_at"] == job["created_at"]
    assert set(first) == {
        "id", "job", "frame", "state", "agent", "attempt", "failures",
        "progress", "last_error", "created_at", "assigned_at",
        "started_at", "finished_at", "outputs"}
    assert first["outputs"] == []


def test_list_tasks_filtered_and_paged(alice, bob, job, session):
    for frame in (2, 4):
        task(session, job["id"], frame).state = "done"
    session.commit()
    body = bob.get(f"{JOBS}{job['id']}/tasks/?state=done").get_json()
    assert [item["frame"] for item in body["tasks"]] == [2, 4]
    assert body["total"] == 2
    page = alice.get(
        f"{JOBS}{job['id']}/tasks/?state=queued&per_page=2&page=2"
    ).get_json()
    assert [item["frame"] for item in page["tasks"]] == [5]
    assert (page["total"], page["page"], page["per_page"]) == (3, 2, 2)


def test_list_tasks_of_one_job_only(alice, job):
    other = alice.post(JOBS, json={
        "title": "other", "jobtype": "command", "start": 100, "end": 101,
        "data": {"argv": ["x"]}}).get_json()
    body = alice.get(f"{JOBS}{other['id']}/tasks/").get_json()
    assert [item["frame"] for item in body["tasks"]] == [100, 101]


@pytest.mark.parametrize("query, field", [
    ("?state=paused", "'state'"), ("?per_page=0", "'per_page'")])
def test_list_tasks_rejects_bad_query(alice, job, query, field):
    response = alice.get(f"{JOBS}{job['id']}/tasks/{query}")
    assert response.status_code == 400
    assert field in response.get_json()["error"]


def test_list_tasks_state_error_names_the_states(alice, job):
    error = alice.get(f"{JOBS}{job['id']}/tasks/?state=x").get_json()[
        "error"]
    assert "assigned, done, failed, queued, running" in error


def test_list_tasks_needs_a_person_and_a_job(alice, client, agent_api,
                                             job):
    url = f"{JOBS}{job['id']}/tasks/"
    assert client.get(url).status_code == 401
    assert agent_api.get(url).status_code == 403
    response = alice.get(f"{JOBS}999/tasks/")
    assert response.status_code == 404
    assert response.get_json()["error"] == "no job with id 999"


# -- one task ----------------------------------------------------------------

def test_get_task(bob, job, session, agent):
    row = task(session, job["id"], 3)
    attempt(session, row, agent, "running")
    row.state = "running"
    row.progress = 0.25
    row.started_at = T0
    session.commit()
    response = bob.get(f"{JOBS}{job['id']}/tasks/{row.id}")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["id"], body["job"], body["frame"]) == (row.id, job["id"],
                                                        3)
    assert (body["state"], body["agent"], body["attempt"],
            body["progress"]) == ("running", agent.id, 1, 0.25)
    assert body["assigned_at"] == T0.isoformat()
    assert body["started_at"] == T0.isoformat()


def test_get_task_of_another_job_is_404(alice, job, session):
    other = alice.post(JOBS, json={
        "title": "other", "jobtype": "command", "start": 1, "end": 1,
        "data": {"argv": ["x"]}}).get_json()
    foreign = task(session, other["id"], 1)
    response = alice.get(f"{JOBS}{job['id']}/tasks/{foreign.id}")
    assert response.status_code == 404
    assert response.get_json()["error"] == (
        f"job {job['id']} has no task with id {foreign.id}")
    response = alice.get(f"{JOBS}999/tasks/{foreign.id}")
    assert response.status_code == 404
    assert response.get_json()["error"] == "no job with id 999"


def test_get_task_needs_a_person(client, agent_api, job, session):
    url = f"{JOBS}{job['id']}/tasks/{task(session, job['id'], 1).id}"
    assert client.get(url).status_code == 401
    assert agent_api.get(url).status_code == 403


# -- logs --------------------------------------------------------------------

def test_list_logs_one_per_attempt(bob, job, session, agent, store):
    row = task(session, job["id"], 2)
    first = attempt(session, row, agent, "lost")
    store.append(first, 0, b"starting\n")
    second = attempt(session, row, agent, "failed", minutes=5)
    store.append(second, 0, b"starting\nsegfault\n")
    row.attempts[-1].error = "exit code 139"
    row.attempts[-1].finished_at = T0 + timedelta(minutes=6)
    third = attempt(session, row, agent, "assigned", minutes=7)
    response = bob.get(logs_url(job, row.id))
    assert response.status_code == 200
    logs = response.get_json()["logs"]
    assert [(log["attempt"], log["state"], log["size"]) for log in logs] \
        == [(1, "lost", 9), (2, "failed", 18), (3, "assigned", 0)]
    assert [log["assignment"] for log in logs] == [first, second, third]
    assert logs[1] == {
        "attempt": 2, "agent": agent.id, "assignment": second,
        "state": "failed", "size": 18,
        "assigned_at": (T0 + timedelta(minutes=5)).isoformat(),
        "started_at": None,
        "finished_at": (T0 + timedelta(minutes=6)).isoformat(),
        "error": "exit code 139"}


def test_list_logs_of_a_task_never_run(alice, job, session):
    response = alice.get(logs_url(job, task(session, job["id"], 1).id))
    assert response.status_code == 200
    assert response.get_json() == {"logs": []}


def test_read_log(bob, job, session, agent, store):
    row = task(session, job["id"], 4)
    log_id = attempt(session, row, agent, "running")
    store.append(log_id, 0, "frame 4 · 50%\n".encode())
    response = bob.get(logs_url(job, row.id, "1"))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["X-Log-Size"] == str(len(
        "frame 4 · 50%\n".encode()))
    assert response.get_data(as_text=True) == "frame 4 · 50%\n"


def test_read_log_range_to_follow_it(alice, job, session, agent, store):
    row = task(session, job["id"], 4)
    log_id = attempt(session, row, agent, "running")
    store.append(log_id, 0, b"0123456789")
    url = logs_url(job, row.id, "1")
    response = alice.get(url + "?offset=3&length=4")
    assert (response.data, response.headers["X-Log-Size"]) == (b"3456",
                                                               "10")
    assert alice.get(url + "?offset=8").data == b"89"
    store.append(log_id, 10, b"abc")
    response = alice.get(url + "?offset=10")
    assert (response.data, response.headers["X-Log-Size"]) == (b"abc",
                                                               "13")
    response = alice.get(url + "?offset=50")
    assert (response.status_code, response.data) == (200, b"")


def test_batch_tasks_share_their_log(alice, job, session, agent, store):
    shared = str(uuid.uuid4())
    first = task(session, job["id"], 1)
    second = task(session, job["id"], 2)
    attempt(session, first, agent, "running", assignment_id=shared)
    attempt(session, second, agent, "running", assignment_id=shared)
    store.append(shared, 0, b"frames 1-2\n")
    assert alice.get(logs_url(job, first.id, "1")).data == b"frames 1-2\n"
    assert alice.get(logs_url(job, second.id, "1")).data == b"frames 1-2\n"


def test_read_log_not_started_yet_is_empty(alice, job, session, agent):
    row = task(session, job["id"], 5)
    attempt(session, row, agent, "assigned")
    response = alice.get(logs_url(job, row.id, "1"))
    assert response.status_code == 200
    assert response.data == b""
    assert response.headers["X-Log-Size"] == "0"


def test_read_log_of_unknown_attempt_is_404(alice, job, session, agent):
    row = task(session, job["id"], 5)
    attempt(session, row, agent, "assigned")
    response = alice.get(logs_url(job, row.id, "2"))
    assert response.status_code == 404
    assert response.get_json()["error"] == f"task {row.id} has no attempt 2"
    response = alice.get(logs_url(job, 99999, "1"))
    assert response.status_code == 404
    assert "no task with id 99999" in response.get_json()["error"]


@pytest.mark.parametrize("query, field", [
    ("?offset=-1", "'offset'"), ("?length=x", "'length'")])
def test_read_log_rejects_bad_ranges(alice, job, session, agent, query,
                                     field):
    row = task(session, job["id"], 5)
    attempt(session, row, agent, "running")
    response = alice.get(logs_url(job, row.id, "1") + query)
    assert response.status_code == 400
    assert field in response.get_json()["error"]


def test_logs_need_a_person(client, agent_api, job, session, agent):
    row = task(session, job["id"], 5)
    attempt(session, row, agent, "running")
    for url in (logs_url(job, row.id), logs_url(job, row.id, "1")):
        assert client.get(url).status_code == 401
        assert agent_api.get(url).status_code == 403
