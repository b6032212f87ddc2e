"""
Task updates from agents, releasing an agent's tasks, and log chunks.

Every update names the attempt it belongs to (fencing): an update for an
attempt that is no longer current is a :class:`~pyfarm.master.errors.
Conflict` and the agent stops that process. A final update sent again is
a no-op, so agents may retry until they see an answer.
"""

from sqlalchemy import func, literal, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from pyfarm.core.enums import ACTIVE_TASK_STATES, WorkState
from pyfarm.core.logger import getLogger
from pyfarm.master.errors import BadRequest, Conflict, NotFound
from pyfarm.master.models import AgentJobFailure, Job, Task, TaskAttempt
from pyfarm.master.models.task import ATTEMPT_CANCELLED, ATTEMPT_LOST
from pyfarm.master.services.rollup import lock_jobs_near_end, settle_jobs

logger = getLogger("master.tasks")

#: Attempt states after which an attempt changes no more.
FINAL_ATTEMPT_STATES = frozenset(
    {WorkState.DONE, WorkState.FAILED, ATTEMPT_LOST, ATTEMPT_CANCELLED})

#: States an agent may report.
REPORTABLE_STATES = frozenset(
    {WorkState.RUNNING, WorkState.DONE, WorkState.FAILED})

#: Reported states that end the attempt and so roll the job up.
ENDING_STATES = frozenset({WorkState.DONE, WorkState.FAILED})

#: Outcomes of :func:`release_agent_tasks`.
RELEASE_OUTCOMES = frozenset({ATTEMPT_LOST, ATTEMPT_CANCELLED})

ACTIVE = sorted(str(state) for state in ACTIVE_TASK_STATES)


def dialect_insert(session, model):
    """Return an INSERT of ``model`` that knows ``ON CONFLICT``.

    PostgreSQL and SQLite both have it; other databases are not supported.
    """
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(model)
    if name == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"database {name!r} is not supported")


def report_task(session, agent_id, task_id, attempt, state, now,
                progress=None, error=None, outputs=None, rollup=None):
    """Apply an agent's update of one task; return the answer's body.

    ``outputs`` lists the files a ``done`` attempt wrote; it is stored on
    the attempt. Raises :class:`BadRequest` for ``outputs`` with another
    state, :class:`NotFound` for an unknown task and :class:`Conflict`
    when ``attempt`` is not this agent's current attempt of the task;
    these are raised before anything changed, so a caller applying several
    updates in one transaction may go on with the next one.

    An ending state rolls the job up, in this transaction, when nothing
    of it is queued any more (the job locked before the task, see
    :func:`~pyfarm.master.services.rollup.lock_jobs_near_end`; not locked
    at all while frames are queued). ``rollup``, a set, collects the ids
    of the jobs to roll up instead, and no job is locked: the caller
    rolls them up once it committed
    (:func:`~pyfarm.master.services.rollup.settle_after_commit`), as the
    agents' endpoints do.
    """
    if state not in REPORTABLE_STATES:
        raise ValueError(f"cannot report state {state!r}")
    if outputs is not None and state != WorkState.DONE:
        raise BadRequest(f"field 'outputs' goes only with the state "
                         f"'done', not {state!r}")
    if state in ENDING_STATES and rollup is None:
        lock_jobs_near_end(session, [task_id])
    task = session.execute(
        select(Task).where(Task.id == task_id).with_for_update()
        .execution_options(populate_existing=True)).scalar()
    if task is None:
        raise NotFound(f"no task with id {task_id}")
    row = session.execute(
        select(TaskAttempt).where(TaskAttempt.task_id == task_id,
                                  TaskAttempt.attempt == attempt)
        .execution_options(populate_existing=True)).scalar()
    if is_repeat(agent_id, task_id, attempt, state,
                 row and row.agent_id, row and row.state, task.attempt):
        return _answer(task, attempt)
    if outputs is not None:
        row.outputs = list(outputs)
    APPLY[state](session, task, row, now, progress, error)
    task.updated_at = now
    if state in ENDING_STATES:
        if rollup is None:
            session.flush()
            settle_jobs(session, [task.job_id], now)
        else:
            rollup.add(task.job_id)
    return _answer(task, attempt)


