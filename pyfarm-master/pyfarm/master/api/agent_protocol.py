"""
The agent protocol (agent-role tokens and admins).

::

    POST /api/v1/agents/                                 register
    POST /api/v1/agents/<id>/sync                        sync (pull work)
    PUT  /api/v1/agents/<id>/tasks/<task_id>             task update
    POST /api/v1/agents/<id>/assignments/<aid>/log       log chunk

An agent token may act only for the agents its user registered.
"""

import uuid
from typing import Annotated, Any, Literal

from flask import current_app, g, jsonify, request
from pydantic import AfterValidator, Field, field_validator

from pyfarm.core.enums import OperatingSystem, Role
from pyfarm.master.api import api
from pyfarm.master.api.agents import agent_to_dict
from pyfarm.master.auth import require_roles
from pyfarm.master.db import db, utcnow
from pyfarm.master.services import agents as agent_service
from pyfarm.master.services import tasks as task_service
from pyfarm.master.services.catalog import name_problem
from pyfarm.master.validation import (
    Count,
    Id,
    Positive,
    Strict,
    json_body,
    parse,
)

AGENT_ROLES = (Role.ADMIN, Role.AGENT)


def _no_nul(text):
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


def _uuid(text):
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ValueError("must be a UUID such as "
                         "'1b4e28ba-2fa1-11d2-883f-0016d3cca427'") from None


def Text(max_length, min_length=0):  # noqa: N802 - a type factory
    """A string type of bounded length without NUL characters."""
    return Annotated[str, Field(min_length=min_length,
                                max_length=max_length),
                     AfterValidator(_no_nul)]


def CatalogName(kind):  # noqa: N802 - a type factory
    """A tag, software or version name, stripped and checked by the
    catalog's rules (the scheduler compares versions as numbers)."""
    def check(text):
        text = text.strip()
        problem = name_problem(text, kind)
        if problem:
            raise ValueError(problem)
        return text
    return Annotated[str, AfterValidator(check)]


OsName = Literal[tuple(member.value for member in OperatingSystem)]
Megabytes = Annotated[int, Field(ge=0)]


class Gpu(Strict):
    """A GPU the agent has."""

    name: Text(255, 1)
    ram: Megabytes | None = None


class Disk(Strict):
    """A disk the agent has (sizes in MB)."""

    path: Text(4096, 1)
    total: Megabytes
    free: Megabytes


class InstalledSoftware(Strict):
    """A program version found on the agent."""

    software: CatalogName("software")
    version: CatalogName("version")


class ReportedJobType(Strict):
    """A job type installed on the agent (its parameters are a JSON
    Schema of the jobs' ``data``, checked by the service)."""

    name: CatalogName("jobtype")
    description: Text(65536) = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    software: CatalogName("software") | None = None


#: Most job types one registration may report.
MAX_JOBTYPES = 1000
#: Most files a task update may list, and the longest path.
MAX_OUTPUTS = 1000
MAX_OUTPUT_PATH = 4096


class Registration(Strict):
    """Body of ``POST /api/v1/agents/``."""

    id: Annotated[str, AfterValidator(_uuid)]
    hostname: Text(255, 1)
    os: OsName
    os_version: Text(255) = ""
    cpus: Positive
    ram: Positive
    free_ram: Count = 0
    gpus: list[Gpu] = []
    disks: list[Disk] = []
    tags: list[CatalogName("tag")] = []
    software: list[InstalledSoftware] = []
    version: Text(32) = ""
    jobtypes: Annotated[list[ReportedJobType],
                        Field(max_length=MAX_JOBTYPES)] = []

    @field_validator("jobtypes")
    @classmethod
    def _one_per_name(cls, jobtypes):
        seen = set()
        for item in jobtypes:
            if item.name in seen:
                raise ValueError(f"names the job type {item.name!r} twice")
            seen.add(item.name)
        return jobtypes


class Held(Strict):
    """A (task, attempt) pair the agent holds."""

    task: Id
    attempt: Id


class Sync(Strict):
    """Body of ``POST /api/v1/agents/<id>/sync``."""

    free_ram: Count | None = None
    running: list[Held] = []


class TaskUpdate(Strict):
    """Body of ``PUT /api/v1/agents/<id>/tasks/<task_id>``."""

    attempt: Id
    state: Literal["running", "done", "failed"]
    progress: Annotated[float, Field(ge=0, le=1)] | None = None
    error: Text(65536) | None = None
    outputs: Annotated[list[Text(MAX_OUTPUT_PATH, 1)],
                       Field(max_length=MAX_OUTPUTS)] | None = None


class LogChunk(Strict):
    """Body of ``POST /api/v1/agents/<id>/assignments/<aid>/log``."""

    offset: Annotated[int, Field(ge=0)]
    data: str


def settings():
    """Return the master's settings."""
    return current_app.config["PYFARM"]


@api.post("/agents/")
@require_roles(*AGENT_ROLES)
def agent_register():
    """Register an agent (201) or register it again (200)."""
    info = parse(Registration, json_body()).model_dump()
    agent, created, rejected = agent_service.register_agent(
        db.session, g.user, info, utcnow(), remote_addr=request.remote_addr)
    body = {**agent_to_dict(agent),
            "sync_interval": settings().sync_interval,
            "rejected_jobtypes": rejected}
    db.session.commit()
    return jsonify(body), 201 if created else 200


@api.post("/agents/<agent_id>/sync")
@require_roles(*AGENT_ROLES)
def agent_sync(agent_id):
    """Answer a sync: assignments, cancellations, when to call next."""
    body = parse(Sync, json_body())
    answer = agent_service.sync_agent(
        db.session, g.user, agent_id,
        [(held.task, held.attempt) for held in body.running], utcnow(),
        settings(), free_ram=body.free_ram)
    db.session.commit()
    return jsonify(answer)


@api.put("/agents/<agent_id>/tasks/<int:task_id>")
@require_roles(*AGENT_ROLES)
def agent_task_update(agent_id, task_id):
    """Apply an agent's update of a task (409: stop that process)."""
    body = parse(TaskUpdate, json_body())
    agent = agent_service.get_agent(db.session, g.user, agent_id)
    answer = task_service.report_task(
        db.session, agent.id, task_id, body.attempt, body.state, utcnow(),
        progress=body.progress, error=body.error, outputs=body.outputs)
    db.session.commit()
    return jsonify(answer)


@api.post("/agents/<agent_id>/assignments/<assignment_id>/log")
@require_roles(*AGENT_ROLES)
def agent_log_append(agent_id, assignment_id):
    """Append a chunk to an assignment's log; answer the log's size."""
    # A process may print NUL characters; the log is a file, not a column.
    body = parse(LogChunk, json_body(allow_nul=True))
    agent = agent_service.get_agent(db.session, g.user, agent_id)
    size = task_service.append_log(
        db.session, current_app.extensions["pyfarm.logstore"], agent.id,
        assignment_id, body.offset, body.data.encode("utf-8"))
    db.session.commit()
    return jsonify({"size": size})
