"""The agent protocol over HTTP: register, sync, task update, log chunk."""

import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from pyfarm.master.db import db
from pyfarm.master.models import Agent, Job, JobType, Task, TaskAttempt

NOW = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)
AGENT_ID = "5d1f7c1e-6d4b-4a43-9f5e-2f1d7e0b8a11"
AGENTS = "/api/v1/agents/"


def make_job(start=1, end=3, **fields):
    """Insert a job with one task per frame; return its id."""
    session = db.session
    jobtype = session.execute(
        select(JobType).where(JobType.name == "command")).scalar_one()
    job = Job(title="shot 10", jobtype=jobtype, start=start, end=end,
              data={"command": "render"}, created_at=NOW, updated_at=NOW,
              **fields)
    session.add(job)
    session.flush()
    session.add_all(Task(job_id=job.id, frame=frame, created_at=NOW,
                         updated_at=NOW) for frame in range(start, end + 1))
    session.commit()
    return job.id


def registration(**fields):
    return {"id": AGENT_ID, "hostname": "node1", "os": "linux",
            "os_version": "Debian 12", "cpus": 2, "ram": 16000,
            "free_ram": 12000,
            "gpus": [{"name": "RTX 4090", "ram": 24000}],
            "disks": [{"path": "/", "total": 500000, "free": 200000}],
            "tags": ["gpu"],
            "software": [{"software": "blender", "version": "4.0.2"}],
            "version": "0.1.0", **fields}


@pytest.fixture
def registered(agent_api):
    response = agent_api.post(AGENTS, json=registration())
    assert response.status_code == 201, response.get_json()
    return agent_api


@pytest.fixture
def stranger(make_user):
    return make_user("other-agents", "agent")[1]


def url(*parts):
    return AGENTS + "/".join([AGENT_ID, *map(str, parts)])


def test_register_answers_201_then_200_with_one_row(app, agent_api):
    first = agent_api.post(AGENTS, json=registration())
    assert first.status_code == 201
    body = first.get_json()
    assert body["id"] == AGENT_ID
    assert body["state"] == "online"
    assert body["tags"] == ["gpu"]
    assert body["software"] == [{"software": "blender",
                                 "version": "4.0.2"}]
    assert body["gpus"] == [{"name": "RTX 4090", "ram": 24000}]
    assert body["remote_addr"] == "127.0.0.1"
    assert body["sync_interval"] == app.config["PYFARM"].sync_interval
    again = agent_api.post(AGENTS, json=registration(hostname="node1b"))
    assert again.status_code == 200
    assert again.get_json()["hostname"] == "node1b"
    assert db.session.execute(
        select(func.count()).select_from(Agent)).scalar() == 1


def test_register_normalises_the_uuid(agent_api):
    response = agent_api.post(AGENTS, json=registration(
        id=AGENT_ID.upper()))
    assert response.status_code == 201
    assert response.get_json()["id"] == AGENT_ID


@pytest.mark.parametrize("fields, named", [
    ({"os": "beos"}, "'os'"),
    ({"cpus": 0}, "'cpus'"),
    ({"cpus": "2"}, "'cpus'"),
    ({"cpus": True}, "'cpus'"),
    ({"ram": 0}, "'ram'"),
    ({"id": "not-a-uuid"}, "'id'"),
    ({"hostname": ""}, "'hostname'"),
    ({"colour": "blue"}, "unknown field 'colour'"),
    ({"tags": ["x" * 65]}, "'tags.0'"),
    ({"tags": ["fx/gpu"]}, "'tags.0'"),
    ({"tags": ["  "]}, "'tags.0'"),
    ({"software": [{"software": "maya"}]}, "'software.0.version'"),
    # The scheduler compares versions as numbers: " " would stop it.
    ({"software": [{"software": "maya", "version": " "}]},
     "'software.0.version'"),
    ({"software": [{"software": "maya", "version": "-"}]},
     "'software.0.version'"),
    ({"software": [{"software": "a/b", "version": "1"}]},
     "'software.0.software'"),
    ({"cpus": 2**31}, "'cpus'"),
    ({"ram": 2**63}, "'ram'"),
    ({"free_ram": 2**31}, "'free_ram'"),
    ({"gpus": [{"name": "x", "ram": -1}]}, "'gpus.0.ram'"),
])
def test_register_validation_names_the_field(agent_api, fields, named):
    response = agent_api.post(AGENTS, json=registration(**fields))
    assert response.status_code == 400
    assert named in response.get_json()["error"]


def test_register_strips_tag_and_software_names(agent_api, admin):
    response = agent_api.post(AGENTS, json=registration(
        tags=[" gpu "],
        software=[{"software": " blender ", "version": " 4.1 "}]))
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["tags"] == ["gpu"]
    assert body["software"] == [{"software": "blender", "version": "4.1"}]
    assert admin.get("/api/v1/tags/gpu").status_code == 200


