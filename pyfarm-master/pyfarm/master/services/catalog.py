"""
The catalog: job types, software and its versions, tags and job queues.

These are the names jobs and agents refer to. Look-ups by name raise
:class:`~pyfarm.master.errors.NotFound`; creating a name that is taken
raises :class:`~pyfarm.master.errors.Conflict`. ``ensure_*`` functions
create what is missing and are safe when two requests race to create
the same name.
"""

import re

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema_specifications import REGISTRY as SPECIFICATIONS
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from pyfarm.core.enums import FINAL_STATES
from pyfarm.core.logger import getLogger
from pyfarm.core.versions import version_key
from pyfarm.master.errors import BadRequest, Conflict, NotFound
from pyfarm.master.models import (
    Job,
    JobQueue,
    JobType,
    Software,
    SoftwareVersion,
    Tag,
)

logger = getLogger("master.catalog")

#: Longest name of each kind (the column sizes).
NAME_LENGTH = {"jobtype": 64, "software": 64, "tag": 64, "jobqueue": 128,
               "version": 64}
#: Characters a name may not hold: it appears in URLs and in lists.
_BAD_NAME = re.compile(r"[/\x00-\x1f\x7f]")


def name_problem(name, kind):
    """Return why the stripped ``name`` cannot be a name of ``kind`` (a
    key of :data:`NAME_LENGTH`), or None when it can."""
    longest = NAME_LENGTH[kind]
    if not name or len(name) > longest:
        return f"must have 1 to {longest} characters"
    if _BAD_NAME.search(name):
        return "may not contain '/' or control characters"
    if kind == "version" and not version_key(name):
        return "must contain a number or a letter (it is a version)"
    return None


def check_name(value, field, kind):
    """Return ``value`` stripped, or raise naming ``field`` if unusable.

    ``kind`` is a key of :data:`NAME_LENGTH`.
    """
    if not isinstance(value, str):
        raise BadRequest(f"field {field!r} must be a string, got "
                         f"{value!r}")
    problem = name_problem(value.strip(), kind)
    if problem:
        raise BadRequest(f"field {field!r} {problem}, got {value!r}")
    return value.strip()


def check_version(value, field="version"):
    """Return a software version string or raise naming ``field``."""
    return check_name(value, field, "version")


def version_sort_key(version):
    """Sort key of a version string; one without numbers sorts first."""
    try:
        return (version_key(version), version)
    except ValueError:
        return ((), version)


def sorted_versions(versions):
    """Sort version strings numerically (``"9.5"`` before ``"10.0"``)."""
    return sorted(versions, key=version_sort_key)


def _insert_once(session, row):
    """Insert ``row`` in a savepoint; return False if it already exists.

    A concurrent request may have inserted the same unique name between
    our look-up and our insert; the savepoint keeps the transaction.
    """
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        logger.debug("%r was created concurrently", row)
        return False
    return True


# -- job types -----------------------------------------------------------


