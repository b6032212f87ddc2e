"""
Jobs: submit, change, pause and resume, delete, rerun and cancel.

Every function takes the session and ``now`` and leaves committing to the
caller. Functions acting on an existing job lock its row (``SELECT ...
FOR UPDATE`` on PostgreSQL) so that a concurrent roll-up from an agent's
task update cannot undo a pause or a cancel.
"""

import re
from typing import Annotated, Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from referencing.exceptions import Unresolvable
from sqlalchemy import (
    BigInteger,
    Integer,
    cast,
    delete,
    insert,
    literal,
    select,
    tuple_,
    update,
)

from pyfarm.core.enums import ACTIVE_TASK_STATES, FINAL_STATES, WorkState
from pyfarm.core.framerange import FrameRangeError, validate
from pyfarm.core.logger import getLogger
from pyfarm.core.versions import in_range, version_key
from pyfarm.master.auth import can_change
from pyfarm.master.errors import BadRequest, Conflict, Forbidden, NotFound
from pyfarm.master.models import (
    AgentJobFailure,
    Job,
    JobSoftwareRequirement,
    JobTagRequirement,
    Software,
    Task,
    TaskAttempt,
    User,
)
from pyfarm.master.models.task import ATTEMPT_CANCELLED
from pyfarm.master.services import catalog
from pyfarm.master.services.rollup import rollup_job
from pyfarm.master.validation import Count, Id, Int32, Positive, Strict

logger = getLogger("master.services.jobs")

Name = Annotated[str, StringConstraints(
    strip_whitespace=True, min_length=1, max_length=64)]
Version = Name
QueueName = Annotated[str, StringConstraints(
    strip_whitespace=True, min_length=1, max_length=128)]


def _not_blank(text):
    if not text.strip():
        raise ValueError("must not be blank")
    return text


Title = Annotated[str, StringConstraints(min_length=1, max_length=255),
                  AfterValidator(_not_blank)]


def _environ_name(name):
    if not name or "=" in name:
        raise ValueError(f"an environment variable name must not be empty "
                         f"or contain '=', got {name!r}")
    return name


EnvironName = Annotated[str, AfterValidator(_environ_name)]


class TagRequirementSpec(Strict):
    """A tag an agent must have, or with ``negate`` must not have."""

    tag: Name
    negate: bool = False


class SoftwareRequirementSpec(Strict):
    """A program an agent must have, optionally in a version range."""

    software: Name
    min_version: Version | None = None
    max_version: Version | None = None

    @model_validator(mode="after")
    def _versions_in_order(self):
        for name in ("min_version", "max_version"):
            value = getattr(self, name)
            if value is not None and not version_key(value):
                raise ValueError(f"{name} {value!r} holds no number or "
                                 f"letter")
        low, high = self.min_version, self.max_version
        if low is not None and high is not None and not in_range(
                low, maximum=high):
            raise ValueError(f"min_version {low!r} is above max_version "
                             f"{high!r}")
        return self


class JobSpec(Strict):
    """A job submission (``POST /api/v1/jobs/``)."""

    title: Title
    jobtype: Name
    jobtype_version: Positive = 1
    start: Int32
    # ``by`` before ``end``: the frame range is checked on ``end``.
    by: Positive = 1
    end: Int32
    batch: Positive = 1
    priority: Int32 = 0
    weight: Count = 1
    minimum_agents: Positive | None = None
    maximum_agents: Positive | None = None
    requeue: Count = 3
    cpus: Positive = 1
    ram: Count = 0
    data: dict[str, Any] = Field(default_factory=dict)
    environ: dict[EnvironName, str] = Field(default_factory=dict)
    notes: str = ""
    tags: list[Name] = Field(default_factory=list)
    tag_requirements: list[TagRequirementSpec] = Field(default_factory=list)
    software_requirements: list[SoftwareRequirementSpec] = Field(
        default_factory=list)
    parents: list[Id] = Field(default_factory=list)
    jobqueue: QueueName | None = None
    notified_users: list[Name] = Field(default_factory=list)

    @field_validator("end")
    @classmethod
    def _frame_range(cls, end, info):
        if "start" in info.data and "by" in info.data:
            try:
                validate(info.data["start"], end, info.data["by"])
            except FrameRangeError as error:
                raise ValueError(str(error)) from None
        return end

    @field_validator("maximum_agents")
    @classmethod
    def _agents_in_order(cls, maximum, info):
        minimum = info.data.get("minimum_agents")
        if None not in (minimum, maximum) and maximum < minimum:
            raise ValueError(f"must not be less than minimum_agents "
                             f"({minimum})")
        return maximum

    @field_validator("tag_requirements")
    @classmethod
    def _one_per_tag(cls, items):
        _no_duplicates("tag", [item.tag for item in items])
        return items

    @field_validator("software_requirements")
    @classmethod
    def _one_per_software(cls, items):
        _no_duplicates("software", [item.software for item in items])
        return items


