"""Claiming work for an agent, on SQLite and PostgreSQL."""

import dataclasses
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from pyfarm.master.models import (
    Agent,
    AgentJobFailure,
    Job,
    JobQueue,
    JobSoftwareRequirement,
    JobTagRequirement,
    JobType,
    Software,
    SoftwareVersion,
    Tag,
    Task,
    TaskAttempt,
)
from pyfarm.master.scheduler.claim import claim_for_agent, take_tasks

NOW = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)


def make_job(session, start=1, end=4, **fields):
    """Insert a job with one task per frame; return it."""
    jobtype = session.execute(
        select(JobType).where(JobType.name == "command")).scalar_one()
    job = Job(title=fields.pop("title", "job"), jobtype=jobtype, start=start,
              end=end, created_at=NOW, updated_at=NOW, **fields)
    session.add(job)
    session.flush()
    session.add_all(Task(job_id=job.id, frame=frame, created_at=NOW,
                         updated_at=NOW)
                    for frame in range(start, end + 1, job.by or 1))
    session.commit()
    return job


def make_agent(session, name="node1", cpus=1, ram=8192, **fields):
    """Insert an online agent; return it."""
    agent = Agent(id=str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
                  hostname=name, os="linux", cpus=cpus, ram=ram,
                  state=fields.pop("state", "online"), registered_at=NOW,
                  last_heard_at=NOW, **fields)
    session.add(agent)
    session.commit()
    return agent


@pytest.fixture
def settings(app):
    return app.config["PYFARM"]


def claim(session, agent, settings, now=NOW):
    result = claim_for_agent(session, agent, now, settings)
    session.commit()
    return result


def frames(assignments):
    return [[task["frame"] for task in a["tasks"]] for a in assignments]


def test_claim_takes_lowest_frames_and_records_the_attempt(session,
                                                           settings):
    job = make_job(session, 1, 4, batch=2, data={"command": "true"},
                   environ={"A": "1"})
    agent = make_agent(session)
    [assignment] = claim(session, agent, settings)
    assert assignment["job"] == {
        "id": job.id, "title": "job", "jobtype": "command",
        "jobtype_version": 1, "data": {"command": "true"},
        "environ": {"A": "1"}, "cpus": 1, "ram": 0, "by": 1,
        "software_requirements": [], "pathmaps": []}
    assert [t["frame"] for t in assignment["tasks"]] == [1, 2]
    assert [t["attempt"] for t in assignment["tasks"]] == [1, 1]
    tasks = session.execute(select(Task).where(Task.frame <= 2)
                            .order_by(Task.frame)).scalars().all()
    assert {t.state for t in tasks} == {"assigned"}
    assert {t.agent_id for t in tasks} == {agent.id}
    assert {t.assignment_id for t in tasks} == {assignment["id"]}
    assert tasks[0].assigned_at == NOW
    attempts = session.execute(select(TaskAttempt)).scalars().all()
    assert sorted((a.task_id, a.attempt, a.state, a.agent_id,
                   a.assignment_id) for a in attempts) == sorted(
        (t.id, 1, "assigned", agent.id, assignment["id"]) for t in tasks)
    session.refresh(job)
    assert job.state == "running"
    assert job.started_at == NOW
    session.refresh(agent)
    assert agent.state == "running"


def test_claim_again_increments_the_attempt(session, settings):
    make_job(session, 1, 1)
    agent = make_agent(session)
    task = session.execute(select(Task)).scalar_one()
    task.attempt = 2
    session.commit()
    [assignment] = claim(session, agent, settings)
    assert assignment["tasks"][0]["attempt"] == 3


def test_batch_stops_at_a_gap_and_follows_by(session, settings):
    make_job(session, 1, 9, by=2, batch=3)
    taken = session.execute(select(Task).where(Task.frame == 5)).scalar_one()
    taken.state = "done"
    session.commit()
    agent = make_agent(session, cpus=2)
    assert frames(claim(session, agent, settings)) == [[1, 3], [7, 9]]


def test_capacity_counts_cpus_per_assignment(session, settings):
    make_job(session, 1, 10, cpus=2)
    agent = make_agent(session, cpus=5)
    assert frames(claim(session, agent, settings)) == [[1], [2]]
    # Full: a second claim finds no room (5 - 2 - 2 < 2).
    assert claim(session, agent, settings) == []


