"""The jobs API: submit, list, read, change, delete, rerun and cancel."""

import uuid
from datetime import datetime

import pytest
import sqlalchemy as sa

from pyfarm.master.db import db, utcnow
from pyfarm.master.models import (
    Agent,
    AgentJobFailure,
    Job,
    JobQueue,
    JobType,
    Software,
    Tag,
    Task,
    TaskAttempt,
)
from pyfarm.master.models.task import ATTEMPT_CANCELLED

JOBS = "/api/v1/jobs/"


def job_body(**fields):
    """Return a valid submission with ``fields`` changed."""
    body = {"title": "sq010 lighting", "jobtype": "command", "start": 1,
            "end": 10, "data": {"argv": ["render", "{frame}"]}}
    body.update(fields)
    return body


def submit(api, **fields):
    """Submit a job through the API and return its JSON."""
    response = api.post(JOBS, json=job_body(**fields))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def committed(session):
    """Drop what the session holds so reads show committed rows only."""
    session.rollback()
    return session


def task(session, job_id, frame):
    """Return the task of ``frame`` of job ``job_id``."""
    return session.execute(sa.select(Task).where(
        Task.job_id == job_id, Task.frame == frame)).scalar_one()


def make_agent(session, hostname="node01"):
    """Create an agent row."""
    agent = Agent(id=str(uuid.uuid4()), hostname=hostname, os="linux",
                  cpus=8, ram=16384)
    session.add(agent)
    session.commit()
    return agent


def hold(session, job_id, frame, agent, state):
    """Give a task to ``agent`` in ``state`` with its attempt row."""
    row = task(session, job_id, frame)
    row.attempt += 1
    row.state = state
    row.agent_id = agent.id
    row.assignment_id = str(uuid.uuid4())
    row.assigned_at = utcnow()
    session.add(TaskAttempt(
        task_id=row.id, attempt=row.attempt, agent_id=agent.id,
        assignment_id=row.assignment_id, state=state,
        assigned_at=row.assigned_at))
    session.commit()
    return row


def set_task(session, job_id, frame, **values):
    """Set columns of one task directly."""
    row = task(session, job_id, frame)
    for name, value in values.items():
        setattr(row, name, value)
    session.commit()
    return row


def set_job(session, job_id, **values):
    """Set columns of one job directly."""
    job = session.get(Job, job_id)
    for name, value in values.items():
        setattr(job, name, value)
    session.commit()
    return job


def count(session, model):
    """Return the number of rows of ``model``."""
    return session.execute(
        sa.select(sa.func.count()).select_from(model)).scalar_one()


# -- submit ----------------------------------------------------------------

def test_submit_creates_the_job_and_one_task_per_frame(alice, session):
    response = alice.post(JOBS, json=job_body())
    assert response.status_code == 201
    job = response.get_json()
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert job["title"] == "sq010 lighting"
    assert job["jobtype"] == "command"
    assert job["state"] == "queued"
    assert job["user"] == "alice"
    assert job["tasks"] == {"queued": 10, "assigned": 0, "running": 0,
                            "done": 0, "failed": 0}
    assert (job["by"], job["batch"], job["requeue"], job["cpus"]) == (
        1, 1, 3, 1)
    assert job["waiting_for"] == []
    assert job["blocked_by_failed_parent"] is False
    frames = committed(session).execute(
        sa.select(Task.frame, Task.state).where(Task.job_id == job["id"])
        .order_by(Task.frame)).all()
    assert frames == [(frame, "queued") for frame in range(1, 11)]