class JobChanges(Strict):
    """A change to a job (``PATCH /api/v1/jobs/<id>``).

    Fields left out are not changed; ``null`` is not a value of any.
    """

    title: Title = None
    priority: Int32 = None
    weight: Count = None
    notes: str = None
    state: str = None


#: The states a PATCH may ask for: pause, or resume (back to the queue).
SETTABLE_STATES = (WorkState.PAUSED, WorkState.QUEUED)


def _no_duplicates(what, names):
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"names the {what} {name!r} twice")
        seen.add(name)


# -- submission ------------------------------------------------------------

def submit_job(session, user, spec, now):
    """Create the job described by the :class:`JobSpec` ``spec``.

    ``user`` becomes the owner. The tasks, one per frame, go in with one
    bulk insert. Unknown job types, software, parents, queues and users
    are :class:`NotFound`; data not matching the job type's schema is
    :class:`BadRequest` naming ``data.<path>``.
    """
    jobtype = catalog.get_jobtype(session, spec.jobtype)
    check_data(jobtype, spec.data)
    job = Job(
        title=spec.title, jobtype=jobtype,
        jobtype_version=spec.jobtype_version, state=WorkState.QUEUED,
        start=spec.start, end=spec.end, by=spec.by, batch=spec.batch,
        priority=spec.priority, weight=spec.weight,
        minimum_agents=spec.minimum_agents,
        maximum_agents=spec.maximum_agents, requeue=spec.requeue,
        cpus=spec.cpus, ram=spec.ram, data=spec.data, environ=spec.environ,
        notes=spec.notes, user_id=user.id, created_at=now, updated_at=now,
        **_references(session, spec))
    session.add(job)
    session.flush()
    count = insert_tasks(session, job, now)
    logger.info("job %d %r submitted by %s with %d tasks", job.id,
                job.title, user.name, count)
    return job


def _references(session, spec):
    """Resolve the names and ids ``spec`` refers to into related rows."""
    required = catalog.ensure_tags(
        session, [item.tag for item in spec.tag_requirements],
        "tag_requirements")
    software = _find(
        session, Software.name,
        [item.software for item in spec.software_requirements],
        "software_requirements", "unknown software")
    parents = _find(session, Job.id, spec.parents, "parents",
                    "no job with id")
    users = _find(session, User.name, spec.notified_users,
                  "notified_users", "no user named")
    return {
        "jobqueue": catalog.get_jobqueue(session, spec.jobqueue, "jobqueue")
        if spec.jobqueue else None,
        "parents": list(parents.values()),
        "notified_users": list(users.values()),
        "tags": catalog.ensure_tags(session, spec.tags),
        "tag_requirements": [
            JobTagRequirement(tag=tag, negate=item.negate)
            for item, tag in zip(spec.tag_requirements, required,
                                 strict=True)],
        "software_requirements": [
            JobSoftwareRequirement(
                software=software[item.software],
                min_version=item.min_version, max_version=item.max_version)
            for item in spec.software_requirements],
    }


def insert_tasks(session, job, now):
    """Insert one queued task per frame of ``job``; return how many.

    One ``INSERT ... SELECT`` whose frames the database generates (a
    recursive CTE, on SQLite and PostgreSQL alike): 100,000 frames cost
    one statement and no Python per row. Measured on 100,000 frames, the
    ORM bulk insert of a list of rows took 4 s on SQLite and 8 s on
    PostgreSQL, this takes 0.5 s and 2 s.
    """
    # BIGINT while counting: the step after the last frame may pass the
    # largest INTEGER, which PostgreSQL refuses even though it is dropped.
    frame = cast(literal(job.start), BigInteger).label("frame")
    frames = select(frame).cte("frames", recursive=True)
    following = cast(frames.c.frame + job.by, BigInteger)
    frames = frames.union_all(
        select(following.label("frame")).where(following <= job.end))
    timestamp = literal(now, Task.created_at.type)
    columns = {
        "job_id": literal(job.id), "frame": cast(frames.c.frame, Integer),
        "state": literal(str(WorkState.QUEUED)), "attempt": literal(0),
        "failures": literal(0), "progress": literal(0.0),
        "created_at": timestamp, "updated_at": timestamp}
    session.execute(insert(Task).from_select(
        list(columns), select(*columns.values())))
    return len(range(job.start, job.end + 1, job.by))