def test_register_needs_required_fields(agent_api):
    response = agent_api.post(AGENTS, json={"id": AGENT_ID})
    assert response.status_code == 400
    error = response.get_json()["error"]
    for name in ("hostname", "os", "cpus", "ram"):
        assert f"field {name!r} is required" in error


def test_register_rejects_a_body_that_is_not_json(agent_api):
    response = agent_api.post(AGENTS, data="x",
                              content_type="text/plain")
    assert response.status_code == 400
    assert "JSON" in response.get_json()["error"]


def test_people_may_not_register_agents(alice):
    response = alice.post(AGENTS, json=registration())
    assert response.status_code == 403
    assert "role 'user'" in response.get_json()["error"]


def test_admin_may_register_and_sync(admin):
    assert admin.post(AGENTS, json=registration()).status_code == 201
    assert admin.post(url("sync"), json={}).status_code == 200


def test_no_token_is_401(client):
    response = client.post(AGENTS, json=registration())
    assert response.status_code == 401


def test_another_users_agent_is_forbidden_everywhere(registered, stranger):
    job_id = make_job(1, 1)
    sync = registered.post(url("sync"), json={}).get_json()
    [assignment] = sync["assignments"]
    task_id = assignment["tasks"][0]["id"]
    other = registered.as_(stranger)
    checks = [
        other.post(AGENTS, json=registration()),
        other.post(url("sync"), json={}),
        other.put(url("tasks", task_id), json={"attempt": 1,
                                              "state": "running"}),
        other.post(url("assignments", assignment["id"], "log"),
                   json={"offset": 0, "data": "x"}),
    ]
    for response in checks:
        assert response.status_code == 403, response.get_json()
        assert "another user" in response.get_json()["error"]
    assert db.session.get(Job, job_id) is not None


def test_sync_unknown_agent_is_404(agent_api):
    response = agent_api.post(url("sync"), json={})
    assert response.status_code == 404
    assert "register" in response.get_json()["error"]


@pytest.mark.parametrize("body, named", [
    ({"running": [{"task": 1}]}, "'running.0.attempt'"),
    ({"running": [{"task": "1", "attempt": 1}]}, "'running.0.task'"),
    ({"free_ram": -5}, "'free_ram'"),
    ({"free_ram": 2**31}, "'free_ram'"),
    ({"running": [{"task": 2**63, "attempt": 1}]}, "'running.0.task'"),
    ({"tasks": []}, "unknown field 'tasks'"),
])
def test_sync_validation_names_the_field(registered, body, named):
    response = registered.post(url("sync"), json=body)
    assert response.status_code == 400
    assert named in response.get_json()["error"]


def test_round_trip_sync_run_done(registered):
    job_id = make_job(1, 3, batch=2)
    answer = registered.post(url("sync"), json={"free_ram": 9000})
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["state"] == "running"
    assert body["cancel"] == []
    first, second = body["assignments"]
    assert first["job"] == {
        "id": job_id, "title": "shot 10", "jobtype": "command",
        "jobtype_version": 1, "data": {"command": "render"}, "environ": {},
        "cpus": 1, "ram": 0, "by": 1, "software_requirements": [],
        "pathmaps": []}
    assert [t["frame"] for t in first["tasks"]] == [1, 2]
    assert [t["frame"] for t in second["tasks"]] == [3]
    running = [{"task": t["id"], "attempt": t["attempt"]}
               for a in body["assignments"] for t in a["tasks"]]
    for task in first["tasks"] + second["tasks"]:
        put = registered.put(url("tasks", task["id"]), json={
            "attempt": task["attempt"], "state": "running",
            "progress": 0.5})
        assert put.get_json() == {"task": task["id"], "attempt": 1,
                                  "state": "running"}
    for task in first["tasks"] + second["tasks"]:
        done = {"attempt": 1, "state": "done"}
        assert registered.put(url("tasks", task["id"]),
                              json=done).status_code == 200
        # Sent again after a timeout: a no-op, still 200.
        again = registered.put(url("tasks", task["id"]), json=done)
        assert again.get_json()["state"] == "done"
    body = registered.post(url("sync"), json={"running": running}).get_json()
    assert body["state"] == "online"
    assert body["assignments"] == []
    # The tasks are done: the agent is told to drop them.
    assert body["cancel"] == running
    assert db.session.get(Job, job_id).state == "done"


def claimed(api):
    make_job(1, 1)
    [assignment] = api.post(url("sync"), json={}).get_json()["assignments"]
    return assignment


def test_task_update_with_stale_attempt_is_409(registered):
    task = claimed(registered)["tasks"][0]
    response = registered.put(url("tasks", task["id"]), json={
        "attempt": 2, "state": "running"})
    assert response.status_code == 409
    assert "stop that process" in response.get_json()["error"]


def test_task_update_after_a_different_final_state_is_409(registered):
    task = claimed(registered)["tasks"][0]
    registered.put(url("tasks", task["id"]),
                   json={"attempt": 1, "state": "done"})
    response = registered.put(url("tasks", task["id"]), json={
        "attempt": 1, "state": "failed", "error": "late"})
    assert response.status_code == 409


