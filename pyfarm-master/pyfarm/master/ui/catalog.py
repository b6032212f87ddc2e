"""
The catalog pages: job queues, tags, software and path maps.

Everyone logged in sees them. Changes follow the API's rules: admins
create, change and delete queues, software and path maps; anyone may add
a tag. A form that cannot be used comes back with the message and what
was typed (400, or 409 for a name that is taken); a change that works
redirects to the list with a notice.
"""

import re

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload, selectinload

from pyfarm.core.enums import Role, WorkState
from pyfarm.master.api.catalog import JobQueueIn, JobQueuePatch
from pyfarm.master.api.common import page_of, pagination
from pyfarm.master.db import db, utcnow
from pyfarm.master.errors import ApiError, BadRequest, NotFound
from pyfarm.master.models import (
    Job,
    JobQueue,
    JobTagRequirement,
    PathMap,
    Software,
    Tag,
)
from pyfarm.master.models.agent import agent_software, agent_tags
from pyfarm.master.models.job import job_tags
from pyfarm.master.services import catalog
from pyfarm.master.services import pathmaps as pathmap_service
from pyfarm.master.ui import ui
from pyfarm.master.ui.session import admin_required, is_htmx, login_required
from pyfarm.master.validation import parse

#: Rows per page of the catalog lists.
PER_PAGE = 50
#: At most this many tag names are offered as suggestions in forms.
TAG_SUGGESTIONS = 500
#: Job states counted per queue.
QUEUE_STATES = (str(WorkState.QUEUED), str(WorkState.RUNNING))

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- forms ---------------------------------------------------------------


def is_admin():
    """Whether the logged-in user is an admin."""
    return current_user.is_authenticated and current_user.role == Role.ADMIN


def form_text(name, label=None):
    """Return the stripped one-line form field ``name`` ("" if absent).

    Raises :class:`BadRequest` naming ``label`` for control characters
    (a NUL cannot be stored, and a name holding a line break is a typo).
    """
    value = request.form.get(name, "")
    if _CONTROL.search(value):
        raise BadRequest(f"{label or name} may not contain control "
                         f"characters")
    return value.strip()


def form_optional(name, label=None):
    """Return the stripped form field ``name``, or None when empty."""
    return form_text(name, label) or None


def form_int(name, label, optional=False):
    """Return the form field ``name`` as a whole number.

    An empty field is None when ``optional``; otherwise, and for text that
    is not a whole number, raises :class:`BadRequest` naming ``label``.
    """
    value = form_text(name, label)
    if not value:
        if optional:
            return None
        raise BadRequest(f"{label} is required")
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"{label} must be a whole number, got "
                         f"{value!r}") from None


def refused(error, page, **context):
    """Roll back and answer ``page`` (a function rendering the page) with
    the message of ``error`` and its status."""
    db.session.rollback()
    return page(error=error.message, **context), error.status


def tag_suggestions():
    """Return tag names for a ``<datalist>``, alphabetically."""
    return db.session.execute(
        select(Tag.name).order_by(Tag.name).limit(TAG_SUGGESTIONS)
    ).scalars().all()


# -- job queues ----------------------------------------------------------


def queue_job_counts(session, queue_ids):
    """Return ``{queue_id: {"queued": n, "running": n}}`` of the jobs in
    the queues ``queue_ids`` (one query on the queue index)."""
    counts = {queue_id: dict.fromkeys(QUEUE_STATES, 0)
              for queue_id in queue_ids}
    if not queue_ids:
        return counts
    for queue_id, state, count in session.execute(
            select(Job.jobqueue_id, Job.state, func.count())
            .where(Job.jobqueue_id.in_(queue_ids),
                   Job.state.in_(QUEUE_STATES))
            .group_by(Job.jobqueue_id, Job.state)):
        counts[queue_id][state] = count
    return counts


