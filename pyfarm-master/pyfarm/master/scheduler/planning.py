"""
Pure planning rules of the scheduler: no database, no clock.

The claim step (:mod:`pyfarm.master.scheduler.claim`) loads plain values
from the database and asks these functions what an agent may take.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from pyfarm.core.versions import in_range


@dataclass(frozen=True)
class AgentProfile:
    """What the scheduler needs to know about an agent.

    ``software`` maps a software id to the versions the agent has.
    """

    id: str
    cpus: int
    ram: int
    tag_ids: frozenset = frozenset()
    software: dict = field(default_factory=dict)


@dataclass(frozen=True)
class JobCandidate:
    """A job that may have work for an agent.

    ``tag_requirements`` holds ``(tag_id, negate)`` pairs and
    ``software_requirements`` ``(software_id, min_version, max_version)``.
    """

    id: int
    priority: int = 0
    queue_priority: int = 0
    weight: int = 1
    cpus: int = 1
    ram: int = 0
    by: int = 1
    batch: int = 1
    maximum_agents: int | None = None
    tag_requirements: tuple = ()
    software_requirements: tuple = ()


def free_capacity(cpus, ram, held):
    """Return ``(free_cpus, free_ram)`` of an agent.

    ``held`` yields ``(job_cpus, job_ram)`` once per distinct assignment
    the agent holds (a batch of frames is one process).
    """
    for job_cpus, job_ram in held:
        cpus -= job_cpus
        ram -= job_ram
    return cpus, ram


def fits(free, job):
    """Whether ``job`` fits in ``free`` = ``(free_cpus, free_ram)``."""
    free_cpus, free_ram = free
    return job.cpus <= free_cpus and job.ram <= free_ram


def fit_count(free, job):
    """How many assignments of ``job`` fit in ``free`` side by side."""
    free_cpus, free_ram = free
    if job.cpus > free_cpus or job.ram > free_ram:
        return 0
    count = free_cpus // max(job.cpus, 1)
    if job.ram > 0:
        count = min(count, free_ram // job.ram)
    return count


def take(free, job):
    """Return the capacity left after one assignment of ``job``."""
    return free[0] - job.cpus, free[1] - job.ram


def slots_for(cpus, ram, job):
    """How many assignments of ``job`` an agent with ``cpus`` and ``ram``
    runs at once (at least one: an agent matching a job runs it)."""
    slots = cpus // max(job.cpus, 1)
    if job.ram > 0:
        slots = min(slots, ram // job.ram)
    return max(slots, 1)


def prefetch_room(cpus, ram, job, held, limit):
    """How many more assignments of ``job`` an agent may prefetch.

    An agent asks to queue assignments of a job whose frames end within
    moments (see the agent's ``prefetch_under``), so that a slot starts
    the next frame at once instead of waiting for a sync. It may hold at
    most ``limit`` assignments beyond what it runs at once: ``held``
    counts every assignment it holds, running or waiting.
    """
    return max(0, slots_for(cpus, ram, job) + limit - held)


def meets_tags(tag_ids, requirements):
    """Whether an agent with ``tag_ids`` satisfies every tag requirement.

    A requirement ``(tag_id, negate)`` needs the tag, or with ``negate``
    needs its absence.
    """
    return all((tag_id in tag_ids) != bool(negate)
               for tag_id, negate in requirements)


def meets_software(software, requirements):
    """Whether an agent's ``software`` satisfies every requirement.

    ``software`` maps a software id to versions; a requirement
    ``(software_id, minimum, maximum)`` needs one version in the range
    (inclusive, see :func:`pyfarm.core.versions.in_range`).
    """
    for software_id, minimum, maximum in requirements:
        versions = software.get(software_id, ())
        if not any(_in_range(version, minimum, maximum)
                   for version in versions):
            return False
    return True


def with_program(requirements, program_id):
    """Return a job's software requirements including its job type's
    program.

    ``program_id`` is the software id of the program the job type runs
    (``JobType.software``), or ``None``. An agent without any version of
    it cannot run the job, so the job needs one version unless one of
    ``requirements`` already names that software with a range.
    """
    requirements = tuple(requirements)
    if program_id is None or any(software_id == program_id
                                 for software_id, _, _ in requirements):
        return requirements
    return requirements + ((program_id, None, None),)


def _in_range(version, minimum, maximum):
    # A version no number can be read from (stored before registrations
    # were checked) matches no range rather than stopping the scheduler.
    try:
        return in_range(version, minimum, maximum)
    except ValueError:
        return False


def matches(agent, job):
    """Whether ``agent`` (an :class:`AgentProfile`) may run ``job``."""
    return (job.cpus <= agent.cpus and job.ram <= agent.ram
            and meets_tags(agent.tag_ids, job.tag_requirements)
            and meets_software(agent.software, job.software_requirements))


def is_blocklisted(failures, last_failed_at, now, limit, forgive_seconds):
    """Whether an agent with ``failures`` on a job is kept off that job.

    It is after ``limit`` failures, until ``forgive_seconds`` have passed
    since the last one.
    """
    if failures < limit or last_failed_at is None:
        return False
    return last_failed_at > now - timedelta(seconds=forgive_seconds)


def below_maximum(maximum_agents, other_agents):
    """Whether one more agent may work on a job.

    ``other_agents`` counts the distinct other agents holding its tasks.
    """
    return maximum_agents is None or other_agents < maximum_agents


def order_key(job):
    """Sort key: job priority, then queue priority, then weight (all
    highest first), then submission order (lowest id first)."""
    return (-job.priority, -job.queue_priority, -job.weight, job.id)


def order_jobs(jobs):
    """Return ``jobs`` in the order the scheduler serves them."""
    return sorted(jobs, key=order_key)


def consecutive_batch(tasks, by, size):
    """Return the first run of up to ``size`` tasks, each ``by`` apart.

    ``tasks`` are ``(task_id, frame)`` pairs sorted by frame; the run
    starts at the lowest frame and stops at the first gap.
    """
    run = []
    for task in tasks:
        if len(run) >= size:
            break
        if run and task[1] - run[-1][1] != by:
            break
        run.append(task)
    return run