def check_data(jobtype, data):
    """Validate ``data`` against the job type's parameter schema.

    Raises :class:`BadRequest` naming the first bad place as
    ``data.argv[0]``; a broken schema in the catalog is a
    :class:`Conflict` an admin must fix.
    """
    schema = jobtype.parameters or {}
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise Conflict(
            f"the parameters schema of job type {jobtype.name!r} is not a "
            f"valid JSON Schema ({error.message}); an admin must fix the "
            f"job type") from None
    try:
        errors = sorted(Draft202012Validator(schema).iter_errors(data),
                        key=lambda item: list(item.absolute_path))
    except (Unresolvable, RecursionError):
        raise Conflict(
            f"the parameters schema of job type {jobtype.name!r} has a "
            f"$ref that cannot be followed ("
            f"{catalog.unusable_references(schema) or 'for this data'}); "
            f"an admin must fix the job type") from None
    if errors:
        raise BadRequest(_describe_data_error(errors[0]),
                         problems=[_describe_data_error(e) for e in errors])


def _describe_data_error(error):
    """Turn one jsonschema error into a sentence naming ``data.<path>``."""
    path = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value
                   if name not in error.instance]
        if missing:
            return f"field {data_path(path + missing[:1])!r} is required"
    if error.validator == "additionalProperties" \
            and error.validator_value is False \
            and isinstance(error.instance, dict):
        unknown = _unknown_properties(error.schema, error.instance)
        if unknown:
            names = ", ".join(repr(data_path(path + [name]))
                              for name in unknown)
            return f"unknown field {names}"
    return f"field {data_path(path)!r}: {error.message}"


def _unknown_properties(schema, instance):
    """Return the keys of ``instance`` that neither ``properties`` nor
    ``patternProperties`` of ``schema`` allow."""
    known = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    unknown = []
    for name in instance:
        if name in known:
            continue
        try:
            if any(re.search(pattern, name) for pattern in patterns):
                continue
        except re.error:
            # jsonschema compiles ECMA-262 patterns; one Python cannot
            # read leaves the field unnamed (the generic message stays).
            return []
        unknown.append(name)
    return unknown


def data_path(parts):
    """Render a JSON path like ``["argv", 0]`` as ``data.argv[0]``."""
    text = "data"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _find(session, column, keys, field, what):
    """Return ``{key: row}`` of the rows whose ``column`` is in ``keys``.

    Raises :class:`NotFound` naming ``field`` and every missing key.
    """
    keys = list(dict.fromkeys(keys))
    if not keys:
        return {}
    found = {getattr(row, column.key): row for row in session.execute(
        select(column.class_).where(column.in_(keys))).scalars()}
    missing = [repr(key) for key in keys if key not in found]
    if missing:
        raise NotFound(f"field {field!r}: {what} {', '.join(missing)}")
    return found


# -- changes to existing jobs ----------------------------------------------

def job_for_change(session, job_id, user):
    """Return job ``job_id`` locked for a change ``user`` may make.

    Raises :class:`NotFound` or :class:`Forbidden` (users change only their
    own jobs, admins any).
    """
    job = session.get(Job, job_id, with_for_update=True)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    if not can_change(user, job.user_id):
        raise Forbidden(f"job {job_id} belongs to another user; only its "
                        f"owner or an admin may change it")
    return job


def update_job(session, job_id, user, changes, now):
    """Apply the :class:`JobChanges` ``changes`` to job ``job_id``.

    ``state`` pauses (``"paused"``, from queued or running) or resumes
    (``"queued"``: the job's state is then rolled up from its tasks).
    """
    job = job_for_change(session, job_id, user)
    fields = changes.model_fields_set
    if not fields:
        raise BadRequest("nothing to change: send one or more of "
                         + ", ".join(JobChanges.model_fields))
    if "state" in fields:
        set_state(session, job, changes.state, now)
    for name in ("title", "priority", "weight", "notes"):
        if name in fields:
            setattr(job, name, getattr(changes, name))
    job.updated_at = now
    return job


