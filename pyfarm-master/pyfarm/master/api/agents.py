"""
The agents as people see them: list, detail, disable/enable, tags, delete.

Registration and the rest of the agent protocol (``POST /api/v1/agents/``
and below) live in :mod:`pyfarm.master.api.agent_protocol`.
"""

from typing import Literal

from flask import jsonify
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from pyfarm.core.enums import ACTIVE_TASK_STATES, AgentState, Role
from pyfarm.master.api import api
from pyfarm.master.api.common import arg, get_or_404, iso, page_of, pagination
from pyfarm.master.api.serialize import tasks_to_dicts
from pyfarm.master.auth import PEOPLE, require_roles
from pyfarm.master.db import db, retry_transaction, utcnow
from pyfarm.master.errors import BadRequest
from pyfarm.master.models import Agent, SoftwareVersion, Tag, Task, TaskAttempt
from pyfarm.master.services import agents as agent_service
from pyfarm.master.services.catalog import ensure_tags, version_sort_key
from pyfarm.master.validation import Strict, json_body, parse

#: How many of an agent's latest attempts its detail shows.
RECENT_ATTEMPTS = 50

#: Loader options for everything :func:`agent_to_dict` reads.
AGENT_LOAD_OPTIONS = (
    selectinload(Agent.tags),
    selectinload(Agent.software).joinedload(SoftwareVersion.software),
)

_ACTIVE = [str(state) for state in ACTIVE_TASK_STATES]


def agent_to_dict(agent):
    """Return the JSON of ``agent`` (tags and software sorted)."""
    software = sorted(
        agent.software,
        key=lambda row: (row.software.name, version_sort_key(row.version)))
    return {
        "id": agent.id,
        "hostname": agent.hostname,
        "os": agent.os,
        "os_version": agent.os_version,
        "cpus": agent.cpus,
        "ram": agent.ram,
        "free_ram": agent.free_ram,
        "gpus": agent.gpus,
        "disks": agent.disks,
        "tags": sorted(tag.name for tag in agent.tags),
        "software": [{"software": row.software.name, "version": row.version}
                     for row in software],
        "state": agent.state,
        "version": agent.version,
        "remote_addr": agent.remote_addr,
        "registered_at": iso(agent.registered_at),
        "last_heard_at": iso(agent.last_heard_at),
    }


def recent_attempt_to_dict(attempt, job_id, frame):
    """Return one line of an agent's ``recent_attempts``."""
    return {"task": attempt.task_id, "job": job_id, "frame": frame,
            "attempt": attempt.attempt, "state": attempt.state,
            "error": attempt.error,
            "assigned_at": iso(attempt.assigned_at),
            "finished_at": iso(attempt.finished_at)}


def agent_detail(session, agent):
    """Return the agent's JSON with the tasks it holds and recent runs."""
    tasks = session.execute(
        select(Task).where(Task.agent_id == agent.id,
                           Task.state.in_(_ACTIVE))
        .order_by(Task.job_id, Task.frame)).scalars()
    attempts = session.execute(
        select(TaskAttempt, Task.job_id, Task.frame)
        .join(Task, TaskAttempt.task_id == Task.id)
        .where(TaskAttempt.agent_id == agent.id)
        .order_by(TaskAttempt.assigned_at.desc(), TaskAttempt.id.desc())
        .limit(RECENT_ATTEMPTS))
    return {**agent_to_dict(agent),
            "tasks": tasks_to_dicts(session, tasks),
            "recent_attempts": [recent_attempt_to_dict(*row)
                                for row in attempts]}


def load_agent(agent_id):
    """Return the agent ``agent_id`` with what its JSON needs, or 404."""
    agent = db.session.execute(
        select(Agent).options(*AGENT_LOAD_OPTIONS)
        .where(Agent.id == agent_id)).scalar()
    return agent if agent is not None else get_or_404(
        db.session, Agent, agent_id, "agent")


def agent_filters():
    """Return the WHERE clauses of ``GET /api/v1/agents/``'s filters."""
    clauses = []
    state = arg("state")
    if state is not None:
        if state not in set(AgentState):
            raise BadRequest(
                f"query argument 'state' must be one of "
                f"{', '.join(s.value for s in AgentState)}; got {state!r}")
        clauses.append(Agent.state == state)
    hostname = arg("hostname")
    if hostname is not None:
        pattern = (hostname.replace("\\", "\\\\").replace("%", "\\%")
                   .replace("_", "\\_"))
        clauses.append(Agent.hostname.ilike(f"%{pattern}%", escape="\\"))
    tag = arg("tag")
    if tag is not None:
        clauses.append(Agent.tags.any(Tag.name == tag))
    return clauses


@api.get("/agents/")
@require_roles(*PEOPLE)
def list_agents():
    """List agents; filters ``state``, ``hostname`` (part of) and ``tag``."""
    page, per_page = pagination()
    clauses = agent_filters()
    agents, total = page_of(
        db.session,
        select(Agent).options(*AGENT_LOAD_OPTIONS).where(*clauses)
        .order_by(Agent.hostname, Agent.id),
        select(func.count()).select_from(Agent).where(*clauses),
        page, per_page)
    return jsonify({"agents": [agent_to_dict(a) for a in agents],
                    "total": total, "page": page, "per_page": per_page})


@api.get("/agents/<agent_id>")
@require_roles(*PEOPLE)
def get_agent(agent_id):
    """Return one agent, the tasks it holds and its latest attempts."""
    return jsonify(agent_detail(db.session, load_agent(agent_id)))


class AgentPatch(Strict):
    """``PATCH /api/v1/agents/<id>``: only the fields sent change."""

    state: Literal["disabled", "online"] = None
    tags: list[str] = None


@api.patch("/agents/<agent_id>")
@require_roles(Role.ADMIN)
@retry_transaction()
def update_agent(agent_id):
    """Disable or enable an agent, or replace its tags."""
    body = parse(AgentPatch, json_body())
    if body.state is not None:
        agent_service.set_agent_state(db.session, agent_id, body.state)
    agent = load_agent(agent_id)
    if body.tags is not None:
        agent.tags = ensure_tags(db.session, body.tags)
    db.session.commit()
    return jsonify(agent_to_dict(agent))


@api.delete("/agents/<agent_id>")
@require_roles(Role.ADMIN)
@retry_transaction()
def delete_agent(agent_id):
    """Forget an agent; the tasks it holds go back to the queue.

    Its attempts are kept (as ``lost`` where they were running). An agent
    that is still alive registers again on its next sync.
    """
    agent_service.delete_agent(db.session, agent_id, utcnow())
    db.session.commit()
    return "", 204
