"""
Job state from task states.

A job is ``done`` when every task is done, ``failed`` when nothing is left
to run and some task failed, ``running`` while tasks are held by agents
or after it started, else ``queued``. A paused job stays paused.

Whoever rolls a job up holds the job's row lock (:func:`lock_jobs`) and
reads its tasks afresh under it. The job services (pause, rerun, cancel)
lock the job before its tasks.

A task ending (``done``, or ``failed`` for good) changes the job's state
only when it was among the job's last tasks: while frames are still
queued the job stays ``running`` whatever happens to this one. So an
ending task does not lock its job at all while the job has queued
frames; agents finishing frames of the same job then never wait for
each other.

The agents' requests end their tasks without any job lock and roll the
jobs with nothing queued up afterwards, each in a short transaction of
its own (:func:`settle_after_commit`): of two last tasks ending at once,
the roll-up that runs last sees both. A caller rolling up in the same
transaction (:func:`report_task` without ``rollup``) locks the jobs near
their end before the task (:func:`lock_jobs_near_end`, the order of the
job services: no deadlock with a cancel) and rolls up after it
(:func:`settle_jobs`); its check "frames still queued" is read without
the lock, so in a rare interleaving (a queued frame claimed, run and
ended while the transaction was open) nobody rolls the job up. The
scheduler's pass settles any job left behind
(:func:`settle_stale_jobs`) within one interval.
"""

from sqlalchemy import exists, func, select
from sqlalchemy.exc import DBAPIError

from pyfarm.core.enums import ACTIVE_TASK_STATES, FINAL_STATES, WorkState
from pyfarm.core.logger import getLogger
from pyfarm.master.models import Job, Task

logger = getLogger("master.rollup")


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


def _exists(job_id, states):
    return exists(select(Task.id).where(
        Task.job_id == job_id, Task.state.in_([str(s) for s in states])))


def rollup_job(session, job, now):
    """Recompute ``job.state`` from its tasks; return the new state.

    Sets ``finished_at`` when the job ends and clears it when it runs
    again. Cheap: three indexed existence checks, whatever the job's size,
    in one statement: tasks move from held to queued (a lost agent, a
    failure to retry) and back (a claim) without the job's lock, so
    checks in separate statements, each seeing the database at its own
    moment, could miss such a task in both states and end a job that
    still has work.
    """
    active, queued, failed = session.execute(select(
        _exists(job.id, ACTIVE_TASK_STATES),
        _exists(job.id, [WorkState.QUEUED]),
        _exists(job.id, [WorkState.FAILED]))).one()
    state = derive_state(job, active=active, queued=queued, failed=failed)
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


#: Task states that may still run.
OPEN_TASK_STATES = tuple(str(state) for state in (
    WorkState.QUEUED, *sorted(ACTIVE_TASK_STATES)))

#: Job states a job with nothing left to run must not keep.
UNSETTLED_JOB_STATES = (str(WorkState.QUEUED), str(WorkState.RUNNING))


def lock_jobs_near_end(session, task_ids):
    """Lock, in id order, the jobs of ``task_ids`` that have no frame
    queued; return them by id.

    A caller about to end ``task_ids`` calls it before it locks them: the
    jobs it will roll up are then locked before their tasks, as the job
    services lock them. Jobs with frames still queued are left alone.
    """
    ids = sorted(set(task_ids))
    if not ids:
        return {}
    queued = select(Task.id).where(
        Task.job_id == Job.id, Task.state == WorkState.QUEUED)
    near = session.execute(
        select(Job.id).where(
            Job.id.in_(select(Task.job_id).where(Task.id.in_(ids))),
            ~exists(queued))).scalars().all()
    return lock_jobs(session, near)


def settle_jobs(session, job_ids, now):
    """Roll up those of ``job_ids`` whose last tasks may just have ended.

    Called after tasks of ``job_ids`` ended. A job with frames still
    queued is left alone, unlocked (see the module's docstring); the
    others are locked in id order and rolled up. Returns the ids of the
    jobs rolled up.
    """
    settled = []
    for job_id in sorted(set(job_ids)):
        if _has(session, job_id, [WorkState.QUEUED]):
            continue
        for job in lock_jobs(session, [job_id]).values():
            rollup_job(session, job, now)
            settled.append(job_id)
    return settled


def settle_after_commit(session, job_ids, now):
    """Roll up ``job_ids`` in a transaction of their own, after the one
    that ended their tasks committed; return the ids rolled up.

    The request ending tasks then holds no job lock, and each job's lock
    is held only for its roll-up: agents finishing the last frames of one
    job do not wait for each other's whole requests. Each roll-up runs
    after its own tasks were committed, so the last one sees them all. A
    failure is logged and left to the scheduler's pass
    (:func:`settle_stale_jobs`), which settles any job left behind.
    """
    if not job_ids:
        return []
    try:
        settled = settle_jobs(session, job_ids, now)
        session.commit()
        return settled
    except DBAPIError:
        session.rollback()
        logger.warning("rolling up jobs %s failed; the scheduler will",
                       sorted(job_ids), exc_info=True)
        return []


def settle_stale_jobs(session, now):
    """Roll up the queued or running jobs that have nothing left to run.

    The scheduler's safety net for :func:`settle_jobs`: one indexed query
    over the unfinished jobs. Returns the ids of the jobs whose state
    changed.
    """
    still_open = select(Task.id).where(
        Task.job_id == Job.id, Task.state.in_(OPEN_TASK_STATES))
    stale = session.execute(
        select(Job.id).where(Job.state.in_(UNSETTLED_JOB_STATES),
                             ~exists(still_open))
        .order_by(Job.id)).scalars().all()
    changed = []
    for job in lock_jobs(session, stale).values():
        before = job.state
        if rollup_job(session, job, now) != before:
            changed.append(job.id)
    return changed
