"""Registering, syncing and losing agents, on SQLite and PostgreSQL."""

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from pyfarm.master.errors import Forbidden, NotFound
from pyfarm.master.models import (
    Agent,
    Job,
    JobType,
    Software,
    SoftwareVersion,
    Tag,
    Task,
    TaskAttempt,
)
from pyfarm.master.services.agents import (
    mark_lost_agents,
    register_agent,
    sync_agent,
)
from pyfarm.master.services.tasks import report_task

NOW = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)
AGENT_ID = "5d1f7c1e-6d4b-4a43-9f5e-2f1d7e0b8a11"


def make_job(session, start=1, end=4, **fields):
    """Insert a job with one task per frame; return it."""
    jobtype = session.execute(
        select(JobType).where(JobType.name == "command")).scalar_one()
    job = Job(title=fields.pop("title", "job"), jobtype=jobtype, start=start,
              end=end, created_at=NOW, updated_at=NOW, **fields)
    session.add(job)
    session.flush()
    session.add_all(Task(job_id=job.id, frame=frame, created_at=NOW,
                         updated_at=NOW) for frame in range(start, end + 1))
    session.commit()
    return job


def info(**fields):
    """A registration as the API passes it to the service."""
    return {"id": AGENT_ID, "hostname": "node1", "os": "linux",
            "os_version": "Debian 12", "cpus": 2, "ram": 8192,
            "free_ram": 4000, "gpus": [], "disks": [], "tags": [],
            "software": [], "version": "0.1.0", **fields}


@pytest.fixture
def settings(app):
    return app.config["PYFARM"]


@pytest.fixture
def agent_user(make_user):
    return make_user("agents", "agent")[0]


@pytest.fixture
def admin_user(make_user):
    return make_user("admin", "admin")[0]


def register(session, user, now=NOW, **fields):
    agent, created, _ = register_agent(session, user, info(**fields), now,
                                    remote_addr="10.1.2.3")
    session.commit()
    return agent, created


def sync(session, user, settings, running=(), now=NOW, agent_id=AGENT_ID,
         **kwargs):
    answer = sync_agent(session, user, agent_id, list(running), now,
                        settings, **kwargs)
    session.commit()
    return answer


def count_agents(session):
    return session.execute(select(func.count()).select_from(Agent)).scalar()


def test_register_creates_the_agent(session, agent_user):
    agent, created = register(session, agent_user)
    assert created is True
    assert (agent.hostname, agent.os, agent.cpus, agent.ram) == (
        "node1", "linux", 2, 8192)
    assert (agent.state, agent.user_id, agent.remote_addr) == (
        "online", agent_user.id, "10.1.2.3")
    assert (agent.registered_at, agent.last_heard_at) == (NOW, NOW)


def test_register_twice_updates_one_row(session, agent_user):
    register(session, agent_user)
    later = NOW + timedelta(hours=1)
    agent, created = register(session, agent_user, now=later,
                              hostname="node1b", cpus=16)
    assert created is False
    assert count_agents(session) == 1
    assert (agent.hostname, agent.cpus, agent.last_heard_at) == (
        "node1b", 16, later)
    assert agent.registered_at == NOW


def test_register_for_another_users_agent_is_forbidden(
        session, agent_user, make_user):
    register(session, agent_user)
    stranger = make_user("other-agents", "agent")[0]
    with pytest.raises(Forbidden, match="another user"):
        register(session, stranger)


def test_admin_may_register_any_agent(session, agent_user, admin_user):
    register(session, agent_user)
    agent, created = register(session, admin_user)
    assert not created
    assert agent.user_id == admin_user.id


def test_register_again_releases_held_tasks_as_lost(session, agent_user,
                                                    settings):
    make_job(session, 1, 2)
    register(session, agent_user)
    answer = sync(session, agent_user, settings)
    held = [t["id"] for a in answer["assignments"] for t in a["tasks"]]
    assert len(held) == 2
    agent, _ = register(session, agent_user)
    tasks = session.execute(select(Task).where(Task.id.in_(held))
                            .execution_options(populate_existing=True)
                            ).scalars().all()
    assert {(t.state, t.agent_id, t.failures) for t in tasks} == {
        ("queued", None, 0)}
    states = session.execute(select(TaskAttempt.state)).scalars().all()
    assert states == ["lost", "lost"]
    assert agent.state == "online"