def test_capacity_counts_a_batch_once(session, settings):
    make_job(session, 1, 10, batch=3)
    agent = make_agent(session, cpus=2)
    assert frames(claim(session, agent, settings)) == [[1, 2, 3], [4, 5, 6]]
    assert claim(session, agent, settings) == []


def test_capacity_counts_ram(session, settings):
    make_job(session, 1, 10, ram=3000)
    agent = make_agent(session, cpus=8, ram=8000)
    assert frames(claim(session, agent, settings)) == [[1], [2]]


def test_job_larger_than_the_agent_is_not_claimed(session, settings):
    make_job(session, 1, 2, cpus=4)
    make_job(session, 1, 2, ram=9000, title="big")
    agent = make_agent(session, cpus=2, ram=8192)
    assert claim(session, agent, settings) == []


def test_held_tasks_use_capacity(session, settings):
    make_job(session, 1, 10)
    agent = make_agent(session, cpus=2)
    claim(session, agent, settings)
    task = session.execute(select(Task).where(Task.frame == 1)).scalar_one()
    task.state = "running"
    session.commit()
    assert claim(session, agent, settings) == []
    task.state = "done"
    session.commit()
    assert frames(claim(session, agent, settings)) == [[3]]


@pytest.mark.parametrize("state", ["paused", "done", "failed"])
def test_jobs_not_queued_or_running_are_not_claimed(session, settings,
                                                    state):
    make_job(session, 1, 2, state=state)
    agent = make_agent(session)
    assert claim(session, agent, settings) == []


def test_running_job_with_queued_tasks_is_claimed(session, settings):
    make_job(session, 1, 2, state="running", started_at=NOW)
    agent = make_agent(session)
    assert frames(claim(session, agent, settings)) == [[1]]


@pytest.mark.parametrize("state", ["disabled", "offline"])
def test_disabled_or_offline_agents_get_nothing(session, settings, state):
    make_job(session, 1, 2)
    agent = make_agent(session, state=state)
    assert claim(session, agent, settings) == []
    assert session.execute(select(TaskAttempt)).first() is None


def test_child_waits_for_parent_done(session, settings):
    parent = make_job(session, 1, 1, title="parent")
    child = make_job(session, 1, 1, title="child", priority=10)
    child.parents.append(parent)
    session.commit()
    agent = make_agent(session, cpus=4)
    [assignment] = claim(session, agent, settings)
    assert assignment["job"]["id"] == parent.id
    # The parent's only task is held: the child still waits.
    assert claim(session, agent, settings) == []
    session.execute(sa.update(Task).where(Task.job_id == parent.id)
                    .values(state="done"))
    parent.state = "done"
    session.commit()
    [assignment] = claim(session, agent, settings)
    assert assignment["job"]["id"] == child.id


def test_failed_parent_leaves_the_child_waiting(session, settings):
    parent = make_job(session, 1, 1, title="parent", state="failed")
    session.execute(sa.update(Task).values(state="failed"))
    child = make_job(session, 1, 1, title="child")
    child.parents.append(parent)
    session.commit()
    agent = make_agent(session)
    assert claim(session, agent, settings) == []


def tag(session, name):
    row = Tag(name=name)
    session.add(row)
    session.flush()
    return row


def trial(session, agent, settings):
    """Return the job ids ``agent`` would claim, then undo the claim."""
    result = claim_for_agent(session, agent, NOW, settings)
    session.rollback()
    return [assignment["job"]["id"] for assignment in result]


def test_tag_requirements(session, settings):
    gpu, old = tag(session, "gpu"), tag(session, "old")
    needs = make_job(session, 1, 1, title="needs gpu")
    avoids = make_job(session, 1, 1, title="avoids old")
    session.add_all([
        JobTagRequirement(job_id=needs.id, tag_id=gpu.id),
        JobTagRequirement(job_id=avoids.id, tag_id=old.id, negate=True)])
    session.commit()
    plain = make_agent(session, "plain", cpus=4)
    with_gpu = make_agent(session, "gpu", cpus=4, tags=[gpu])
    with_both = make_agent(session, "both", cpus=4, tags=[gpu, old])
    assert trial(session, plain, settings) == [avoids.id]
    assert trial(session, with_gpu, settings) == [needs.id, avoids.id]
    assert trial(session, with_both, settings) == [needs.id]


