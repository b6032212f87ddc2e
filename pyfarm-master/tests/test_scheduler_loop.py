"""The scheduler loop with an injected clock and sleep (no wall time)."""

import dataclasses
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from pyfarm.master import app as app_module
from pyfarm.master.cli import main
from pyfarm.master.db import db
from pyfarm.master.models import Agent, Job, JobType, Task, TaskAttempt
from pyfarm.master.scheduler import loop

T0 = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def loop_claims(app):
    """The loop claims only when syncs do not (``claim_on_sync`` off);
    most tests here are about its claims."""
    app.config["PYFARM"] = dataclasses.replace(
        app.config["PYFARM"], claim_on_sync=False)


def make_job(start=1, end=4, **fields):
    """Insert a job with one task per frame; return its id."""
    session = db.session
    jobtype = session.execute(
        select(JobType).where(JobType.name == "command")).scalar_one()
    job = Job(title="job", jobtype=jobtype, start=start, end=end,
              created_at=T0, updated_at=T0, **fields)
    session.add(job)
    session.flush()
    session.add_all(Task(job_id=job.id, frame=frame, created_at=T0,
                         updated_at=T0) for frame in range(start, end + 1))
    job_id = job.id
    session.commit()  # and read nothing after it: see held_by
    return job_id


def make_agent(name, heard=T0, state="online", cpus=1):
    """Insert an agent; return its id."""
    agent_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, name))
    db.session.add(Agent(id=agent_id, hostname=name, os="linux", cpus=cpus,
                         ram=8192, state=state, registered_at=heard,
                         last_heard_at=heard))
    db.session.commit()
    return agent_id


class FakeTime:
    """A clock that moves only when the loop sleeps."""

    def __init__(self, now, step=None):
        self.now = now
        self.step = step
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=self.step or seconds)


# The helpers below end their transaction: on SQLite an open one holds
# the write lock and the loop (with its own session) would wait for it.

def held_by(agent_id):
    db.session.expire_all()
    frames = db.session.execute(
        select(Task.frame).where(Task.agent_id == agent_id)
        .order_by(Task.frame)).scalars().all()
    db.session.commit()
    return frames


def state_of(agent_id):
    db.session.expire_all()
    state = db.session.get(Agent, agent_id).state
    db.session.commit()
    return state


def test_once_claims_for_online_agents_only(app):
    make_job(1, 4)
    online = make_agent("online")
    running = make_agent("running", state="running")
    disabled = make_agent("disabled", state="disabled")
    offline = make_agent("offline", state="offline")
    fake = FakeTime(T0)
    assert loop.run(app, once=True, clock=fake.clock,
                    sleep=fake.sleep) == 1
    assert fake.sleeps == []
    assert len(held_by(online)) == 1
    assert len(held_by(running)) == 1
    assert held_by(disabled) == held_by(offline) == []


def test_loop_sleeps_the_interval_between_passes(app):
    fake = FakeTime(T0)
    passes = loop.run(app, clock=fake.clock, sleep=fake.sleep,
                      stop=lambda: len(fake.sleeps) >= 3)
    interval = app.config["PYFARM"].scheduler_interval
    assert passes == 4
    assert fake.sleeps == [interval] * 3


def test_loop_claims_as_capacity_frees(app):
    make_job(1, 3)
    agent = make_agent("node", heard=T0)
    fake = FakeTime(T0)

    def finish_held():
        # Stand-in for the agent finishing its frame between passes.
        db.session.execute(
            Task.__table__.update().where(Task.agent_id == agent)
            .values(state="done"))
        db.session.commit()
        return len(fake.sleeps) >= 2

    loop.run(app, clock=fake.clock, sleep=fake.sleep, stop=finish_held)
    frames = db.session.execute(
        select(Task.frame, TaskAttempt.agent_id)
        .join(TaskAttempt, TaskAttempt.task_id == Task.id)
        .order_by(Task.frame)).all()
    assert frames == [(1, agent), (2, agent), (3, agent)]