def check_json_schema(schema, field="parameters"):
    """Raise :class:`BadRequest` unless ``schema`` is a valid JSON Schema.

    Checked against the 2020-12 meta-schema; the message names the
    place in the schema that is wrong.
    """
    if not isinstance(schema, dict):
        raise BadRequest(f"field {field!r} must be a JSON Schema object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        where = ".".join([field, *(str(p) for p in error.path)])
        raise BadRequest(f"field {where!r} is not a valid JSON Schema: "
                         f"{error.message}") from None
    problem = unusable_references(schema)
    if problem:
        raise BadRequest(f"field {field!r}: {problem}")


#: Instances a schema is tried on to find references that cannot work.
_TRIAL_INSTANCES = ({}, [], "", 0, None)


def unusable_references(schema):
    """Return why a valid ``schema``'s ``$ref`` cannot be followed (it
    points nowhere, to another document, or only to itself), or None.

    The meta-schema does not check references; validating would fail on
    every job submitted with the job type.
    """
    # The registry jsonschema validates with: it knows the meta-schemas.
    resolver = SPECIFICATIONS.with_resource(
        "", DRAFT202012.create_resource(schema)).resolver()
    try:
        for reference in _references(schema):
            resolver.lookup(reference)
        validator = Draft202012Validator(schema)
        for instance in _TRIAL_INSTANCES:
            for _ in validator.iter_errors(instance):
                pass
    except Unresolvable as error:
        return f"a $ref cannot be resolved ({error})"
    except RecursionError:
        return "a $ref refers to itself without end"
    return None


def _references(schema):
    """Yield the ``$ref`` values of ``schema`` that are relative to its
    root (sub-schemas with their own ``$id`` are left out)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if node is not schema and "$id" in node:
                continue
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            stack.extend(node.values())


def get_jobtype(session, name):
    """Return the job type called ``name`` or raise :class:`NotFound`."""
    jobtype = session.execute(
        select(JobType).where(JobType.name == name)).scalar()
    if jobtype is None:
        raise NotFound(f"no job type named {name!r}")
    return jobtype


def create_jobtype(session, name, now, description="", parameters=None,
                   software=None):
    """Create a job type whose jobs' ``data`` must match ``parameters``.

    ``software`` names the program it runs, or is None.
    """
    name = check_name(name, "name", "jobtype")
    parameters = {} if parameters is None else parameters
    check_json_schema(parameters)
    if software is not None:
        software = check_name(software, "software", "software")
    if session.execute(select(JobType.id).where(JobType.name == name)) \
            .first() or not _insert_once(session, JobType(
                name=name, description=description or "",
                parameters=parameters, software=software, created_at=now)):
        raise Conflict(f"a job type named {name!r} already exists")
    return get_jobtype(session, name)


#: The fields of a job type an agent reports, as they are stored.
REPORTED_JOBTYPE_FIELDS = ("description", "parameters", "software")


def check_reported_jobtypes(reported, field="jobtypes"):
    """Raise :class:`BadRequest` unless every job type an agent reported
    has a valid ``parameters`` schema; the message names
    ``jobtypes[<index>].parameters``.

    ``reported`` is a list of dicts with ``name``, ``description``,
    ``parameters`` and ``software``, whose names and types were checked.
    """
    for index, item in enumerate(reported):
        check_json_schema(item["parameters"],
                          f"{field}[{index}].parameters")


def split_reported_jobtypes(reported, field="jobtypes"):
    """Return ``(usable, rejected)`` of the job types an agent reported.

    ``rejected`` lists ``{"name", "error"}`` for each job type whose
    ``parameters`` is not a valid schema (the error names
    ``jobtypes[<index>].parameters``). One studio plugin with a broken
    schema must not keep the agent, and its other job types, off the farm.
    """
    usable, rejected = [], []
    for index, item in enumerate(reported):
        try:
            check_json_schema(item["parameters"],
                              f"{field}[{index}].parameters")
        except BadRequest as error:
            rejected.append({"name": item["name"], "error": error.message})
        else:
            usable.append(item)
    return usable, rejected


def upsert_jobtypes(session, reported, now, source="an agent",
                    checked=False):
    """Create the job types in ``reported`` that are new, and update the
    description, parameters and software of those that changed.

    ``reported`` is checked as by :func:`check_reported_jobtypes` unless
    ``checked`` says it was. ``source`` says who reported them, for the
    log. Rows are locked only when they change, in name order (two agents
    registering at once cannot deadlock). Returns the job type rows in
    name order.
    """
    if not checked:
        check_reported_jobtypes(reported)
    rows = []
    for item in sorted(reported, key=lambda item: item["name"]):
        values = {field: item[field] for field in REPORTED_JOBTYPE_FIELDS}
        query = select(JobType).where(JobType.name == item["name"])
        row = session.execute(query).scalar()
        if row is None and _insert_once(session, JobType(
                name=item["name"], created_at=now, **values)):
            logger.info("job type %r added, reported by %s", item["name"],
                        source)
            rows.append(session.execute(query).scalar_one())
            continue
        if row is None or _jobtype_differs(row, values):
            # Read it again under the lock: another agent may have just
            # made the same change.
            row = session.execute(
                query.with_for_update()
                .execution_options(populate_existing=True)).scalar_one()
            _update_jobtype(row, values, source)
        rows.append(row)
    session.flush()
    return rows


def _jobtype_differs(row, values):
    return any(getattr(row, field) != value
               for field, value in values.items())


def _update_jobtype(row, values, source):
    """Apply reported ``values`` to the job type ``row``; log changes."""
    if not _jobtype_differs(row, values):
        return
    if row.parameters != values["parameters"]:
        logger.info("job type %r: the parameters schema changed, reported "
                    "by %s; jobs submitted from now on are checked "
                    "against the new one", row.name, source)
    if row.software != values["software"]:
        logger.info("job type %r: software %r -> %r, reported by %s",
                    row.name, row.software, values["software"], source)
    for field, value in values.items():
        setattr(row, field, value)


# -- software ------------------------------------------------------------


def get_software(session, name):
    """Return the software called ``name`` or raise :class:`NotFound`."""
    software = session.execute(
        select(Software).where(Software.name == name)).scalar()
    if software is None:
        raise NotFound(f"no software named {name!r}")
    return software


def create_software(session, name, versions=()):
    """Create software with ``versions``; a taken name is a conflict."""
    name = check_name(name, "name", "software")
    versions = [check_version(v, f"versions.{i}")
                for i, v in enumerate(versions)]
    if session.execute(select(Software.id).where(Software.name == name)) \
            .first() or not _insert_once(session, Software(name=name)):
        raise Conflict(f"software named {name!r} already exists")
    software = get_software(session, name)
    for version in dict.fromkeys(versions):
        session.add(SoftwareVersion(software=software, version=version))
    session.flush()
    return software


def add_software_version(session, software, version):
    """Add ``version`` to ``software``; a known version is a conflict."""
    version = check_version(version)
    row = SoftwareVersion(software_id=software.id, version=version)
    if any(v.version == version for v in software.versions) \
            or not _insert_once(session, row):
        raise Conflict(f"{software.name} {version} is already known")
    session.refresh(software)
    return software


def ensure_software_version(session, name, version):
    """Return the :class:`SoftwareVersion`, creating what is missing."""
    name = check_name(name, "software", "software")
    version = check_version(version)
    software = session.execute(
        select(Software).where(Software.name == name)).scalar()
    if software is None:
        _insert_once(session, Software(name=name))
        software = get_software(session, name)
    query = select(SoftwareVersion).where(
        SoftwareVersion.software_id == software.id,
        SoftwareVersion.version == version)
    row = session.execute(query).scalar()
    if row is None:
        _insert_once(session, SoftwareVersion(software_id=software.id,
                                              version=version))
        row = session.execute(query).scalar_one()
    return row


# -- tags ----------------------------------------------------------------


def get_tag(session, name):
    """Return the tag called ``name`` or raise :class:`NotFound`."""
    tag = session.execute(select(Tag).where(Tag.name == name)).scalar()
    if tag is None:
        raise NotFound(f"no tag named {name!r}")
    return tag


def create_tag(session, name):
    """Create a tag; a taken name is a :class:`Conflict`."""
    name = check_name(name, "name", "tag")
    if session.execute(select(Tag.id).where(Tag.name == name)).first() \
            or not _insert_once(session, Tag(name=name)):
        raise Conflict(f"a tag named {name!r} already exists")
    return get_tag(session, name)


def ensure_tags(session, names, field="tags"):
    """Return the tags called ``names`` (in order), creating missing ones.

    Repeated names give one tag. A bad name raises :class:`BadRequest`
    naming ``field.<index>``.
    """
    wanted = list(dict.fromkeys(
        check_name(name, f"{field}.{index}", "tag")
        for index, name in enumerate(names)))
    if not wanted:
        return []
    query = select(Tag).where(Tag.name.in_(wanted))
    found = {tag.name: tag for tag in session.execute(query).scalars()}
    missing = [name for name in wanted if name not in found]
    for name in missing:
        _insert_once(session, Tag(name=name))
    if missing:
        found = {tag.name: tag for tag in session.execute(query).scalars()}
    return [found[name] for name in wanted]


# -- job queues ----------------------------------------------------------


def get_jobqueue(session, name, field=None):
    """Return the queue called ``name`` or raise :class:`NotFound`."""
    queue = session.execute(
        select(JobQueue).where(JobQueue.name == name)).scalar()
    if queue is None:
        where = f" (field {field!r})" if field else ""
        raise NotFound(f"no job queue named {name!r}{where}")
    return queue


def _check_limits(minimum, maximum):
    if minimum is not None and maximum is not None and minimum > maximum:
        raise BadRequest(
            f"field 'minimum_agents' ({minimum}) must not be more than "
            f"'maximum_agents' ({maximum})")


def _check_parent(queue, parent):
    """Refuse a parent that would make the queue tree a loop."""
    node = parent
    while node is not None:
        if node.id == queue.id:
            raise BadRequest(
                f"field 'parent': {parent.name!r} is {queue.name!r} or "
                f"one of its sub-queues; a queue cannot be its own "
                f"ancestor")
        node = node.parent


def create_jobqueue(session, name, now, parent=None, priority=0, weight=1,
                    minimum_agents=None, maximum_agents=None):
    """Create a queue, under the queue named ``parent`` if given."""
    name = check_name(name, "name", "jobqueue")
    _check_limits(minimum_agents, maximum_agents)
    parent_row = None if parent is None else get_jobqueue(
        session, parent, "parent")
    queue = JobQueue(
        name=name, parent_id=parent_row.id if parent_row else None,
        priority=priority, weight=weight, minimum_agents=minimum_agents,
        maximum_agents=maximum_agents, created_at=now)
    if session.execute(select(JobQueue.id).where(JobQueue.name == name)) \
            .first() or not _insert_once(session, queue):
        raise Conflict(f"a job queue named {name!r} already exists")
    return queue


def update_jobqueue(session, queue, changes):
    """Apply ``changes`` (a dict of the fields to change) to ``queue``.

    Keys: ``name``, ``parent`` (a name or ``None`` for a top queue),
    ``priority``, ``weight``, ``minimum_agents``, ``maximum_agents``.
    """
    changes = dict(changes)
    if "name" in changes:
        name = check_name(changes.pop("name"), "name", "jobqueue")
        if name != queue.name and session.execute(
                select(JobQueue.id).where(JobQueue.name == name)).first():
            raise Conflict(f"a job queue named {name!r} already exists")
        queue.name = name
    if "parent" in changes:
        parent = changes.pop("parent")
        parent_row = None if parent is None else get_jobqueue(
            session, parent, "parent")
        if parent_row is not None:
            _check_parent(queue, parent_row)
        queue.parent = parent_row
    for field, value in changes.items():
        setattr(queue, field, value)
    _check_limits(queue.minimum_agents, queue.maximum_agents)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        # Another request took the new name since we looked.
        raise Conflict(f"a job queue named {queue.name!r} already "
                       f"exists") from None
    return queue


def delete_jobqueue(session, queue):
    """Delete ``queue`` unless unfinished jobs or sub-queues use it.

    Finished jobs in the queue are kept and lose their queue.
    """
    children = session.execute(
        select(func.count()).select_from(JobQueue)
        .where(JobQueue.parent_id == queue.id)).scalar_one()
    if children:
        raise Conflict(f"job queue {queue.name!r} has {children} "
                       f"sub-queue(s); delete or move them first")
    active = session.execute(
        select(func.count()).select_from(Job).where(
            Job.jobqueue_id == queue.id,
            Job.state.not_in([str(s) for s in FINAL_STATES]))).scalar_one()
    if active:
        raise Conflict(f"job queue {queue.name!r} still holds {active} "
                       f"job(s) that are not done or failed")
    session.delete(queue)
    session.flush()
