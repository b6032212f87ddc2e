"""``POST /api/v1/agents/<id>/updates``: log chunks, task updates and a
sync in one request and one transaction, each item answered on its own."""

import threading
import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session

from pyfarm.master.app import engine_options
from pyfarm.master.db import db
from pyfarm.master.models import Agent, Job, JobType, Task

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
    return {"id": AGENT_ID, "hostname": "node1", "os": "linux", "cpus": 2,
            "ram": 16000, "free_ram": 12000, **fields}


def url(*parts):
    return AGENTS + "/".join([AGENT_ID, *map(str, parts)])


@pytest.fixture
def registered(agent_api):
    response = agent_api.post(AGENTS, json=registration())
    assert response.status_code == 201, response.get_json()
    return agent_api


def batch(api, **body):
    return api.post(url("updates"), json=body)


def held(assignments):
    return [{"task": t["id"], "attempt": t["attempt"]}
            for a in assignments for t in a["tasks"]]


def test_one_request_reports_done_and_claims_the_next_frames(registered):
    job_id = make_job(1, 3)
    first = batch(registered, sync={"free_ram": 9000}).get_json()
    assert first["logs"] == [] and first["updates"] == []
    assignments = first["sync"]["assignments"]
    assert len(assignments) == 2  # two cpus, one frame each
    running = held(assignments)
    logs = [{"assignment": a["id"], "offset": 0, "data": f"frame {i}\n"}
            for i, a in enumerate(assignments)]
    updates = [{**item, "state": "done"} for item in running]
    answer = batch(registered, logs=logs, updates=updates,
                   sync={"running": running})
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["logs"] == [
        {"assignment": a["id"], "status": 200, "size": 8}
        for a in assignments]
    assert body["updates"] == [
        {"task": item["task"], "attempt": 1, "status": 200,
         "state": "done"} for item in running]
    # The frames it just ended are not cancelled, and their slots are
    # free again for the last frame.
    assert body["sync"]["cancel"] == []
    [last] = body["sync"]["assignments"]
    assert [t["frame"] for t in last["tasks"]] == [3]
    done = [{**item, "state": "done"} for item in held([last])]
    body = batch(registered, updates=done, sync={"running": held([last])}
                 ).get_json()
    assert body["sync"]["state"] == "online"
    db.session.expire_all()
    assert db.session.get(Job, job_id).state == "done"


def test_each_update_is_answered_on_its_own(registered):
    make_job(1, 2)
    assignments = batch(registered, sync={}).get_json()["sync"][
        "assignments"]
    first, second = held(assignments)
    body = batch(registered, updates=[
        {**first, "attempt": 2, "state": "running"},        # stale: 409
        {"task": 2**31 - 1, "attempt": 1, "state": "done"},     # unknown: 404
        {**first, "state": "running", "outputs": ["/x"]},   # bad: 400
        {**second, "state": "done"},
        {**second, "state": "done"},                        # again: 200
    ]).get_json()
    statuses = [item["status"] for item in body["updates"]]
    assert statuses == [409, 404, 400, 200, 200]
    assert "stop that process" in body["updates"][0]["error"]
    assert body["sync"] is None
    db.session.expire_all()
    assert db.session.get(Task, second["task"]).state == "done"
    assert db.session.get(Task, first["task"]).state == "assigned"


def test_a_refused_log_chunk_holds_back_the_updates(app, registered):
    make_job(1, 1)
    [assignment] = batch(registered, sync={}).get_json()["sync"][
        "assignments"]
    [task] = held([assignment])
    body = batch(registered, logs=[
        {"assignment": assignment["id"], "offset": 5, "data": "late"}],
        updates=[{**task, "state": "done"}],
        sync={"running": [task]}).get_json()
    assert body["logs"][0]["status"] == 409
    assert body["logs"][0]["size"] == 0
    assert body["updates"] == [{**task, "status": 424,
                                "error": body["updates"][0]["error"]}]
    # Not applied, so still held: not requeued as lost.
    assert body["sync"]["cancel"] == []
    db.session.expire_all()
    assert db.session.get(Task, task["task"]).state == "assigned"


def test_a_log_chunk_of_another_agent_is_404(registered):
    make_job(1, 1)
    batch(registered, sync={})
    body = batch(registered, logs=[
        {"assignment": str(uuid.uuid4()), "offset": 0, "data": "x"}]
    ).get_json()
    assert body["logs"][0]["status"] == 404