def is_repeat(agent_id, task_id, attempt, state, attempt_agent,
              attempt_state, current):
    """Fencing: whether an update to ``state`` of ``attempt`` repeats that
    attempt's final state (a no-op); False when it applies.

    Raises :class:`Conflict` (the agent stops that process) when the
    attempt is not this agent's (``attempt_agent``), ended otherwise
    (``attempt_state``) or is not the task's ``current`` attempt.
    """
    if attempt_agent is None or attempt_agent != agent_id:
        raise Conflict(f"task {task_id} has no attempt {attempt} on agent "
                       f"{agent_id}; stop that process")
    if attempt_state in FINAL_ATTEMPT_STATES:
        if attempt_state == state:
            return True
        raise Conflict(f"attempt {attempt} of task {task_id} already ended "
                       f"as {attempt_state!r}; stop that process")
    if attempt != current:
        raise Conflict(f"attempt {attempt} of task {task_id} is not current "
                       f"(the task is at attempt {current}); stop that "
                       f"process")
    return False


def report_done_many(session, agent_id, updates, now, rollup):
    """Apply many plain ``done`` updates at once; return their answers.

    ``updates`` holds ``(task_id, attempt)`` pairs of ``done`` updates
    without ``outputs``. The answers, in the same order, are the answer
    bodies of :func:`report_task` or the :class:`~pyfarm.master.errors.
    ApiError` it would have raised: the same checks (unknown task, an
    attempt that is not this agent's current one, an attempt that ended
    otherwise; the same ``done`` again is a no-op), made on rows read in
    two queries, and the frames that pass are set done by two
    ``UPDATE`` statements whatever their number. The ids of their jobs
    go into ``rollup`` (see :func:`report_task`).
    """
    if not updates:
        return []
    ids = sorted({task_id for task_id, _ in updates})
    tasks = {row.id: row for row in session.execute(
        select(Task.id, Task.attempt, Task.state, Task.job_id)
        .where(Task.id.in_(ids)).order_by(Task.id).with_for_update())}
    attempts = {(row.task_id, row.attempt): row for row in session.execute(
        select(TaskAttempt.task_id, TaskAttempt.attempt,
               TaskAttempt.agent_id, TaskAttempt.state)
        .where(tuple_(TaskAttempt.task_id, TaskAttempt.attempt).in_(
            sorted(set(updates)))))}
    answers, apply, state_of = [], {}, {}
    for task_id, attempt in updates:
        task, row = tasks.get(task_id), attempts.get((task_id, attempt))
        if task is None:
            answers.append(NotFound(f"no task with id {task_id}"))
            continue
        try:
            repeat = is_repeat(
                agent_id, task_id, attempt, WorkState.DONE,
                row and row.agent_id,
                state_of.get((task_id, attempt), row and row.state),
                task.attempt)
        except Conflict as error:
            answers.append(error)
            continue
        if repeat:
            answers.append(
                {"task": task_id, "attempt": attempt,
                 "state": WorkState.DONE if (task_id, attempt) in apply
                 else task.state})
        else:
            apply[(task_id, attempt)] = task.job_id
            state_of[(task_id, attempt)] = WorkState.DONE
            answers.append({"task": task_id, "attempt": attempt,
                            "state": WorkState.DONE})
    if apply:
        session.execute(
            update(Task).where(Task.id.in_(sorted(t for t, _ in apply)))
            .values(state=WorkState.DONE, progress=1.0,
                    started_at=func.coalesce(
                        Task.started_at, literal(now, Task.started_at.type)),
                    finished_at=now, updated_at=now)
            .execution_options(synchronize_session=False))
        session.execute(
            update(TaskAttempt)
            .where(tuple_(TaskAttempt.task_id, TaskAttempt.attempt).in_(
                sorted(apply)))
            .values(state=WorkState.DONE,
                    started_at=func.coalesce(
                        TaskAttempt.started_at,
                        literal(now, TaskAttempt.started_at.type)),
                    finished_at=now)
            .execution_options(synchronize_session=False))
        rollup.update(apply.values())
    return answers


def _answer(task, attempt):
    return {"task": task.id, "attempt": attempt, "state": task.state}


def _apply_running(session, task, row, now, progress, error):
    task.state = WorkState.RUNNING
    task.started_at = task.started_at or now
    if progress is not None:
        task.progress = progress
    row.state = WorkState.RUNNING
    row.started_at = row.started_at or now


def _apply_done(session, task, row, now, progress, error):
    task.state = WorkState.DONE
    task.progress = 1.0
    task.started_at = task.started_at or now
    task.finished_at = now
    row.state = WorkState.DONE
    row.started_at = row.started_at or now
    row.finished_at = now