def queue_list():
    """Return the current page of queues and what the table shows."""
    page, per_page = pagination(PER_PAGE)
    queues, total = page_of(
        db.session,
        select(JobQueue).options(selectinload(JobQueue.parent))
        .order_by(JobQueue.name),
        select(func.count()).select_from(JobQueue), page, per_page)
    return {"queues": queues, "total": total, "page": page,
            "per_page": per_page, "admin": is_admin(),
            "counts": queue_job_counts(db.session, [q.id for q in queues])}


def queue_names(exclude=None):
    """Return every queue's name (parents to choose from) but
    ``exclude``'s."""
    query = select(JobQueue.name).order_by(JobQueue.name)
    if exclude is not None:
        query = query.where(JobQueue.id != exclude.id)
    return db.session.execute(query).scalars().all()


def queues_page(form=None, error=None):
    """Render the queue list with the create form."""
    return render_template("catalog_queues.html", form=form or {},
                           error=error, parents=queue_names(),
                           **queue_list())


def queue_form():
    """Read the queue form into the API's field names."""
    return {
        "name": form_text("name", "Name"),
        "parent": form_optional("parent", "Parent"),
        "priority": form_int("priority", "Priority"),
        "weight": form_int("weight", "Weight"),
        "minimum_agents": form_int("minimum_agents", "Minimum agents",
                                   optional=True),
        "maximum_agents": form_int("maximum_agents", "Maximum agents",
                                   optional=True),
    }


def get_queue(queue_id):
    """Return queue ``queue_id`` or raise :class:`NotFound`."""
    queue = db.session.get(JobQueue, queue_id)
    if queue is None:
        raise NotFound(f"no job queue with id {queue_id}")
    return queue


@ui.get("/queues/")
@login_required
def jobqueues():
    """The job queues; htmx polls the rows for the job counts."""
    if is_htmx():
        return render_template("catalog_queue_rows.html", **queue_list())
    return queues_page()


@ui.post("/queues/")
@admin_required
def jobqueues_create():
    """Create a job queue (admins)."""
    try:
        body = parse(JobQueueIn, queue_form())
        queue = catalog.create_jobqueue(
            db.session, body.name, utcnow(), parent=body.parent,
            priority=body.priority, weight=body.weight,
            minimum_agents=body.minimum_agents,
            maximum_agents=body.maximum_agents)
        name = queue.name
        db.session.commit()
    except ApiError as error:
        return refused(error, queues_page, form=request.form)
    flash(f"Queue {name!r} created.")
    return redirect(url_for("ui.jobqueues"))


def queue_edit_page(queue, form=None, error=None):
    """Render the edit form of ``queue``."""
    if form is None:
        form = {"name": queue.name,
                "parent": queue.parent.name if queue.parent else "",
                "priority": queue.priority, "weight": queue.weight,
                "minimum_agents": queue.minimum_agents or "",
                "maximum_agents": queue.maximum_agents or ""}
    return render_template("catalog_queue_edit.html", queue=queue,
                           form=form, error=error,
                           parents=queue_names(exclude=queue))


@ui.get("/queues/<int:queue_id>/edit")
@admin_required
def jobqueues_edit(queue_id):
    """The edit form of one queue (admins)."""
    return queue_edit_page(get_queue(queue_id))


@ui.post("/queues/<int:queue_id>")
@admin_required
def jobqueues_update(queue_id):
    """Change a queue's name, parent, priority, weight or limits."""
    queue = get_queue(queue_id)
    try:
        body = parse(JobQueuePatch, queue_form())
        catalog.update_jobqueue(db.session, queue,
                                body.model_dump(exclude_unset=True))
        name = queue.name
        db.session.commit()
    except ApiError as error:
        db.session.rollback()
        return queue_edit_page(get_queue(queue_id), form=request.form,
                               error=error.message), error.status
    flash(f"Queue {name!r} saved.")
    return redirect(url_for("ui.jobqueues"))