def test_unknown_agent_is_404_and_another_users_agent_403(
        registered, agent_api, stranger):
    other = registered.as_(stranger)
    response = batch(other, updates=[])
    assert response.status_code == 403
    response = agent_api.post(AGENTS + f"{uuid.uuid4()}/updates", json={})
    assert response.status_code == 404
    assert "register" in response.get_json()["error"]


@pytest.mark.parametrize("body, named", [
    ({"updates": {"task": 1}}, "'updates'"),
    ({"logs": [[]] * 101}, "'logs'"),
    ({"sync": {"running": [{"task": 1}]}}, "'sync.running.0.attempt'"),
    ({"extra": 1}, "unknown field 'extra'"),
])
def test_validation_names_the_field(registered, body, named):
    response = registered.post(url("updates"), json=body)
    assert response.status_code == 400
    assert named in response.get_json()["error"]


@pytest.mark.parametrize("bad, named", [
    ({"attempt": 1, "state": "done"}, "'task'"),
    ({"task": 1, "attempt": 1, "state": "queued"}, "'state'"),
    ({"task": 1, "attempt": 1, "state": "failed", "error": "a\x00"},
     "'error'"),
    ("not an object", "JSON object"),
])
def test_a_malformed_update_is_answered_400_on_its_own(
        registered, bad, named):
    make_job(1, 1)
    [assignment] = batch(registered, sync={}).get_json()["sync"][
        "assignments"]
    [task] = held([assignment])
    response = batch(registered, updates=[bad, {**task, "state": "done"}])
    assert response.status_code == 200, response.get_json()
    first, second = response.get_json()["updates"]
    assert first["status"] == 400 and named in first["error"]
    assert second == {**task, "status": 200, "state": "done"}
    db.session.expire_all()
    assert db.session.get(Task, task["task"]).state == "done"


def test_a_malformed_log_chunk_is_answered_400_on_its_own(registered):
    make_job(1, 1)
    [assignment] = batch(registered, sync={}).get_json()["sync"][
        "assignments"]
    [task] = held([assignment])
    body = batch(registered, logs=[
        {"assignment": "x", "offset": 0, "data": ""},
        {"assignment": assignment["id"], "offset": 0, "data": "ok\n"}],
        updates=[{**task, "state": "done"}]).get_json()
    bad, good = body["logs"]
    assert bad["status"] == 400 and "'assignment'" in bad["error"]
    assert good == {"assignment": assignment["id"], "status": 200,
                    "size": 3}
    # As with any refused chunk, no update overtakes the output.
    assert body["updates"][0]["status"] == 424


def test_unknown_agent_404_is_told_from_a_missing_endpoint(agent_api):
    """An agent must not take an old master (no such endpoint) for one
    that forgot it: only the latter carries ``code``."""
    answer = agent_api.post(AGENTS + f"{uuid.uuid4()}/updates", json={})
    assert answer.status_code == 404
    assert answer.get_json()["code"] == "unknown_agent"
    answer = agent_api.post(AGENTS + f"{uuid.uuid4()}/sync", json={})
    assert answer.get_json()["code"] == "unknown_agent"
    answer = agent_api.post(AGENTS + f"{uuid.uuid4()}/nothing", json={})
    assert answer.status_code == 404
    assert "code" not in answer.get_json()
    assert "no such API endpoint" in answer.get_json()["error"]


def test_jobs_are_rolled_up_after_the_commit_in_id_order(
        registered, monkeypatch):
    from pyfarm.master.services import rollup
    from pyfarm.master.services import tasks as task_service

    first_job, second_job = make_job(1, 1), make_job(1, 1)
    busy_job = make_job(1, 2)  # its second frame stays queued
    db.session.execute(sa.update(Agent).values(cpus=3))
    db.session.commit()
    assignments = batch(registered, sync={}).get_json()["sync"][
        "assignments"]
    pairs = held(assignments)
    job_of = {t["id"]: a["job"]["id"] for a in assignments
              for t in a["tasks"]}
    assert sorted(job_of.values()) == [first_job, second_job, busy_job]
    # The later job's task first: the locks must not follow that order.
    pairs.sort(key=lambda item: -job_of[item["task"]])
    events = []
    lock_jobs = rollup.lock_jobs
    report_done_many = task_service.report_done_many

    def locking(session, ids):
        ids = list(ids)
        events.append(("lock", ids))
        return lock_jobs(session, ids)

    def reporting(session, agent_id, updates, *args, **kwargs):
        events.append(("report", [task for task, _ in updates]))
        return report_done_many(session, agent_id, updates, *args, **kwargs)

    monkeypatch.setattr(rollup, "lock_jobs", locking)
    monkeypatch.setattr(task_service, "report_done_many", reporting)
    def committed(session):
        events.append(("commit",))

    sa.event.listen(db.session, "after_commit", committed)
    try:
        body = batch(registered, updates=[{**item, "state": "done"}
                                          for item in pairs]).get_json()
    finally:
        sa.event.remove(db.session, "after_commit", committed)
    assert [item["status"] for item in body["updates"]] == [200] * 3
    # The roll-ups' own commit.
    assert events.pop() == ("commit",)
    # The updates (the plain `done`s all at once) without any job lock,
    # then, after the commit, the roll-ups in id order; the job with a
    # frame still queued is not locked at all.
    assert events == [("report", [item["task"] for item in pairs]),
                      ("commit",),
                      ("lock", [first_job]), ("lock", [second_job])]
    db.session.expire_all()
    states = {job: db.session.get(Job, job).state
              for job in (first_job, second_job, busy_job)}
    assert states == {first_job: "done", second_job: "done",
                      busy_job: "running"}


