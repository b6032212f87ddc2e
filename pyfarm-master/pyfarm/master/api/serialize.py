"""
Explicit to-JSON functions for jobs, tasks and task attempts.

The shapes are the API's contract (see the working spec, "JSON shapes");
every field is written out here on purpose, so a new column never leaks
into the API by accident.
"""

from sqlalchemy import and_, select
from sqlalchemy.orm import joinedload, selectinload

from pyfarm.core.enums import WorkState
from pyfarm.master.api.common import iso
from pyfarm.master.models import (
    Job,
    JobSoftwareRequirement,
    JobTagRequirement,
    Task,
    TaskAttempt,
)
from pyfarm.master.services.rollup import task_counts

#: Loader options that fetch everything :func:`job_to_dict` reads with a
#: fixed number of queries, whatever the number of jobs on the page.
JOB_LOAD_OPTIONS = (
    joinedload(Job.jobtype),
    joinedload(Job.jobqueue),
    joinedload(Job.user),
    selectinload(Job.tags),
    selectinload(Job.notified_users),
    selectinload(Job.tag_requirements).joinedload(JobTagRequirement.tag),
    selectinload(Job.software_requirements).joinedload(
        JobSoftwareRequirement.software),
    selectinload(Job.parents),
    selectinload(Job.children),
)


def job_to_dict(job, counts):
    """Return the JSON of ``job``; ``counts`` is ``{task state: n}``.

    ``waiting_for`` lists the parents that are not done yet and
    ``blocked_by_failed_parent`` says whether one of them failed (the job
    cannot start until that parent is rerun).
    """
    parents = sorted(job.parents, key=lambda parent: parent.id)
    return {
        "id": job.id,
        "title": job.title,
        "jobtype": job.jobtype.name,
        "jobtype_version": job.jobtype_version,
        "state": job.state,
        "start": job.start,
        "end": job.end,
        "by": job.by,
        "batch": job.batch,
        "priority": job.priority,
        "weight": job.weight,
        "minimum_agents": job.minimum_agents,
        "maximum_agents": job.maximum_agents,
        "requeue": job.requeue,
        "cpus": job.cpus,
        "ram": job.ram,
        "data": job.data,
        "environ": job.environ,
        "notes": job.notes,
        "tags": sorted(tag.name for tag in job.tags),
        "tag_requirements": [
            {"tag": requirement.tag.name, "negate": requirement.negate}
            for requirement in sorted(
                job.tag_requirements, key=lambda item: item.tag.name)],
        "software_requirements": [
            {"software": requirement.software.name,
             "min_version": requirement.min_version,
             "max_version": requirement.max_version}
            for requirement in sorted(
                job.software_requirements,
                key=lambda item: item.software.name)],
        "parents": [parent.id for parent in parents],
        "children": sorted(child.id for child in job.children),
        "jobqueue": job.jobqueue.name if job.jobqueue else None,
        "user": job.user.name if job.user else None,
        "notified_users": sorted(user.name for user in job.notified_users),
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "tasks": dict(counts),
        "waiting_for": [parent.id for parent in parents
                        if parent.state != WorkState.DONE],
        "blocked_by_failed_parent": any(
            parent.state == WorkState.FAILED for parent in parents),
    }


def jobs_to_dicts(session, jobs):
    """Return the JSON of ``jobs``, counting their tasks in one query."""
    counts = task_counts(session, [job.id for job in jobs])
    return [job_to_dict(job, counts[job.id]) for job in jobs]


def job_json(session, job):
    """Return the JSON of one job, with its task counts."""
    return jobs_to_dicts(session, [job])[0]


def task_to_dict(task, outputs=None):
    """Return the JSON of ``task``; ``outputs`` are the files its current
    attempt wrote (see :func:`current_outputs`)."""
    return {
        "id": task.id,
        "job": task.job_id,
        "frame": task.frame,
        "state": task.state,
        "agent": task.agent_id,
        "attempt": task.attempt,
        "failures": task.failures,
        "progress": task.progress,
        "last_error": task.last_error,
        "created_at": iso(task.created_at),
        "assigned_at": iso(task.assigned_at),
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "outputs": list(outputs or ()),
    }


def current_outputs(session, tasks):
    """Return ``{task id: [paths]}``: the files the current attempt of
    each ``done`` task wrote, in one query whatever the number of tasks.

    Tasks that are not done have none (a task queued again by a rerun
    does not show the files of the attempt before).
    """
    done = [task.id for task in tasks if task.state == WorkState.DONE]
    if not done:
        return {}
    # A join rather than "(task_id, attempt) IN (pairs)": SQLite scans
    # every attempt for a list of pairs, but looks each one up in the
    # unique index from the task's row.
    rows = session.execute(
        select(TaskAttempt.task_id, TaskAttempt.outputs)
        .join(Task, and_(Task.id == TaskAttempt.task_id,
                         Task.attempt == TaskAttempt.attempt))
        .where(Task.id.in_(done)))
    return {row.task_id: row.outputs or [] for row in rows}


def tasks_to_dicts(session, tasks):
    """Return the JSON of ``tasks`` with their outputs (one query)."""
    tasks = list(tasks)
    outputs = current_outputs(session, tasks)
    return [task_to_dict(task, outputs.get(task.id)) for task in tasks]


def attempt_to_dict(attempt, size):
    """Return the JSON of a task attempt and its log of ``size`` bytes."""
    return {
        "attempt": attempt.attempt,
        "agent": attempt.agent_id,
        "assignment": attempt.assignment_id,
        "state": attempt.state,
        "size": size,
        "assigned_at": iso(attempt.assigned_at),
        "started_at": iso(attempt.started_at),
        "finished_at": iso(attempt.finished_at),
        "error": attempt.error,
    }
