"""Task updates with attempt fencing, releasing tasks, and log chunks."""

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from pyfarm.master.errors import Conflict, NotFound
from pyfarm.master.logstore import FileLogStore, LogGap
from pyfarm.master.models import (
    Agent,
    AgentJobFailure,
    Job,
    JobType,
    Task,
    TaskAttempt,
)
from pyfarm.master.scheduler.claim import claim_for_agent
from pyfarm.master.services.tasks import (
    append_log,
    release_agent_tasks,
    report_task,
)

NOW = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)
LATER = NOW + timedelta(minutes=5)


def make_job(session, start=1, end=2, **fields):
    """Insert a job with one task per frame; return it."""
    jobtype = session.execute(
        select(JobType).where(JobType.name == "command")).scalar_one()
    job = Job(title="job", jobtype=jobtype, start=start, end=end,
              created_at=NOW, updated_at=NOW, **fields)
    session.add(job)
    session.flush()
    session.add_all(Task(job_id=job.id, frame=frame, created_at=NOW,
                         updated_at=NOW) for frame in range(start, end + 1))
    session.commit()
    return job


def make_agent(session, name="node1", cpus=1):
    """Insert an online agent; return it."""
    agent = Agent(id=str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
                  hostname=name, os="linux", cpus=cpus, ram=8192,
                  state="online", registered_at=NOW, last_heard_at=NOW)
    session.add(agent)
    session.commit()
    return agent


@pytest.fixture
def job(session):
    return make_job(session, requeue=1)


@pytest.fixture
def agent(session):
    return make_agent(session)


@pytest.fixture
def assigned(app, session, job, agent):
    """The first task of ``job``, claimed by ``agent`` (attempt 1)."""
    [assignment] = claim_for_agent(session, agent, NOW, app.config["PYFARM"])
    session.commit()
    return session.get(Task, assignment["tasks"][0]["id"])


def attempt_row(session, task, attempt):
    return session.execute(
        select(TaskAttempt).where(TaskAttempt.task_id == task.id,
                                  TaskAttempt.attempt == attempt)
        .execution_options(populate_existing=True)).scalar_one()


def report(session, agent, task, state, attempt=1, **kwargs):
    answer = report_task(session, agent.id, task.id, attempt, state, LATER,
                         **kwargs)
    session.commit()
    session.refresh(task)
    return answer


def test_running_starts_the_task_and_the_attempt(session, agent, assigned):
    answer = report(session, agent, assigned, "running", progress=0.25)
    assert answer == {"task": assigned.id, "attempt": 1, "state": "running"}
    assert assigned.state == "running"
    assert assigned.started_at == LATER
    assert assigned.progress == 0.25
    row = attempt_row(session, assigned, 1)
    assert (row.state, row.started_at) == ("running", LATER)


def test_running_again_updates_progress_only(session, agent, assigned):
    report(session, agent, assigned, "running", progress=0.25)
    report_task(session, agent.id, assigned.id, 1, "running",
                LATER + timedelta(seconds=9), progress=0.5)
    session.commit()
    session.refresh(assigned)
    assert (assigned.progress, assigned.started_at) == (0.5, LATER)


def test_done_finishes_task_attempt_and_rolls_up_the_job(
        session, agent, job, assigned):
    report(session, agent, assigned, "running")
    answer = report(session, agent, assigned, "done")
    assert answer["state"] == "done"
    assert (assigned.state, assigned.progress, assigned.finished_at) == (
        "done", 1.0, LATER)
    assert assigned.agent_id == agent.id
    row = attempt_row(session, assigned, 1)
    assert (row.state, row.finished_at) == ("done", LATER)
    session.refresh(job)
    assert job.state == "running"  # frame 2 is still queued


def test_job_is_done_when_its_last_task_is(app, session, agent):
    job = make_job(session, 1, 1)
    [assignment] = claim_for_agent(session, agent, NOW, app.config["PYFARM"])
    session.commit()
    task = session.get(Task, assignment["tasks"][0]["id"])
    report(session, agent, task, "done")
    session.refresh(job)
    assert (job.state, job.finished_at) == ("done", LATER)


