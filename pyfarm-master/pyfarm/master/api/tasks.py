"""
A job's tasks and their logs (people only; reading only).

::

    GET /api/v1/jobs/<id>/tasks/                       ?state= &page=
    GET /api/v1/jobs/<id>/tasks/<tid>
    GET /api/v1/jobs/<id>/tasks/<tid>/logs/            one per attempt
    GET /api/v1/jobs/<id>/tasks/<tid>/logs/<attempt>   ?offset= &length=

A log belongs to an assignment (one process on an agent, possibly several
frames), so the tasks of one batch show the same log.
"""

from flask import Response, current_app, jsonify
from sqlalchemy import func, select

from pyfarm.core.enums import TASK_STATES
from pyfarm.master.api import api
from pyfarm.master.api.common import (
    choice_arg,
    get_or_404,
    page_of,
    pagination,
)
from pyfarm.master.api.serialize import attempt_to_dict, tasks_to_dicts
from pyfarm.master.auth import PEOPLE, require_roles
from pyfarm.master.db import db
from pyfarm.master.errors import NotFound
from pyfarm.master.models import Job, Task, TaskAttempt
from pyfarm.master.validation import query_int


def logstore():
    """Return the application's task log store."""
    return current_app.extensions["pyfarm.logstore"]


@api.get("/jobs/<int:job_id>/tasks/")
@require_roles(*PEOPLE)
def task_list(job_id):
    """List a job's tasks by frame, optionally only those in ``state``."""
    get_or_404(db.session, Job, job_id, "job")
    page, per_page = pagination()
    where = [Task.job_id == job_id]
    state = choice_arg("state", TASK_STATES)
    if state is not None:
        where.append(Task.state == state)
    query = select(Task).where(*where).order_by(
        Task.frame, Task.tile, Task.id)
    count = select(func.count()).select_from(Task).where(*where)
    tasks, total = page_of(db.session, query, count, page, per_page)
    return jsonify({"tasks": tasks_to_dicts(db.session, tasks),
                    "total": total, "page": page, "per_page": per_page})


def task_of_job(job_id, task_id):
    """Return task ``task_id`` of job ``job_id`` or raise 404."""
    task = db.session.get(Task, task_id)
    if task is None or task.job_id != job_id:
        get_or_404(db.session, Job, job_id, "job")
        raise NotFound(f"job {job_id} has no task with id {task_id}")
    return task


@api.get("/jobs/<int:job_id>/tasks/<int:task_id>")
@require_roles(*PEOPLE)
def task_get(job_id, task_id):
    """Return one task."""
    return jsonify(tasks_to_dicts(
        db.session, [task_of_job(job_id, task_id)])[0])


@api.get("/jobs/<int:job_id>/tasks/<int:task_id>/logs/")
@require_roles(*PEOPLE)
def task_log_list(job_id, task_id):
    """List the task's attempts with the size of each one's log."""
    task = task_of_job(job_id, task_id)
    store = logstore()
    return jsonify({"logs": [
        attempt_to_dict(attempt, store.size(attempt.assignment_id))
        for attempt in task.attempts]})


@api.get("/jobs/<int:job_id>/tasks/<int:task_id>/logs/<int:attempt>")
@require_roles(*PEOPLE)
def task_log_read(job_id, task_id, attempt):
    """Return an attempt's log as text; ``X-Log-Size`` tells its size.

    ``offset`` and ``length`` select a byte range, so a client can follow
    a live log by asking from the size it has. An attempt whose log has
    not started yet answers an empty body.
    """
    task_of_job(job_id, task_id)
    row = db.session.execute(select(TaskAttempt).where(
        TaskAttempt.task_id == task_id,
        TaskAttempt.attempt == attempt)).scalar()
    if row is None:
        raise NotFound(f"task {task_id} has no attempt {attempt}")
    offset = query_int("offset", 0, minimum=0)
    length = query_int("length", None, minimum=0)
    store = logstore()
    size = store.size(row.assignment_id)
    # Read no further than the size reported, so offset + length of the
    # body is where the next read starts even while the log grows.
    available = max(0, size - offset)
    if length is not None:
        available = min(length, available)
    data = store.read(row.assignment_id, offset, available) if available \
        else b""
    response = Response(data, mimetype="text/plain")
    response.headers["X-Log-Size"] = str(size)
    return response