@ui.post("/queues/<int:queue_id>/delete")
@admin_required
def jobqueues_delete(queue_id):
    """Delete a queue no unfinished job and no sub-queue uses."""
    queue = get_queue(queue_id)
    name = queue.name
    try:
        catalog.delete_jobqueue(db.session, queue)
        db.session.commit()
    except ApiError as error:
        return refused(error, queues_page)
    flash(f"Queue {name!r} deleted.")
    return redirect(url_for("ui.jobqueues"))


# -- tags ----------------------------------------------------------------


def count_by(session, column, ids, *where):
    """Return ``{id: rows}`` counting the rows of ``column``'s table per
    value of ``column`` in ``ids``."""
    if not ids:
        return {}
    return dict(session.execute(
        select(column, func.count()).where(column.in_(ids), *where)
        .group_by(column)).all())


def tags_page(form=None, error=None):
    """Render the tag list with the create form."""
    page, per_page = pagination(PER_PAGE)
    tags, total = page_of(db.session, select(Tag).order_by(Tag.name),
                          select(func.count()).select_from(Tag), page,
                          per_page)
    ids = [tag.id for tag in tags]
    return render_template(
        "catalog_tags.html", tags=tags, total=total, page=page,
        per_page=per_page, form=form or {}, error=error,
        agents=count_by(db.session, agent_tags.c.tag_id, ids),
        jobs=count_by(db.session, job_tags.c.tag_id, ids),
        required=count_by(db.session, JobTagRequirement.tag_id, ids,
                          JobTagRequirement.negate.is_(False)))


@ui.get("/tags/")
@login_required
def tags():
    """The tags, with how many agents and jobs carry each."""
    return tags_page()


@ui.post("/tags/")
@login_required
def tags_create():
    """Create a tag (anyone logged in, as in the API)."""
    try:
        tag = catalog.create_tag(db.session, form_text("name", "Name"))
        name = tag.name
        db.session.commit()
    except ApiError as error:
        return refused(error, tags_page, form=request.form)
    flash(f"Tag {name!r} created.")
    return redirect(url_for("ui.tags"))


# -- software ------------------------------------------------------------


def split_versions(text):
    """Return the versions in comma-separated ``text``, empty ones left
    out."""
    return [part.strip() for part in text.split(",") if part.strip()]


def software_page(form=None, error=None, version_form=None):
    """Render the software list with the forms of an admin.

    ``version_form`` is ``(software_id, typed values)`` of a version form
    to show again.
    """
    page, per_page = pagination(PER_PAGE)
    programs, total = page_of(
        db.session,
        select(Software).options(selectinload(Software.versions))
        .order_by(Software.name),
        select(func.count()).select_from(Software), page, per_page)
    version_ids = [v.id for s in programs for v in s.versions]
    agents = count_by(db.session, agent_software.c.software_version_id,
                      version_ids)
    rows = [{"software": software,
             "versions": sorted(software.versions,
                                key=lambda v: catalog.version_sort_key(
                                    v.version))}
            for software in programs]
    return render_template(
        "catalog_software.html", rows=rows, agents=agents, total=total,
        page=page, per_page=per_page, admin=is_admin(), form=form or {},
        error=error, version_form=version_form or (None, {}))


@ui.get("/software/")
@login_required
def software():
    """Software with its versions and how many agents have each."""
    return software_page()


@ui.post("/software/")
@admin_required
def software_create():
    """Add software, with versions (admins)."""
    try:
        program = catalog.create_software(
            db.session, form_text("name", "Name"),
            split_versions(form_text("versions", "Versions")))
        name = program.name
        db.session.commit()
    except ApiError as error:
        return refused(error, software_page, form=request.form)
    flash(f"Software {name!r} added.")
    return redirect(url_for("ui.software"))


