"""The job services, called directly with a session and a fixed time."""

import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from pyfarm.master.db import db
from pyfarm.master.errors import BadRequest, Conflict, Forbidden, NotFound
from pyfarm.master.models import (
    Agent,
    AgentJobFailure,
    Job,
    JobType,
    Tag,
    Task,
    TaskAttempt,
)
from pyfarm.master.models.task import ATTEMPT_CANCELLED
from pyfarm.master.services import jobs
from pyfarm.master.services.rollup import task_counts

NOW = datetime(2026, 5, 4, 3, 2, 1, tzinfo=timezone.utc)
LATER = datetime(2026, 5, 4, 4, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def people(make_user):
    """The users alice, bob and the admin, as rows."""
    return {name: make_user(name, role)[0] for name, role in (
        ("alice", "user"), ("bob", "user"), ("admin", "admin"))}


def spec(**fields):
    """Return a :class:`JobSpec` with ``fields`` changed."""
    body = {"title": "sq030 fx", "jobtype": "command", "start": 1,
            "end": 4, "data": {"argv": ["sim", "{frame}"]}}
    body.update(fields)
    return jobs.JobSpec.model_validate(body)


def submit(session, user, **fields):
    """Submit and commit a job; return it."""
    job = jobs.submit_job(session, user, spec(**fields), NOW)
    session.commit()
    return job


def states(session, job):
    """Return ``{frame: task state}`` of ``job`` as committed."""
    session.expire_all()
    return dict(session.execute(sa.select(Task.frame, Task.state).where(
        Task.job_id == job.id)).all())


def hold(session, job, frame, state):
    """Give a task to a new agent in ``state`` with its attempt row."""
    agent = Agent(id=str(uuid.uuid4()), hostname=f"node{frame}",
                  os="linux", cpus=4, ram=4096)
    session.add(agent)
    row = session.execute(sa.select(Task).where(
        Task.job_id == job.id, Task.frame == frame)).scalar_one()
    row.attempt += 1
    row.state = state
    row.agent_id = agent.id
    row.assignment_id = str(uuid.uuid4())
    session.add(TaskAttempt(task_id=row.id, attempt=row.attempt,
                            agent_id=agent.id,
                            assignment_id=row.assignment_id, state=state,
                            assigned_at=NOW))
    session.commit()
    return row


# -- submission ----------------------------------------------------------------

def test_submit_inserts_100000_tasks_in_one_statement(session, people):
    inserts = []

    def record(conn, cursor, statement, parameters, context, many):
        if "INSERT INTO tasks" in statement:
            inserts.append(many)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        job = jobs.submit_job(session, people["alice"],
                              spec(start=1, end=100_000), NOW)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    session.commit()
    assert inserts == [False]
    assert task_counts(session, [job.id])[job.id]["queued"] == 100_000
    low, high, created = session.execute(
        sa.select(sa.func.min(Task.frame), sa.func.max(Task.frame),
                  sa.func.max(Task.created_at))
        .where(Task.job_id == job.id)).one()
    assert (low, high, created) == (1, 100_000, NOW)


@pytest.mark.parametrize("start, end, by, frames", [
    (-10, -7, 1, [-10, -9, -8, -7]),
    (1, 10, 4, [1, 5, 9]),
    (7, 7, 3, [7]),
])
def test_submit_frames(session, people, start, end, by, frames):
    job = submit(session, people["alice"], start=start, end=end, by=by)
    assert sorted(states(session, job)) == frames
    row = session.execute(sa.select(Task).where(
        Task.job_id == job.id).limit(1)).scalar_one()
    assert (row.state, row.attempt, row.failures, row.progress) == (
        "queued", 0, 0, 0.0)
    assert (row.created_at, row.updated_at) == (NOW, NOW)


def test_submit_does_not_commit(session, people):
    jobs.submit_job(session, people["alice"], spec(tags=["fx"]), NOW)
    session.rollback()
    assert session.execute(sa.select(sa.func.count(Job.id))).scalar() == 0
    assert session.execute(sa.select(sa.func.count(Tag.id))).scalar() == 0


def test_submit_sets_owner_and_times(session, people):
    job = submit(session, people["bob"])
    assert (job.user_id, job.state) == (people["bob"].id, "queued")
    assert (job.created_at, job.updated_at) == (NOW, NOW)
    assert job.started_at is None


@pytest.mark.parametrize("parts, text", [
    ([], "data"), (["argv"], "data.argv"), (["argv", 0], "data.argv[0]"),
    (["passes", 2, "name"], "data.passes[2].name")])
def test_data_path(parts, text):
    assert jobs.data_path(parts) == text


def test_check_data_names_every_bad_place_outermost_first():
    jobtype = JobType(name="render", parameters={
        "type": "object",
        "properties": {"scene": {"type": "string"},
                       "passes": {"type": "array",
                                  "items": {"type": "object",
                                            "required": ["name"]}}},
        "required": ["scene"]})
    jobs.check_data(jobtype, {"scene": "a.ma", "passes": [{"name": "b"}]})
    with pytest.raises(BadRequest) as caught:
        jobs.check_data(jobtype, {"passes": [{"name": "x"}, {}]})
    assert caught.value.message == "field 'data.scene' is required"
    assert caught.value.extra["problems"] == [
        "field 'data.scene' is required",
        "field 'data.passes[1].name' is required"]
    with pytest.raises(BadRequest, match=r"'data.scene': 3 is not of type"):
        jobs.check_data(jobtype, {"scene": 3})


def test_check_data_uses_draft_2020_12():
    # prefixItems exists only since draft 2020-12.
    jobtype = JobType(name="tuple", parameters={
        "type": "object",
        "properties": {"size": {"type": "array",
                                "prefixItems": [{"type": "integer"}]}}})
    with pytest.raises(BadRequest, match=r"'data.size\[0\]'"):
        jobs.check_data(jobtype, {"size": ["wide"]})


def test_check_data_refuses_a_broken_schema():
    with pytest.raises(Conflict, match="an admin must fix"):
        jobs.check_data(JobType(name="bad", parameters={"type": 5}), {})


def test_submit_unknown_jobtype_is_not_found(session, people):
    with pytest.raises(NotFound, match="no job type named 'nuke'"):
        jobs.submit_job(session, people["alice"], spec(jobtype="nuke"),
                        NOW)


def test_software_versions_compare_as_numbers():
    item = jobs.SoftwareRequirementSpec(
        software="maya", min_version="9.5", max_version="2025")
    assert item.min_version == "9.5"
    with pytest.raises(ValueError, match="above max_version"):
        jobs.SoftwareRequirementSpec(
            software="maya", min_version="10.0", max_version="9.5")


# -- update ------------------------------------------------------------------

def test_update_changes_only_sent_fields(session, people):
    job = submit(session, people["alice"], priority=3)
    changes = jobs.JobChanges.model_validate({"notes": "retake"})
    jobs.update_job(session, job.id, people["alice"], changes, LATER)
    session.commit()
    assert (job.notes, job.priority, job.updated_at) == ("retake", 3, LATER)


def test_update_of_another_users_job_is_forbidden(session, people):
    job = submit(session, people["alice"])
    changes = jobs.JobChanges.model_validate({"priority": 9})
    with pytest.raises(Forbidden):
        jobs.update_job(session, job.id, people["bob"], changes, LATER)
    jobs.update_job(session, job.id, people["admin"], changes, LATER)
    assert job.priority == 9


def test_pause_of_a_running_job_keeps_its_tasks(session, people):
    job = submit(session, people["alice"])
    hold(session, job, 1, "running")
    job.state = "running"
    jobs.set_state(session, job, "paused", LATER)
    session.commit()
    assert job.state == "paused"
    assert states(session, job)[1] == "running"


def test_resume_rolls_up(session, people):
    job = submit(session, people["alice"])
    jobs.set_state(session, job, "paused", NOW)
    jobs.set_state(session, job, "queued", LATER)
    assert job.state == "queued"
    hold(session, job, 2, "assigned")
    jobs.set_state(session, job, "paused", LATER)
    jobs.set_state(session, job, "queued", LATER)
    assert job.state == "running"


def test_set_state_refuses_other_states(session, people):
    job = submit(session, people["alice"])
    with pytest.raises(BadRequest, match="may only be 'paused'"):
        jobs.set_state(session, job, "running", NOW)
    job.state = "done"
    with pytest.raises(Conflict, match=r"job \d+ is done"):
        jobs.set_state(session, job, "paused", NOW)


# -- delete --------------------------------------------------------------------

def test_delete_names_every_waiting_child(session, people):
    parent = submit(session, people["alice"], title="cache")
    first = submit(session, people["bob"], title="render",
                   parents=[parent.id])
    second = submit(session, people["bob"], title="comp",
                    parents=[parent.id])
    second.state = "failed"
    session.commit()
    with pytest.raises(Conflict) as caught:
        jobs.delete_job(session, parent.id, people["alice"])
    assert caught.value.message.endswith(
        f"{first.id} ('render'), {second.id} ('comp')")


def test_delete_unknown_job(session, people):
    with pytest.raises(NotFound, match="no job with id 5"):
        jobs.delete_job(session, 5, people["admin"])


# -- rerun ---------------------------------------------------------------------

def test_rerun_resets_tasks_but_not_attempt_numbers(session, people):
    job = submit(session, people["alice"])
    failed = hold(session, job, 1, "running")
    agent_id = failed.agent_id
    failed.state = "failed"
    failed.failures = 4
    failed.last_error = "boom"
    failed.last_failed_agent_id = agent_id
    failed.finished_at = NOW
    session.add(AgentJobFailure(agent_id=agent_id, job_id=job.id,
                                failures=4, last_failed_at=NOW))
    session.commit()
    jobs.rerun_job(session, job.id, people["alice"], True, LATER)
    session.commit()
    session.expire_all()
    assert (failed.state, failed.failures, failed.attempt) == (
        "queued", 0, 1)
    assert (failed.agent_id, failed.assignment_id, failed.last_error,
            failed.last_failed_agent_id, failed.finished_at) == (
        None, None, None, None, None)
    assert failed.updated_at == LATER
    assert failed.attempts[0].state == "running"
    assert session.execute(
        sa.select(sa.func.count()).select_from(AgentJobFailure)
    ).scalar() == 0


def test_rerun_of_another_users_job_is_forbidden(session, people):
    job = submit(session, people["alice"])
    with pytest.raises(Forbidden):
        jobs.rerun_job(session, job.id, people["bob"], False, LATER)


# -- cancel --------------------------------------------------------------------

def test_cancel_marks_current_attempts_only(session, people):
    job = submit(session, people["alice"])
    running = hold(session, job, 1, "running")
    assigned = hold(session, job, 2, "assigned")
    done = hold(session, job, 3, "running")
    done.state = "done"
    done.attempts[0].state = "done"
    session.commit()
    jobs.cancel_job(session, job.id, people["admin"], LATER)
    session.commit()
    assert states(session, job) == {1: "failed", 2: "failed", 3: "done",
                                    4: "failed"}
    for row in (running, assigned):
        assert row.attempts[0].state == ATTEMPT_CANCELLED
        assert row.attempts[0].finished_at == LATER
        assert row.last_error == "cancelled by admin"
        assert row.finished_at == LATER
    assert done.attempts[0].state == "done"
    assert done.last_error is None
    assert (job.state, job.finished_at) == ("failed", LATER)


def test_cancel_keeps_earlier_errors(session, people):
    job = submit(session, people["alice"], end=2)
    row = session.execute(sa.select(Task).where(
        Task.job_id == job.id, Task.frame == 1)).scalar_one()
    row.state = "failed"
    row.last_error = "out of memory"
    row.finished_at = NOW
    session.commit()
    jobs.cancel_job(session, job.id, people["alice"], LATER)
    session.commit()
    session.expire_all()
    assert (row.last_error, row.finished_at) == ("out of memory", NOW)
    assert job.state == "failed"


def test_cancel_of_another_users_job_is_forbidden(session, people):
    job = submit(session, people["alice"])
    with pytest.raises(Forbidden):
        jobs.cancel_job(session, job.id, people["bob"], LATER)
    assert set(states(session, job).values()) == {"queued"}