def test_register_keeps_a_disabled_agent_disabled(session, agent_user):
    agent, _ = register(session, agent_user)
    agent.state = "disabled"
    session.commit()
    agent, _ = register(session, agent_user)
    assert agent.state == "disabled"


def test_register_brings_an_offline_agent_online(session, agent_user):
    agent, _ = register(session, agent_user)
    agent.state = "offline"
    session.commit()
    agent, _ = register(session, agent_user)
    assert agent.state == "online"


def test_register_replaces_software_and_adds_tags(session, agent_user):
    agent, _ = register(
        session, agent_user, tags=["gpu", "gpu"],
        software=[{"software": "blender", "version": "4.0.2"},
                  {"software": "maya", "version": "2025"}])
    admin_tag = Tag(name="render-room")
    agent.tags.append(admin_tag)
    session.commit()
    agent, _ = register(
        session, agent_user, tags=["ssd"],
        software=[{"software": "blender", "version": "4.1"}])
    assert sorted(tag.name for tag in agent.tags) == [
        "gpu", "render-room", "ssd"]
    assert [(row.software.name, row.version) for row in agent.software] == [
        ("blender", "4.1")]
    assert session.execute(select(func.count()).select_from(
        SoftwareVersion)).scalar() == 3
    assert session.execute(select(func.count()).select_from(
        Software)).scalar() == 2


def test_sync_updates_heard_and_free_ram(session, agent_user, settings):
    register(session, agent_user)
    later = NOW + timedelta(seconds=30)
    answer = sync(session, agent_user, settings, now=later, free_ram=123)
    agent = session.get(Agent, AGENT_ID)
    assert (agent.last_heard_at, agent.free_ram) == (later, 123)
    assert answer == {"assignments": [], "cancel": [],
                      "sync_interval": settings.sync_interval,
                      "state": "online"}


def test_sync_unknown_agent_is_not_found(session, agent_user, settings):
    with pytest.raises(NotFound, match="register"):
        sync(session, agent_user, settings)


def test_sync_for_another_users_agent_is_forbidden(
        session, agent_user, make_user, settings):
    register(session, agent_user)
    stranger = make_user("other-agents", "agent")[0]
    with pytest.raises(Forbidden):
        sync(session, stranger, settings)


def test_sync_brings_an_offline_agent_back(session, agent_user, settings):
    agent, _ = register(session, agent_user)
    agent.state = "offline"
    session.commit()
    assert sync(session, agent_user, settings)["state"] == "online"


def test_sync_claims_grouped_and_sorted_and_turns_running(
        session, agent_user, settings):
    job = make_job(session, 1, 5, batch=3)
    register(session, agent_user)
    answer = sync(session, agent_user, settings)
    assert answer["state"] == "running"
    first, second = answer["assignments"]
    assert first["job"]["jobtype"] == "command"
    assert first["job"]["id"] == job.id
    assert [t["frame"] for t in first["tasks"]] == [1, 2, 3]
    assert [t["frame"] for t in second["tasks"]] == [4, 5]
    assert first["id"] != second["id"]
    assert session.get(Agent, AGENT_ID).state == "running"


def test_disabled_agent_syncs_but_gets_no_new_work(session, agent_user,
                                                   settings):
    make_job(session, 1, 2)
    agent, _ = register(session, agent_user)
    agent.state = "disabled"
    session.commit()
    answer = sync(session, agent_user, settings, now=NOW + timedelta(1))
    assert (answer["assignments"], answer["state"]) == ([], "disabled")
    assert session.get(Agent, AGENT_ID).last_heard_at == NOW + timedelta(1)


def test_claim_on_sync_can_be_turned_off(session, agent_user, settings):
    make_job(session, 1, 2)
    register(session, agent_user)
    quiet = dataclasses.replace(settings, claim_on_sync=False)
    assert sync(session, agent_user, quiet)["assignments"] == []