def _apply_failed(session, task, row, now, progress, error):
    row.state = WorkState.FAILED
    row.error = error
    row.started_at = row.started_at or now
    row.finished_at = now
    task.failures += 1
    task.last_error = error
    task.last_failed_agent_id = row.agent_id
    _count_failure(session, row.agent_id, task.job_id, now)
    job = session.get(Job, task.job_id)
    if task.failures > job.requeue:
        task.state = WorkState.FAILED
        task.finished_at = now
    else:
        _requeue(task)


APPLY = {
    WorkState.RUNNING: _apply_running,
    WorkState.DONE: _apply_done,
    WorkState.FAILED: _apply_failed,
}


def _requeue(task):
    task.state = WorkState.QUEUED
    task.agent_id = None
    task.assignment_id = None
    task.progress = 0.0
    task.assigned_at = None
    task.started_at = None
    task.finished_at = None


def _count_failure(session, agent_id, job_id, now):
    """Add one to the agent's failures of the job (insert or update)."""
    insert = dialect_insert(session, AgentJobFailure).values(
        agent_id=agent_id, job_id=job_id, failures=1, last_failed_at=now)
    session.execute(insert.on_conflict_do_update(
        index_elements=["agent_id", "job_id"],
        set_={"failures": AgentJobFailure.failures + 1,
              "last_failed_at": now}))


def release_agent_tasks(session, agent_id, now, outcome=ATTEMPT_LOST,
                        task_ids=None):
    """Requeue every task ``agent_id`` holds; return their ids.

    Their attempt rows end as ``outcome`` ("lost" or "cancelled"), which
    does not count as a failure. ``task_ids`` limits this to those tasks.
    One compare-and-set UPDATE, so a task finishing at the same moment is
    either released or done, never both.
    """
    if outcome not in RELEASE_OUTCOMES:
        raise ValueError(f"outcome must be one of "
                         f"{', '.join(sorted(RELEASE_OUTCOMES))}, "
                         f"got {outcome!r}")
    held = [Task.agent_id == agent_id, Task.state.in_(ACTIVE)]
    if task_ids is not None:
        if not task_ids:
            return []
        held.append(Task.id.in_(list(task_ids)))
    # The jobs are neither locked nor rolled up: the released tasks are
    # queued again, so their jobs, started when the tasks were claimed,
    # stay what they are (running, or paused).
    statement = (
        update(Task).where(*held)
        .values(state=WorkState.QUEUED, agent_id=None, assignment_id=None,
                progress=0.0, assigned_at=None, started_at=None,
                finished_at=None, updated_at=now)
        .returning(Task.id, Task.attempt))
    released = session.execute(statement).all()
    if not released:
        return []
    session.execute(
        update(TaskAttempt)
        .where(tuple_(TaskAttempt.task_id, TaskAttempt.attempt).in_(
            [(row.id, row.attempt) for row in released]),
            TaskAttempt.state.in_(ACTIVE))
        .values(state=outcome, finished_at=now)
        .execution_options(synchronize_session="fetch"))
    logger.info("released %d task(s) of agent %s as %s", len(released),
                agent_id, outcome)
    return sorted(row.id for row in released)


def known_assignments(session, agent_id, assignment_ids):
    """Return those of ``assignment_ids`` that are assignments of one of
    ``agent_id``'s attempts (one query)."""
    ids = sorted(set(assignment_ids))
    if not ids:
        return set()
    return set(session.execute(
        select(TaskAttempt.assignment_id).distinct()
        .where(TaskAttempt.assignment_id.in_(ids),
               TaskAttempt.agent_id == agent_id)).scalars())


def append_log(session, store, agent_id, assignment_id, offset, data,
               known=None):
    """Append a chunk of an assignment's log; return the log's new size.

    Raises :class:`NotFound` unless one of ``agent_id``'s attempts has
    that assignment, and :class:`~pyfarm.master.logstore.LogGap` (a
    conflict carrying ``size``) when ``offset`` is past the end.
    ``known``, the result of :func:`known_assignments` for the caller's
    chunks, spares the query.
    """
    if known is None:
        known = known_assignments(session, agent_id, [assignment_id])
    if assignment_id not in known:
        raise NotFound(f"agent {agent_id} has no assignment "
                       f"{assignment_id}")
    return store.append(assignment_id, offset, data)