def test_done_again_is_a_no_op(session, agent, assigned):
    report(session, agent, assigned, "done")
    answer = report_task(session, agent.id, assigned.id, 1, "done",
                         LATER + timedelta(hours=1))
    session.commit()
    session.refresh(assigned)
    assert answer == {"task": assigned.id, "attempt": 1, "state": "done"}
    assert assigned.finished_at == LATER
    assert attempt_row(session, assigned, 1).finished_at == LATER


def test_failed_requeues_counts_and_remembers_the_agent(
        session, agent, job, assigned):
    answer = report(session, agent, assigned, "failed", error="exit 1")
    assert answer["state"] == "queued"
    assert (assigned.state, assigned.failures, assigned.last_error) == (
        "queued", 1, "exit 1")
    assert assigned.last_failed_agent_id == agent.id
    assert (assigned.agent_id, assigned.assignment_id) == (None, None)
    assert assigned.progress == 0.0
    row = attempt_row(session, assigned, 1)
    assert (row.state, row.error, row.finished_at) == (
        "failed", "exit 1", LATER)
    failure = session.get(AgentJobFailure, (agent.id, job.id))
    assert (failure.failures, failure.last_failed_at) == (1, LATER)


def test_failed_again_is_a_no_op(session, agent, job, assigned):
    report(session, agent, assigned, "failed", error="exit 1")
    report(session, agent, assigned, "failed", error="exit 1")
    assert assigned.failures == 1
    session.expire_all()
    assert session.get(AgentJobFailure, (agent.id, job.id)).failures == 1


def test_failure_count_is_upserted(app, session, agent, job, assigned):
    report(session, agent, assigned, "failed", error="exit 1")
    [again] = claim_for_agent(session, agent, LATER, app.config["PYFARM"])
    session.commit()
    task = session.get(Task, again["tasks"][0]["id"])
    report(session, agent, task, "failed", attempt=task.attempt)
    session.expire_all()
    assert session.get(AgentJobFailure, (agent.id, job.id)).failures == 2


def test_failing_more_than_requeue_times_fails_task_and_job(app, session,
                                                           agent):
    job = make_job(session, 1, 1, requeue=1)
    settings = app.config["PYFARM"]
    task = session.execute(select(Task)).scalar_one()
    for attempt in (1, 2):
        [assignment] = claim_for_agent(session, agent, NOW, settings)
        session.commit()
        assert assignment["tasks"][0] == {"id": task.id, "frame": 1,
                                          "attempt": attempt}
        answer = report(session, agent, task, "failed", attempt=attempt,
                        error=f"boom {attempt}")
    assert answer["state"] == "failed"
    assert (task.state, task.failures, task.finished_at) == (
        "failed", 2, LATER)
    assert task.last_error == "boom 2"
    session.refresh(job)
    assert (job.state, job.finished_at) == ("failed", LATER)


def test_unknown_task_is_not_found(session, agent):
    with pytest.raises(NotFound, match="no task"):
        report_task(session, agent.id, 999, 1, "running", LATER)


def test_another_agents_attempt_is_a_conflict(session, assigned):
    intruder = make_agent(session, "intruder")
    with pytest.raises(Conflict, match="no attempt 1"):
        report_task(session, intruder.id, assigned.id, 1, "done", LATER)


def test_unknown_attempt_is_a_conflict(session, agent, assigned):
    with pytest.raises(Conflict, match="no attempt 2"):
        report_task(session, agent.id, assigned.id, 2, "done", LATER)


def test_stale_attempt_is_a_conflict(session, agent, assigned):
    # Attempt 1 is still open but the task moved on to attempt 2.
    other = make_agent(session, "other")
    assigned.attempt = 2
    assigned.agent_id = other.id
    session.add(TaskAttempt(task_id=assigned.id, attempt=2,
                            agent_id=other.id, assignment_id="x" * 36,
                            assigned_at=NOW))
    session.commit()
    with pytest.raises(Conflict, match="not current"):
        report_task(session, agent.id, assigned.id, 1, "running", LATER)


def test_final_attempt_with_another_state_is_a_conflict(session, agent,
                                                        assigned):
    report(session, agent, assigned, "done")
    with pytest.raises(Conflict, match="already ended as 'done'"):
        report_task(session, agent.id, assigned.id, 1, "failed", LATER)
    with pytest.raises(Conflict, match="already ended"):
        report_task(session, agent.id, assigned.id, 1, "running", LATER)


