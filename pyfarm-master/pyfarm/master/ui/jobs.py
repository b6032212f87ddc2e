"""
The jobs page, the UI's home page: every job with its progress, filtered,
sorted and paged by the URL's query, refreshed by htmx every few seconds,
and bulk actions (pause, resume, rerun failed frames, cancel, delete, set
the priority) on the jobs ticked.

::

    GET  /            the page; with ``HX-Request`` only its rows
    POST /jobs/bulk   action + job_ids (+ priority); the query string
                      carries the page's filters to answer with
"""

import json

from flask import (
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy import select

from pyfarm.core.enums import FINAL_STATES, JOB_STATES, WorkState
from pyfarm.core.logger import getLogger
from pyfarm.master.auth import PEOPLE, can_change
from pyfarm.master.db import db, retry_transaction, utcnow
from pyfarm.master.errors import ApiError, Conflict, Forbidden, NotFound
from pyfarm.master.models import Job, JobQueue, JobType, Tag, User
from pyfarm.master.services import jobs as service
from pyfarm.master.services.rollup import task_counts
from pyfarm.master.ui import ui
from pyfarm.master.ui.jobs_query import (
    BULK_ACTIONS,
    DEFAULT_PER_PAGE,
    PER_PAGE_CHOICES,
    STATE_ORDER,
    count_query,
    filter_clauses,
    last_page,
    page_query,
    parse_bulk,
    parse_filter,
)
from pyfarm.master.ui.session import is_htmx, login_required
from pyfarm.master.validation import parse

logger = getLogger("master.ui.jobs")

#: Seconds between two refreshes of the rows.
REFRESH_SECONDS = 3
#: The most names a filter's suggestions list.
MAX_SUGGESTIONS = 500


def job_page(session, job_filter, user):
    """Return what the rows show for ``job_filter`` seen by ``user``.

    A fixed number of statements whatever the page's size: the count,
    the page of jobs with their owner, job type and queue (joined), their
    tags (one more SELECT) and their task counts (one grouped SELECT over
    the page's jobs only). A page past the last shows the last.
    """
    where = filter_clauses(job_filter, user.id)
    total = session.execute(count_query(where)).scalar_one()
    page = min(job_filter.page, last_page(total, job_filter.per_page))
    job_filter = job_filter.on_page(page)
    offset = (page - 1) * job_filter.per_page
    jobs = session.execute(
        page_query(job_filter, where, offset)).scalars().all()
    return {
        "jobfilter": job_filter,
        "jobs": jobs,
        "total": total,
        "counts": task_counts(session, [job.id for job in jobs]),
        "editable": {job.id for job in jobs
                     if can_change(user, job.user_id)},
        "refresh": REFRESH_SECONDS,
    }


def filter_choices(session):
    """Return the names the filter form offers (queues, job types, owners
    and tags)."""
    def names(column, *where):
        return session.execute(
            select(column).where(*where).order_by(column)
            .limit(MAX_SUGGESTIONS)).scalars().all()
    return {
        "states": [str(state) for state in STATE_ORDER
                   if state in JOB_STATES],
        "queues": names(JobQueue.name),
        "jobtypes": names(JobType.name),
        "owners": names(User.name, User.role.in_([str(r) for r in PEOPLE])),
        "tags": names(Tag.name),
        "per_page_choices": PER_PAGE_CHOICES,
        "default_per_page": DEFAULT_PER_PAGE,
    }


def render_jobs(job_filter, status=200, error=None, selected=()):
    """Answer the page (or, for htmx, its rows) for ``job_filter``."""
    user = current_user._get_current_object()
    context = job_page(db.session, job_filter, user)
    context["selected"] = set(selected)
    if is_htmx():
        body = render_template("_jobs_fragment.html", **context)
    else:
        body = render_template("jobs.html", error=error,
                               **filter_choices(db.session), **context)
    response = make_response(body, status)
    response.vary.add("HX-Request")
    return response


@ui.get("/")
@login_required
def jobs():
    """The jobs page; its rows alone for htmx (the refresh)."""
    return render_jobs(parse_filter(request.args))


@ui.post("/jobs/bulk")
@login_required
@retry_transaction()
def jobs_bulk():
    """Apply one action to the selected jobs, all or none of them.

    htmx gets the refreshed rows and a notice; a plain form is sent back
    to the page it came from with a flashed message. A refusal (a job of
    another user, a job the action does not fit, a bad form) changes
    nothing: htmx gets the message, a plain form the page again with the
    message and the jobs still ticked.
    """
    job_filter = parse_filter(request.args)
    user = current_user._get_current_object()
    selected = request.form.getlist("job_ids")
    try:
        bulk = parse_bulk(request.form)
        message = apply_bulk(db.session, user, bulk, utcnow())
        db.session.commit()
    except ApiError as error:
        db.session.rollback()
        if is_htmx():
            raise
        return render_jobs(job_filter, error.status, error.message,
                           selected)
    if is_htmx():
        response = render_jobs(job_filter)
        response.headers["HX-Trigger"] = json.dumps(
            {"pyfarm-notice": message})
        return response
    flash(message)
    return redirect(url_for("ui.jobs", **job_filter.args(page=True)))


def plural(count, word="job"):
    """Return ``1 job`` or ``3 jobs``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def describe(jobs):
    """Name jobs in a message: ``job 12 ('shot 10')``, at most five."""
    names = [f"{job.id} ({job.title!r})" for job in jobs[:5]]
    if len(jobs) > 5:
        names.append(f"and {len(jobs) - 5} more")
    return ("job " if len(jobs) == 1 else "jobs ") + ", ".join(names)


def check_bulk(session, user, bulk):
    """Return the selected jobs, locked in id order, once sure the action
    may change every one; else raise and change nothing.

    :class:`NotFound` for ids that are gone, :class:`Forbidden` for jobs
    of other users (unless ``user`` is an admin), :class:`Conflict` for
    finished jobs asked to pause or resume.
    """
    jobs = session.execute(
        select(Job).where(Job.id.in_(bulk.job_ids)).order_by(Job.id)
        .with_for_update()).scalars().all()
    missing = sorted(set(bulk.job_ids) - {job.id for job in jobs})
    if missing:
        raise NotFound(
            "no job with id " + ", ".join(str(i) for i in missing)
            + " (deleted meanwhile?); nothing was changed")
    refused = [job for job in jobs if not can_change(user, job.user_id)]
    if refused:
        raise Forbidden(
            f"{describe(refused)} belong{'s' if len(refused) == 1 else ''} "
            f"to another user; only the owner or an admin may change "
            f"{'it' if len(refused) == 1 else 'them'}. Nothing was "
            f"changed: untick {'it' if len(refused) == 1 else 'them'} and "
            f"try again")
    if bulk.action in ("pause", "resume"):
        ended = [job for job in jobs if job.state in FINAL_STATES]
        if ended:
            raise Conflict(
                f"{describe(ended)} ended already and cannot be "
                f"{bulk.action}d (rerun instead). Nothing was "
                f"changed: untick {'it' if len(ended) == 1 else 'them'} "
                f"and try again")
    return jobs


def apply_bulk(session, user, bulk, now):
    """Apply the :class:`~pyfarm.master.ui.jobs_query.BulkRequest`
    ``bulk`` through the job services; return the notice to show.

    Leaves committing to the caller: any refusal raises before the
    session is committed, so nothing changes.
    """
    jobs = check_bulk(session, user, bulk)
    ids = [job.id for job in jobs]
    action = bulk.action
    if action in ("pause", "resume", "priority"):
        if action == "priority":
            payload = {"priority": bulk.priority}
        else:
            state = WorkState.PAUSED if action == "pause" \
                else WorkState.QUEUED
            payload = {"state": str(state)}
        changes = parse(service.JobChanges, payload)
        for job_id in ids:
            service.update_job(session, job_id, user, changes, now)
    elif action == "rerun":
        for job_id in ids:
            service.rerun_job(session, job_id, user, True, now)
    elif action == "cancel":
        for job_id in ids:
            service.cancel_job(session, job_id, user, now)
    elif action == "delete":
        # Children first: a job whose dependent job goes too may go.
        for job_id in sorted(ids, reverse=True):
            service.delete_job(session, job_id, user)
    logger.info("%s: %s on jobs %s", user.name, action, ids)
    message = BULK_ACTIONS[action].format(jobs=plural(len(ids)),
                                          priority=bulk.priority)
    return message[:1].upper() + message[1:]