@pytest.fixture
def other_engine(app):
    """A second engine on the test database, as another process has."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    engine = sa.create_engine(url, **engine_options(url))
    yield engine
    engine.dispose()


@pytest.fixture
def stranger(make_user):
    return make_user("other-agents", "agent")[1]


def test_two_batches_ending_tasks_of_two_jobs_in_opposite_orders(
        app, session, other_engine):
    """On PostgreSQL a batch ending (A, B) and one ending (B, A), the last
    tasks of both jobs, lock the jobs before their updates, in id order:
    one waits for the other instead of deadlocking, and both jobs end."""
    from pyfarm.master.scheduler.claim import claim_for_agent
    from pyfarm.master.services.rollup import lock_jobs_near_end, settle_jobs
    from pyfarm.master.services.tasks import report_task

    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: no interleaving")
    settings = app.config["PYFARM"]
    names = ("node1", "node2")
    agents = []
    for name in names:
        agent = Agent(id=str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
                      hostname=name, os="linux", cpus=1, ram=8192,
                      state="online", registered_at=NOW, last_heard_at=NOW)
        session.add(agent)
        session.commit()
        agents.append(agent)
    # Each agent gets a frame of job A, then (one more cpu) one of job B.
    jobs = []
    for _ in range(2):
        jobs.append(make_job(1, 2))
        for agent in agents:
            agent = session.get(Agent, agent.id)
            agent.cpus = len(jobs)
            claim_for_agent(session, agent, NOW, settings)
            session.commit()
    held = {agent.id: {
        task.job_id: task.id for task in session.execute(
            select(Task).where(Task.agent_id == agent.id)).scalars()}
        for agent in agents}
    (first, mine), (second, theirs) = held.items()
    assert set(mine) == set(theirs) == set(jobs), held
    # This batch ends its task of job A, then of job B, and locks both.
    lock_jobs_near_end(session, [mine[job] for job in jobs])
    ended = set()
    for job in jobs:
        report_task(session, first, mine[job], 1, "done", NOW,
                    rollup=ended)
    session.flush()
    settle_jobs(session, ended, NOW)
    errors = []

    def other():  # ... and that one B, then A
        try:
            with Session(other_engine) as two:
                lock_jobs_near_end(two, [theirs[job]
                                         for job in reversed(jobs)])
                theirs_ended = set()
                for job in reversed(jobs):
                    report_task(two, second, theirs[job], 1, "done", NOW,
                                rollup=theirs_ended)
                two.flush()
                settle_jobs(two, theirs_ended, NOW)
                two.commit()
        except Exception as error:  # noqa: BLE001 - asserted below
            errors.append(error)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(timeout=1)
    assert thread.is_alive()  # waits for our lock on job A
    session.commit()
    thread.join(timeout=30)
    assert not thread.is_alive() and errors == []
    session.expire_all()
    assert [session.get(Job, job).state for job in jobs] == ["done"] * 2


class Deadlock(Exception):
    """Stands for psycopg's error of a transaction PostgreSQL aborted."""

    sqlstate = "40P01"


