"""
Prefetching the next frames of a job whose frames end within moments.

An agent asks for work when a slot frees, so a frame that lasts a few
milliseconds leaves its slot idle for a whole round trip to the master.
When the frames of a job end within ``agent_prefetch`` seconds, the agent
asks its sync for more assignments of that job than it runs at once and
queues them: a slot starts the next one the moment a process ends, and a
request to the master reports and fetches many frames at once. Frames
that take longer are never prefetched, so work is not held on one node
while another could start it.

These are pure functions and a small record of run times; the service
measures and asks.
"""

import math
from collections import OrderedDict

#: Seconds of work per slot an agent tries to hold queued.
WINDOW = 0.5

#: Weight of the newest run in a job's average run time.
SMOOTHING = 0.3

#: Jobs whose run times are remembered (the most recent ones).
REMEMBERED_JOBS = 32


class RunTimes:
    """The smoothed seconds per assignment of the jobs run lately, with
    the cpus and RAM of their assignments."""

    def __init__(self, remembered=REMEMBERED_JOBS):
        self.remembered = remembered
        self.jobs = OrderedDict()

    def add(self, job_id, seconds, cpus=1, ram=0):
        """Record that an assignment of ``job_id`` ran ``seconds``."""
        seconds = max(float(seconds), 0.0)
        last = self.jobs.pop(job_id, None)
        if last is not None:
            seconds = SMOOTHING * seconds + (1 - SMOOTHING) * last[0]
        self.jobs[job_id] = (seconds, cpus, ram)
        while len(self.jobs) > self.remembered:
            self.jobs.popitem(last=False)

    def get(self, job_id):
        """Return ``(seconds, cpus, ram)`` of ``job_id``, or None."""
        return self.jobs.get(job_id)

    def latest(self):
        """Return the job recorded last, or None."""
        return next(reversed(self.jobs), None)


def slots(cpus, ram, job_cpus, job_ram):
    """How many assignments of a job the agent runs at once (at least
    one)."""
    count = cpus // max(job_cpus, 1)
    if job_ram > 0:
        count = min(count, ram // job_ram)
    return max(count, 1)


def wanted(seconds, threshold, slot_count, waiting, limit,
           round_trip=None):
    """How many more assignments to ask for, or 0.

    ``seconds`` is the job's smoothed run time, ``threshold`` the agent's
    ``agent_prefetch`` setting (0: never), ``slot_count`` how many the
    agent runs at once, ``waiting`` how many it holds not started yet and
    ``limit`` the master's ``prefetch_limit``. The agent aims at about
    :data:`WINDOW` seconds of queued work per slot, or two of its
    requests' ``round_trip`` (seconds) when that is longer, so that its
    slots do not run dry while it waits for the answer.
    """
    if seconds is None or threshold <= 0 or limit <= 0 \
            or seconds >= threshold:
        return 0
    window = max(WINDOW, 2 * (round_trip or 0.0))
    target = min(limit, math.ceil(slot_count * window / max(seconds, 1e-3)))
    return max(0, target - waiting)
