"""The files a frame wrote: reported with "done", shown on the task."""

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from pyfarm.master.db import db
from pyfarm.master.models import TaskAttempt

AGENTS = "/api/v1/agents/"
JOBS = "/api/v1/jobs/"
AGENT_ID = "5d1f7c1e-6d4b-4a43-9f5e-2f1d7e0b8a11"


def url(*parts):
    return AGENTS + "/".join([AGENT_ID, *map(str, parts)])


@pytest.fixture
def job(alice):
    response = alice.post(JOBS, json={
        "title": "sq010 comp", "jobtype": "command", "start": 1, "end": 3,
        "batch": 3, "data": {"argv": ["comp", "{start}", "{end}"]}})
    assert response.status_code == 201
    return response.get_json()


@pytest.fixture
def tasks(agent_api, job):
    """The job's three tasks, assigned to the agent: ``[(id, attempt)]``."""
    response = agent_api.post(AGENTS, json={
        "id": AGENT_ID, "hostname": "node1", "os": "linux", "cpus": 1,
        "ram": 16000})
    assert response.status_code == 201
    [assignment] = agent_api.post(url("sync"), json={}).get_json()[
        "assignments"]
    return [(task["id"], task["attempt"]) for task in assignment["tasks"]]


def report(agent_api, task, status=200, **fields):
    task_id, attempt = task
    response = agent_api.put(url("tasks", task_id),
                             json={"attempt": attempt, **fields})
    assert response.status_code == status, response.get_json()
    return response.get_json()


def task_json(alice, job, task):
    return alice.get(f"{JOBS}{job['id']}/tasks/{task[0]}").get_json()


def test_done_stores_the_outputs_and_the_task_shows_them(agent_api, alice,
                                                         job, tasks,
                                                         session):
    paths = ["/renders/sq010/comp.0001.exr", "/renders/sq010/comp.0001.png"]
    assert report(agent_api, tasks[0], state="done", outputs=paths) == {
        "task": tasks[0][0], "attempt": tasks[0][1], "state": "done"}
    assert session.execute(select(TaskAttempt.outputs).where(
        TaskAttempt.task_id == tasks[0][0])).scalar_one() == paths
    assert task_json(alice, job, tasks[0])["outputs"] == paths
    listed = alice.get(f"{JOBS}{job['id']}/tasks/").get_json()["tasks"]
    assert [item["outputs"] for item in listed] == [paths, [], []]


def test_done_without_outputs_shows_none(agent_api, alice, job, tasks,
                                         session):
    report(agent_api, tasks[0], state="done")
    report(agent_api, tasks[1], state="done", outputs=[])
    assert task_json(alice, job, tasks[0])["outputs"] == []
    assert task_json(alice, job, tasks[1])["outputs"] == []
    stored = session.execute(select(TaskAttempt.task_id, TaskAttempt.outputs)
                             .order_by(TaskAttempt.task_id)).all()
    assert [row.outputs for row in stored] == [None, [], None]


def test_a_repeated_done_keeps_the_first_outputs(agent_api, alice, job,
                                                 tasks):
    report(agent_api, tasks[0], state="done", outputs=["/r/a.exr"])
    report(agent_api, tasks[0], state="done", outputs=["/r/other.exr"])
    assert task_json(alice, job, tasks[0])["outputs"] == ["/r/a.exr"]


@pytest.mark.parametrize("state", ["running", "failed"])
def test_outputs_go_only_with_done(agent_api, tasks, state, session):
    message = report(agent_api, tasks[0], 400, state=state,
                     outputs=["/r/a.exr"])["error"]
    assert "'outputs'" in message and "'done'" in message
    assert session.execute(select(TaskAttempt.state).where(
        TaskAttempt.task_id == tasks[0][0])).scalar_one() == "assigned"


@pytest.mark.parametrize("outputs, named", [
    (["/r/a.exr"] * 1001, "'outputs'"),
    (["/" + "x" * 4096], "'outputs.0'"),
    ([""], "'outputs.0'"),
    (["/r/a.exr", 5], "'outputs.1'"),
    ("/r/a.exr", "'outputs'"),
    (["/r/\x00a.exr"], "'outputs.0'"),
    (["/r/\ud800.exr"], "'outputs.0'"),
])
def test_bad_outputs_are_400_naming_them(agent_api, tasks, outputs, named,
                                         session):
    message = report(agent_api, tasks[0], 400, state="done",
                     outputs=outputs)["error"]
    assert named in message
    assert session.execute(select(TaskAttempt.state).where(
        TaskAttempt.task_id == tasks[0][0])).scalar_one() == "assigned"


def test_the_largest_outputs_fit(agent_api, alice, job, tasks):
    paths = [f"/{index:04d}" + "x" * 4091 for index in range(1000)]
    report(agent_api, tasks[0], state="done", outputs=paths)
    assert task_json(alice, job, tasks[0])["outputs"] == paths


def test_a_task_queued_again_shows_no_outputs(agent_api, alice, job,
                                              tasks):
    report(agent_api, tasks[0], state="done", outputs=["/r/a.exr"])
    assert alice.post(f"{JOBS}{job['id']}/rerun", json={}).status_code \
        == 200
    assert task_json(alice, job, tasks[0])["outputs"] == []


def test_the_agent_detail_shows_outputs_of_what_it_holds(agent_api, alice,
                                                         tasks):
    report(agent_api, tasks[0], state="done", outputs=["/r/a.exr"])
    detail = alice.get(AGENTS + AGENT_ID).get_json()
    assert [task["outputs"] for task in detail["tasks"]] == [[], []]


def test_the_task_list_reads_outputs_in_one_query(agent_api, alice, job,
                                                  tasks):
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    def listed():
        statements.clear()
        sa.event.listen(db.engine, "before_cursor_execute", record)
        try:
            body = alice.get(f"{JOBS}{job['id']}/tasks/").get_json()
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", record)
        return body, len(statements)

    listed()  # the token's first use of the test is recorded
    report(agent_api, tasks[0], state="done", outputs=["/r/1.exr"])
    _, one = listed()
    for task in tasks[1:]:
        report(agent_api, task, state="done", outputs=[f"/r/{task[0]}"])
    body, three = listed()
    assert three == one
    assert [item["outputs"] for item in body["tasks"]] == [
        ["/r/1.exr"], [f"/r/{tasks[1][0]}"], [f"/r/{tasks[2][0]}"]]
    assert len([s for s in statements if "task_attempts" in s]) == 1


def test_reading_outputs_uses_the_attempt_index(agent_api, alice, job,
                                                tasks, app):
    # SQLite's planner answers on small tables; PostgreSQL's plans by
    # statistics, so the plan is checked on SQLite only.
    if db.engine.dialect.name != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    for task in tasks:
        report(agent_api, task, state="done", outputs=["/r/x.exr"])
    seen = []

    def record(conn, cursor, statement, parameters, *args):
        if "task_attempts" in statement:
            seen.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert alice.get(f"{JOBS}{job['id']}/tasks/").status_code == 200
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    [(statement, parameters)] = seen
    # The test's requests share the app context's session; a GET leaves
    # its read transaction (BEGIN IMMEDIATE on SQLite) open.
    db.session.rollback()
    with db.engine.connect() as connection:
        plan = [row[-1] for row in connection.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + statement, parameters)]
    assert not [line for line in plan if line.startswith("SCAN")], plan
    assert any(line.startswith("SEARCH task_attempts USING INDEX")
               and "(task_id=? AND attempt=?)" in line for line in plan)
