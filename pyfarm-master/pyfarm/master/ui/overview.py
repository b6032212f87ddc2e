"""
The farm at a glance, shown in every page's header and refreshed by htmx:
agents online / running / offline and frames running / queued.
"""

from flask import render_template
from sqlalchemy import func, select

from pyfarm.core.enums import ACTIVE_TASK_STATES, AgentState, WorkState
from pyfarm.master.db import db
from pyfarm.master.models import Agent, Job, Task
from pyfarm.master.ui import ui
from pyfarm.master.ui.session import login_required

#: Seconds between two refreshes of the header.
REFRESH_SECONDS = 5

_OPEN_JOBS = (str(WorkState.QUEUED), str(WorkState.RUNNING),
              str(WorkState.PAUSED))


def farm_overview(session):
    """Return the header's counts as a dict.

    Tasks are counted only in jobs that have not ended, through the
    ``(job_id, state)`` index, so the cost follows the open work and not
    the farm's history.
    """
    agents = {str(state): 0 for state in AgentState}
    for state, count in session.execute(
            select(Agent.state, func.count()).group_by(Agent.state)):
        agents[state] = count
    open_jobs = select(Job.id).where(Job.state.in_(_OPEN_JOBS))
    frames = {"running": 0, "queued": 0}
    for state, count in session.execute(
            select(Task.state, func.count())
            .where(Task.job_id.in_(open_jobs),
                   Task.state.in_([str(s) for s in ACTIVE_TASK_STATES]
                                  + [str(WorkState.QUEUED)]))
            .group_by(Task.state)):
        key = "queued" if state == WorkState.QUEUED else "running"
        frames[key] += count
    return {"agents": agents, "frames": frames}


@ui.get("/ui/overview")
@login_required
def overview():
    """The header's counts (an htmx fragment)."""
    return render_template("_overview.html",
                           overview=farm_overview(db.session))
