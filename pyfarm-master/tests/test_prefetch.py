"""Prefetch: an agent running frames that end within moments asks its sync
for more assignments of that job than it runs at once, and queues them."""

import dataclasses
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from pyfarm.master.db import db
from pyfarm.master.models import Agent, Job, JobType, Task
from pyfarm.master.scheduler import planning

NOW = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)
AGENT_ID = "0b8e2f51-2c1d-4f6a-9d7e-3a5b6c7d8e9f"
AGENTS = "/api/v1/agents/"


def make_job(frames, **fields):
    """Insert a job with one task per frame; return its id."""
    session = db.session
    jobtype = session.execute(
        select(JobType).where(JobType.name == "command")).scalar_one()
    job = Job(title="short frames", jobtype=jobtype, start=1, end=frames,
              data={"argv": ["true"]}, created_at=NOW, updated_at=NOW,
              **fields)
    session.add(job)
    session.flush()
    session.add_all(Task(job_id=job.id, frame=frame, created_at=NOW,
                         updated_at=NOW) for frame in range(1, frames + 1))
    session.commit()
    return job.id


def limit(app, value):
    app.config["PYFARM"] = dataclasses.replace(
        app.config["PYFARM"], prefetch_limit=value)


@pytest.fixture
def agent(agent_api):
    answer = agent_api.post(AGENTS, json={
        "id": AGENT_ID, "hostname": "node1", "os": "linux", "cpus": 2,
        "ram": 16000})
    assert answer.status_code == 201, answer.get_json()
    return agent_api


def sync(api, held=(), prefetch=None, endpoint="sync"):
    body = {"running": [{"task": t, "attempt": a} for t, a in held]}
    if prefetch is not None:
        body["prefetch"] = {"job": prefetch[0], "assignments": prefetch[1]}
    if endpoint == "sync":
        answer = api.post(f"{AGENTS}{AGENT_ID}/sync", json=body)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()
    answer = api.post(f"{AGENTS}{AGENT_ID}/updates", json={"sync": body})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["sync"]


def pairs(answer):
    return [(task["id"], task["attempt"])
            for assignment in answer["assignments"]
            for task in assignment["tasks"]]


def test_the_registration_answer_tells_the_limit(app, agent_api):
    limit(app, 7)
    answer = agent_api.post(AGENTS, json={
        "id": AGENT_ID, "hostname": "node1", "os": "linux", "cpus": 2,
        "ram": 16000})
    assert answer.get_json()["prefetch_limit"] == 7


@pytest.mark.parametrize("endpoint", ["sync", "updates"])
def test_a_prefetch_queues_assignments_up_to_the_limit(app, agent,
                                                       endpoint):
    limit(app, 5)
    job_id = make_job(20)
    first = sync(agent, prefetch=(job_id, 3), endpoint=endpoint)
    # Two to run at once (two cpus) and three to queue.
    assert len(first["assignments"]) == 5
    frames = [a["tasks"][0]["frame"] for a in first["assignments"]]
    assert frames == [1, 2, 3, 4, 5]
    held = pairs(first)
    # Asking for ten more: the agent may hold 2 + 5, it holds 5.
    second = sync(agent, held, prefetch=(job_id, 10), endpoint=endpoint)
    assert [a["tasks"][0]["frame"] for a in second["assignments"]] == [6, 7]
    held += pairs(second)
    assert sync(agent, held, prefetch=(job_id, 10),
                endpoint=endpoint)["assignments"] == []
    states = db.session.execute(
        select(Task.state, sa.func.count()).where(Task.job_id == job_id)
        .group_by(Task.state)).all()
    assert dict(states) == {"assigned": 7, "queued": 13}


def test_without_a_prefetch_the_sync_fills_the_free_cpus_only(app, agent):
    limit(app, 5)
    make_job(20)
    assert len(sync(agent)["assignments"]) == 2


def test_a_prefetch_limit_of_zero_turns_prefetching_off(app, agent):
    limit(app, 0)
    job_id = make_job(20)
    assert len(sync(agent, prefetch=(job_id, 8))["assignments"]) == 2


def test_no_prefetch_of_a_job_another_job_would_be_served_before(
        app, agent):
    limit(app, 5)
    low = make_job(20)
    high = make_job(20, priority=10)
    answer = sync(agent, prefetch=(low, 8))
    # The free cpus go to the higher job; nothing of the lower one is
    # queued ahead of it.
    assert [a["job"]["id"] for a in answer["assignments"]] == [high, high]
    # Asking for the job served first is granted.
    more = sync(agent, pairs(answer), prefetch=(high, 2))
    assert [a["job"]["id"] for a in more["assignments"]] == [high, high]


def test_a_full_agent_gets_its_prefetch(app, agent):
    # Every cpu busy: the sync claims nothing for free capacity, but the
    # prefetch still queues work of the job.
    limit(app, 4)
    job_id = make_job(20)
    held = pairs(sync(agent))
    assert len(held) == 2
    answer = sync(agent, held, prefetch=(job_id, 3))
    assert [a["tasks"][0]["frame"] for a in answer["assignments"]] == [
        3, 4, 5]


