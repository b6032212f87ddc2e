"""
The job page: ``/jobs/<id>``.

What was submitted, the job's parents and children, a grid with one cell
per frame, the task table a page at a time, each task's log (followed
live while it runs) and thumbnails of the frames it rendered, the
actions (pause, resume, rerun, cancel, delete) and a form to change the
priority, weight and notes.

::

    GET  /jobs/<id>                            the page; with HX-Request the
                                               live part only
         ?page= &per_page= &state=             a page of the task table
         ?task=<task id> | ?frame=<n>          the page holding that task
    GET  /jobs/<id>/tasks/<tid>/log            ?attempt= &offset= (JSON)
    GET  /jobs/<id>/tasks/<tid>/outputs/<i>    an image the task rendered
    POST /jobs/<id>/<action>                   pause resume rerun-failed
                                               rerun cancel delete
    POST /jobs/<id>/edit                       priority, weight, notes

The grid reads three columns of every task in one query; the table reads
one page of tasks. Changes go through :mod:`pyfarm.master.services.jobs`,
which lets users change their own jobs and admins any.
"""

import json
import os
import re

from flask import (
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from pyfarm.core.enums import ACTIVE_TASK_STATES, FINAL_STATES, TASK_STATES
from pyfarm.core.enums import OS as MASTER_OS
from pyfarm.core.logger import getLogger
from pyfarm.core.pathmap import map_path
from pyfarm.master.api.serialize import (
    JOB_LOAD_OPTIONS,
    current_outputs,
    job_to_dict,
)
from pyfarm.master.api.tasks import logstore, task_of_job
from pyfarm.master.auth import can_change
from pyfarm.master.db import db, retry_transaction, utcnow
from pyfarm.master.errors import ApiError, BadRequest, NotFound
from pyfarm.master.models import Job, PathMap, Task, TaskAttempt
from pyfarm.master.services import jobs as service
from pyfarm.master.ui import job_helpers as helpers
from pyfarm.master.ui import ui
from pyfarm.master.ui.session import is_htmx, login_required
from pyfarm.master.validation import body_problem, parse, query_int

logger = getLogger("master.ui.job")

#: Rows of the task table per page, by default and at most.
PER_PAGE = 100
MAX_PER_PAGE = 500
#: Seconds between two refreshes of the live part of the page.
REFRESH_SECONDS = 3
#: Seconds between two reads of a running task's log.
LOG_REFRESH_SECONDS = 2
#: The most bytes of a log one request answers; the page reads a long log
#: in several requests.
LOG_CHUNK = 256 * 1024
#: The most bytes of a log the page keeps on screen (it drops the start).
LOG_KEEP = 8 * 1024 * 1024

#: The job's actions and what the notice says once done.
ACTIONS = {
    "pause": "paused",
    "resume": "resumed",
    "rerun-failed": "failed frames queued again",
    "rerun": "every frame queued again",
    "cancel": "cancelled",
    "delete": "deleted",
}
#: The query arguments of the page an action goes back to.
PAGE_ARGUMENTS = ("page", "per_page", "state")

#: The fields of the edit form.
EDIT_FIELDS = ("priority", "weight", "notes")
_INTEGER = re.compile(r"^[+-]?\d{1,12}$")


# -- reading -----------------------------------------------------------------

def load_job(job_id):
    """Return job ``job_id`` with what the page shows of it, or 404."""
    job = db.session.execute(
        select(Job).where(Job.id == job_id).options(*JOB_LOAD_OPTIONS)
    ).unique().scalar_one_or_none()
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


def grid_cells(job_id):
    """Return a :class:`~job_helpers.Cell` per task of the job, by frame:
    one query reading five small columns, whatever the job's size."""
    rows = db.session.execute(
        select(Task.id, Task.frame, Task.tile, Task.state, Task.attempt)
        .where(Task.job_id == job_id).order_by(Task.frame, Task.id))
    return [helpers.Cell(*row) for row in rows]


def table_arguments():
    """Read the task table's query arguments (400 when malformed)."""
    state = request.args.get("state", "").strip() or None
    if state is not None and state not in TASK_STATES:
        raise BadRequest(
            f"query argument 'state' must be one of "
            f"{', '.join(sorted(TASK_STATES))}, got {state!r}")
    return {
        "page": query_int("page", 1, minimum=1),
        "per_page": query_int("per_page", PER_PAGE, minimum=1,
                              maximum=MAX_PER_PAGE),
        "state": state,
        "task": query_int("task", None, minimum=1),
        "frame": query_int("frame", None),
    }


def task_page(job, cells, args):
    """Return the task table's context: the page's tasks and where the
    asked-for task or frame is.

    The total and the page of a task come from the grid's rows, so the
    table costs one query for its tasks and one for their outputs.
    """
    state, per_page, page = args["state"], args["per_page"], args["page"]
    notice = None
    focus = None
    if args["task"] is not None or args["frame"] is not None:
        if args["task"] is not None:
            index = helpers.position(cells, args["task"])
            missing = f"job {job.id} has no task {args['task']}"
        else:
            index = helpers.frame_position(cells, args["frame"])
            missing = f"job {job.id} has no frame {args['frame']}"
        if index is None:
            notice = missing
        else:
            focus = cells[index].id
            if state is not None and cells[index].state != state:
                state = None  # show every state, so the task is listed
    rows = [cell.id for cell in cells if state is None or cell.state == state]
    if focus is not None:
        page = rows.index(focus) // per_page + 1
    total = len(rows)
    page = min(page, helpers.page_count(total, per_page))
    where = [Task.job_id == job.id]
    if state is not None:
        where.append(Task.state == state)
    tasks = db.session.execute(
        select(Task).where(*where).options(joinedload(Task.agent))
        .order_by(Task.frame, Task.id)
        .limit(per_page).offset((page - 1) * per_page)).scalars().all()
    outputs = current_outputs(db.session, tasks)
    return {"tasks": tasks, "outputs": outputs, "total": total,
            "page": page, "per_page": per_page, "state": state,
            "focus": focus, "notice": notice}


def page_context(job_id, fragment=False):
    """Return what the page (or with ``fragment`` its live part) shows of
    job ``job_id``."""
    args = table_arguments()
    job = load_job(job_id)
    cells = grid_cells(job.id)
    counts = helpers.state_counts(cells)
    table = task_page(job, cells, args)
    digest = helpers.grid_digest(cells)
    live = helpers.is_live(job.state)
    query = {"page": table["page"], "state": table["state"]}
    if table["per_page"] != PER_PAGE:
        query["per_page"] = table["per_page"]
    user = current_user._get_current_object()
    return {
        "job": job,
        "info": job_to_dict(job, counts),
        "parents": sorted(job.parents, key=lambda parent: parent.id),
        "children": sorted(job.children, key=lambda child: child.id),
        "counts": counts,
        "cells": cells,
        # An unchanged grid is not sent again to the page that shows it.
        "grid_unchanged": fragment and request.args.get("grid") == digest,
        "live": live,
        "refresh": REFRESH_SECONDS,
        "query": query,
        "live_url": url_for("ui.job", job_id=job.id, grid=digest,
                            **query),
        "may_change": can_change(user, job.user_id),
        "table": table,
        "h": helpers,
        "log_refresh": LOG_REFRESH_SECONDS,
        "log_keep": LOG_KEEP,
    }


@ui.get("/jobs/<int:job_id>")
@login_required
def job(job_id):
    """The job page; an htmx request gets the live part only."""
    # htmx asks for the whole page when it restores the history.
    fragment = is_htmx() and not request.headers.get(
        "HX-History-Restore-Request")
    context = page_context(job_id, fragment)
    if fragment:
        return render_template("_job_live.html", **context)
    return render_template("job.html", edit=edit_values(context["job"]),
                           **context)


def edit_values(job):
    """Return the edit form's values: the job's own."""
    return {"priority": str(job.priority), "weight": str(job.weight),
            "notes": job.notes or ""}


# -- logs --------------------------------------------------------------------

@ui.get("/jobs/<int:job_id>/tasks/<int:task_id>/log")
@login_required
def task_log(job_id, task_id):
    """A piece of a task attempt's log as JSON.

    ``{"text", "offset", "attempt", "final", "size", "attempts", "state",
    "task_state"}``: ``offset`` is where the next read starts, ``final``
    says that the attempt (and every frame sharing its log) has ended and
    all of it was read; ``attempts`` is the task's number of attempts,
    ``state`` the attempt's. Without ``attempt``, the task's current
    attempt.
    Errors are ``{"error": message}`` with their status.
    """
    try:
        body = read_log(job_id, task_id)
    except ApiError as error:
        db.session.rollback()
        return jsonify({"error": error.message}), error.status
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


def read_log(job_id, task_id):
    """Return the JSON of :func:`task_log`."""
    task = task_of_job(job_id, task_id)
    number = query_int("attempt", None, minimum=0)
    offset = query_int("offset", 0, minimum=0)
    if number is None:
        number = task.attempt
    if number == 0:
        # Never assigned: nothing to read yet (ever, if it has ended).
        return {"text": "", "offset": 0, "attempt": 0,
                "final": task.state in FINAL_STATES, "size": 0,
                "attempts": task.attempt, "state": task.state,
                "task_state": task.state}
    attempt = db.session.execute(select(TaskAttempt).where(
        TaskAttempt.task_id == task.id,
        TaskAttempt.attempt == number)).scalar()
    if attempt is None:
        raise NotFound(f"task {task_id} has no attempt {number}; it has "
                       f"{task.attempt}")
    # A batch's frames share one log: it is complete when every attempt
    # writing to it has ended. Asked before the size, so that the last
    # bytes are never declared final unread.
    writing = db.session.execute(
        select(TaskAttempt.id)
        .where(TaskAttempt.assignment_id == attempt.assignment_id,
               TaskAttempt.state.in_(
                   [str(state) for state in ACTIVE_TASK_STATES]))
        .limit(1)).first()
    store = logstore()
    size = store.size(attempt.assignment_id)
    start = min(offset, size)
    length = min(LOG_CHUNK, size - start)
    data = store.read(attempt.assignment_id, start, length) if length \
        else b""
    final = writing is None and start + len(data) >= size
    if not final:
        data = data[:helpers.complete_utf8(data)]
    return {"text": data.decode("utf-8", errors="replace"),
            "offset": start + len(data), "attempt": number, "final": final,
            "size": size, "attempts": task.attempt, "state": attempt.state,
            "task_state": task.state}


# -- outputs -----------------------------------------------------------------

@ui.get("/jobs/<int:job_id>/tasks/<int:task_id>/outputs/<int:index>")
@login_required
def task_output(job_id, task_id, index):
    """An image the task's current attempt recorded as an output.

    Served only when the path is one of those outputs (addressed by its
    number, never by a path from the request), names an image, is on the
    master's storage (directly or through a path map) and starts like an
    image of its type.
    """
    task = task_of_job(job_id, task_id)
    outputs = current_outputs(db.session, [task]).get(task.id) or []
    if index >= len(outputs):
        raise NotFound(f"task {task_id} has no output {index}: its current "
                       f"attempt recorded {len(outputs)}")
    recorded = outputs[index]
    mimetype = helpers.image_type(recorded)
    if mimetype is None:
        raise NotFound(
            f"output {index} of task {task_id} ({recorded}) is not an "
            f"image the page shows ({', '.join(helpers.IMAGE_TYPES)})")
    path = local_file(recorded)
    if path is None:
        raise NotFound(f"output {index} of task {task_id} ({recorded}) is "
                       f"not a file on the master's storage")
    try:
        with open(path, "rb") as stream:
            head = stream.read(16)
    except OSError as error:
        raise NotFound(f"output {index} of task {task_id} ({recorded}) "
                       f"cannot be read: {error.strerror}") from None
    if not helpers.looks_like(mimetype, head):
        raise NotFound(f"output {index} of task {task_id} ({recorded}) is "
                       f"not a {mimetype} file")
    response = send_file(path, mimetype=mimetype, conditional=True,
                         max_age=60)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    return response


def local_file(recorded):
    """Return the master's path of the output ``recorded``, or None.

    The path as the agent wrote it, else mapped for the master's system
    by the path maps (a Windows agent's ``P:\\show\\a.png`` is
    ``/mnt/show/a.png`` here).
    """
    if usable(recorded):
        return recorded
    maps = [{"linux": row.linux, "windows": row.windows, "mac": row.mac}
            for row in db.session.execute(
                select(PathMap).order_by(PathMap.id)).scalars()]
    mapped = map_path(recorded, maps, MASTER_OS) if maps else recorded
    if mapped != recorded and usable(mapped):
        return mapped
    return None


def usable(path):
    """Whether ``path`` is a safe path of an existing file here."""
    return helpers.path_problem(path) is None and os.path.isfile(path)


# -- changes -----------------------------------------------------------------

@ui.post("/jobs/<int:job_id>/<action>")
@login_required
@retry_transaction()
def job_action(job_id, action):
    """Pause, resume, rerun (failed frames or all), cancel or delete."""
    if action not in ACTIONS:
        raise NotFound(f"no action {action!r} on jobs; use one of "
                       f"{', '.join(ACTIONS)}")
    user = current_user._get_current_object()
    now = utcnow()
    session = db.session
    if action == "delete":
        service.delete_job(session, job_id, user)
        session.commit()
        message = f"Job {job_id} deleted."
        flash(message)
        target = url_for("ui.jobs")
        if is_htmx():
            return "", 204, {"HX-Redirect": target}
        return redirect(target)
    if action in ("pause", "resume"):
        state = "paused" if action == "pause" else "queued"
        service.update_job(session, job_id, user,
                           service.JobChanges(state=state), now)
    elif action in ("rerun", "rerun-failed"):
        service.rerun_job(session, job_id, user, action == "rerun-failed",
                          now)
    else:
        service.cancel_job(session, job_id, user, now)
    session.commit()
    message = f"Job {job_id} {ACTIONS[action]}."
    if is_htmx():
        # The live part again, with the page of the table it showed.
        body = render_template("_job_live.html",
                               **page_context(job_id))
        return body, 200, {"HX-Trigger": json.dumps(
            {"pyfarm-notice": message})}
    flash(message)
    back = {name: request.args[name] for name in PAGE_ARGUMENTS
            if request.args.get(name)}
    return redirect(url_for("ui.job", job_id=job_id, **back))


def form_changes(form):
    """Return the :class:`JobChanges` of the edit form or raise
    :class:`BadRequest` with the API's messages.

    Whole numbers typed in the number fields become numbers; anything
    else goes to the validation as typed, which says what is wrong.
    """
    payload = {}
    for name in EDIT_FIELDS:
        value = form.get(name)
        if value is None:
            continue
        if name != "notes":
            value = value.strip()
            if _INTEGER.match(value):
                value = int(value)
        payload[name] = value
    problem = body_problem(payload)
    if problem:
        raise BadRequest(problem)
    return parse(service.JobChanges, payload)


@ui.post("/jobs/<int:job_id>/edit")
@login_required
@retry_transaction()
def job_edit(job_id):
    """Change the job's priority, weight and notes."""
    typed = {name: request.form.get(name, "") for name in EDIT_FIELDS}
    user = current_user._get_current_object()
    try:
        changes = form_changes(request.form)
        service.update_job(db.session, job_id, user, changes, utcnow())
    except BadRequest as error:
        db.session.rollback()
        context = page_context(job_id)
        return render_template("job.html", edit=typed,
                               edit_error=error.message, **context), 400
    db.session.commit()
    flash(f"Job {job_id} saved.")
    return redirect(url_for("ui.job", job_id=job_id))
