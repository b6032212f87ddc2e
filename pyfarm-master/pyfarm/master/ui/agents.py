"""
The agents pages: the list of render nodes (its rows refresh themselves),
one agent's detail with its recent attempts and failures, and disabling
or enabling an agent.

Disabling and enabling follow the API (``PATCH /api/v1/agents/<id>``):
admins only, with the same rules
(:func:`pyfarm.master.services.agents.set_agent_state`).
"""

import json
from collections import defaultdict

from flask import (
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy import func, select

from pyfarm.core.enums import ACTIVE_TASK_STATES, AgentState, Role
from pyfarm.core.framerange import compact
from pyfarm.core.logger import getLogger
from pyfarm.master.api.agents import AGENT_LOAD_OPTIONS, load_agent
from pyfarm.master.api.common import arg, page_of, pagination
from pyfarm.master.api.jobs import escape_like
from pyfarm.master.db import db, retry_transaction, utcnow
from pyfarm.master.errors import BadRequest
from pyfarm.master.models import (
    Agent,
    AgentJobFailure,
    Job,
    Tag,
    Task,
    TaskAttempt,
    User,
)
from pyfarm.master.models.agent import agent_tags
from pyfarm.master.scheduler.planning import is_blocklisted
from pyfarm.master.services.agents import set_agent_state
from pyfarm.master.services.catalog import version_sort_key
from pyfarm.master.ui import ui
from pyfarm.master.ui.session import (
    admin_required,
    is_htmx,
    login_required,
    safe_next,
)

logger = getLogger("master.ui.agents")

#: Agents on one page of the list.
PER_PAGE = 50
#: Seconds between two refreshes of the list's rows.
REFRESH_SECONDS = 5
#: Attempts on one page of an agent's detail.
ATTEMPTS_PER_PAGE = 25
#: Failure records an agent's detail shows (the most recent).
FAILURES_SHOWN = 50
#: Tags offered as suggestions in the list's tag filter.
TAG_SUGGESTIONS = 500

_ACTIVE = sorted(str(state) for state in ACTIVE_TASK_STATES)
#: The states an admin may set: disable, or enable (``online``).
SETTABLE = (AgentState.DISABLED, AgentState.ONLINE)


def memory(megabytes):
    """Format an amount of memory given in MB: ``512 MB``, ``15.6 GB``."""
    if megabytes is None:
        return ""
    if abs(megabytes) < 1024:
        return f"{megabytes} MB"
    gigabytes = megabytes / 1024
    if gigabytes >= 100:
        return f"{gigabytes:.0f} GB"
    return f"{gigabytes:.1f} GB"


def is_admin():
    """Whether the person logged in is an admin."""
    return current_user.is_authenticated and current_user.role == Role.ADMIN


# -- the list --------------------------------------------------------------


def list_filters():
    """Return the list's filters from the query: ``state``, ``tag``,
    ``q`` (part of a hostname); 400 for an unknown state."""
    state = arg("state")
    if state is not None and state not in set(AgentState):
        raise BadRequest(
            f"query argument 'state' must be one of "
            f"{', '.join(s.value for s in AgentState)}; got {state!r}")
    return {"state": state, "tag": arg("tag"), "q": arg("q")}


def filter_clauses(filters):
    """Return the WHERE clauses of the list's ``filters``."""
    clauses = []
    if filters["state"]:
        clauses.append(Agent.state == filters["state"])
    if filters["tag"]:
        clauses.append(Agent.tags.any(Tag.name == filters["tag"]))
    if filters["q"]:
        clauses.append(Agent.hostname.ilike(
            f"%{escape_like(filters['q'])}%", escape="\\"))
    return clauses


def software_groups(agent):
    """Return ``[(software name, [versions])]`` found on ``agent``,
    sorted by name and version."""
    groups = defaultdict(list)
    for row in agent.software:
        groups[row.software.name].append(row.version)
    return [(name, sorted(versions, key=version_sort_key))
            for name, versions in sorted(groups.items())]


def running_work(session, agent_ids):
    """Return ``{agent id: [work]}``: per job, the tasks the agents hold
    now, as dicts with ``job_id``, ``title``, ``frames_text`` (``1-3,7``),
    ``counts`` (``{"running": 2}``), ``state`` (running if any task
    runs) and ``since`` (the first assignment). One query, through the
    ``(agent_id, state)`` index."""
    work = defaultdict(dict)
    if not agent_ids:
        return {}
    rows = session.execute(
        select(Task.agent_id, Task.job_id, Task.frame, Task.state,
               Task.assigned_at, Job.title)
        .join(Job, Job.id == Task.job_id)
        .where(Task.agent_id.in_(agent_ids), Task.state.in_(_ACTIVE))
        .order_by(Task.job_id, Task.frame))
    for row in rows:
        item = work[row.agent_id].setdefault(row.job_id, {
            "job_id": row.job_id, "title": row.title, "frames": [],
            "counts": defaultdict(int), "since": row.assigned_at})
        item["frames"].append(row.frame)
        item["counts"][row.state] += 1
        if row.assigned_at is not None and (
                item["since"] is None or row.assigned_at < item["since"]):
            item["since"] = row.assigned_at
    return {agent_id: [
        {**item, "frames_text": compact(item["frames"]),
         "counts": dict(item["counts"]),
         "state": "running" if item["counts"].get("running")
         else "assigned"}
        for item in jobs.values()] for agent_id, jobs in work.items()}


def agent_rows(session, agents):
    """Return what a row of the list shows for each of ``agents``."""
    work = running_work(session, [agent.id for agent in agents])
    return [{"agent": agent, "software": software_groups(agent),
             "tags": sorted(tag.name for tag in agent.tags),
             "running": work.get(agent.id, [])}
            for agent in agents]


@ui.get("/agents/")
@login_required
def agents():
    """The agents, by hostname; htmx gets the table's rows alone."""
    page, per_page = pagination(PER_PAGE)
    filters = list_filters()
    clauses = filter_clauses(filters)
    found, total = page_of(
        db.session,
        select(Agent).options(*AGENT_LOAD_OPTIONS).where(*clauses)
        .order_by(Agent.hostname, Agent.id),
        select(func.count()).select_from(Agent).where(*clauses),
        page, per_page)
    args = {name: value for name, value in filters.items() if value}
    context = {
        "rows": agent_rows(db.session, found), "is_admin": is_admin(),
        "memory": memory, "page": page, "per_page": per_page,
        "total": total, "filters": filters, "args": args,
        "next_url": url_for("ui.agents", page=page, per_page=per_page,
                            **args)}
    if is_htmx():
        return render_template("_agent_rows.html", **context)
    tags = db.session.execute(
        select(Tag.name).where(Tag.id.in_(select(agent_tags.c.tag_id)))
        .order_by(Tag.name).limit(TAG_SUGGESTIONS)).scalars().all()
    return render_template(
        "agents.html", states=[str(state) for state in AgentState],
        tags=tags, refresh=REFRESH_SECONDS, **context)


# -- one agent -------------------------------------------------------------


def recent_attempts(session, agent_id, page, per_page):
    """Return ``(rows, total)``: the agent's attempts, newest first, with
    the job and frame of each (by the ``(agent_id, assigned_at)`` index).
    """
    where = TaskAttempt.agent_id == agent_id
    total = session.execute(
        select(func.count()).select_from(TaskAttempt).where(where)
    ).scalar_one()
    rows = session.execute(
        select(TaskAttempt, Task.job_id, Task.frame, Job.title)
        .join(Task, Task.id == TaskAttempt.task_id)
        .join(Job, Job.id == Task.job_id)
        .where(where)
        .order_by(TaskAttempt.assigned_at.desc(), TaskAttempt.id.desc())
        .limit(per_page).offset((page - 1) * per_page)).all()
    return rows, total


def job_failures(session, agent_id, now, settings):
    """Return ``(rows, total)``: the agent's failure records per job,
    most recent first, each with whether it keeps the agent off the job
    now."""
    where = AgentJobFailure.agent_id == agent_id
    total = session.execute(
        select(func.count()).select_from(AgentJobFailure).where(where)
    ).scalar_one()
    rows = session.execute(
        select(AgentJobFailure, Job.title)
        .join(Job, Job.id == AgentJobFailure.job_id)
        .where(where)
        .order_by(AgentJobFailure.last_failed_at.desc(),
                  AgentJobFailure.job_id.desc())
        .limit(FAILURES_SHOWN)).all()
    return [{"failure": failure, "title": title,
             "kept_off": is_blocklisted(
                 failure.failures, failure.last_failed_at, now,
                 settings.blocklist_failures, settings.blocklist_forgive)}
            for failure, title in rows], total


@ui.get("/agents/<agent_id>")
@login_required
def agent(agent_id):
    """One agent: its machine, what it runs, its attempts and failures."""
    found = load_agent(agent_id)
    page, per_page = pagination(ATTEMPTS_PER_PAGE)
    settings = current_app.config["PYFARM"]
    attempts, attempts_total = recent_attempts(db.session, found.id, page,
                                               per_page)
    failures, failures_total = job_failures(db.session, found.id, utcnow(),
                                            settings)
    owner = db.session.get(User, found.user_id) if found.user_id else None
    return render_template(
        "agent.html", agent=found, row=agent_rows(db.session, [found])[0],
        attempts=attempts, attempts_total=attempts_total,
        failures=failures, failures_total=failures_total, owner=owner,
        page=page, per_page=per_page, is_admin=is_admin(), memory=memory,
        blocklist_failures=settings.blocklist_failures,
        next_url=url_for("ui.agent", agent_id=found.id))


@ui.post("/agents/<agent_id>/state")
@admin_required
@retry_transaction()
def agent_state(agent_id):
    """Disable an agent (``state=disabled``) or enable it
    (``state=online``); htmx gets the agent's new list row."""
    state = request.form.get("state", "")
    if state not in SETTABLE:
        raise BadRequest(f"field 'state' must be 'disabled' (disable) or "
                         f"'online' (enable), got {state!r}")
    found = set_agent_state(db.session, agent_id, state)
    hostname, new_state = found.hostname, found.state
    db.session.commit()
    logger.info("agent %s (%s) %s by %s", agent_id, hostname, new_state,
                current_user.name)
    message = (f"{hostname} disabled: it gets no new work"
               if state == AgentState.DISABLED
               else f"{hostname} enabled ({new_state})")
    next_url = safe_next(request.form.get("next"))
    if is_htmx():
        row = agent_rows(db.session, [load_agent(agent_id)])[0]
        html = render_template("_agent_row.html", row=row, is_admin=True,
                               memory=memory,
                               next_url=next_url or url_for("ui.agents"))
        return html, 200, {"HX-Trigger": json.dumps(
            {"pyfarm-notice": message})}
    flash(message)
    return redirect(next_url or url_for("ui.agent", agent_id=agent_id))
