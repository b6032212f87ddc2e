"""
Job state from task states.

A job is ``done`` when every task is done, ``failed`` when nothing is left
to run and some task failed, ``running`` while tasks are held by agents
or after it started, else ``queued``. A paused job stays paused.

Whoever changes task states and rolls up locks the job rows first
(:func:`lock_jobs`), before the tasks, as the job services do. Two tasks of
one job ending at once on PostgreSQL then roll up one after the other, and
the second sees the first one's task; without the lock each would see the
other's task still running and leave the job ``running`` for ever.
"""

from sqlalchemy import func, select

from pyfarm.core.enums import ACTIVE_TASK_STATES, FINAL_STATES, WorkState
from pyfarm.master.models import Job, Task


def task_counts(session, job_ids):
    """Return ``{job_id: {state: count}}`` for ``job_ids``.

    Every task state is present in each job's dict, zero where no task is.
    """
    counts = {job_id: {str(state): 0 for state in TASK_STATE_ORDER}
              for job_id in job_ids}
    if not counts:
        return counts
    rows = session.execute(
        select(Task.job_id, Task.state, func.count())
        .where(Task.job_id.in_(list(counts)))
        .group_by(Task.job_id, Task.state))
    for job_id, state, count in rows:
        counts[job_id][state] = count
    return counts


#: Task states in the order people read them.
TASK_STATE_ORDER = (WorkState.QUEUED, WorkState.ASSIGNED, WorkState.RUNNING,
                    WorkState.DONE, WorkState.FAILED)


def _has(session, job_id, states):
    return session.execute(
        select(Task.id).where(Task.job_id == job_id,
                              Task.state.in_([str(s) for s in states]))
        .limit(1)).first() is not None


def derive_state(job, active, queued, failed):
    """Pure rule: the state of ``job`` given what its tasks are doing."""
    if job.state == WorkState.PAUSED:
        return WorkState.PAUSED
    if active:
        return WorkState.RUNNING
    if queued:
        return WorkState.RUNNING if job.started_at else WorkState.QUEUED
    if failed:
        return WorkState.FAILED
    return WorkState.DONE


def lock_jobs(session, job_ids):
    """Lock the rows of ``job_ids`` (in id order) and reload them.

    ``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite serialises writers
    already. Returns the jobs by id.
    """
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    jobs = session.execute(
        select(Job).where(Job.id.in_(ids)).order_by(Job.id)
        .with_for_update()
        .execution_options(populate_existing=True)).scalars()
    return {job.id: job for job in jobs}


def rollup_job(session, job, now):
    """Recompute ``job.state`` from its tasks; return the new state.

    Sets ``finished_at`` when the job ends and clears it when it runs
    again. Cheap: three indexed existence checks, whatever the job's size.
    """
    state = derive_state(
        job,
        active=_has(session, job.id, ACTIVE_TASK_STATES),
        queued=_has(session, job.id, [WorkState.QUEUED]),
        failed=_has(session, job.id, [WorkState.FAILED]))
    if state != job.state:
        job.state = state
        job.updated_at = now
    if state in FINAL_STATES:
        job.finished_at = job.finished_at or now
    else:
        job.finished_at = None
    return state


def rollup_jobs(session, job_ids, now):
    """Lock and roll up every job in ``job_ids``."""
    for job in lock_jobs(session, job_ids).values():
        rollup_job(session, job, now)