def test_software_requirements(session, settings):
    blender = Software(name="blender")
    session.add(blender)
    session.flush()
    v3 = SoftwareVersion(software_id=blender.id, version="3.6")
    v4 = SoftwareVersion(software_id=blender.id, version="4.0.2")
    session.add_all([v3, v4])
    job = make_job(session, 1, 1)
    session.add(JobSoftwareRequirement(job_id=job.id, software_id=blender.id,
                                       min_version="4.0", max_version="4"))
    session.commit()
    none = make_agent(session, "none")
    old = make_agent(session, "old", software=[v3])
    assert claim(session, none, settings) == []
    assert claim(session, old, settings) == []
    new = make_agent(session, "new", software=[v3, v4])
    assert frames(claim(session, new, settings)) == [[1]]


def test_jobs_go_only_to_agents_with_their_job_types_program(session,
                                                             settings):
    session.add(JobType(name="render", software="renderer", parameters={}))
    session.commit()
    job = make_job(session, 1, 1)
    job.jobtype = session.execute(
        select(JobType).where(JobType.name == "render")).scalar_one()
    session.commit()
    without = make_agent(session, "without")
    # No agent has reported the program yet: nobody gets the job.
    assert claim(session, without, settings) == []
    renderer = Software(name="renderer")
    session.add(renderer)
    session.flush()
    version = SoftwareVersion(software_id=renderer.id, version="2.0")
    session.add(version)
    session.commit()
    assert claim(session, without, settings) == []
    having = make_agent(session, "having", software=[version])
    assert frames(claim(session, having, settings)) == [[1]]


def test_blocklisted_agent_is_kept_off_until_forgiven(session, settings):
    job = make_job(session, 1, 2)
    agent = make_agent(session)
    session.add(AgentJobFailure(
        agent_id=agent.id, job_id=job.id,
        failures=settings.blocklist_failures,
        last_failed_at=NOW - timedelta(seconds=10)))
    session.commit()
    assert claim(session, agent, settings) == []
    below = dataclasses.replace(
        settings, blocklist_failures=settings.blocklist_failures + 1)
    assert frames(claim(session, agent, below)) == [[1]]
    agent2 = make_agent(session, "node2")
    session.add(AgentJobFailure(
        agent_id=agent2.id, job_id=job.id, failures=99,
        last_failed_at=NOW - timedelta(seconds=settings.blocklist_forgive
                                       + 1)))
    session.commit()
    assert frames(claim(session, agent2, settings)) == [[2]]


def test_maximum_agents(session, settings):
    make_job(session, 1, 10, maximum_agents=1)
    first = make_agent(session, "first")
    second = make_agent(session, "second", cpus=2)
    assert frames(claim(session, first, settings)) == [[1]]
    assert claim(session, second, settings) == []
    # The agent already on the job does not count against itself.
    first.cpus = 2
    session.commit()
    assert frames(claim(session, first, settings)) == [[2]]


def test_job_priority_beats_queue_priority_beats_weight_beats_age(
        session, settings):
    high_queue = JobQueue(name="high", priority=5)
    session.add(high_queue)
    session.flush()
    oldest = make_job(session, 1, 1, title="oldest")
    heavy = make_job(session, 1, 1, title="heavy", weight=5)
    queued = make_job(session, 1, 1, title="queue", jobqueue_id=high_queue.id)
    urgent = make_job(session, 1, 1, title="urgent", priority=1)
    newest = make_job(session, 1, 1, title="newest")
    agent = make_agent(session, cpus=5)
    assert [a["job"]["id"] for a in claim(session, agent, settings)] == [
        urgent.id, queued.id, heavy.id, oldest.id, newest.id]


