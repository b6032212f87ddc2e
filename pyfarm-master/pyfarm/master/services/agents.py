"""
Agents registering, syncing, and being declared lost.

An agent token may act only for agents its user registered; an admin may
act for any agent.
"""

from datetime import timedelta

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.exc import IntegrityError

from pyfarm.core.enums import ACTIVE_TASK_STATES, AgentState, Role, WorkState
from pyfarm.core.logger import getLogger
from pyfarm.master.errors import Forbidden, NotFound
from pyfarm.master.models import (
    Agent,
    Job,
    Software,
    SoftwareVersion,
    Tag,
    Task,
)
from pyfarm.master.models.task import ATTEMPT_LOST
from pyfarm.master.scheduler.claim import assignment_dicts, claim_for_agent
from pyfarm.master.services.catalog import (
    split_reported_jobtypes,
    upsert_jobtypes,
)
from pyfarm.master.services.tasks import dialect_insert, release_agent_tasks

logger = getLogger("master.agents")

ACTIVE = sorted(str(state) for state in ACTIVE_TASK_STATES)

#: Fields of a registration copied onto the agent row as they are.
REGISTERED_FIELDS = ("hostname", "os", "os_version", "cpus", "ram",
                     "free_ram", "gpus", "disks", "version")


def check_owner(user, agent, claim_unowned=False):
    """Raise :class:`Forbidden` unless ``user`` may act for ``agent``.

    With ``claim_unowned`` an agent whose user was deleted may be taken
    over (by registering it again).
    """
    if user.role == Role.ADMIN or agent.user_id == user.id:
        return
    if claim_unowned and agent.user_id is None:
        return
    raise Forbidden(f"agent {agent.id} was registered by another user; "
                    f"use that user's token or an admin's")


def register_agent(session, user, info, now, remote_addr=None):
    """Create or update the agent described by ``info``.

    ``info`` is a dict with the fields of the registration request.
    Returns ``(agent, created, rejected)``. An agent registering again was
    restarted: the tasks it held go back to the queue as "lost". The job
    types it reports (``info["jobtypes"]``) are created or updated, except
    those with an invalid schema, which are left as they are and listed
    in ``rejected`` (``{"name", "error"}``).
    """
    jobtypes, rejected = split_reported_jobtypes(info.get("jobtypes") or [])
    agent = session.get(Agent, info["id"], with_for_update=True,
                        populate_existing=True)
    created = False
    if agent is None:
        agent, created = _create(session, info, now)
    if not created:
        check_owner(user, agent, claim_unowned=True)
        released = release_agent_tasks(session, agent.id, now, ATTEMPT_LOST)
        if released:
            logger.info("agent %s restarted; requeued tasks %s", agent.id,
                        released)
    for name in REGISTERED_FIELDS:
        if name in info:
            setattr(agent, name, info[name])
    agent.remote_addr = remote_addr
    agent.user_id = user.id
    agent.last_heard_at = now
    if agent.state != AgentState.DISABLED:
        agent.state = AgentState.ONLINE
    agent.software = software_versions(session, info.get("software", []))
    known = {tag.name for tag in agent.tags}
    agent.tags.extend(tag for tag in tags_named(session, info.get("tags", []))
                      if tag.name not in known)
    if jobtypes:
        upsert_jobtypes(session, jobtypes, now, checked=True,
                        source=f"agent {agent.id} ({agent.hostname})")
    session.flush()
    logger.info("agent %s (%s) %s", agent.id, agent.hostname,
                "registered" if created else "registered again")
    for item in rejected:
        logger.warning("agent %s (%s): job type %r left out: %s", agent.id,
                       agent.hostname, item["name"], item["error"])
    return agent, created, rejected


def _create(session, info, now):
    agent = Agent(id=info["id"], hostname=info["hostname"], os=info["os"],
                  cpus=info["cpus"], ram=info["ram"], registered_at=now,
                  last_heard_at=now, state=AgentState.ONLINE)
    try:
        with session.begin_nested():
            session.add(agent)
    except IntegrityError:
        # Another request registered the same id at this moment.
        return session.get(Agent, info["id"], with_for_update=True,
                           populate_existing=True), False
    return agent, True