def test_submit_with_every_field(alice, bob, session):
    session.add_all([Software(name="blender"), JobQueue(name="lighting")])
    session.commit()
    parent = submit(alice, title="sim")
    job = submit(
        alice, jobtype_version=2, start=-4, end=6, by=5, batch=2,
        priority=7, weight=3, minimum_agents=1, maximum_agents=4,
        requeue=0, cpus=4, ram=8192, environ={"OCIO": "/studio/ocio"},
        notes="final", tags=["sq010", "lighting"],
        tag_requirements=[{"tag": "gpu"},
                          {"tag": "windows", "negate": True}],
        software_requirements=[{"software": "blender",
                                "min_version": "4.0", "max_version": "4.2"}],
        parents=[parent["id"]], jobqueue="lighting",
        notified_users=["bob"])
    assert job["tasks"]["queued"] == 3
    assert (job["start"], job["end"], job["by"], job["batch"]) == (
        -4, 6, 5, 2)
    assert job["jobtype_version"] == 2
    assert (job["priority"], job["weight"], job["requeue"]) == (7, 3, 0)
    assert (job["minimum_agents"], job["maximum_agents"]) == (1, 4)
    assert (job["cpus"], job["ram"]) == (4, 8192)
    assert job["environ"] == {"OCIO": "/studio/ocio"}
    assert job["notes"] == "final"
    assert job["tags"] == ["lighting", "sq010"]
    assert job["tag_requirements"] == [
        {"tag": "gpu", "negate": False}, {"tag": "windows", "negate": True}]
    assert job["software_requirements"] == [
        {"software": "blender", "min_version": "4.0", "max_version": "4.2"}]
    assert job["parents"] == [parent["id"]]
    assert job["waiting_for"] == [parent["id"]]
    assert job["jobqueue"] == "lighting"
    assert job["notified_users"] == ["bob"]
    frames = committed(session).execute(
        sa.select(Task.frame).where(Task.job_id == job["id"])
        .order_by(Task.frame)).scalars().all()
    assert frames == [-4, 1, 6]
    assert alice.get(f"{JOBS}{parent['id']}").get_json()["children"] == [
        job["id"]]


def test_submit_creates_missing_tags_once(alice, session):
    session.add(Tag(name="gpu"))
    session.commit()
    submit(alice, tags=["gpu", "fx"], tag_requirements=[{"tag": "fx"}])
    submit(alice, tags=["fx"])
    names = committed(session).execute(
        sa.select(Tag.name).order_by(Tag.name)).scalars().all()
    assert names == ["fx", "gpu"]


@pytest.mark.parametrize("fields, field", [
    ({"colour": "red"}, "unknown field 'colour'"),
    ({"start": "1"}, "'start'"),
    ({"end": 0}, "'end'"),
    ({"end": 2_000_000}, "'end'"),
    ({"jobtype": None}, "'jobtype'"),
    ({"title": "   "}, "'title'"),
    ({"title": "x" * 256}, "'title'"),
    ({"by": 0}, "'by'"),
    ({"batch": 0}, "'batch'"),
    ({"requeue": -1}, "'requeue'"),
    ({"cpus": 0}, "'cpus'"),
    ({"ram": -1}, "'ram'"),
    ({"priority": 1.5}, "'priority'"),
    ({"maximum_agents": 0}, "'maximum_agents'"),
    ({"minimum_agents": 3, "maximum_agents": 2}, "'maximum_agents'"),
    ({"environ": {"PATH": 1}}, "'environ.PATH'"),
    ({"data": ["render"]}, "'data'"),
    ({"data": {}}, "field 'data.argv' is required"),
    ({"data": {"argv": []}}, "'data.argv'"),
    ({"data": {"argv": ["render", 3]}}, "'data.argv[1]'"),
    ({"data": {"argv": ["x"], "shell": True}},
     "unknown field 'data.shell'"),
    ({"tags": [""]}, "'tags.0'"),
    ({"tags": ["ok", "sq010/fx"]}, "'tags.1'"),
    ({"tag_requirements": [{"tag": "a/b"}]}, "'tag_requirements.0'"),
    ({"tag_requirements": [{"tag": "gpu"}, {"tag": "gpu"}]},
     "'tag_requirements'"),
    ({"tag_requirements": [{"tag": "gpu", "negate": "yes"}]},
     "'tag_requirements.0.negate'"),
    ({"software_requirements": [{"software": "maya", "min_version": "2025",
                                 "max_version": "2024"}]},
     "'software_requirements.0'"),
    ({"parents": ["1"]}, "'parents.0'"),
    ({"notified_users": "bob"}, "'notified_users'"),
])
def test_submit_rejects_bad_fields_naming_them(alice, session, fields,
                                               field):
    body = {key: value for key, value in job_body(**fields).items()
            if value is not None}
    response = alice.post(JOBS, json=body)
    assert response.status_code == 400
    assert field in response.get_json()["error"]
    assert count(committed(session), Job) == 0


