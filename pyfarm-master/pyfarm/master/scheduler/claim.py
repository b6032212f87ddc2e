"""
Claiming work for one agent, safe with several schedulers at once.

Candidate tasks are selected ``FOR UPDATE SKIP LOCKED`` where the
database has it (PostgreSQL), and taken with a compare-and-set ``UPDATE
... WHERE state = 'queued' RETURNING``, so two schedulers never hand one
task to two agents. SQLite serialises writers (``BEGIN IMMEDIATE``).

Every query is bounded by an index on what is active (agent's held tasks,
jobs that are queued or running, a job's queued tasks), so the cost of a
decision does not grow with the number of finished tasks.
"""

import uuid
from datetime import timedelta

from sqlalchemy import (
    String,
    case,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased, joinedload, selectinload

from pyfarm.core.enums import ACTIVE_TASK_STATES, AgentState, WorkState
from pyfarm.core.logger import getLogger
from pyfarm.master.models import (
    Agent,
    AgentJobFailure,
    Job,
    JobQueue,
    JobSoftwareRequirement,
    JobTagRequirement,
    JobType,
    Software,
    Task,
    TaskAttempt,
)
from pyfarm.master.models.job import job_dependencies
from pyfarm.master.scheduler import planning
from pyfarm.master.services.pathmaps import pathmaps_for

logger = getLogger("master.scheduler")

ACTIVE = sorted(str(state) for state in ACTIVE_TASK_STATES)
CLAIMABLE_JOB_STATES = (str(WorkState.QUEUED), str(WorkState.RUNNING))
WORKING_AGENT_STATES = (str(AgentState.ONLINE), str(AgentState.RUNNING))


#: Loader options for what :func:`assignment_dict` reads of a job.
ASSIGNMENT_JOB_OPTIONS = (
    joinedload(Job.jobtype),
    selectinload(Job.software_requirements).joinedload(
        JobSoftwareRequirement.software),
)


def assignment_dict(job, tasks, pathmaps=()):
    """Return the Assignment JSON for ``tasks`` of ``job``.

    ``tasks`` have ``id``, ``frame``, ``attempt`` and ``assignment_id``
    attributes and belong to one assignment. ``pathmaps`` are the path
    maps (``{"linux", "windows", "mac"}``) that apply to the agent.
    """
    tasks = sorted(tasks, key=lambda task: (task.frame, task.id))
    return {
        "id": tasks[0].assignment_id,
        "job": {
            "id": job.id, "title": job.title,
            "jobtype": job.jobtype.name,
            "jobtype_version": job.jobtype_version,
            "data": job.data, "environ": job.environ,
            "cpus": job.cpus, "ram": job.ram, "by": job.by,
            "software_requirements": [
                {"software": requirement.software.name,
                 "min_version": requirement.min_version,
                 "max_version": requirement.max_version}
                for requirement in sorted(
                    job.software_requirements,
                    key=lambda item: item.software.name)],
            "pathmaps": [dict(pathmap) for pathmap in pathmaps],
        },
        "tasks": [{"id": task.id, "frame": task.frame,
                   "attempt": task.attempt} for task in tasks],
    }


def assignment_dicts(session, groups, tag_ids):
    """Return the Assignments of ``groups``, ``(job_id, tasks)`` pairs, for
    an agent with the tags ``tag_ids``.

    A fixed number of queries whatever the number of assignments: the
    jobs with their requirements, and the path maps once.
    """
    if not groups:
        return []
    jobs = {job.id: job for job in session.execute(
        select(Job).options(*ASSIGNMENT_JOB_OPTIONS)
        .where(Job.id.in_(sorted({job_id for job_id, _ in groups})))
    ).scalars()}
    maps = pathmaps_for(session, tag_ids)
    return [assignment_dict(jobs[job_id], tasks, maps)
            for job_id, tasks in groups]


def claim_for_agent(session, agent, now, settings, held=None,
                    prefetch=None):
    """Claim work for ``agent``'s free capacity; return new Assignments.

    Does not commit. The agent row is locked (PostgreSQL) so that a sync
    and the scheduler loop claiming for the same agent do not both fill
    its capacity. A caller that locked and reloaded the agent row itself
    passes what the agent holds as ``held``, ``(cpus, ram)`` per held
    assignment, read under that lock: two queries fewer.

    ``prefetch``, ``(job_id, wanted)``, asks for up to ``wanted`` more
    assignments of that job beyond the free capacity, for the agent to
    queue (see :func:`planning.prefetch_room`): granted only while that
    job is the first the agent would be served, so prefetching never
    passes a job of higher priority.
    """
    if held is None:
        # Read the state under the lock: ``agent`` may have been loaded
        # before an admin disabled it or another master declared it lost.
        state = session.execute(
            select(Agent.state).where(Agent.id == agent.id)
            .with_for_update()).scalar()
        held = held_assignments(session, agent)
    else:
        state = agent.state
        held = list(held)
    if state not in WORKING_AGENT_STATES:
        return []
    free = planning.free_capacity(agent.cpus, agent.ram, held)
    if prefetch is not None and (settings.prefetch_limit < 1
                                 or prefetch[1] < 1):
        prefetch = None
    if free[0] < 1 and prefetch is None:
        return []
    profile = agent_profile(agent)
    # With a prefetch the jobs that fit the agent at all: the first of
    # them is what the agent would be served next.
    jobs = candidate_jobs(
        session, profile,
        free if prefetch is None else (agent.cpus, agent.ram), now, settings)
    if not jobs:
        return []
    avoid_since = now - timedelta(seconds=settings.lost_timeout)
    groups = []
    for job in jobs:
        count = planning.fit_count(free, job)
        if job is jobs[0] and prefetch is not None \
                and job.id == prefetch[0]:
            # The prefetch with what fits, in the same statements.
            count += min(prefetch[1], planning.prefetch_room(
                agent.cpus, agent.ram, job, len(held) + count,
                settings.prefetch_limit))
        if count < 1:
            continue
        won = claim_batches(session, agent.id, job, count, now, avoid_since)
        groups += [(job.id, batch) for batch in won]
        for _ in won:
            free = planning.take(free, job)
    assignments = assignment_dicts(session, groups, profile.tag_ids)
    if assignments and state == AgentState.ONLINE:
        agent.state = AgentState.RUNNING
    if assignments:
        logger.info("agent %s claimed %d assignment(s): %s", agent.id,
                    len(assignments), ", ".join(
                        f"job {a['job']['id']} frames "
                        f"{a['tasks'][0]['frame']}-{a['tasks'][-1]['frame']}"
                        for a in assignments))
    return assignments


def held_assignments(session, agent):
    """Return ``(cpus, ram)`` of each assignment ``agent`` holds."""
    held = session.execute(
        select(Task.assignment_id, Job.cpus, Job.ram)
        .join(Job, Job.id == Task.job_id)
        .where(Task.agent_id == agent.id, Task.state.in_(ACTIVE))
        .distinct()).all()
    return [(row.cpus, row.ram) for row in held]


def agent_profile(agent):
    """Return the :class:`~planning.AgentProfile` of ``agent``."""
    software = {}
    for version in agent.software:
        software.setdefault(version.software_id, []).append(version.version)
    return planning.AgentProfile(
        id=agent.id, cpus=agent.cpus, ram=agent.ram,
        tag_ids=frozenset(tag.id for tag in agent.tags),
        software={key: tuple(value) for key, value in software.items()})


def runnable_jobs(free):
    """Return a SELECT of jobs that have work an agent with ``free``
    capacity could take, ignoring per-agent rules."""
    parent = aliased(Job)
    waiting = (
        select(job_dependencies.c.parent_id)
        .join(parent, parent.id == job_dependencies.c.parent_id)
        .where(job_dependencies.c.child_id == Job.id,
               parent.state != WorkState.DONE))
    has_queued = select(Task.id).where(
        Task.job_id == Job.id, Task.state == WorkState.QUEUED)
    return (
        select(Job.id)
        .where(Job.state.in_(CLAIMABLE_JOB_STATES),
               Job.cpus <= free[0], Job.ram <= free[1],
               ~exists(waiting), exists(has_queued)))


def candidate_jobs(session, profile, free, now, settings):
    """Return the jobs ``profile``'s agent may take, in serving order.

    One query reads the runnable jobs with what the agent's rules need
    (whether the blocklist keeps the agent off a job, how many other
    agents hold tasks of a job with ``maximum_agents``), one more their
    tag and software requirements.
    """
    runnable = runnable_jobs(free)
    rows = session.execute(
        select(Job.id, Job.priority, Job.weight, Job.cpus, Job.ram, Job.by,
               Job.batch, Job.maximum_agents,
               func.coalesce(JobQueue.priority, 0).label("queue_priority"),
               JobType.software.label("program"),
               other_agents(profile.id).label("others"))
        .join(JobType, JobType.id == Job.jobtype_id)
        .outerjoin(JobQueue, JobQueue.id == Job.jobqueue_id)
        .where(Job.id.in_(runnable),
               ~blocklisted(profile.id, now, settings))).all()
    if not rows:
        return []
    tags, software = requirements(session, runnable)
    programs = software_ids(session, {row.program for row in rows})
    jobs = []
    for row in rows:
        if row.program is not None and row.program not in programs:
            continue  # no agent has ever reported the job type's program
        job = planning.JobCandidate(
            id=row.id, priority=row.priority,
            queue_priority=row.queue_priority, weight=row.weight,
            cpus=row.cpus, ram=row.ram, by=row.by, batch=row.batch,
            maximum_agents=row.maximum_agents,
            tag_requirements=tuple(tags.get(row.id, ())),
            software_requirements=planning.with_program(
                software.get(row.id, ()), programs.get(row.program)))
        if (planning.matches(profile, job)
                and planning.below_maximum(job.maximum_agents,
                                           row.others or 0)):
            jobs.append(job)
    return planning.order_jobs(jobs)


def blocklisted(agent_id, now, settings):
    """Return the condition "``agent_id`` is kept off the job for failing
    it" (see :func:`planning.is_blocklisted`) on :class:`Job` rows."""
    since = now - timedelta(seconds=settings.blocklist_forgive)
    return exists(select(AgentJobFailure.job_id).where(
        AgentJobFailure.job_id == Job.id,
        AgentJobFailure.agent_id == agent_id,
        AgentJobFailure.failures >= settings.blocklist_failures,
        AgentJobFailure.last_failed_at.is_not(None),
        AgentJobFailure.last_failed_at
        > literal(since, AgentJobFailure.last_failed_at.type)))


def other_agents(agent_id):
    """Return the column "distinct other agents holding tasks of the
    job", counted only for jobs with a ``maximum_agents`` (else NULL)."""
    count = (select(func.count(func.distinct(Task.agent_id)))
             .where(Task.job_id == Job.id, Task.state.in_(ACTIVE),
                    Task.agent_id != agent_id)
             .correlate(Job).scalar_subquery())
    return case((Job.maximum_agents.is_not(None), count), else_=None)


def requirements(session, job_ids):
    """Return ``(tags, software)`` requirements by job id (one query)."""
    none = null().cast(String(64))
    rows = session.execute(
        select(JobTagRequirement.job_id, literal("tag").label("kind"),
               JobTagRequirement.tag_id.label("ref"),
               JobTagRequirement.negate, none.label("min_version"),
               none.label("max_version"))
        .where(JobTagRequirement.job_id.in_(job_ids))
        .union_all(
            select(JobSoftwareRequirement.job_id, literal("software"),
                   JobSoftwareRequirement.software_id, literal(False),
                   JobSoftwareRequirement.min_version,
                   JobSoftwareRequirement.max_version)
            .where(JobSoftwareRequirement.job_id.in_(job_ids))))
    tags, software = {}, {}
    for row in rows:
        if row.kind == "tag":
            tags.setdefault(row.job_id, []).append(
                (row.ref, bool(row.negate)))
        else:
            software.setdefault(row.job_id, []).append(
                (row.ref, row.min_version, row.max_version))
    return tags, software


def software_ids(session, names):
    """Return ``{name: software id}`` for the known software in
    ``names`` (``None`` is ignored)."""
    names = sorted(name for name in names if name is not None)
    if not names:
        return {}
    return {row.name: row.id for row in session.execute(
        select(Software.name, Software.id).where(Software.name.in_(names)))}


def claim_batches(session, agent_id, job, count, now, avoid_since=None):
    """Claim up to ``count`` batches of ``job``; return the won batches
    (lists of tasks, as :func:`claim_batch` returns them).

    Single frames of a job without ``maximum_agents`` are claimed in one
    statement whatever their number (:func:`take_frames`); other jobs
    batch by batch.
    """
    if count < 1:
        return []
    if job.batch == 1 and job.maximum_agents is None and count > 1:
        return [[row] for row in take_frames(
            session, agent_id, job, count, now, avoid_since)]
    won = []
    for _ in range(count):
        batch = claim_batch(session, agent_id, job, now, avoid_since)
        if not batch:
            break
        won.append(batch)
    return won


def queued_tasks(agent_id, job, avoid_since):
    """Return a SELECT of ``job``'s queued tasks in frame order, locked
    (skipping rows other claims hold), that ``agent_id`` may take (see
    :func:`claim_batch` for ``avoid_since``)."""
    query = (
        select(Task.id, Task.frame)
        .where(Task.job_id == job.id, Task.state == WorkState.QUEUED)
        .order_by(Task.frame, Task.id)
        .with_for_update(skip_locked=True, of=Task))
    if avoid_since is not None:
        alone = ~exists(select(Agent.id).where(
            Agent.state.in_(WORKING_AGENT_STATES), Agent.id != agent_id))
        query = query.where(or_(Task.last_failed_agent_id.is_(None),
                                Task.last_failed_agent_id != agent_id,
                                Task.updated_at < avoid_since, alone))
    return query


def take_frames(session, agent_id, job, count, now, avoid_since=None):
    """Claim up to ``count`` single frames of ``job``, each its own
    assignment, in three statements; return the won tasks by frame.

    The frames are selected ``FOR UPDATE SKIP LOCKED`` (PostgreSQL) and
    taken by one compare-and-set ``UPDATE`` that gives each its own
    assignment id.
    """
    picked = session.execute(
        queued_tasks(agent_id, job, avoid_since).limit(count)
        .with_only_columns(Task.id)).scalars().all()
    if not picked:
        return []
    ids = {task_id: str(uuid.uuid4()) for task_id in picked}
    return take_tasks(session, agent_id, job.id, list(ids), now,
                      assignment_ids=ids)


def claim_batch(session, agent_id, job, now, avoid_since=None):
    """Claim one batch of ``job``'s queued tasks; return the won tasks.

    The batch is the lowest queued frames forming a consecutive run of up
    to ``job.batch`` frames. Returns an empty list when nothing was won.

    A task that failed on this agent prefers other agents: it is skipped
    if it changed after ``avoid_since`` (``now - lost_timeout``: by then
    every live agent has synced and could have taken it; another agent
    being online does not mean it can run the job, so avoiding the task
    for ever could leave it queued for ever), unless no other agent is
    online or running (the check is part of the statement).
    """
    if job.maximum_agents is not None and not _slot_left(
            session, agent_id, job):
        return []
    query = queued_tasks(agent_id, job, avoid_since).limit(job.batch)
    if job.batch == 1:
        # One statement: the lowest queued frame, locked and taken.
        return take_tasks(session, agent_id, job.id,
                          query.with_only_columns(Task.id), now)
    queued = [tuple(row) for row in session.execute(query)]
    batch = planning.consecutive_batch(queued, job.by, job.batch)
    if not batch:
        return []
    return take_tasks(session, agent_id, job.id,
                      [task_id for task_id, _ in batch], now)


def _slot_left(session, agent_id, job):
    # Lock the job (PostgreSQL) so that two schedulers cannot both take
    # the last slot of maximum_agents, then count with fresh data.
    session.execute(select(Job.id).where(Job.id == job.id)
                    .with_for_update())
    others = session.execute(
        select(func.count(func.distinct(Task.agent_id)))
        .where(Task.job_id == job.id, Task.state.in_(ACTIVE),
               Task.agent_id != agent_id)).scalar_one()
    return planning.below_maximum(job.maximum_agents, others)


def take_tasks(session, agent_id, job_id, task_ids, now,
               assignment_ids=None):
    """Compare-and-set: assign those of ``task_ids`` still queued.

    ``task_ids`` is a list of ids, or a SELECT of at most one id (run as
    the UPDATE's scalar subquery: once, before any row is changed). They
    form one assignment, unless ``assignment_ids`` maps each id to its
    own assignment id.

    Returns the won tasks (``id``, ``frame``, ``attempt``,
    ``assignment_id``), inserts their attempt rows and marks the job
    running.
    """
    if assignment_ids is None:
        assignment_id = literal(str(uuid.uuid4()), Task.assignment_id.type)
    else:
        assignment_id = case(
            {task_id: literal(value, Task.assignment_id.type)
             for task_id, value in assignment_ids.items()},
            value=Task.id)
    claimable = exists(select(Job.id).where(
        Job.id == Task.job_id, Job.state.in_(CLAIMABLE_JOB_STATES)))
    won = session.execute(
        update(Task)
        .where(Task.id.in_(task_ids) if isinstance(task_ids, list)
               else Task.id == task_ids.scalar_subquery(),
               Task.job_id == job_id,
               Task.state == WorkState.QUEUED, claimable)
        .values(state=WorkState.ASSIGNED, agent_id=agent_id,
                assignment_id=assignment_id, attempt=Task.attempt + 1,
                assigned_at=now, started_at=None, finished_at=None,
                progress=0.0, updated_at=now)
        .returning(Task.id, Task.frame, Task.attempt, Task.assignment_id)
        .execution_options(synchronize_session="fetch")).all()
    if not won:
        return []
    session.execute(insert(TaskAttempt), [
        {"task_id": row.id, "attempt": row.attempt, "agent_id": agent_id,
         "assignment_id": row.assignment_id, "state": WorkState.ASSIGNED,
         "assigned_at": now} for row in won])
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == WorkState.QUEUED)
        .values(state=WorkState.RUNNING,
                started_at=func.coalesce(
                    Job.started_at, literal(now, Job.started_at.type)),
                updated_at=now, finished_at=None)
        .execution_options(synchronize_session="fetch"))
    return sorted(won, key=lambda row: row.frame)