def _get_or_create(session, model, values, keys):
    """Return the row of ``model`` with ``values``, inserting it if new
    (safe when another request inserts it at the same moment)."""
    session.execute(dialect_insert(session, model).values(**values)
                    .on_conflict_do_nothing(index_elements=list(keys)))
    return session.execute(select(model).filter_by(**values)).scalar_one()


def software_versions(session, reported):
    """Return the SoftwareVersion rows of ``reported`` software dicts,
    creating software and versions as needed."""
    rows, seen = [], set()
    for item in reported:
        key = (item["software"], item["version"])
        if key in seen:
            continue
        seen.add(key)
        software = _get_or_create(session, Software, {"name": key[0]},
                                  ["name"])
        rows.append(_get_or_create(
            session, SoftwareVersion,
            {"software_id": software.id, "version": key[1]},
            ["software_id", "version"]))
    return rows


def tags_named(session, names):
    """Return the Tag rows named ``names``, creating missing ones."""
    return [_get_or_create(session, Tag, {"name": name}, ["name"])
            for name in dict.fromkeys(names)]


def get_agent(session, user, agent_id, lock=False):
    """Return the agent ``user`` may act for, or raise 404 / 403."""
    agent = session.get(Agent, agent_id, with_for_update=lock or None,
                        populate_existing=lock)
    if agent is None:
        raise NotFound(f"no agent with id {agent_id}; register it first")
    check_owner(user, agent)
    return agent


def sync_agent(session, user, agent_id, running, now, settings,
               free_ram=None, prefetch=None):
    """Answer an agent's sync; see the agent protocol in the docs.

    ``running`` holds ``(task_id, attempt)`` pairs the agent holds;
    ``prefetch``, ``(job_id, wanted)``, asks for assignments of that job
    to queue (see :func:`~pyfarm.master.scheduler.claim.claim_for_agent`),
    granted only while the agent holds no other job's work.
    Returns the body of the answer: assignments, cancellations, sync
    interval and the agent's state.
    """
    agent = get_agent(session, user, agent_id, lock=True)
    agent.last_heard_at = now
    if free_ram is not None:
        agent.free_ram = free_ram
    if agent.state == AgentState.OFFLINE:
        agent.state = AgentState.ONLINE
    held = session.execute(
        select(Task.id, Task.attempt, Task.state, Task.frame,
               Task.assignment_id, Task.job_id, Job.cpus, Job.ram)
        .join(Job, Job.id == Task.job_id)
        .where(Task.agent_id == agent.id, Task.state.in_(ACTIVE))).all()
    listed = {(int(task), int(attempt)) for task, attempt in running}
    current = {(task.id, task.attempt) for task in held}
    cancel = [{"task": task, "attempt": attempt}
              for task, attempt in sorted(listed - current)]
    lost = [task.id for task in held if task.state == WorkState.RUNNING
            and (task.id, task.attempt) not in listed]
    if lost:
        release_agent_tasks(session, agent.id, now, ATTEMPT_LOST,
                            task_ids=lost)
        logger.warning("agent %s no longer runs tasks %s; requeued as lost",
                       agent.id, lost)
    assignments = redelivered(session, agent, [
        task for task in held if task.state == WorkState.ASSIGNED
        and (task.id, task.attempt) not in listed])
    if settings.claim_on_sync and agent.state != AgentState.DISABLED:
        # The agent row is locked and fresh, and ``held`` was read under
        # that lock: the claim need not read either again.
        kept = {(task.assignment_id, task.cpus, task.ram, task.job_id)
                for task in held if task.id not in lost}
        if prefetch is not None and any(job_id != prefetch[0]
                                        for *_, job_id in kept):
            # Prefetched frames would wait behind another job's work
            # while other agents could run them.
            prefetch = None
        assignments += claim_for_agent(
            session, agent, now, settings,
            held=[(cpus, ram) for _, cpus, ram, _ in kept],
            prefetch=prefetch)
    if agent.state != AgentState.DISABLED:
        holds = len(held) > len(lost) or bool(assignments)
        agent.state = AgentState.RUNNING if holds else AgentState.ONLINE
    return {"assignments": assignments, "cancel": cancel,
            "sync_interval": settings.sync_interval, "state": agent.state}