def test_submit_needs_a_json_object(alice):
    response = alice.post(JOBS, data="title=x")
    assert response.status_code == 400
    assert "application/json" in response.get_json()["error"]
    response = alice.post(JOBS, json=[job_body()])
    assert response.status_code == 400
    assert "JSON object" in response.get_json()["error"]


@pytest.mark.parametrize("fields, message", [
    ({"jobtype": "maya"}, "no job type named 'maya'"),
    ({"software_requirements": [{"software": "houdini"}]},
     "unknown software 'houdini'"),
    ({"parents": [999]}, "no job with id 999"),
    ({"jobqueue": "comp"}, "no job queue named 'comp'"),
    ({"notified_users": ["carol"]}, "no user named 'carol'"),
])
def test_submit_unknown_references_are_404(alice, session, fields, message):
    response = alice.post(JOBS, json=job_body(tags=["new"], **fields))
    assert response.status_code == 404
    assert message in response.get_json()["error"]
    committed(session)
    assert count(session, Job) == 0
    assert count(session, Tag) == 0


def test_submit_against_a_broken_jobtype_schema_is_409(alice, session):
    session.add(JobType(name="broken", parameters={"type": 5}))
    session.commit()
    response = alice.post(JOBS, json=job_body(jobtype="broken", data={}))
    assert response.status_code == 409
    assert "'broken'" in response.get_json()["error"]