@ui.post("/software/<int:software_id>/versions/")
@admin_required
def software_versions_create(software_id):
    """Add a version to a program (admins)."""
    program = db.session.get(Software, software_id)
    if program is None:
        raise NotFound(f"no software with id {software_id}")
    try:
        version = form_text("version", "Version")
        catalog.add_software_version(db.session, program, version)
        name = program.name
        db.session.commit()
    except ApiError as error:
        return refused(error, software_page,
                       version_form=(software_id, request.form))
    flash(f"{name} {version.strip()} added.")
    return redirect(url_for("ui.software"))


# -- path maps -----------------------------------------------------------


def pathmap_form():
    """Read the path map form: empty fields are None."""
    return {"linux": form_optional("linux", "Linux folder"),
            "windows": form_optional("windows", "Windows folder"),
            "mac": form_optional("mac", "macOS folder"),
            "tag": form_optional("tag", "Tag")}


def pathmaps_page(form=None, error=None):
    """Render the path map list with the create form."""
    page, per_page = pagination(PER_PAGE)
    pathmaps, total = page_of(
        db.session,
        select(PathMap).options(joinedload(PathMap.tag)).order_by(PathMap.id),
        select(func.count()).select_from(PathMap), page, per_page)
    return render_template(
        "catalog_pathmaps.html", pathmaps=pathmaps, total=total, page=page,
        per_page=per_page, admin=is_admin(), form=form or {}, error=error,
        tag_names=tag_suggestions() if is_admin() else [])


@ui.get("/pathmaps/")
@login_required
def pathmaps():
    """The path maps: one shared folder on Linux, Windows and macOS."""
    return pathmaps_page()


@ui.post("/pathmaps/")
@admin_required
def pathmaps_create():
    """Create a path map (admins)."""
    try:
        pathmap = pathmap_service.create_pathmap(
            db.session, utcnow(), **pathmap_form())
        pathmap_id = pathmap.id
        db.session.commit()
    except ApiError as error:
        return refused(error, pathmaps_page, form=request.form)
    flash(f"Path map {pathmap_id} created.")
    return redirect(url_for("ui.pathmaps"))


def pathmap_edit_page(pathmap, form=None, error=None):
    """Render the edit form of ``pathmap``."""
    if form is None:
        form = {"linux": pathmap.linux or "",
                "windows": pathmap.windows or "",
                "mac": pathmap.mac or "",
                "tag": pathmap.tag.name if pathmap.tag else ""}
    return render_template("catalog_pathmap_edit.html", pathmap=pathmap,
                           form=form, error=error,
                           tag_names=tag_suggestions())


@ui.get("/pathmaps/<int:pathmap_id>/edit")
@admin_required
def pathmaps_edit(pathmap_id):
    """The edit form of one path map (admins)."""
    return pathmap_edit_page(
        pathmap_service.get_pathmap(db.session, pathmap_id))


@ui.post("/pathmaps/<int:pathmap_id>")
@admin_required
def pathmaps_update(pathmap_id):
    """Change a path map's folders or tag; an empty field clears it."""
    pathmap = pathmap_service.get_pathmap(db.session, pathmap_id)
    try:
        pathmap_service.update_pathmap(db.session, pathmap, pathmap_form())
        db.session.commit()
    except ApiError as error:
        db.session.rollback()
        return pathmap_edit_page(
            pathmap_service.get_pathmap(db.session, pathmap_id),
            form=request.form, error=error.message), error.status
    flash(f"Path map {pathmap_id} saved.")
    return redirect(url_for("ui.pathmaps"))


@ui.post("/pathmaps/<int:pathmap_id>/delete")
@admin_required
def pathmaps_delete(pathmap_id):
    """Delete a path map (admins)."""
    pathmap_service.delete_pathmap(
        db.session, pathmap_service.get_pathmap(db.session, pathmap_id))
    db.session.commit()
    flash(f"Path map {pathmap_id} deleted.")
    return redirect(url_for("ui.pathmaps"))
