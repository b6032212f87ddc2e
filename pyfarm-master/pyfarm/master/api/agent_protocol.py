"""
The agent protocol (agent-role tokens and admins).

::

    POST /api/v1/agents/                                 register
    POST /api/v1/agents/<id>/sync                        sync (pull work)
    PUT  /api/v1/agents/<id>/tasks/<task_id>             task update
    POST /api/v1/agents/<id>/assignments/<aid>/log       log chunk
    POST /api/v1/agents/<id>/updates                     all of these at once

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
from pyfarm.master.db import db, retry_transaction, utcnow
from pyfarm.master.errors import ApiError, BadRequest, NotFound
from pyfarm.master.services import agents as agent_service
from pyfarm.master.services import tasks as task_service
from pyfarm.master.services.catalog import name_problem
from pyfarm.master.services.rollup import settle_after_commit
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


#: Most assignments one prefetch may ask for.
MAX_PREFETCH = 1000


class Prefetch(Strict):
    """Assignments of one job an agent asks for beyond its free capacity,
    to queue them (granted within the master's ``prefetch_limit``)."""

    job: Id
    assignments: Annotated[int, Field(ge=0, le=MAX_PREFETCH)]


class Sync(Strict):
    """Body of ``POST /api/v1/agents/<id>/sync``."""

    free_ram: Count | None = None
    running: list[Held] = []
    prefetch: Prefetch | None = None

    def prefetch_pair(self):
        """Return ``(job, assignments)`` of the prefetch, or None."""
        if self.prefetch is None:
            return None
        return self.prefetch.job, self.prefetch.assignments


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


class BatchTaskUpdate(TaskUpdate):
    """A task update inside ``POST /api/v1/agents/<id>/updates``."""

    task: Id


class BatchLogChunk(LogChunk):
    """A log chunk inside ``POST /api/v1/agents/<id>/updates``."""

    assignment: Annotated[str, AfterValidator(_uuid)]


#: Most task updates and log chunks one batch may carry.
MAX_BATCH_UPDATES = 1000
MAX_BATCH_LOGS = 100


class Batch(Strict):
    """Body of ``POST /api/v1/agents/<id>/updates``.

    The items are checked one by one (:func:`parse_item`), so that one
    malformed item is answered 400 on its own.
    """

    logs: Annotated[list[Any], Field(max_length=MAX_BATCH_LOGS)] = []
    updates: Annotated[list[Any],
                       Field(max_length=MAX_BATCH_UPDATES)] = []
    sync: Sync | None = None


#: ``code`` of the 404 answering an agent the master does not know, so
#: that an agent tells it from a 404 of a master without the endpoint.
UNKNOWN_AGENT = "unknown_agent"


def parse_item(model, payload, keys):
    """Return ``(item, answer)``: the validated ``payload`` and None, or
    None and the item's 400 answer (naming it by ``keys`` when it can)."""
    if not isinstance(payload, dict):
        return None, {"error": "each item must be a JSON object",
                      "status": BadRequest.status}
    try:
        return parse(model, payload), None
    except BadRequest as error:
        answer = {key: payload[key] for key in keys if key in payload}
        return None, {**answer, **error.to_dict(), "status": error.status}


def known_agent(agent_id, lock=False):
    """Return the agent the token may act for; its 404 carries ``code``."""
    try:
        return agent_service.get_agent(db.session, g.user, agent_id,
                                       lock=lock)
    except NotFound as error:
        raise NotFound(error.message, code=UNKNOWN_AGENT,
                       **error.extra) from None


def settings():
    """Return the master's settings."""
    return current_app.config["PYFARM"]


@api.post("/agents/")
@require_roles(*AGENT_ROLES)
@retry_transaction()
def agent_register():
    """Register an agent (201) or register it again (200)."""
    info = parse(Registration, json_body()).model_dump()
    agent, created, rejected = agent_service.register_agent(
        db.session, g.user, info, utcnow(), remote_addr=request.remote_addr)
    body = {**agent_to_dict(agent),
            "sync_interval": settings().sync_interval,
            "prefetch_limit": settings().prefetch_limit,
            "rejected_jobtypes": rejected}
    db.session.commit()
    return jsonify(body), 201 if created else 200


@api.post("/agents/<agent_id>/sync")
@require_roles(*AGENT_ROLES)
@retry_transaction()
def agent_sync(agent_id):
    """Answer a sync: assignments, cancellations, when to call next."""
    body = parse(Sync, json_body())
    known_agent(agent_id)
    answer = agent_service.sync_agent(
        db.session, g.user, agent_id,
        [(held.task, held.attempt) for held in body.running], utcnow(),
        settings(), free_ram=body.free_ram, prefetch=body.prefetch_pair())
    db.session.commit()
    return jsonify(answer)


@api.put("/agents/<agent_id>/tasks/<int:task_id>")
@require_roles(*AGENT_ROLES)
@retry_transaction()
def agent_task_update(agent_id, task_id):
    """Apply an agent's update of a task (409: stop that process)."""
    body = parse(TaskUpdate, json_body())
    agent = known_agent(agent_id)
    now, jobs = utcnow(), set()
    answer = task_service.report_task(
        db.session, agent.id, task_id, body.attempt, body.state, now,
        progress=body.progress, error=body.error, outputs=body.outputs,
        rollup=jobs)
    db.session.commit()
    settle_after_commit(db.session, jobs, now)
    return jsonify(answer)


@api.post("/agents/<agent_id>/assignments/<assignment_id>/log")
@require_roles(*AGENT_ROLES)
@retry_transaction()
def agent_log_append(agent_id, assignment_id):
    """Append a chunk to an assignment's log; answer the log's size."""
    # A process may print NUL characters; the log is a file, not a column.
    body = parse(LogChunk, json_body(allow_nul=True))
    agent = known_agent(agent_id)
    size = task_service.append_log(
        db.session, current_app.extensions["pyfarm.logstore"], agent.id,
        assignment_id, body.offset, body.data.encode("utf-8"))
    db.session.commit()
    return jsonify({"size": size})


def append_chunks(agent, chunks):
    """Store the log chunks of a batch; return ``(answers, refused)``."""
    store = current_app.extensions["pyfarm.logstore"]
    known = task_service.known_assignments(
        db.session, agent.id,
        [chunk.assignment for chunk, _ in chunks if chunk is not None])
    logs, refused = [], False
    for chunk, problem in chunks:
        if problem is not None:
            refused = True
            logs.append(problem)
            continue
        item = {"assignment": chunk.assignment}
        try:
            item["size"] = task_service.append_log(
                db.session, store, agent.id, chunk.assignment, chunk.offset,
                chunk.data.encode("utf-8"), known=known)
            item["status"] = 200
        except ApiError as error:
            refused = True
            item.update(error.to_dict(), status=error.status)
        logs.append(item)
    return logs, refused


def is_plain_done(update):
    """Whether a batch's update is a ``done`` with nothing but its
    attempt (applied in bulk)."""
    return update is not None and update.state == "done" \
        and update.outputs is None


def apply_updates(agent, items, refused, now):
    """Apply the task updates of a batch; return ``(answers, ended pairs,
    ids of the jobs to settle)``.

    Plain ``done`` updates go in bulk
    (:func:`~pyfarm.master.services.tasks.report_done_many`), the others
    one by one, each answered on its own.
    """
    jobs, ended = set(), set()
    bulk = [] if refused else [(update.task, update.attempt)
                               for update, _ in items
                               if is_plain_done(update)]
    done = iter(task_service.report_done_many(
        db.session, agent.id, bulk, now, jobs))
    updates = []
    for update, problem in items:
        if problem is not None:
            updates.append(problem)
            continue
        item = {"task": update.task, "attempt": update.attempt}
        if refused:
            # The agent sends a final state only after the output before
            # it; a refused chunk may be that output.
            item.update(status=424, error="not applied: a log chunk of "
                        "this request was refused; send it again after "
                        "the log")
            updates.append(item)
            continue
        try:
            if is_plain_done(update):
                answer = next(done)
                if isinstance(answer, ApiError):
                    raise answer
            else:
                answer = task_service.report_task(
                    db.session, agent.id, update.task, update.attempt,
                    update.state, now, progress=update.progress,
                    error=update.error, outputs=update.outputs,
                    rollup=jobs)
        except ApiError as error:  # raised before the update changed rows
            item.update(error.to_dict(), status=error.status)
        else:
            item.update(answer, status=200)
            if update.state in task_service.ENDING_STATES:
                ended.add((update.task, update.attempt))
        updates.append(item)
    return updates, ended, jobs


@api.post("/agents/<agent_id>/updates")
@require_roles(*AGENT_ROLES)
@retry_transaction()
def agent_batch(agent_id):
    """Apply log chunks, then task updates, then a sync, in one transaction;
    answer each item on its own."""
    body = parse(Batch, json_body(allow_nul=True))
    now = utcnow()
    # The agent's row first: a sync locks it before the tasks, so the
    # updates must not lock those before it (no deadlock). No job is
    # locked: the jobs are rolled up after the commit.
    agent = known_agent(agent_id, lock=True)
    chunks = [parse_item(BatchLogChunk, item, ("assignment",))
              for item in body.logs]
    items = [parse_item(BatchTaskUpdate, item, ("task", "attempt"))
             for item in body.updates]
    logs, refused = append_chunks(agent, chunks)
    updates, ended, jobs = apply_updates(agent, items, refused, now)
    answer = {"logs": logs, "updates": updates, "sync": None}
    if body.sync is not None:
        # What this request just ended is no longer held.
        held = [(item.task, item.attempt) for item in body.sync.running
                if (item.task, item.attempt) not in ended]
        answer["sync"] = agent_service.sync_agent(
            db.session, g.user, agent_id, held, now, settings(),
            free_ram=body.sync.free_ram, prefetch=body.sync.prefetch_pair())
    db.session.commit()
    settle_after_commit(db.session, jobs, now)
    return jsonify(answer)