@pytest.mark.parametrize("parameters", [
    {"$ref": "#/nope"},
    {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
])
def test_submit_against_a_jobtype_ref_that_leads_nowhere_is_409(
        alice, session, parameters):
    # Stored before job types were checked for this, or put in directly.
    session.add(JobType(name="broken", parameters=parameters))
    session.commit()
    response = alice.post(JOBS, json=job_body(jobtype="broken", data={}))
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert "'broken'" in error and "$ref" in error


def test_submit_needs_a_person(client, agent_api):
    assert client.post(JOBS, json=job_body()).status_code == 401
    response = agent_api.post(JOBS, json=job_body())
    assert response.status_code == 403
    assert "agent" in response.get_json()["error"]


# -- list --------------------------------------------------------------------

def test_list_newest_first_with_task_counts_and_pages(alice, bob, session):
    first = submit(alice, title="one", end=2)
    second = submit(bob, title="two", end=3)
    third = submit(alice, title="three", end=4)
    set_task(session, first["id"], 1, state="done")
    body = alice.get(JOBS).get_json()
    assert [job["id"] for job in body["jobs"]] == [
        third["id"], second["id"], first["id"]]
    assert (body["total"], body["page"], body["per_page"]) == (3, 1, 100)
    assert body["jobs"][2]["tasks"]["done"] == 1
    assert body["jobs"][2]["tasks"]["queued"] == 1
    assert body["jobs"][1]["tasks"]["queued"] == 3
    page = alice.get(JOBS + "?per_page=2&page=2").get_json()
    assert [job["id"] for job in page["jobs"]] == [first["id"]]
    assert (page["total"], page["page"], page["per_page"]) == (3, 2, 2)


def test_list_filters(alice, bob, session):
    session.add(JobQueue(name="comp"))
    session.commit()
    lighting = submit(alice, title="SQ010 Lighting")
    comp = submit(bob, title="sq010 comp 100%", jobqueue="comp")
    other = submit(bob, title="sq020 fx")
    set_job(session, other["id"], state="paused")

    def ids(query):
        response = alice.get(JOBS + query)
        assert response.status_code == 200
        return [job["id"] for job in response.get_json()["jobs"]]

    assert ids("?title=sq010") == [comp["id"], lighting["id"]]
    assert ids("?title=LIGHT") == [lighting["id"]]
    assert ids("?title=100%25") == [comp["id"]]
    assert ids("?title=_") == []
    assert ids("?user=bob") == [other["id"], comp["id"]]
    assert ids("?user=nobody") == []
    assert ids("?jobqueue=comp") == [comp["id"]]
    assert ids("?state=paused") == [other["id"]]
    assert ids("?state=queued&user=bob") == [comp["id"]]


@pytest.mark.parametrize("query, field", [
    ("?state=sleeping", "'state'"), ("?page=0", "'page'"),
    ("?per_page=1001", "'per_page'"), ("?per_page=x", "'per_page'")])
def test_list_rejects_bad_query_arguments(alice, query, field):
    response = alice.get(JOBS + query)
    assert response.status_code == 400
    assert field in response.get_json()["error"]


def test_list_state_error_names_the_states(alice):
    error = alice.get(JOBS + "?state=sleeping").get_json()["error"]
    assert "done, failed, paused, queued, running" in error


def test_list_counts_tasks_in_one_query_whatever_the_page(alice, app):
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    def run_list():
        statements.clear()
        sa.event.listen(db.engine, "before_cursor_execute", record)
        try:
            assert alice.get(JOBS).status_code == 200
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", record)
        return list(statements)

    submit(alice, end=3)
    submit(alice, end=3)
    few = run_list()
    for _ in range(4):
        submit(alice, end=3)
    many = run_list()
    assert len(many) == len(few)
    grouped = [s for s in many if "GROUP BY" in s and "tasks" in s]
    assert len(grouped) == 1


def test_list_needs_a_person(client, agent_api):
    assert client.get(JOBS).status_code == 401
    assert agent_api.get(JOBS).status_code == 403


# -- get ---------------------------------------------------------------------

def test_get_tells_what_the_job_waits_for(alice, session):
    done = submit(alice, title="done")
    waiting = submit(alice, title="waiting")
    failed = submit(alice, title="failed")
    set_job(session, done["id"], state="done")
    child = submit(alice, parents=[done["id"], waiting["id"]])
    response = alice.get(f"{JOBS}{child['id']}")
    assert response.status_code == 200
    body = response.get_json()
    assert body["parents"] == [done["id"], waiting["id"]]
    assert body["waiting_for"] == [waiting["id"]]
    assert body["blocked_by_failed_parent"] is False
    set_job(session, failed["id"], state="failed")
    blocked = submit(alice, parents=[failed["id"], done["id"]])
    body = alice.get(f"{JOBS}{blocked['id']}").get_json()
    assert body["waiting_for"] == [failed["id"]]
    assert body["blocked_by_failed_parent"] is True


def test_get_any_users_job(alice, bob):
    job = submit(alice)
    body = bob.get(f"{JOBS}{job['id']}").get_json()
    assert body["id"] == job["id"]
    assert body["tasks"]["queued"] == 10


def test_get_unknown_job_is_404(alice, client, agent_api):
    response = alice.get(f"{JOBS}42")
    assert response.status_code == 404
    assert response.get_json()["error"] == "no job with id 42"
    assert client.get(f"{JOBS}42").status_code == 401
    assert agent_api.get(f"{JOBS}42").status_code == 403


# -- patch -------------------------------------------------------------------

def test_owner_changes_fields(alice, session):
    job = submit(alice)
    response = alice.patch(f"{JOBS}{job['id']}", json={
        "title": "renamed", "priority": 50, "weight": 2, "notes": "rush"})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["title"], body["priority"], body["weight"],
            body["notes"]) == ("renamed", 50, 2, "rush")
    assert datetime.fromisoformat(body["updated_at"]) > \
        datetime.fromisoformat(job["updated_at"])
    stored = committed(session).get(Job, job["id"])
    assert (stored.title, stored.priority, stored.weight,
            stored.notes) == ("renamed", 50, 2, "rush")


def test_other_user_may_not_change_a_job(alice, bob, session):
    job = submit(alice)
    response = bob.patch(f"{JOBS}{job['id']}",
                         json={"priority": 99, "state": "paused"})
    assert response.status_code == 403
    assert "another user" in response.get_json()["error"]
    stored = committed(session).get(Job, job["id"])
    assert (stored.priority, stored.state) == (0, "queued")


def test_admin_changes_any_job(alice, admin):
    job = submit(alice)
    response = admin.patch(f"{JOBS}{job['id']}", json={"priority": 5})
    assert response.status_code == 200
    assert response.get_json()["priority"] == 5