def test_sync_redelivers_unlisted_assigned_tasks(session, agent_user,
                                                 settings):
    make_job(session, 1, 4, batch=2)
    register(session, agent_user)
    first = sync(session, agent_user, settings)["assignments"]
    # The answer was lost: the agent lists nothing and gets the same work.
    again = sync(session, agent_user, settings)
    assert again["assignments"] == first
    assert again["cancel"] == []
    # Listed pairs are not delivered again.
    listed = [(t["id"], t["attempt"]) for t in first[0]["tasks"]]
    assert sync(session, agent_user, settings,
                running=listed)["assignments"] == first[1:]


def test_sync_cancels_pairs_that_are_not_current(session, agent_user,
                                                 settings):
    make_job(session, 1, 1)
    register(session, agent_user)
    [assignment] = sync(session, agent_user, settings)["assignments"]
    task = assignment["tasks"][0]
    answer = sync(session, agent_user, settings,
                  running=[(task["id"], 1), (task["id"], 7), (999, 1)])
    assert answer["cancel"] == [{"task": task["id"], "attempt": 7},
                                {"task": 999, "attempt": 1}]
    assert answer["assignments"] == []


def test_sync_releases_running_tasks_the_agent_lost(session, agent_user,
                                                    settings):
    make_job(session, 1, 1)
    register(session, agent_user)
    [assignment] = sync(session, agent_user, settings)["assignments"]
    task_id = assignment["tasks"][0]["id"]
    report_task(session, AGENT_ID, task_id, 1, "running", NOW)
    session.commit()
    quiet = dataclasses.replace(settings, claim_on_sync=False)
    answer = sync(session, agent_user, quiet, running=[])
    assert answer["state"] == "online"
    task = session.get(Task, task_id)
    session.refresh(task)
    assert (task.state, task.failures, task.agent_id) == ("queued", 0, None)
    row = session.execute(select(TaskAttempt)).scalar_one()
    session.refresh(row)
    assert row.state == "lost"


def test_sync_keeps_listed_running_tasks(session, agent_user, settings):
    make_job(session, 1, 1)
    register(session, agent_user)
    [assignment] = sync(session, agent_user, settings)["assignments"]
    task_id = assignment["tasks"][0]["id"]
    report_task(session, AGENT_ID, task_id, 1, "running", NOW)
    session.commit()
    answer = sync(session, agent_user, settings, running=[(task_id, 1)])
    assert answer == {"assignments": [], "cancel": [],
                      "sync_interval": settings.sync_interval,
                      "state": "running"}
    assert session.get(Task, task_id).state == "running"


class Statements:
    """Counts the SQL statements an engine runs."""

    def __init__(self, engine):
        self.engine = engine
        self.count = 0
        self.seen = []

    def __enter__(self):
        sa.event.listen(self.engine, "before_cursor_execute", self.record)
        return self

    def __exit__(self, *exc):
        sa.event.remove(self.engine, "before_cursor_execute", self.record)

    def record(self, conn, cursor, statement, *args):
        self.count += 1
        self.seen.append(" ".join(statement.split()))


def test_sync_cost_does_not_grow_with_finished_tasks(app, session,
                                                     agent_user, settings):
    from pyfarm.master.db import db

    register(session, agent_user)

    def count():
        session.expire_all()
        with Statements(db.engine) as recorded:
            sync(session, agent_user, settings)
        return recorded.count

    before = count()
    for index in range(10):
        done = make_job(session, 1, 50, title=f"old {index}", state="done")
        session.execute(sa.update(Task).where(Task.job_id == done.id)
                        .values(state="done", agent_id=AGENT_ID))
    session.commit()
    assert count() == before


@pytest.fixture
def lost_setup(session, agent_user, settings):
    """An agent holding a running task and one assigned, last heard NOW."""
    make_job(session, 1, 2)
    register(session, agent_user, cpus=2)
    assignments = sync(session, agent_user, settings)["assignments"]
    task_id = assignments[0]["tasks"][0]["id"]
    report_task(session, AGENT_ID, task_id, 1, "running", NOW)
    session.commit()
    return settings