def test_lost_agents_wait_for_the_grace_period(app):
    settings = app.config["PYFARM"]
    timeout = settings.lost_timeout
    make_job(1, 1)
    # Heard long ago: the master was down and just came back.
    stale = make_agent("stale", heard=T0 - timedelta(seconds=10 * timeout),
                       state="running")
    task_id = db.session.execute(select(Task.id)).scalar_one()
    db.session.execute(
        Task.__table__.update().values(state="running", agent_id=stale,
                                       attempt=1, assignment_id="a" * 36))
    db.session.add(TaskAttempt(task_id=task_id, attempt=1, agent_id=stale,
                               assignment_id="a" * 36, state="running",
                               assigned_at=T0))
    db.session.commit()
    fake = FakeTime(T0, step=timeout / 2)
    seen = []

    def observe():
        seen.append((fake.now - T0, state_of(stale)))
        return len(seen) >= 3

    loop.run(app, clock=fake.clock, sleep=fake.sleep, stop=observe)
    half = timedelta(seconds=timeout / 2)
    assert seen == [(0 * half, "running"), (1 * half, "running"),
                    (2 * half, "offline")]
    task = db.session.execute(select(Task)).scalar_one()
    assert (task.state, task.failures, task.agent_id) == ("queued", 0, None)
    attempt = db.session.execute(select(TaskAttempt)).scalar_one()
    assert attempt.state == "lost"


def test_recently_heard_agents_are_not_lost(app):
    settings = app.config["PYFARM"]
    agent = make_agent("fresh", heard=T0)
    fake = FakeTime(T0 + timedelta(seconds=settings.lost_timeout - 1))
    loop.run_pass(db.session, fake.now, settings,
                  started_at=T0 - timedelta(hours=1))
    assert state_of(agent) == "online"
    fake.now = T0 + timedelta(seconds=settings.lost_timeout + 1)
    result = loop.run_pass(db.session, fake.now, settings,
                           started_at=T0 - timedelta(hours=1))
    assert result["lost"] == [agent]
    assert state_of(agent) == "offline"


def test_a_failing_pass_does_not_stop_the_loop(app, monkeypatch):
    real = loop.run_pass
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("SELECT 1", {}, Exception("gone"))
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "run_pass", flaky)
    make_job(1, 1)
    agent = make_agent("node")
    fake = FakeTime(T0)
    loop.run(app, clock=fake.clock, sleep=fake.sleep,
             stop=lambda: len(calls) >= 2)
    assert held_by(agent) == [1]


def test_a_failing_pass_with_once_raises(app, monkeypatch):
    def broken(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("gone"))

    monkeypatch.setattr(loop, "run_pass", broken)
    with pytest.raises(OperationalError):
        loop.run(app, once=True)


def test_claim_errors_cost_one_agent_one_pass(app, monkeypatch):
    settings = app.config["PYFARM"]
    make_job(1, 2)
    first = make_agent("a-first", heard=T0 - timedelta(seconds=2))
    second = make_agent("b-second", heard=T0 - timedelta(seconds=1))
    real = loop.claim_for_agent

    def claim(session, agent, now, settings):
        if agent.id == first:
            raise OperationalError("UPDATE", {}, Exception("deadlock"))
        return real(session, agent, now, settings)

    monkeypatch.setattr(loop, "claim_for_agent", claim)
    result = loop.run_pass(db.session, T0, settings)
    assert result["assignments"] == 1
    assert held_by(first) == []
    assert held_by(second) == [1]


real_create_app = app_module.create_app