def test_patch_needs_a_person_and_a_job(alice, client, agent_api):
    job = submit(alice)
    url = f"{JOBS}{job['id']}"
    assert client.patch(url, json={"priority": 1}).status_code == 401
    assert agent_api.patch(url, json={"priority": 1}).status_code == 403
    response = alice.patch(f"{JOBS}999", json={"priority": 1})
    assert response.status_code == 404
    assert alice.get(url).get_json()["priority"] == 0


@pytest.mark.parametrize("body, message", [
    ({"state": "done"},
     "field 'state' may only be 'paused' (pause) or 'queued' (resume)"),
    ({"state": None}, "'state'"),
    ({"priority": "high"}, "'priority'"),
    ({"priority": None}, "'priority'"),
    ({"weight": -1}, "'weight'"),
    ({"title": ""}, "'title'"),
    ({"frames": 3}, "unknown field 'frames'"),
    ({}, "nothing to change"),
])
def test_patch_rejects_bad_changes(alice, session, body, message):
    job = submit(alice)
    response = alice.patch(f"{JOBS}{job['id']}", json=body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    stored = committed(session).get(Job, job["id"])
    assert (stored.state, stored.priority) == ("queued", 0)


def test_pause_and_resume(alice, session):
    job = submit(alice, end=2)
    url = f"{JOBS}{job['id']}"
    paused = alice.patch(url, json={"state": "paused"})
    assert paused.status_code == 200
    assert paused.get_json()["state"] == "paused"
    assert alice.patch(url, json={"state": "paused"}).get_json()[
        "state"] == "paused"
    hold(session, job["id"], 1, make_agent(session), "running")
    resumed = alice.patch(url, json={"state": "queued"})
    assert resumed.status_code == 200
    assert resumed.get_json()["state"] == "running"


def test_resume_rolls_up_a_job_that_ended_while_paused(alice, session):
    job = submit(alice, end=2)
    url = f"{JOBS}{job['id']}"
    alice.patch(url, json={"state": "paused"})
    set_task(session, job["id"], 1, state="done")
    set_task(session, job["id"], 2, state="done")
    assert alice.patch(url, json={"state": "queued"}).get_json()[
        "state"] == "done"


def test_resume_of_a_queued_job_changes_nothing(alice):
    job = submit(alice)
    response = alice.patch(f"{JOBS}{job['id']}", json={"state": "queued"})
    assert response.status_code == 200
    assert response.get_json()["state"] == "queued"


@pytest.mark.parametrize("ended", ["done", "failed"])
@pytest.mark.parametrize("wanted", ["paused", "queued"])
def test_ended_job_cannot_be_paused_or_resumed(alice, session, ended,
                                               wanted):
    job = submit(alice)
    set_job(session, job["id"], state=ended)
    response = alice.patch(f"{JOBS}{job['id']}",
                           json={"state": wanted, "priority": 3})
    assert response.status_code == 409
    assert "rerun" in response.get_json()["error"]
    stored = committed(session).get(Job, job["id"])
    assert (stored.state, stored.priority) == (ended, 0)


# -- delete ------------------------------------------------------------------

def test_delete_removes_job_tasks_and_attempts_but_keeps_logs(
        alice, app, session):
    job = submit(alice, end=3)
    agent = make_agent(session)
    log_id = hold(session, job["id"], 1, agent, "running").assignment_id
    session.add(AgentJobFailure(agent_id=agent.id, job_id=job["id"],
                                failures=2))
    session.commit()
    store = app.extensions["pyfarm.logstore"]
    store.append(log_id, 0, b"rendering\n")
    response = alice.delete(f"{JOBS}{job['id']}")
    assert response.status_code == 204
    assert response.data == b""
    assert alice.get(f"{JOBS}{job['id']}").status_code == 404
    committed(session)
    for model in (Job, Task, TaskAttempt, AgentJobFailure):
        assert count(session, model) == 0
    assert store.read(log_id) == b"rendering\n"


def test_delete_refused_while_jobs_depend_on_it(alice, session):
    parent = submit(alice, title="sim")
    child = submit(alice, title="render", parents=[parent["id"]])
    done_child = submit(alice, title="old", parents=[parent["id"]])
    set_job(session, done_child["id"], state="done")
    response = alice.delete(f"{JOBS}{parent['id']}")
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert f"{child['id']} ('render')" in error
    assert "'old'" not in error
    set_job(session, child["id"], state="done")
    assert alice.delete(f"{JOBS}{parent['id']}").status_code == 204
    assert alice.get(f"{JOBS}{child['id']}").get_json()["parents"] == []


def test_delete_needs_the_owner(alice, bob, admin, client, agent_api):
    job = submit(alice)
    url = f"{JOBS}{job['id']}"
    assert client.delete(url).status_code == 401
    assert agent_api.delete(url).status_code == 403
    assert bob.delete(url).status_code == 403
    assert alice.get(url).status_code == 200
    assert admin.delete(url).status_code == 204
    assert alice.delete(url).status_code == 404


# -- rerun -------------------------------------------------------------------

@pytest.fixture
def mixed_job(alice, session):
    """A job whose frames 1-5 are done, failed, running, assigned, queued.

    Returns ``(job JSON, agent)``; the agent has failed the job twice.
    """
    job = submit(alice, end=5)
    agent = make_agent(session)
    set_task(session, job["id"], 1, state="done", progress=1.0,
             attempt=1, agent_id=agent.id, finished_at=utcnow())
    set_task(session, job["id"], 2, state="failed", failures=4, attempt=4,
             progress=0.5, agent_id=agent.id, assignment_id="a" * 8,
             last_error="exit 1", last_failed_agent_id=agent.id,
             finished_at=utcnow())
    hold(session, job["id"], 3, agent, "running")
    hold(session, job["id"], 4, agent, "assigned")
    session.add(AgentJobFailure(agent_id=agent.id, job_id=job["id"],
                                failures=2))
    set_job(session, job["id"], state="running", started_at=utcnow())
    return job, agent


def test_rerun_failed_only(alice, session, mixed_job):
    job, agent = mixed_job
    response = alice.post(f"{JOBS}{job['id']}/rerun",
                          json={"failed_only": True})
    assert response.status_code == 200
    body = response.get_json()
    assert body["tasks"] == {"queued": 2, "assigned": 1, "running": 1,
                             "done": 1, "failed": 0}
    assert body["state"] == "running"
    committed(session)
    requeued = task(session, job["id"], 2)
    assert requeued.state == "queued"
    assert (requeued.failures, requeued.progress) == (0, 0.0)
    assert requeued.agent_id is None
    assert requeued.assignment_id is None
    assert requeued.last_error is None
    assert requeued.last_failed_agent_id is None
    assert requeued.finished_at is None
    assert requeued.attempt == 4
    assert task(session, job["id"], 1).state == "done"
    assert task(session, job["id"], 3).agent_id == agent.id
    assert count(session, AgentJobFailure) == 0


def test_rerun_everything_not_held_by_agents(alice, session, mixed_job):
    job, _ = mixed_job
    response = alice.post(f"{JOBS}{job['id']}/rerun")
    assert response.status_code == 200
    assert response.get_json()["tasks"] == {
        "queued": 3, "assigned": 1, "running": 1, "done": 0, "failed": 0}
    committed(session)
    done = task(session, job["id"], 1)
    assert (done.state, done.progress, done.agent_id,
            done.finished_at) == ("queued", 0.0, None, None)
    assert task(session, job["id"], 3).state == "running"
    assert task(session, job["id"], 4).state == "assigned"


def test_rerun_of_a_finished_job_runs_it_again(alice, session):
    job = submit(alice, end=2)
    set_task(session, job["id"], 1, state="done")
    set_task(session, job["id"], 2, state="failed")
    set_job(session, job["id"], state="failed", finished_at=utcnow())
    body = alice.post(f"{JOBS}{job['id']}/rerun",
                      json={"failed_only": False}).get_json()
    assert body["state"] == "queued"
    assert body["finished_at"] is None
    assert body["tasks"]["queued"] == 2


def test_rerun_keeps_a_paused_job_paused(alice, session, mixed_job):
    job, _ = mixed_job
    alice.patch(f"{JOBS}{job['id']}", json={"state": "paused"})
    body = alice.post(f"{JOBS}{job['id']}/rerun").get_json()
    assert body["state"] == "paused"
    assert body["tasks"]["queued"] == 3


@pytest.mark.parametrize("body, message", [
    ({"failed_only": "yes"}, "'failed_only'"),
    ({"failed": True}, "unknown field 'failed'"),
])
def test_rerun_rejects_bad_bodies(alice, session, mixed_job, body, message):
    job, _ = mixed_job
    response = alice.post(f"{JOBS}{job['id']}/rerun", json=body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert task(committed(session), job["id"], 2).state == "failed"


def test_rerun_needs_the_owner(bob, admin, client, agent_api, session,
                               mixed_job):
    job, _ = mixed_job
    url = f"{JOBS}{job['id']}/rerun"
    assert client.post(url).status_code == 401
    assert agent_api.post(url).status_code == 403
    assert bob.post(url).status_code == 403
    assert task(committed(session), job["id"], 2).state == "failed"
    assert count(session, AgentJobFailure) == 1
    assert bob.post(f"{JOBS}999/rerun").status_code == 404
    assert admin.post(url).status_code == 200


# -- cancel ------------------------------------------------------------------

def test_cancel_fails_what_has_not_ended(alice, session, mixed_job):
    job, agent = mixed_job
    lost = hold(session, job["id"], 5, agent, "running")
    lost.attempts[-1].state = "lost"
    set_task(session, job["id"], 5, state="queued", agent_id=None)
    response = alice.post(f"{JOBS}{job['id']}/cancel")
    assert response.status_code == 200
    body = response.get_json()
    assert body["state"] == "failed"
    assert body["finished_at"] is not None
    assert body["tasks"] == {"queued": 0, "assigned": 0, "running": 0,
                             "done": 1, "failed": 4}
    committed(session)
    for frame in (3, 4, 5):
        cancelled = task(session, job["id"], frame)
        assert cancelled.state == "failed"
        assert cancelled.last_error == "cancelled by alice"
        assert cancelled.finished_at is not None
        assert cancelled.agent_id is None
    assert task(session, job["id"], 2).last_error == "exit 1"
    assert task(session, job["id"], 1).state == "done"
    attempts = {row.task.frame: (row.state, row.finished_at) for row in
                session.execute(sa.select(TaskAttempt)).scalars()}
    assert attempts[3][0] == attempts[4][0] == ATTEMPT_CANCELLED
    assert None not in (attempts[3][1], attempts[4][1])
    assert attempts[5] == ("lost", None)


def test_cancel_of_a_finished_job_leaves_it_done(alice, session):
    job = submit(alice, end=2)
    set_task(session, job["id"], 1, state="done")
    set_task(session, job["id"], 2, state="done")
    set_job(session, job["id"], state="done")
    body = alice.post(f"{JOBS}{job['id']}/cancel").get_json()
    assert body["state"] == "done"
    assert body["tasks"]["done"] == 2


def test_cancel_ends_a_paused_job(alice, admin):
    job = submit(alice, end=2)
    alice.patch(f"{JOBS}{job['id']}", json={"state": "paused"})
    response = admin.post(f"{JOBS}{job['id']}/cancel")
    assert response.status_code == 200
    assert response.get_json()["state"] == "failed"
    tasks = alice.get(f"{JOBS}{job['id']}/tasks/").get_json()["tasks"]
    assert {item["last_error"] for item in tasks} == {"cancelled by admin"}


def test_cancel_needs_the_owner(alice, bob, client, agent_api, session):
    job = submit(alice, end=2)
    url = f"{JOBS}{job['id']}/cancel"
    assert client.post(url).status_code == 401
    assert agent_api.post(url).status_code == 403
    response = bob.post(url)
    assert response.status_code == 403
    assert "another user" in response.get_json()["error"]
    assert alice.get(f"{JOBS}{job['id']}").get_json()["tasks"][
        "queued"] == 2
    assert bob.post(f"{JOBS}999/cancel").status_code == 404