def test_a_failed_task_prefers_another_agent(session, settings):
    make_job(session, 1, 2)
    agent = make_agent(session)
    session.execute(sa.update(Task).where(Task.frame == 1)
                    .values(last_failed_agent_id=agent.id, failures=1))
    session.commit()
    # Alone on the farm: it takes the task it failed.
    assert frames(claim(session, agent, settings)) == [[1]]
    session.execute(sa.update(Task).values(state="queued", agent_id=None))
    session.commit()
    other = make_agent(session, "other")
    assert frames(claim(session, agent, settings)) == [[2]]
    assert frames(claim(session, other, settings)) == [[1]]


def test_a_failed_task_returns_to_its_agent_when_no_other_takes_it(
        session, settings):
    # Only the agent that failed the frame has the tag the job needs; the
    # other agent online can never take it.
    job = make_job(session, 1, 1, requeue=3)
    gpu = Tag(name="gpu")
    session.add(JobTagRequirement(job_id=job.id, tag=gpu))
    agent = make_agent(session, tags=[gpu])
    other = make_agent(session, "other")
    session.execute(sa.update(Task).values(last_failed_agent_id=agent.id,
                                           failures=1, updated_at=NOW))
    session.commit()
    assert claim(session, other, settings) == []
    assert claim(session, agent, settings) == []  # the others go first ...
    later = NOW + timedelta(seconds=settings.lost_timeout + 1)
    assert claim(session, other, settings, now=later) == []
    # ... but not for ever.
    assert frames(claim(session, agent, settings, now=later)) == [[1]]


def test_take_tasks_is_compare_and_set(session):
    job = make_job(session, 1, 3)
    agent = make_agent(session)
    other = make_agent(session, "other")
    ids = session.execute(select(Task.id).order_by(Task.frame)).scalars()
    ids = list(ids)
    assert [row.frame for row in take_tasks(
        session, other.id, job.id, ids[:1], NOW)] == [1]
    won = take_tasks(session, agent.id, job.id, ids, NOW)
    assert [row.frame for row in won] == [2, 3]
    session.commit()
    attempts = session.execute(
        select(TaskAttempt.task_id, TaskAttempt.agent_id)).all()
    assert sorted(attempts) == sorted(
        [(ids[0], other.id), (ids[1], agent.id), (ids[2], agent.id)])


def test_take_tasks_skips_a_job_paused_meanwhile(session):
    job = make_job(session, 1, 1, state="paused")
    agent = make_agent(session)
    ids = list(session.execute(select(Task.id)).scalars())
    assert take_tasks(session, agent.id, job.id, ids, NOW) == []


class Statements:
    """Records the SQL statements an engine runs."""

    def __init__(self, engine):
        self.engine = engine
        self.seen = []

    def __enter__(self):
        sa.event.listen(self.engine, "before_cursor_execute", self.record)
        return self

    def __exit__(self, *exc):
        sa.event.remove(self.engine, "before_cursor_execute", self.record)

    def record(self, conn, cursor, statement, parameters, context, many):
        self.seen.append(statement)


def test_claim_cost_does_not_grow_with_finished_tasks(app, session,
                                                      settings):
    from pyfarm.master.db import db

    agent = make_agent(session, cpus=2)
    make_job(session, 1, 6)

    def count():
        session.expire_all()
        with Statements(db.engine) as recorded:
            claim(session, session.get(Agent, agent.id), settings)
        session.execute(sa.update(Task).where(Task.state == "assigned")
                        .values(state="done"))
        session.execute(sa.update(Task).where(Task.frame > 2)
                        .values(state="queued"))
        session.commit()
        return len(recorded.seen)

    count()  # the first claim also turns the agent "running"
    before = count()
    for index in range(20):
        done = make_job(session, 1, 50, title=f"old {index}", state="done")
        session.execute(sa.update(Task).where(Task.job_id == done.id)
                        .values(state="done", agent_id=agent.id))
    session.commit()
    assert count() == before


def test_postgresql_selects_candidates_skip_locked(app, session, settings):
    from pyfarm.master.db import db

    make_job(session, 1, 2)
    agent = make_agent(session)
    with Statements(db.engine) as recorded:
        claim(session, agent, settings)
    locked = [s for s in recorded.seen if "SKIP LOCKED" in s]
    if db.engine.dialect.name == "postgresql":
        assert locked and all("FROM tasks" in s for s in locked)
        assert any(s.startswith("UPDATE tasks") and "RETURNING" in s
                   for s in recorded.seen)
    else:
        assert locked == []