def after(settings, extra=1):
    return NOW + timedelta(seconds=settings.lost_timeout + extra)


def test_agent_not_heard_from_is_lost_and_its_tasks_requeued(
        session, lost_setup):
    settings = lost_setup
    assert mark_lost_agents(session, after(settings), settings) == [AGENT_ID]
    session.commit()
    agent = session.get(Agent, AGENT_ID)
    assert agent.state == "offline"
    tasks = session.execute(select(Task).execution_options(
        populate_existing=True)).scalars().all()
    assert {(t.state, t.agent_id, t.failures) for t in tasks} == {
        ("queued", None, 0)}
    rows = session.execute(select(TaskAttempt.state)).scalars().all()
    assert rows == ["lost", "lost"]


def test_agent_heard_within_the_timeout_is_kept(session, lost_setup):
    settings = lost_setup
    assert mark_lost_agents(session, after(settings, -1), settings) == []
    assert session.get(Agent, AGENT_ID).state == "running"


def test_no_agent_is_lost_during_the_grace_period(session, lost_setup):
    settings = lost_setup
    late = after(settings, 3600)
    started = late - timedelta(seconds=settings.lost_timeout - 1)
    assert mark_lost_agents(session, late, settings,
                            started_at=started) == []
    assert session.get(Agent, AGENT_ID).state == "running"
    started = late - timedelta(seconds=settings.lost_timeout)
    assert mark_lost_agents(session, late, settings,
                            started_at=started) == [AGENT_ID]


def test_lost_disabled_agent_stays_disabled_but_releases_tasks(
        session, lost_setup):
    settings = lost_setup
    agent = session.get(Agent, AGENT_ID)
    agent.state = "disabled"
    session.commit()
    assert mark_lost_agents(session, after(settings), settings) == [AGENT_ID]
    session.commit()
    assert agent.state == "disabled"
    assert session.execute(select(func.count()).select_from(Task).where(
        Task.agent_id == AGENT_ID)).scalar() == 0
    # Nothing held any more: it is not picked up again.
    assert mark_lost_agents(session, after(settings), settings) == []


def test_offline_agent_is_not_lost_twice(session, lost_setup):
    settings = lost_setup
    mark_lost_agents(session, after(settings), settings)
    session.commit()
    assert mark_lost_agents(session, after(settings, 100), settings) == []


def test_offline_agent_still_holding_tasks_releases_them(session,
                                                         lost_setup):
    # Work claimed for an agent just as another master declared it lost
    # would otherwise stay with the offline agent for ever.
    settings = lost_setup
    agent = session.get(Agent, AGENT_ID)
    agent.state = "offline"
    session.commit()
    assert mark_lost_agents(session, after(settings), settings) == [AGENT_ID]
    session.commit()
    assert agent.state == "offline"
    assert session.execute(select(func.count()).select_from(Task).where(
        Task.agent_id == AGENT_ID)).scalar() == 0


def test_sync_after_being_lost_brings_it_back(session, agent_user,
                                              lost_setup):
    settings = lost_setup
    mark_lost_agents(session, after(settings), settings)
    session.commit()
    answer = sync(session, agent_user, settings, now=after(settings, 2))
    assert answer["state"] == "running"
    assert len(answer["assignments"]) == 2
    assert {t["attempt"] for a in answer["assignments"]
            for t in a["tasks"]} == {2}



def test_a_sync_that_claims_reads_the_agent_and_its_tasks_once(
        app, session, agent_user, settings):
    from pyfarm.master.db import db

    make_job(session, 1, 4)
    register(session, agent_user, cpus=1)
    session.expire_all()
    with Statements(db.engine) as recorded:
        answer = sync(session, agent_user, settings)
    assert len(answer["assignments"]) == 1
    agent_reads = [sql for sql in recorded.seen
                   if sql.startswith("SELECT agents.")
                   and "agents.id =" in sql]
    held_reads = [sql for sql in recorded.seen
                  if sql.startswith("SELECT") and "FROM tasks" in sql
                  and "tasks.agent_id =" in sql]
    assert len(agent_reads) == 1, agent_reads
    assert len(held_reads) == 1, held_reads