def test_a_disabled_agent_gets_no_prefetch(app, agent):
    limit(app, 4)
    job_id = make_job(20)
    db.session.execute(sa.update(Agent).values(state="disabled"))
    db.session.commit()
    assert sync(agent, prefetch=(job_id, 3))["assignments"] == []


def test_a_prefetch_for_a_job_the_agent_cannot_run_gets_nothing_extra(
        app, agent):
    limit(app, 4)
    make_job(20)
    too_big = make_job(20, cpus=4, priority=10)
    answer = sync(agent, prefetch=(too_big, 3))
    assert too_big not in {a["job"]["id"] for a in answer["assignments"]}
    assert len(answer["assignments"]) == 2


@pytest.mark.parametrize("prefetch, field", [
    ({"job": 1, "assignments": -1}, "prefetch.assignments"),
    ({"job": 1, "assignments": 1001}, "prefetch.assignments"),
    ({"job": 0, "assignments": 1}, "prefetch.job"),
    ({"job": 1}, "prefetch.assignments"),
    ({"job": 1, "assignments": 1, "more": True}, "prefetch.more"),
])
def test_a_bad_prefetch_is_a_400_naming_the_field(agent, prefetch, field):
    answer = agent.post(f"{AGENTS}{AGENT_ID}/sync",
                        json={"prefetch": prefetch})
    assert answer.status_code == 400
    assert field in answer.get_json()["error"]


@pytest.mark.parametrize("cpus, ram, job_cpus, job_ram, slots", [
    (2, 16000, 1, 0, 2),
    (8, 16000, 2, 0, 4),
    (8, 16000, 1, 8000, 2),
    (2, 16000, 4, 0, 1),  # a job larger than the agent still runs alone
])
def test_slots_for(cpus, ram, job_cpus, job_ram, slots):
    job = planning.JobCandidate(id=1, cpus=job_cpus, ram=job_ram)
    assert planning.slots_for(cpus, ram, job) == slots


def test_prefetch_room():
    job = planning.JobCandidate(id=1)
    assert planning.prefetch_room(2, 16000, job, held=0, limit=4) == 6
    assert planning.prefetch_room(2, 16000, job, held=5, limit=4) == 1
    assert planning.prefetch_room(2, 16000, job, held=9, limit=4) == 0
    assert planning.prefetch_room(2, 16000, job, held=2, limit=0) == 0


def count_statements(engine, work):
    """Run ``work()``; return how many SQL statements it executed."""
    executed = []

    def record(conn, cursor, statement, parameters, context, executemany):
        executed.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        work()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return len(executed)


def test_many_single_frames_cost_the_statements_of_one(app, agent):
    # Claiming 12 frames (2 to run, 10 to queue) costs what claiming one
    # costs: the frames are taken by one statement, whatever their number.
    limit(app, 10)
    job_id = make_job(40)
    answers = []
    one = count_statements(db.engine, lambda: answers.append(
        sync(agent, prefetch=(job_id, 0))))
    assert len(answers[0]["assignments"]) == 2
    held = pairs(answers[0])
    db.session.execute(sa.update(Task).where(
        Task.id.in_([task for task, _ in held])).values(state="done"))
    db.session.commit()
    many = count_statements(db.engine, lambda: answers.append(
        sync(agent, prefetch=(job_id, 10))))
    assignments = answers[1]["assignments"]
    assert len(assignments) == 12
    assert len({a["id"] for a in assignments}) == 12
    assert many <= one + 1
    attempts = db.session.execute(sa.text(
        "SELECT task_id, assignment_id FROM task_attempts "
        "WHERE state = 'assigned'")).all()
    done = {task for task, _ in held}
    assert {(row.task_id, row.assignment_id) for row in attempts
            if row.task_id not in done} == {
        (a["tasks"][0]["id"], a["id"]) for a in assignments}


def test_no_prefetch_while_the_agent_holds_another_jobs_work(app, agent):
    # Queued behind a long frame of another job, prefetched frames would
    # wait while other agents could run them.
    limit(app, 8)
    long_job = make_job(1, cpus=2, priority=10)
    short_job = make_job(40)
    [running] = sync(agent)["assignments"]
    assert running["job"]["id"] == long_job
    answer = sync(agent, pairs({"assignments": [running]}),
                  prefetch=(short_job, 8))
    assert answer["assignments"] == []


def test_a_roll_up_reads_its_tasks_in_one_statement(app):
    # Tasks move between held and queued without the job's lock: checks
    # in separate statements could miss one in both states.
    from pyfarm.master.services.rollup import rollup_job

    job_id = make_job(3)
    job = db.session.get(Job, job_id)
    assert count_statements(
        db.engine, lambda: rollup_job(db.session, job, NOW)) == 1