def test_a_batch_that_lost_a_deadlock_runs_again(registered, monkeypatch):
    from pyfarm.master.services import tasks as task_service

    make_job(1, 2)
    assignments = batch(registered, sync={}).get_json()["sync"][
        "assignments"]
    pairs = held(assignments)
    report_done_many, calls = task_service.report_done_many, []

    def deadlocking(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 1:
            raise sa.exc.OperationalError("UPDATE tasks", {}, Deadlock())
        return report_done_many(*args, **kwargs)

    monkeypatch.setattr(task_service, "report_done_many", deadlocking)
    answer = batch(registered, updates=[{**item, "state": "done"}
                                        for item in pairs], sync={})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert [item["status"] for item in body["updates"]] == [200, 200]
    # The first attempt was rolled back and the whole batch ran again.
    assert len(calls) == 2 and calls[0] == calls[1]
    db.session.expire_all()
    assert {db.session.get(Task, item["task"]).state
            for item in pairs} == {"done"}


def test_plain_dones_in_bulk_keep_every_rule_of_one_update(
        registered, make_user):
    # Many `done`s go to the database in two statements, answered each
    # as PUT .../tasks/<id> would answer it.
    make_job(1, 4)
    db.session.execute(sa.update(Agent).values(cpus=4))
    db.session.commit()
    assignments = batch(registered, sync={}).get_json()["sync"][
        "assignments"]
    one, two, three, four = held(assignments)
    # Task three failed already; task four's attempt moved on (another
    # agent took it after this one was declared lost).
    assert batch(registered, updates=[
        {**three, "state": "failed", "error": "boom"}]).get_json()[
        "updates"][0]["status"] == 200
    db.session.execute(sa.update(Task).where(Task.id == four["task"])
                       .values(attempt=four["attempt"] + 1))
    db.session.commit()
    body = batch(registered, updates=[
        {**one, "state": "done"},
        {**two, "attempt": two["attempt"] + 1, "state": "done"},
        {**three, "state": "done"},
        {**four, "state": "done"},
        {"task": 2**31 - 1, "attempt": 1, "state": "done"},
        {**one, "state": "done"},
        {**two, "state": "done"},
    ]).get_json()["updates"]
    assert [item["status"] for item in body] == [
        200, 409, 409, 409, 404, 200, 200]
    assert "already ended as 'failed'" in body[2]["error"]
    assert "not current" in body[3]["error"]
    assert body[0] == {"task": one["task"], "attempt": one["attempt"],
                       "state": "done", "status": 200}
    db.session.expire_all()
    states = {task: db.session.get(Task, task).state
              for task in (one["task"], two["task"], four["task"])}
    assert states == {one["task"]: "done", two["task"]: "done",
                      four["task"]: "assigned"}
    attempt = db.session.execute(sa.text(
        "SELECT state, started_at, finished_at FROM task_attempts "
        "WHERE task_id = :task AND attempt = :attempt"), one).one()
    assert attempt.state == "done" and attempt.finished_at is not None
    assert attempt.started_at is not None
    # Done again later: a no-op answered 200.
    again = batch(registered, updates=[{**one, "state": "done"}]).get_json()
    assert again["updates"][0]["status"] == 200


def test_the_last_frame_is_committed_before_its_job_is_rolled_up(
        app, registered, other_engine):
    # A request ending a job's last frame holds no job lock while it
    # works: the frame is stored first, the roll-up waits on its own.
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers: no interleaving")
    job_id = make_job(1, 1)
    [pair] = held(batch(registered, sync={}).get_json()["sync"][
        "assignments"])
    answers = []
    with Session(other_engine) as holder:
        holder.execute(select(Job.id).where(Job.id == job_id)
                       .with_for_update())
        thread = threading.Thread(target=lambda: answers.append(batch(
            registered, updates=[{**pair, "state": "done"}])))
        thread.start()
        thread.join(timeout=1)
        waiting = thread.is_alive()
        with Session(other_engine) as reader:
            stored = reader.get(Task, pair["task"]).state
        holder.rollback()
    thread.join(timeout=30)
    assert waiting and stored == "done"
    assert answers[0].status_code == 200
    db.session.expire_all()
    assert db.session.get(Job, job_id).state == "done"


def test_a_failed_roll_up_is_left_to_the_scheduler(app, registered,
                                                   monkeypatch):
    from pyfarm.master.scheduler import loop
    from pyfarm.master.services import rollup

    job_id = make_job(1, 1)
    [pair] = held(batch(registered, sync={}).get_json()["sync"][
        "assignments"])

    def broken(*args, **kwargs):
        raise sa.exc.OperationalError("SELECT jobs", {}, Exception("gone"))

    monkeypatch.setattr(rollup, "settle_jobs", broken)
    answer = batch(registered, updates=[{**pair, "state": "done"}])
    assert answer.status_code == 200
    assert answer.get_json()["updates"][0]["status"] == 200
    db.session.expire_all()
    assert db.session.get(Job, job_id).state == "running"
    monkeypatch.undo()
    loop.run_pass(db.session, NOW, app.config["PYFARM"])
    db.session.expire_all()
    assert db.session.get(Job, job_id).state == "done"