def test_task_update_failed_requeues(registered):
    task = claimed(registered)["tasks"][0]
    response = registered.put(url("tasks", task["id"]), json={
        "attempt": 1, "state": "failed", "error": "exit 1"})
    assert response.get_json() == {"task": task["id"], "attempt": 1,
                                   "state": "queued"}
    row = db.session.get(Task, task["id"])
    assert (row.failures, row.last_error) == (1, "exit 1")


def test_task_update_unknown_task_is_404(registered):
    response = registered.put(url("tasks", 12345), json={
        "attempt": 1, "state": "running"})
    assert response.status_code == 404
    assert "no task" in response.get_json()["error"]


def test_task_update_for_unknown_agent_is_404(agent_api):
    response = agent_api.put(url("tasks", 1), json={
        "attempt": 1, "state": "running"})
    assert response.status_code == 404


@pytest.mark.parametrize("body, named", [
    ({"attempt": 1, "state": "assigned"}, "'state'"),
    ({"attempt": 1, "state": "running", "progress": 1.5}, "'progress'"),
    ({"attempt": 0, "state": "running"}, "'attempt'"),
    ({"attempt": 2**31, "state": "done"}, "'attempt'"),
    ({"attempt": 10**20, "state": "done"}, "'attempt'"),
    ({"state": "running"}, "'attempt'"),
    ({"attempt": 1, "state": "failed", "error": "a\x00b"}, "'error'"),
])
def test_task_update_validation_names_the_field(registered, body, named):
    task = claimed(registered)["tasks"][0]
    response = registered.put(url("tasks", task["id"]), json=body)
    assert response.status_code == 400
    assert named in response.get_json()["error"]


def test_log_chunks(app, registered):
    assignment = claimed(registered)
    log = url("assignments", assignment["id"], "log")
    first = registered.post(log, json={"offset": 0, "data": "héllo\n"})
    assert first.status_code == 200
    assert first.get_json() == {"size": 7}
    repeat = registered.post(log, json={"offset": 0, "data": "héllo\n"})
    assert repeat.get_json() == {"size": 7}
    assert registered.post(log, json={"offset": 7, "data": "bye\n"}
                           ).get_json() == {"size": 11}
    store = app.extensions["pyfarm.logstore"]
    assert store.read(assignment["id"]).decode() == "héllo\nbye\n"


def test_log_chunk_past_the_end_is_409_with_size(registered):
    assignment = claimed(registered)
    log = url("assignments", assignment["id"], "log")
    registered.post(log, json={"offset": 0, "data": "abc"})
    response = registered.post(log, json={"offset": 10, "data": "x"})
    assert response.status_code == 409
    body = response.get_json()
    assert body["size"] == 3
    assert "send from byte 3" in body["error"]


def test_log_chunk_for_unknown_assignment_is_404(registered):
    claimed(registered)
    response = registered.post(
        url("assignments", uuid.uuid4(), "log"),
        json={"offset": 0, "data": "x"})
    assert response.status_code == 404
    response = registered.post(url("assignments", "../../etc", "log"),
                               json={"offset": 0, "data": "x"})
    assert response.status_code == 404


def test_log_chunk_is_kept_after_the_attempt_ended(registered):
    assignment = claimed(registered)
    task = assignment["tasks"][0]
    registered.put(url("tasks", task["id"]),
                   json={"attempt": 1, "state": "failed"})
    response = registered.post(url("assignments", assignment["id"], "log"),
                               json={"offset": 0, "data": "tail"})
    assert response.get_json() == {"size": 4}


def test_log_chunk_may_hold_nul_but_not_a_lone_surrogate(app, registered):
    assignment = claimed(registered)
    log = url("assignments", assignment["id"], "log")
    response = registered.post(log, json={"offset": 0, "data": "a\x00b"})
    assert response.get_json() == {"size": 3}
    response = registered.post(log, json={"offset": 3, "data": "\ud800"})
    assert response.status_code == 400
    assert "'data'" in response.get_json()["error"]
    store = app.extensions["pyfarm.logstore"]
    assert store.read(assignment["id"]) == b"a\x00b"


def test_task_update_for_a_task_id_beyond_integer_is_404(registered):
    claimed(registered)
    response = registered.put(url("tasks", 2**31),
                              json={"attempt": 1, "state": "done"})
    assert response.status_code == 404


def test_log_chunk_validation(registered):
    assignment = claimed(registered)
    response = registered.post(url("assignments", assignment["id"], "log"),
                               json={"offset": -1, "data": "x"})
    assert response.status_code == 400
    assert "'offset'" in response.get_json()["error"]


def test_register_again_through_the_api_releases_tasks(registered):
    task = claimed(registered)["tasks"][0]
    response = registered.post(AGENTS, json=registration())
    assert response.status_code == 200
    row = db.session.get(Task, task["id"])
    db.session.refresh(row)
    assert (row.state, row.failures) == ("queued", 0)
    assert db.session.execute(select(TaskAttempt.state)).scalar() == "lost"
