"""Two schedulers claiming at once against one job pool.

Each scheduler is a thread with its own engine and session (as two
master processes would have), claiming for every agent in its own order
while agents finish their work. On PostgreSQL this exercises the row
locks (``FOR UPDATE SKIP LOCKED``, the agent row lock) and the
compare-and-set UPDATE; on SQLite the writers are serialised. The
PostgreSQL run is skipped, saying why, when no server is reachable.
"""

import random
import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pyfarm.master.app import engine_options
from pyfarm.master.db import configure_sqlite, db, is_sqlite
from pyfarm.master.models import Agent, Job, JobType, Task, TaskAttempt
from pyfarm.master.scheduler.claim import claim_for_agent
from pyfarm.master.services.tasks import report_task

T0 = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)
AGENTS = 12
ROUNDS = 30
MAXIMUM_AGENTS = 4


def populate(session):
    """Three jobs (180 tasks, batches of 1-3) and twelve agents."""
    jobtype = session.execute(
        select(JobType).where(JobType.name == "command")).scalar_one()
    for index, (batch, maximum) in enumerate(
            [(1, None), (2, MAXIMUM_AGENTS), (3, None)]):
        job = Job(title=f"job {index}", jobtype=jobtype, start=1, end=60,
                  batch=batch, maximum_agents=maximum, created_at=T0,
                  updated_at=T0)
        session.add(job)
        session.flush()
        session.add_all(Task(job_id=job.id, frame=frame, created_at=T0,
                             updated_at=T0) for frame in range(1, 61))
    ids = [str(uuid.uuid5(uuid.NAMESPACE_DNS, f"node{n}"))
           for n in range(AGENTS)]
    session.add_all(Agent(id=agent_id, hostname=agent_id[:8], os="linux",
                          cpus=2, ram=8192, state="online",
                          registered_at=T0, last_heard_at=T0)
                    for agent_id in ids)
    session.commit()
    return ids


def make_engine(url):
    engine = sa.create_engine(url, **engine_options(url))
    if is_sqlite(url):
        configure_sqlite(engine)
    return engine


class Scheduler(threading.Thread):
    """Claims for every agent in a shuffled order, round after round.

    Half the time an agent finishes (reports done) what it won, so work
    keeps moving between agents while the other scheduler claims.
    """

    def __init__(self, name, url, agent_ids, settings, barrier):
        super().__init__(name=name)
        self.url = url
        self.agent_ids = list(agent_ids)
        self.settings = settings
        self.barrier = barrier
        self.random = random.Random(name)
        self.won = []
        self.errors = []
        self.over_capacity = []
        self.over_maximum = []

    def run(self):
        engine = make_engine(self.url)
        try:
            with Session(engine) as session:
                self.barrier.wait(timeout=30)
                for round_ in range(ROUNDS):
                    now = T0 + timedelta(seconds=round_)
                    self.random.shuffle(self.agent_ids)
                    for agent_id in self.agent_ids:
                        self.serve(session, agent_id, now)
                    if not self.work_left(session):
                        break
        except Exception as error:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(error))
        finally:
            engine.dispose()

    def serve(self, session, agent_id, now):
        agent = session.get(Agent, agent_id, populate_existing=True)
        assignments = claim_for_agent(session, agent, now, self.settings)
        session.commit()
        for assignment in assignments:
            for task in assignment["tasks"]:
                self.won.append((task["id"], task["attempt"], agent_id))
        self.check_capacity(session, agent)
        for assignment in assignments:
            if self.random.random() < 0.5:
                for task in assignment["tasks"]:
                    report_task(session, agent_id, task["id"],
                                task["attempt"], "done", now)
                session.commit()

    def work_left(self, session):
        left = session.execute(select(Task.id).where(
            Task.state == "queued").limit(1)).first()
        session.commit()
        return left is not None

    def check_capacity(self, session, agent):
        held = session.execute(
            select(func.count(func.distinct(Task.assignment_id)))
            .where(Task.agent_id == agent.id,
                   Task.state.in_(["assigned", "running"]))).scalar()
        limited = session.execute(
            select(func.count(func.distinct(Task.agent_id)))
            .join(Job, Job.id == Task.job_id)
            .where(Job.maximum_agents == MAXIMUM_AGENTS,
                   Task.state.in_(["assigned", "running"]))).scalar()
        session.commit()
        if held > agent.cpus:
            self.over_capacity.append((agent.id, held))
        if limited > MAXIMUM_AGENTS:
            self.over_maximum.append(limited)


