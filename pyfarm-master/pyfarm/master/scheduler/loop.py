"""
The scheduler loop behind ``pyfarm-master scheduler``.

Every ``scheduler_interval`` seconds: declare agents not heard from within
``lost_timeout`` offline (after a grace period of ``lost_timeout`` from
the loop's start), roll up the unfinished jobs that have nothing left to
run (:func:`~pyfarm.master.services.rollup.settle_stale_jobs`: the jobs
whose last tasks ended while a claim raced with them), then, unless
syncs claim (``claim_on_sync``), claim work for every online agent with
free capacity (agents holding an assignment per cpu are not even asked).
Each agent's claim is its own short transaction. Several loops may run
against one PostgreSQL database.

Why the loop leaves claiming to the syncs when they claim: an agent
learns of work only when it syncs, and its sync claims then, so a claim
by the loop brings the agent nothing sooner. It would only put the claims
of every idle agent into this one process, one after the other (at a
thousand agents most of them idle between syncs, a pass took longer than
the agents' sync interval), and hold frames for agents that are not
asking while others that are asking go without.

The clock and the sleep function are injected so that tests never wait.
"""

import time

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from pyfarm.core.logger import getLogger
from pyfarm.master.db import db, utcnow
from pyfarm.master.models import Agent, Task
from pyfarm.master.scheduler.claim import (
    ACTIVE,
    WORKING_AGENT_STATES,
    claim_for_agent,
)
from pyfarm.master.services.agents import mark_lost_agents
from pyfarm.master.services.rollup import settle_stale_jobs

logger = getLogger("master.scheduler")


def run_pass(session, now, settings, started_at=None):
    """Run one scheduler pass; commit as it goes.

    Returns ``{"lost": [agent ids], "settled": [job ids],
    "assignments": n}``.
    """
    lost = mark_lost_agents(session, now, settings, started_at=started_at)
    session.commit()
    settled = settle_stale_jobs(session, now)
    session.commit()
    if settled:
        logger.info("rolled up jobs %s: nothing left to run", settled)
    if settings.claim_on_sync:
        return {"lost": lost, "settled": settled, "assignments": 0}
    agent_ids = session.execute(agents_with_room()).scalars().all()
    assignments = 0
    for agent_id in agent_ids:
        agent = session.get(Agent, agent_id, populate_existing=True)
        if agent is None:
            continue
        try:
            assignments += len(claim_for_agent(session, agent, now,
                                               settings))
            session.commit()
        except DBAPIError:
            # A deadlock or serialisation failure with another master
            # costs this agent one pass, not the whole loop.
            session.rollback()
            logger.exception("claiming for agent %s failed; trying again "
                             "next pass", agent_id)
    # End the read transaction too: on SQLite it holds the write lock.
    session.commit()
    return {"lost": lost, "settled": settled, "assignments": assignments}


def agents_with_room():
    """Return a SELECT of the working agents that may have room for work,
    longest unheard first.

    Every assignment takes at least one cpu, so an agent holding as many
    assignments as it has cpus is full and left out: with a thousand busy
    agents a pass costs one query, not a claim per agent. (The claim
    checks the room of the others exactly, ram included.)
    """
    held = (select(func.count(func.distinct(Task.assignment_id)))
            .where(Task.agent_id == Agent.id, Task.state.in_(ACTIVE))
            .correlate(Agent).scalar_subquery())
    return (select(Agent.id)
            .where(Agent.state.in_(WORKING_AGENT_STATES), held < Agent.cpus)
            .order_by(Agent.last_heard_at, Agent.id))


def run(app, once=False, clock=None, sleep=None, stop=None,
        started_at=None):
    """Run the scheduler loop of ``app``; return the number of passes.

    ``clock`` returns the current aware UTC time (default
    :func:`~pyfarm.master.db.utcnow`), ``sleep`` waits a number of seconds
    (default :func:`time.sleep`) and ``stop`` says when to end (default:
    never, unless ``once``). The grace period for lost agents runs from
    ``started_at`` (default: now), so a single ``once`` pass declares no
    agent lost unless it is given an earlier ``started_at``.
    """
    clock = clock or utcnow
    sleep = sleep or time.sleep
    stop = stop or (lambda: False)
    settings = app.config["PYFARM"]
    passes = 0
    with app.app_context():
        started_at = started_at or clock()
        logger.info("scheduler started; every %ss, agents lost after %ss "
                    "(not before %s)", settings.scheduler_interval,
                    settings.lost_timeout, started_at.isoformat())
        while True:
            try:
                summary = run_pass(db.session, clock(), settings,
                                   started_at)
                if summary["lost"] or summary["assignments"]:
                    logger.info("pass: %d assignment(s), lost agents %s",
                                summary["assignments"], summary["lost"])
            except DBAPIError:
                db.session.rollback()
                if once:
                    raise
                # The database went away for a moment: keep the loop
                # alive and try again next pass.
                logger.exception("scheduler pass failed")
            passes += 1
            if once or stop():
                break
            sleep(settings.scheduler_interval)
        db.session.remove()
    return passes
