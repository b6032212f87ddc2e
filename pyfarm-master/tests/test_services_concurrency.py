"""Concurrent task updates, claims and deletions, each in its own session.

On PostgreSQL two requests run side by side (READ COMMITTED); these tests
hold one transaction open while another runs, as two web workers would.
SQLite serialises writers with ``BEGIN IMMEDIATE``, so the same steps
there run one after the other.
"""

import threading
import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session

from pyfarm.master.app import engine_options
from pyfarm.master.db import configure_sqlite, db, is_sqlite
from pyfarm.master.models import Agent, Job, JobType, Task
from pyfarm.master.scheduler.claim import claim_for_agent
from pyfarm.master.services.agents import delete_agent, sync_agent
from pyfarm.master.services.tasks import report_task

NOW = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)


@pytest.fixture
def postgresql(app):
    """Skip unless the test runs on PostgreSQL."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE): two "
                    "transactions cannot interleave")


@pytest.fixture
def other_engine(app):
    """A second engine on the test database, as another process has."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    engine = sa.create_engine(url, **engine_options(url))
    if is_sqlite(url):
        configure_sqlite(engine)
    yield engine
    engine.dispose()


def make_agent(session, name, cpus=1):
    agent = Agent(id=str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
                  hostname=name, os="linux", cpus=cpus, ram=8192,
                  state="online", registered_at=NOW, last_heard_at=NOW)
    session.add(agent)
    session.commit()
    return agent.id


def make_job(session, frames):
    jobtype = session.execute(
        select(JobType).where(JobType.name == "command")).scalar_one()
    job = Job(title="job", jobtype=jobtype, start=1, end=frames,
              created_at=NOW, updated_at=NOW)
    session.add(job)
    session.flush()
    session.add_all(Task(job_id=job.id, frame=frame, created_at=NOW,
                         updated_at=NOW) for frame in range(1, frames + 1))
    session.commit()
    return job.id


def claimed_frame(app, session, frames):
    """Make a job of ``frames`` frames and an agent holding its first;
    return ``(job_id, agent_id, task_id)``."""
    job_id = make_job(session, frames)
    agent_id = make_agent(session, "node1")
    [assignment] = claim_for_agent(session, session.get(Agent, agent_id),
                                   NOW, app.config["PYFARM"])
    session.commit()
    return job_id, agent_id, assignment["tasks"][0]["id"]


def test_two_last_tasks_done_at_once_finish_the_job(
        app, postgresql, session, other_engine):
    # Two agents report the job's last two tasks done at the same moment.
    # Each roll-up must see the other's task done, or the job would stay
    # "running" for ever with every task done.
    settings = app.config["PYFARM"]
    job_id = make_job(session, 2)
    held = []
    for name in ("node1", "node2"):
        agent = session.get(Agent, make_agent(session, name))
        [assignment] = claim_for_agent(session, agent, NOW, settings)
        session.commit()
        held.append((agent.id, assignment["tasks"][0]["id"]))
    report_task(session, *held[0], 1, "done", NOW)  # not committed yet

    def other():
        with Session(other_engine) as second:
            report_task(second, *held[1], 1, "done", NOW)
            second.commit()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(timeout=1)  # with the job locked it waits for our commit
    session.commit()
    thread.join(timeout=30)
    assert not thread.is_alive()
    session.expire_all()
    assert session.get(Job, job_id).state == "done"


def test_claim_reads_the_agent_state_under_its_lock(
        app, postgresql, session, other_engine):
    # The scheduler loaded the agent, then an admin disabled it (or
    # another master declared it lost) before the claim took its lock.
    settings = app.config["PYFARM"]
    make_job(session, 2)
    agent = session.get(Agent, make_agent(session, "node1"))
    assert agent.state == "online"
    with other_engine.begin() as connection:
        connection.execute(sa.update(Agent).values(state="disabled"))
    assert claim_for_agent(session, agent, NOW, settings) == []
    session.commit()
    assert session.execute(select(Task.id).where(
        Task.state != "queued")).first() is None


def test_deleting_an_agent_while_it_syncs_leaves_no_task_without_agent(
        app, postgresql, session, other_engine, make_user):
    # A sync claims work for the agent (not committed yet) while an admin
    # deletes the agent. The claimed tasks must go back to the queue, not
    # stay "assigned" to nobody.
    settings = app.config["PYFARM"]
    user = make_user("agents", "agent")[0]
    make_job(session, 2)
    agent_id = make_agent(session, "node1", cpus=2)
    session.get(Agent, agent_id).user_id = user.id
    session.commit()
    answer = sync_agent(session, user, agent_id, [], NOW, settings)
    assert answer["assignments"]  # claimed, not committed

    def delete():
        with Session(other_engine) as second:
            delete_agent(second, agent_id, NOW)
            second.commit()

    thread = threading.Thread(target=delete)
    thread.start()
    thread.join(timeout=1)  # waits for the sync's lock on the agent row
    session.commit()
    thread.join(timeout=30)
    assert not thread.is_alive()
    session.expire_all()
    assert session.get(Agent, agent_id) is None
    states = session.execute(select(Task.state, Task.agent_id)).all()
    assert sorted(states) == [("queued", None), ("queued", None)]


def test_a_done_with_frames_still_queued_does_not_wait_for_the_job(
        app, postgresql, session, other_engine):
    # Agents finishing frames of one job must not queue up behind its
    # row: while frames are queued a `done` leaves the job row alone.
    job_id, agent_id, task_id = claimed_frame(app, session, 3)
    with Session(other_engine) as holder:
        # Another transaction (a rerun, a pause...) holds the job's row.
        holder.execute(select(Job.id).where(Job.id == job_id)
                       .with_for_update())
        try:
            session.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
            answer = report_task(session, agent_id, task_id, 1, "done",
                                 NOW)
            session.commit()
        finally:
            session.rollback()
            holder.rollback()
    assert answer["state"] == "done"
    session.expire_all()
    assert session.get(Job, job_id).state == "running"


def test_the_last_done_waits_for_the_job_and_rolls_it_up(
        app, postgresql, session, other_engine):
    # With nothing queued any more the `done` locks the job: it waits for
    # a transaction holding the row, then sees the job's tasks afresh.
    job_id, agent_id, task_id = claimed_frame(app, session, 1)
    done, errors = [], []

    def report():
        try:
            with Session(other_engine) as second:
                done.append(report_task(second, agent_id, task_id, 1,
                                        "done", NOW))
                second.commit()
        except Exception as error:  # noqa: BLE001 - asserted below
            errors.append(error)

    with Session(other_engine) as holder:
        holder.execute(select(Job.id).where(Job.id == job_id)
                       .with_for_update())
        thread = threading.Thread(target=report)
        thread.start()
        thread.join(timeout=1)
        waited = thread.is_alive()  # waits for the job's row
        holder.rollback()
    thread.join(timeout=30)
    assert errors == [] and waited
    assert not thread.is_alive() and done[0]["state"] == "done"
    session.expire_all()
    assert session.get(Job, job_id).state == "done"


def test_the_last_done_locks_its_job_before_its_task(
        app, postgresql, session, other_engine):
    # A cancel locks the job, then its tasks; the last `done` must take
    # them in the same order, or each would wait for the other.
    job_id, agent_id, task_id = claimed_frame(app, session, 1)
    try:
        report_task(session, agent_id, task_id, 1, "done", NOW)
        with Session(other_engine) as other:
            with pytest.raises(sa.exc.OperationalError,
                               match="could not obtain lock"):
                other.execute(select(Job.id).where(Job.id == job_id)
                              .with_for_update(nowait=True))
    finally:
        session.rollback()