def test_two_schedulers_never_hand_a_task_to_two_agents(
        app, session, database_url):
    agent_ids = populate(session)
    settings = app.config["PYFARM"]
    session.commit()
    db.session.close()
    barrier = threading.Barrier(2)
    schedulers = [Scheduler(f"scheduler-{n}", database_url, agent_ids,
                            settings, barrier) for n in (1, 2)]
    for scheduler in schedulers:
        scheduler.start()
    for scheduler in schedulers:
        scheduler.join(timeout=240)
    assert not any(s.is_alive() for s in schedulers), "a scheduler hangs"
    assert [s.errors for s in schedulers] == [[], []]
    assert [s.over_capacity for s in schedulers] == [[], []]
    assert [s.over_maximum for s in schedulers] == [[], []]
    won = [claim for s in schedulers for claim in s.won]
    if not is_sqlite(database_url):
        # SQLite serialises writers and may let one thread win all; on
        # PostgreSQL both claim side by side.
        assert all(s.won for s in schedulers), "both schedulers won work"
    # No (task, attempt) was won twice ...
    assert len(won) == len(set(won))
    # ... and no task was won by two claims: nothing failed or was lost,
    # so every task ran exactly once, as attempt 1.
    per_task = Counter(task_id for task_id, _, _ in won)
    assert set(per_task.values()) == {1}
    assert {attempt for _, attempt, _ in won} == {1}
    attempts = session.execute(
        select(TaskAttempt.task_id, TaskAttempt.attempt,
               TaskAttempt.agent_id)).all()
    assert sorted(map(tuple, attempts)) == sorted(won)
    held = session.execute(
        select(Task.id, Task.agent_id).where(Task.state != "queued")).all()
    owner = {task_id: agent_id for task_id, _, agent_id in won}
    assert {task_id: agent_id for task_id, agent_id in held} == owner


def test_two_schedulers_respect_maximum_agents(app, session, database_url):
    """Both race for the single slot of a job limited to one agent."""
    jobtype = session.execute(
        select(JobType).where(JobType.name == "command")).scalar_one()
    job = Job(title="limited", jobtype=jobtype, start=1, end=100,
              maximum_agents=1, created_at=T0, updated_at=T0)
    session.add(job)
    session.flush()
    session.add_all(Task(job_id=job.id, frame=frame, created_at=T0,
                         updated_at=T0) for frame in range(1, 101))
    ids = [str(uuid.uuid5(uuid.NAMESPACE_DNS, f"node{n}")) for n in range(4)]
    session.add_all(Agent(id=agent_id, hostname=agent_id[:8], os="linux",
                          cpus=1, ram=8192, state="online",
                          registered_at=T0, last_heard_at=T0)
                    for agent_id in ids)
    session.commit()
    db.session.close()
    settings = app.config["PYFARM"]
    rounds = 15
    barrier = threading.Barrier(2)
    holders, errors = [], []

    def scheduler(mine, leader):
        engine = make_engine(database_url)
        try:
            with Session(engine) as own:
                for _ in range(rounds):
                    barrier.wait(timeout=30)
                    for agent_id in mine:
                        agent = own.get(Agent, agent_id,
                                        populate_existing=True)
                        claim_for_agent(own, agent, T0, settings)
                        own.commit()
                    barrier.wait(timeout=30)
                    if leader:
                        holders.append(own.execute(
                            select(func.count(func.distinct(Task.agent_id)))
                            .where(Task.state == "assigned")).scalar())
                        own.execute(sa.update(Task)
                                    .where(Task.state == "assigned")
                                    .values(state="done"))
                        own.commit()
        except Exception as error:  # noqa: BLE001 - reported by the test
            errors.append(repr(error))
            barrier.abort()
        finally:
            engine.dispose()

    threads = [threading.Thread(target=scheduler, args=args)
               for args in ((ids[:2], True), (ids[2:], False))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert holders == [1] * rounds