def set_state(session, job, state, now):
    """Pause (``"paused"``) or resume (``"queued"``) ``job``."""
    if state not in SETTABLE_STATES:
        raise BadRequest(
            f"field 'state' may only be 'paused' (pause) or 'queued' "
            f"(resume), got {state!r}")
    if job.state in FINAL_STATES:
        raise Conflict(
            f"job {job.id} is {job.state}; it cannot be paused or resumed "
            f"(rerun it with POST /api/v1/jobs/{job.id}/rerun)")
    if state == WorkState.PAUSED:
        job.state = WorkState.PAUSED
        logger.info("job %d paused", job.id)
    elif job.state == WorkState.PAUSED:
        job.state = WorkState.QUEUED
        rollup_job(session, job, now)
        logger.info("job %d resumed: %s", job.id, job.state)


def delete_job(session, job_id, user):
    """Delete job ``job_id`` with its tasks and attempts.

    Refused (:class:`Conflict`) while jobs that are not done depend on it.
    Agents running its tasks learn on their next sync that the tasks are
    gone. The task logs are kept on disk on purpose: deleting them is left
    to a later clean-up of the log store.
    """
    job = job_for_change(session, job_id, user)
    waiting = sorted((child for child in job.children
                      if child.state != WorkState.DONE),
                     key=lambda child: child.id)
    if waiting:
        names = ", ".join(f"{child.id} ({child.title!r})"
                          for child in waiting)
        raise Conflict(f"job {job_id} cannot be deleted: jobs that are not "
                       f"done depend on it: {names}")
    session.delete(job)
    session.flush()
    logger.info("job %d deleted by %s", job_id, user.name)


def rerun_job(session, job_id, user, failed_only, now):
    """Put tasks of job ``job_id`` back in the queue.

    With ``failed_only`` the failed tasks, else every task not held by an
    agent (done ones too). Their failures, progress, agent and error are
    reset; the agents' failure records for the job are forgiven. A paused
    job stays paused.
    """
    job = job_for_change(session, job_id, user)
    if failed_only:
        states = [WorkState.FAILED]
    else:
        states = [WorkState.QUEUED, WorkState.DONE, WorkState.FAILED]
    result = session.execute(
        update(Task)
        .where(Task.job_id == job.id, Task.state.in_(states))
        .values(state=WorkState.QUEUED, failures=0, progress=0.0,
                agent_id=None, assignment_id=None, last_error=None,
                last_failed_agent_id=None, assigned_at=None,
                started_at=None, finished_at=None, updated_at=now))
    session.execute(
        delete(AgentJobFailure).where(AgentJobFailure.job_id == job.id))
    rollup_job(session, job, now)
    job.updated_at = now
    logger.info("job %d: %d tasks requeued by %s", job.id,
                result.rowcount, user.name)
    return job


def cancel_job(session, job_id, user, now):
    """Fail every task of job ``job_id`` that has not ended.

    The current attempts of tasks held by agents become ``cancelled``; the
    agents learn it on their next sync (or from a 409 on their next
    update). Tasks that already failed keep their own error. The job rolls
    up to ``failed`` (``done`` when every task was done), even if paused.
    """
    job = job_for_change(session, job_id, user)
    open_states = [WorkState.QUEUED, *ACTIVE_TASK_STATES]
    # (task, attempt) IN (...): SQLite scans every attempt of every job
    # for a correlated EXISTS, but looks these pairs up in the index.
    held = select(Task.id, Task.attempt).where(
        Task.job_id == job.id, Task.state.in_(ACTIVE_TASK_STATES))
    session.execute(
        update(TaskAttempt)
        .where(tuple_(TaskAttempt.task_id, TaskAttempt.attempt).in_(held),
               TaskAttempt.state.in_(ACTIVE_TASK_STATES))
        .values(state=ATTEMPT_CANCELLED, finished_at=now))
    result = session.execute(
        update(Task)
        .where(Task.job_id == job.id, Task.state.in_(open_states))
        .values(state=WorkState.FAILED, agent_id=None, assignment_id=None,
                last_error=f"cancelled by {user.name}", finished_at=now,
                updated_at=now))
    if job.state == WorkState.PAUSED:
        job.state = WorkState.QUEUED
    rollup_job(session, job, now)
    job.updated_at = now
    logger.info("job %d cancelled by %s: %d tasks", job.id, user.name,
                result.rowcount)
    return job