def test_cli_scheduler_once(app, database_url, tmp_path, monkeypatch):
    make_job(1, 1)
    agent = make_agent("node")
    monkeypatch.setenv("PYFARM_DATABASE_URL", database_url)
    monkeypatch.setenv("PYFARM_CLAIM_ON_SYNC", "false")
    monkeypatch.setenv("PYFARM_DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("PYFARM_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    made = []

    def create_app(config=None):
        made.append(real_create_app(config))
        return made[-1]

    monkeypatch.setattr(app_module, "create_app", create_app)
    try:
        assert main(["scheduler", "--once"]) == 0
    finally:
        for other in made:
            with other.app_context():
                db.engine.dispose()
    assert len(made) == 1
    assert held_by(agent) == [1]


def test_grace_uses_the_settings_timeout(app):
    app.config["PYFARM"] = dataclasses.replace(
        app.config["PYFARM"], lost_timeout=5)
    stale = make_agent("stale", heard=T0 - timedelta(hours=1))
    fake = FakeTime(T0, step=5)
    loop.run(app, clock=fake.clock, sleep=fake.sleep,
             stop=lambda: len(fake.sleeps) >= 1)
    assert state_of(stale) == "offline"


def test_once_with_an_earlier_start_marks_lost_agents(app):
    settings = app.config["PYFARM"]
    stale = make_agent("stale", heard=T0 - timedelta(hours=1))
    fake = FakeTime(T0)
    loop.run(app, once=True, clock=fake.clock, sleep=fake.sleep)
    assert state_of(stale) == "online"
    loop.run(app, once=True, clock=fake.clock, sleep=fake.sleep,
             started_at=T0 - timedelta(seconds=settings.lost_timeout))
    assert state_of(stale) == "offline"


def test_with_claims_on_sync_the_loop_claims_nothing(app):
    app.config["PYFARM"] = dataclasses.replace(
        app.config["PYFARM"], claim_on_sync=True)
    make_job(1, 4)
    agent = make_agent("node")
    stale = make_agent("stale", heard=T0 - timedelta(hours=1))
    result = loop.run_pass(db.session, T0, app.config["PYFARM"],
                           started_at=T0 - timedelta(hours=1))
    assert result == {"lost": [stale], "settled": [], "assignments": 0}
    assert held_by(agent) == []


def test_full_agents_are_not_asked(app, monkeypatch):
    make_job(1, 6)
    full = make_agent("full", cpus=1, heard=T0 - timedelta(seconds=3))
    roomy = make_agent("roomy", cpus=2, heard=T0 - timedelta(seconds=2))
    assert loop.run_pass(db.session, T0, app.config["PYFARM"]) == {
        "lost": [], "settled": [], "assignments": 3}
    asked = []
    real = loop.claim_for_agent

    def claim(session, agent, now, settings):
        asked.append(agent.id)
        return real(session, agent, now, settings)

    monkeypatch.setattr(loop, "claim_for_agent", claim)
    # Both hold one assignment per cpu: nobody is asked.
    assert loop.run_pass(db.session, T0, app.config["PYFARM"]) == {
        "lost": [], "settled": [], "assignments": 0}
    assert asked == []
    # One of the roomy agent's frames ends: only it is asked.
    db.session.execute(
        Task.__table__.update().where(Task.agent_id == roomy,
                                      Task.frame == min(held_by(roomy)))
        .values(state="done"))
    db.session.commit()
    assert loop.run_pass(db.session, T0, app.config["PYFARM"]) == {
        "lost": [], "settled": [], "assignments": 1}
    assert asked == [roomy]
    assert len(held_by(full)) == 1


def test_the_pass_rolls_up_jobs_with_nothing_left_to_run(app):
    # A job whose last tasks ended while no roll-up saw it (a race of a
    # claim with the last `done`s) must not stay "running" for ever.
    stuck = make_job(1, 3)
    running = make_job(1, 2)
    failed = make_job(1, 2)
    db.session.execute(Task.__table__.update()
                       .where(Task.job_id.in_([stuck, failed]))
                       .values(state="done"))
    db.session.execute(Task.__table__.update()
                       .where(Task.job_id == failed, Task.frame == 2)
                       .values(state="failed"))
    db.session.execute(Task.__table__.update()
                       .where(Task.job_id == running, Task.frame == 2)
                       .values(state="done"))
    db.session.execute(Job.__table__.update().values(
        state="running", started_at=T0))
    db.session.commit()
    result = loop.run_pass(db.session, T0, app.config["PYFARM"])
    assert result["settled"] == [stuck, failed]
    states = dict(db.session.execute(select(Job.id, Job.state)).all())
    assert states == {stuck: "done", running: "running", failed: "failed"}
    assert db.session.get(Job, stuck).finished_at is not None
    # Nothing left to settle on the next pass.
    assert loop.run_pass(db.session, T0, app.config["PYFARM"])[
        "settled"] == []