def redelivered(session, agent, tasks):
    """Return Assignments for ``agent``'s assigned ``tasks`` it did not
    list, grouped by assignment and sorted by frame."""
    if not tasks:
        return []
    groups = {}
    for task in tasks:
        groups.setdefault(task.assignment_id, []).append(task)
    ordered = sorted(groups.values(), key=lambda group: (
        group[0].job_id, min(task.frame for task in group)))
    return assignment_dicts(
        session, [(group[0].job_id, group) for group in ordered],
        [tag.id for tag in agent.tags])


def set_agent_state(session, agent_id, state):
    """Disable an agent (``state`` ``"disabled"``), or enable it again
    (``"online"``); return the agent, locked for the change.

    A disabled agent gets no new work; what it runs goes on. Enabling an
    agent that is not disabled changes nothing (an offline agent comes
    back by syncing); an enabled agent is ``running`` while it holds
    tasks and ``online`` otherwise.
    """
    agent = session.get(Agent, agent_id, with_for_update=True,
                        populate_existing=True)
    if agent is None:
        raise NotFound(f"no agent with id {agent_id}")
    if state == AgentState.DISABLED:
        agent.state = AgentState.DISABLED
    elif agent.state == AgentState.DISABLED:
        holds = session.execute(
            select(Task.id).where(
                Task.agent_id == agent.id,
                Task.state.in_([str(s) for s in ACTIVE_TASK_STATES]))
            .limit(1)).first()
        agent.state = AgentState.RUNNING if holds else AgentState.ONLINE
    session.flush()
    return agent


def delete_agent(session, agent_id, now):
    """Forget an agent; the tasks it holds go back to the queue.

    Its attempts are kept (as ``lost`` where they were running). The agent
    row is locked first: a sync claiming work for the agent at this moment
    either commits before (and its tasks are released here) or finds no
    agent. Without the lock, the tasks it claimed would keep the state
    ``assigned`` with no agent (the foreign key sets it to NULL), for ever.
    """
    agent = session.get(Agent, agent_id, with_for_update=True,
                        populate_existing=True)
    if agent is None:
        raise NotFound(f"no agent with id {agent_id}")
    release_agent_tasks(session, agent.id, now, ATTEMPT_LOST)
    session.delete(agent)
    session.flush()
    logger.info("agent %s (%s) deleted", agent.id, agent.hostname)


def mark_lost_agents(session, now, settings, started_at=None):
    """Declare agents not heard from within ``lost_timeout`` offline.

    Their tasks go back to the queue as "lost" (no failure counted). A
    disabled agent stays disabled but its tasks are released too. Nothing
    is declared lost until ``lost_timeout`` has passed since
    ``started_at`` (the scheduler's start), so agents get a grace period
    to reconnect after a master restart. Returns the ids of lost agents.
    """
    timeout = timedelta(seconds=settings.lost_timeout)
    if started_at is not None and now - started_at < timeout:
        return []
    stale = stale_agents(now - timeout)
    lost = []
    # In id order, so that two masters lock the agents in the same order.
    for agent_id in session.execute(select(Agent.id).where(stale)
                                    .order_by(Agent.id)).scalars().all():
        # Lock and check again: the agent may have synced meanwhile.
        agent = session.execute(
            select(Agent).where(Agent.id == agent_id, stale)
            .with_for_update()
            .execution_options(populate_existing=True)).scalar()
        if agent is None:
            continue
        if agent.state != AgentState.DISABLED:
            agent.state = AgentState.OFFLINE
        released = release_agent_tasks(session, agent.id, now, ATTEMPT_LOST)
        logger.warning("agent %s (%s) not heard from since %s: lost; "
                       "requeued tasks %s", agent.id, agent.hostname,
                       agent.last_heard_at.isoformat(), released)
        lost.append(agent.id)
    return lost


def stale_agents(cutoff):
    """Return the condition "not heard from since ``cutoff`` and either
    working, or disabled or offline while holding tasks" (an offline agent
    holds none, unless work was claimed for it as it was being lost)."""
    holds = exists(select(Task.id).where(Task.agent_id == Agent.id,
                                         Task.state.in_(ACTIVE)))
    return and_(
        Agent.last_heard_at < cutoff,
        or_(Agent.state.in_([AgentState.ONLINE, AgentState.RUNNING]),
            and_(Agent.state.in_([AgentState.DISABLED, AgentState.OFFLINE]),
                 holds)))
