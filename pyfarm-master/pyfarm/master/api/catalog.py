"""
The catalog API: job types, software, tags and job queues.

Everyone with a person's role may read; job types, software and queues
are changed by admins, tags may be added by users too.
"""

from typing import Any

from flask import jsonify, url_for
from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from pyfarm.core.enums import Role
from pyfarm.master.api import api
from pyfarm.master.api.common import created, iso, page_of, pagination
from pyfarm.master.auth import PEOPLE, require_roles
from pyfarm.master.db import db, utcnow
from pyfarm.master.models import JobQueue, JobType, Software, Tag
from pyfarm.master.services import catalog
from pyfarm.master.validation import (
    Count,
    Int32,
    Positive,
    Strict,
    json_body,
    parse,
)

#: A count of agents, or null for no limit.
AgentCount = Positive | None


# -- JSON ----------------------------------------------------------------


def jobtype_json(jobtype):
    """Return the JSON of a :class:`JobType`."""
    return {"id": jobtype.id, "name": jobtype.name,
            "description": jobtype.description,
            "parameters": jobtype.parameters,
            "software": jobtype.software,
            "created_at": iso(jobtype.created_at)}


def software_json(software):
    """Return the JSON of a :class:`Software`, versions sorted."""
    return {"id": software.id, "name": software.name,
            "versions": catalog.sorted_versions(
                v.version for v in software.versions)}


def tag_json(tag):
    """Return the JSON of a :class:`Tag`."""
    return {"id": tag.id, "name": tag.name}


def jobqueue_json(queue):
    """Return the JSON of a :class:`JobQueue`."""
    return {"id": queue.id, "name": queue.name,
            "parent": queue.parent.name if queue.parent else None,
            "children": sorted(child.name for child in queue.children),
            "priority": queue.priority, "weight": queue.weight,
            "minimum_agents": queue.minimum_agents,
            "maximum_agents": queue.maximum_agents,
            "created_at": iso(queue.created_at)}


def listing(plural, model, to_json, *options):
    """Answer one page of ``model`` rows ordered by name."""
    page, per_page = pagination()
    rows, total = page_of(
        db.session, select(model).options(*options).order_by(model.name),
        select(func.count()).select_from(model), page, per_page)
    return jsonify({plural: [to_json(row) for row in rows], "total": total,
                    "page": page, "per_page": per_page})



# -- job types -----------------------------------------------------------


