"""
Jobs: ``/api/v1/jobs/`` and ``/api/v1/jobs/<id>`` (people only).

::

    POST   /api/v1/jobs/                 submit (201 + Location)
    GET    /api/v1/jobs/                 list: ?state= &title= &user=
                                         &jobqueue= &page= &per_page=
    GET    /api/v1/jobs/<id>             one job
    PATCH  /api/v1/jobs/<id>             title, priority, weight, notes,
                                         state paused / queued
    DELETE /api/v1/jobs/<id>             204
    POST   /api/v1/jobs/<id>/rerun       {"failed_only": bool}
    POST   /api/v1/jobs/<id>/cancel
"""

from flask import g, jsonify, request, url_for
from sqlalchemy import func, select

from pyfarm.core.enums import JOB_STATES
from pyfarm.master.api import api
from pyfarm.master.api.common import (
    arg,
    choice_arg,
    created,
    get_or_404,
    page_of,
    pagination,
)
from pyfarm.master.api.serialize import (
    JOB_LOAD_OPTIONS,
    job_json,
    jobs_to_dicts,
)
from pyfarm.master.auth import PEOPLE, require_roles
from pyfarm.master.db import db, retry_transaction, utcnow
from pyfarm.master.models import Job, JobQueue, User
from pyfarm.master.services import jobs as service
from pyfarm.master.validation import Strict, json_body, parse


class RerunRequest(Strict):
    """Body of ``POST /api/v1/jobs/<id>/rerun`` (optional)."""

    failed_only: bool = False


@api.post("/jobs/")
@require_roles(*PEOPLE)
@retry_transaction()
def job_submit():
    """Submit a job; answer 201 with its JSON and its Location."""
    spec = parse(service.JobSpec, json_body())
    job = service.submit_job(db.session, g.user, spec, utcnow())
    return created(job_json(db.session, job),
                   url_for("api.job_get", job_id=job.id))


@api.get("/jobs/")
@require_roles(*PEOPLE)
def job_list():
    """List jobs, newest first, filtered by the query arguments."""
    page, per_page = pagination()
    where = job_filters()
    # Ids grow with submission time, so the primary key orders newest
    # first without an index on created_at.
    query = (select(Job).where(*where).options(*JOB_LOAD_OPTIONS)
             .order_by(Job.id.desc()))
    count = select(func.count()).select_from(Job).where(*where)
    jobs, total = page_of(db.session, query, count, page, per_page)
    return jsonify({"jobs": jobs_to_dicts(db.session, jobs),
                    "total": total, "page": page, "per_page": per_page})


def job_filters():
    """Return the WHERE clauses for the list's query arguments."""
    where = []
    state = choice_arg("state", JOB_STATES)
    if state is not None:
        where.append(Job.state == state)
    title = arg("title")
    if title is not None:
        pattern = "%" + escape_like(title.lower()) + "%"
        where.append(func.lower(Job.title).like(pattern, escape="\\"))
    user = arg("user")
    if user is not None:
        where.append(Job.user_id.in_(
            select(User.id).where(User.name == user)))
    jobqueue = arg("jobqueue")
    if jobqueue is not None:
        where.append(Job.jobqueue_id.in_(
            select(JobQueue.id).where(JobQueue.name == jobqueue)))
    return where


def escape_like(text):
    """Escape the LIKE wildcards in ``text`` (escape character ``\\``)."""
    return (text.replace("\\", "\\\\").replace("%", "\\%")
            .replace("_", "\\_"))


@api.get("/jobs/<int:job_id>")
@require_roles(*PEOPLE)
def job_get(job_id):
    """Return one job."""
    return jsonify(job_json(db.session, get_or_404(db.session, Job, job_id,
                                                   "job")))


@api.patch("/jobs/<int:job_id>")
@require_roles(*PEOPLE)
@retry_transaction()
def job_patch(job_id):
    """Change a job's title, priority, weight, notes or pause it."""
    changes = parse(service.JobChanges, json_body())
    job = service.update_job(db.session, job_id, g.user, changes, utcnow())
    return commit_and_answer(job)


@api.delete("/jobs/<int:job_id>")
@require_roles(*PEOPLE)
@retry_transaction()
def job_delete(job_id):
    """Delete a job with its tasks; answer 204."""
    service.delete_job(db.session, job_id, g.user)
    db.session.commit()
    return "", 204


@api.post("/jobs/<int:job_id>/rerun")
@require_roles(*PEOPLE)
@retry_transaction()
def job_rerun(job_id):
    """Requeue a job's failed tasks, or all tasks not held by agents."""
    payload = json_body() if request.get_data() else {}
    options = parse(RerunRequest, payload)
    job = service.rerun_job(db.session, job_id, g.user,
                            options.failed_only, utcnow())
    return commit_and_answer(job)


@api.post("/jobs/<int:job_id>/cancel")
@require_roles(*PEOPLE)
@retry_transaction()
def job_cancel(job_id):
    """Fail every task of the job that has not ended."""
    job = service.cancel_job(db.session, job_id, g.user, utcnow())
    return commit_and_answer(job)


def commit_and_answer(job):
    """Commit the change and answer 200 with the job's JSON."""
    body = job_json(db.session, job)
    db.session.commit()
    return jsonify(body)