def test_release_requeues_as_lost_without_a_failure(session, agent, job,
                                                    assigned):
    report(session, agent, assigned, "running", progress=0.5)
    released = release_agent_tasks(session, agent.id, LATER)
    session.commit()
    session.refresh(assigned)
    assert released == [assigned.id]
    assert (assigned.state, assigned.agent_id, assigned.assignment_id) == (
        "queued", None, None)
    assert (assigned.failures, assigned.progress, assigned.attempt) == (
        0, 0.0, 1)
    row = attempt_row(session, assigned, 1)
    assert (row.state, row.finished_at) == ("lost", LATER)
    assert session.get(AgentJobFailure, (agent.id, job.id)) is None
    # The agent's late report is refused: it must stop that process.
    with pytest.raises(Conflict):
        report_task(session, agent.id, assigned.id, 1, "done", LATER)


def test_release_with_cancelled_outcome(session, agent, assigned):
    release_agent_tasks(session, agent.id, LATER, outcome="cancelled")
    session.commit()
    assert attempt_row(session, assigned, 1).state == "cancelled"


def test_release_rejects_other_outcomes(session, agent):
    with pytest.raises(ValueError, match="outcome"):
        release_agent_tasks(session, agent.id, LATER, outcome="failed")


def test_release_only_touches_this_agents_tasks(app, session, job, agent,
                                                assigned):
    other = make_agent(session, "other")
    [theirs] = claim_for_agent(session, other, NOW, app.config["PYFARM"])
    session.commit()
    assert release_agent_tasks(session, agent.id, LATER) == [assigned.id]
    session.commit()
    held = session.get(Task, theirs["tasks"][0]["id"])
    session.refresh(held)
    assert (held.state, held.agent_id) == ("assigned", other.id)


def test_release_can_be_limited_to_some_tasks(app, session, job):
    agent = make_agent(session, "big", cpus=2)
    assignments = claim_for_agent(session, agent, NOW, app.config["PYFARM"])
    session.commit()
    first, second = [a["tasks"][0]["id"] for a in assignments]
    assert release_agent_tasks(session, agent.id, LATER,
                               task_ids=[second]) == [second]
    assert release_agent_tasks(session, agent.id, LATER, task_ids=[]) == []
    session.commit()
    assert session.get(Task, first).state == "assigned"


def test_release_rolls_the_job_back_to_queued_tasks(session, agent, job,
                                                    assigned):
    release_agent_tasks(session, agent.id, LATER)
    session.commit()
    session.refresh(job)
    assert job.state == "running"  # it started; nothing runs now


@pytest.fixture
def store(tmp_path):
    return FileLogStore(tmp_path / "logs")


def test_append_log_stores_chunks_idempotently(session, agent, assigned,
                                               store):
    log_id = assigned.assignment_id
    assert append_log(session, store, agent.id, log_id, 0, b"hello ") == 6
    assert append_log(session, store, agent.id, log_id, 0, b"hello ") == 6
    assert append_log(session, store, agent.id, log_id, 6, b"world") == 11
    assert store.read(log_id) == b"hello world"


def test_append_log_past_the_end_tells_the_size(session, agent, assigned,
                                                store):
    log_id = assigned.assignment_id
    append_log(session, store, agent.id, log_id, 0, b"abc")
    with pytest.raises(LogGap) as raised:
        append_log(session, store, agent.id, log_id, 10, b"x")
    assert raised.value.status == 409
    assert raised.value.to_dict()["size"] == 3


def test_append_log_needs_the_agents_own_assignment(session, agent,
                                                    assigned, store):
    intruder = make_agent(session, "intruder")
    with pytest.raises(NotFound):
        append_log(session, store, intruder.id, assigned.assignment_id, 0,
                   b"x")
    with pytest.raises(NotFound):
        append_log(session, store, agent.id, str(uuid.uuid4()), 0, b"x")
    assert store.read(assigned.assignment_id) == b""


def test_append_log_is_accepted_after_the_task_ended(session, agent,
                                                     assigned, store):
    log_id = assigned.assignment_id
    release_agent_tasks(session, agent.id, LATER, outcome="cancelled")
    session.commit()
    assert append_log(session, store, agent.id, log_id, 0, b"tail") == 4