class JobTypeIn(Strict):
    """``POST /api/v1/jobtypes/``."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    software: str | None = None


@api.get("/jobtypes/")
@require_roles(*PEOPLE)
def list_jobtypes():
    """List job types."""
    return listing("jobtypes", JobType, jobtype_json)


@api.post("/jobtypes/")
@require_roles(Role.ADMIN)
def create_jobtype():
    """Create a job type; ``parameters`` is a JSON Schema for ``data``."""
    body = parse(JobTypeIn, json_body())
    jobtype = catalog.create_jobtype(
        db.session, body.name, utcnow(), description=body.description,
        parameters=body.parameters, software=body.software)
    return created(jobtype_json(jobtype),
                   url_for("api.get_jobtype", name=jobtype.name))


@api.get("/jobtypes/<name>")
@require_roles(*PEOPLE)
def get_jobtype(name):
    """Return one job type."""
    return jsonify(jobtype_json(catalog.get_jobtype(db.session, name)))


# -- software ------------------------------------------------------------


class SoftwareIn(Strict):
    """``POST /api/v1/software/``."""

    name: str
    versions: list[str] = Field(default_factory=list)


class VersionIn(Strict):
    """``POST /api/v1/software/<name>/versions/``."""

    version: str


@api.get("/software/")
@require_roles(*PEOPLE)
def list_software():
    """List software with its known versions."""
    return listing("software", Software, software_json,
                   selectinload(Software.versions))


@api.post("/software/")
@require_roles(Role.ADMIN)
def create_software():
    """Create software with its versions."""
    body = parse(SoftwareIn, json_body())
    software = catalog.create_software(db.session, body.name, body.versions)
    return created(software_json(software),
                   url_for("api.get_software", name=software.name))


@api.get("/software/<name>")
@require_roles(*PEOPLE)
def get_software(name):
    """Return one program and its versions."""
    return jsonify(software_json(catalog.get_software(db.session, name)))


@api.post("/software/<name>/versions/")
@require_roles(Role.ADMIN)
def add_software_version(name):
    """Add a version to a program; answers the program."""
    body = parse(VersionIn, json_body())
    software = catalog.get_software(db.session, name)
    catalog.add_software_version(db.session, software, body.version)
    return created(software_json(software),
                   url_for("api.get_software", name=software.name))


# -- tags ----------------------------------------------------------------


class TagIn(Strict):
    """``POST /api/v1/tags/``."""

    name: str


@api.get("/tags/")
@require_roles(*PEOPLE)
def list_tags():
    """List tags."""
    return listing("tags", Tag, tag_json)


@api.post("/tags/")
@require_roles(*PEOPLE)
def create_tag():
    """Create a tag."""
    body = parse(TagIn, json_body())
    tag = catalog.create_tag(db.session, body.name)
    return created(tag_json(tag), url_for("api.get_tag", name=tag.name))


@api.get("/tags/<name>")
@require_roles(*PEOPLE)
def get_tag(name):
    """Return one tag."""
    return jsonify(tag_json(catalog.get_tag(db.session, name)))


# -- job queues ----------------------------------------------------------


class JobQueueIn(Strict):
    """``POST /api/v1/jobqueues/``."""

    name: str
    parent: str | None = None
    priority: Int32 = 0
    weight: Count = 1
    minimum_agents: AgentCount = None
    maximum_agents: AgentCount = None


class JobQueuePatch(Strict):
    """``PATCH /api/v1/jobqueues/<name>``: only the fields sent change."""

    name: str = None
    parent: str | None = None
    priority: Int32 = None
    weight: Count = None
    minimum_agents: AgentCount = None
    maximum_agents: AgentCount = None


QUEUE_OPTIONS = (selectinload(JobQueue.parent),
                 selectinload(JobQueue.children))


@api.get("/jobqueues/")
@require_roles(*PEOPLE)
def list_jobqueues():
    """List job queues."""
    return listing("jobqueues", JobQueue, jobqueue_json, *QUEUE_OPTIONS)


@api.post("/jobqueues/")
@require_roles(Role.ADMIN)
def create_jobqueue():
    """Create a job queue."""
    body = parse(JobQueueIn, json_body())
    queue = catalog.create_jobqueue(
        db.session, body.name, utcnow(), parent=body.parent,
        priority=body.priority, weight=body.weight,
        minimum_agents=body.minimum_agents,
        maximum_agents=body.maximum_agents)
    db.session.refresh(queue)
    return created(jobqueue_json(queue),
                   url_for("api.get_jobqueue", name=queue.name))


@api.get("/jobqueues/<name>")
@require_roles(*PEOPLE)
def get_jobqueue(name):
    """Return one job queue."""
    return jsonify(jobqueue_json(catalog.get_jobqueue(db.session, name)))


@api.patch("/jobqueues/<name>")
@require_roles(Role.ADMIN)
def update_jobqueue(name):
    """Change a job queue's name, parent, priority, weight or limits."""
    body = parse(JobQueuePatch, json_body())
    queue = catalog.get_jobqueue(db.session, name)
    catalog.update_jobqueue(db.session, queue,
                            body.model_dump(exclude_unset=True))
    db.session.commit()
    return jsonify(jobqueue_json(queue))


@api.delete("/jobqueues/<name>")
@require_roles(Role.ADMIN)
def delete_jobqueue(name):
    """Delete a job queue that no unfinished job and no sub-queue uses."""
    queue = catalog.get_jobqueue(db.session, name)
    catalog.delete_jobqueue(db.session, queue)
    db.session.commit()
    return "", 204
