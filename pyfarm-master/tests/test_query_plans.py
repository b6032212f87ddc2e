"""What the farm does all day reads only indexed rows.

The statement-counting tests elsewhere cannot see a statement that scans
a whole table; these ask SQLite's planner about every statement of the
agent protocol, the scheduler pass and the job changes, and refuse a full
scan of a table that grows with finished work.
"""

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from pyfarm.master.db import db
from pyfarm.master.models import Job, JobType, Task
from pyfarm.master.scheduler.loop import run_pass
from pyfarm.master.services import jobs as job_service
from pyfarm.master.services.agents import register_agent, sync_agent
from pyfarm.master.services.tasks import release_agent_tasks, report_task

NOW = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)
AGENT_ID = "5d1f7c1e-6d4b-4a43-9f5e-2f1d7e0b8a11"
#: Tables whose size grows with finished jobs, tasks and attempts.
GROWING = ("jobs", "tasks", "task_attempts", "agent_job_failures")


@pytest.fixture
def sqlite(app):
    """Skip unless on SQLite, whose planner answers on empty tables."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's; PostgreSQL plans by "
                    "table statistics")


class Recorder:
    """Records each statement an engine runs with its parameters."""

    def __init__(self, engine):
        self.engine = engine
        self.seen = []

    def __enter__(self):
        sa.event.listen(self.engine, "before_cursor_execute", self.record)
        return self

    def __exit__(self, *exc):
        sa.event.remove(self.engine, "before_cursor_execute", self.record)

    def record(self, conn, cursor, statement, parameters, context, many):
        if not many and statement.lstrip().upper().startswith(
                ("SELECT", "UPDATE", "DELETE", "INSERT", "WITH")):
            self.seen.append((statement, parameters))


def full_scans(engine, recorded):
    """Return ``(statement, plan line)`` for full scans of GROWING."""
    found = []
    with engine.connect() as connection:
        for statement, parameters in recorded:
            plan = connection.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, parameters).all()
            for row in plan:
                detail = row[-1]
                if any(detail == f"SCAN {table}"
                       or detail.startswith(f"SCAN {table} ")
                       for table in GROWING):
                    found.append((" ".join(statement.split()), detail))
    return found


def make_job(session, frames, **fields):
    jobtype = session.execute(
        select(JobType).where(JobType.name == "command")).scalar_one()
    job = Job(title="job", jobtype=jobtype, start=1, end=frames,
              created_at=NOW, updated_at=NOW, **fields)
    session.add(job)
    session.flush()
    session.add_all(Task(job_id=job.id, frame=frame, created_at=NOW,
                         updated_at=NOW) for frame in range(1, frames + 1))
    session.commit()
    return job


def test_a_working_day_scans_no_growing_table(app, sqlite, session,
                                              make_user):
    settings = app.config["PYFARM"]
    agent_user = make_user("agents", "agent")[0]
    admin = make_user("admin", "admin")[0]
    job = make_job(session, 4)
    limited = make_job(session, 4, maximum_agents=1)
    with Recorder(db.engine) as recorder:
        register_agent(session, agent_user, {
            "id": AGENT_ID, "hostname": "node1", "os": "linux", "cpus": 4,
            "ram": 8192}, NOW)
        session.commit()
        answer = sync_agent(session, agent_user, AGENT_ID, [], NOW,
                            settings)
        session.commit()
        first, second = (assignment["tasks"][0]
                         for assignment in answer["assignments"][:2])
        for state in ("running", "done"):
            report_task(session, AGENT_ID, first["id"], 1, state, NOW)
            session.commit()
        report_task(session, AGENT_ID, second["id"], 1, "failed", NOW,
                    error="boom")
        session.commit()
        sync_agent(session, agent_user, AGENT_ID, [(second["id"], 1)], NOW,
                   settings)
        session.commit()
        job_service.cancel_job(session, job.id, admin, NOW)
        job_service.rerun_job(session, job.id, admin, False, NOW)
        job_service.update_job(session, job.id, admin,
                               job_service.JobChanges(state="paused"), NOW)
        session.commit()
        run_pass(session, NOW + timedelta(hours=1), settings,
                 started_at=NOW)
        # Where syncs do not claim, the loop claims for agents with room.
        run_pass(session, NOW + timedelta(hours=1),
                 dataclasses.replace(settings, claim_on_sync=False),
                 started_at=NOW)
        release_agent_tasks(session, AGENT_ID, NOW)
        job_service.delete_job(session, limited.id, admin)
        session.commit()
    assert len(recorder.seen) > 40
    assert full_scans(db.engine, recorder.seen) == []
