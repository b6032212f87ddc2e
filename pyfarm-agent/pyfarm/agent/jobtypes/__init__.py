"""
Job types: how to turn an assignment into a process and read its output.

A job type is a class deriving from :class:`JobType`, found by name in the
entry point group ``pyfarm.jobtypes``; a studio adds its own from its own
package::

    [project.entry-points."pyfarm.jobtypes"]
    maya = "studio.farm.maya:MayaJobType"

The agent builds one instance per assignment (one process) from the
assignment the master sent: ``{"id", "job": {...}, "tasks": [...]}``.
"""

import os
from dataclasses import dataclass
from importlib.metadata import entry_points

from pyfarm.core.logger import getLogger

logger = getLogger("agent.jobtypes")

#: The entry point group job types are found in.
GROUP = "pyfarm.jobtypes"

#: Variables of the agent's environment a job's process never sees.
SECRET_VARIABLES = frozenset({"PYFARM_AGENT_TOKEN"})

#: How many of the last output lines a failure message quotes.
ERROR_LINES = 20

#: The longest failure message sent to the master, in characters.
MAX_ERROR = 4000


class JobTypeError(Exception):
    """A job type is missing or cannot run this job; the message says why."""


@dataclass(frozen=True)
class Progress:
    """Output said how far along a frame is (``value`` from 0 to 1).

    ``frame`` None means the first frame of the assignment not done yet.
    """

    value: float
    frame: int | None = None


@dataclass(frozen=True)
class FrameDone:
    """Output said ``frame`` is finished."""

    frame: int


class JobType:
    """Base class of job types; subclasses implement :meth:`argv`."""

    #: The name jobs use for this job type (the entry point's name).
    name = None

    def __init__(self, assignment, environ=None):
        self.assignment = assignment
        self.id = assignment["id"]
        self.job = assignment["job"]
        self.tasks = list(assignment["tasks"])
        self.data = self.job.get("data") or {}
        self.frames = [task["frame"] for task in self.tasks]
        self.agent_environ = os.environ if environ is None else environ

    @property
    def start(self):
        """The first frame of this assignment."""
        return self.frames[0]

    @property
    def end(self):
        """The last frame of this assignment."""
        return self.frames[-1]

    @property
    def by(self):
        """The step between two frames."""
        return self.job.get("by") or 1

    @property
    def cwd(self):
        """The directory to run in (None: the agent's own)."""
        return self.data.get("cwd") if isinstance(self.data, dict) else None

    def argv(self):
        """Return the command to run as a list of strings."""
        raise NotImplementedError(f"{type(self).__name__} must define argv()")

    def environ(self):
        """Return the process's environment.

        The agent's environment (without its secrets), then the job's
        ``environ``, then ``PYFARM_*`` variables describing the work.
        """
        env = {key: value for key, value in self.agent_environ.items()
               if key not in SECRET_VARIABLES}
        env.update({str(key): str(value)
                    for key, value in (self.job.get("environ") or {}).items()})
        env.update({
            "PYFARM_JOB_ID": str(self.job.get("id", "")),
            "PYFARM_ASSIGNMENT_ID": str(self.id),
            "PYFARM_FRAME_START": str(self.start),
            "PYFARM_FRAME_END": str(self.end),
            "PYFARM_FRAME_BY": str(self.by),
            "PYFARM_FRAMES": " ".join(str(frame) for frame in self.frames),
        })
        return env

    def parse_line(self, line):
        """Return the events a line of output tells of.

        Events are :class:`Progress` and :class:`FrameDone`; the base class
        finds none.
        """
        return []

    def succeeded(self, status, lines):
        """Whether the process did its work: by default, exit code 0.

        ``status`` is a :class:`~pyfarm.agent.process.ExitStatus`,
        ``lines`` the last lines of output.
        """
        return status.code == 0

    def error_message(self, status, lines):
        """Say why the work failed: how it ended and its last lines."""
        message = f"{status.describe()}"
        tail = list(lines)[-ERROR_LINES:]
        if tail:
            message += "; last lines of output:\n" + "\n".join(tail)
        if len(message) > MAX_ERROR:
            message = message[:200] + "\n...\n" + message[-(MAX_ERROR - 205):]
        return message


def available():
    """Return the names of the installed job types."""
    return sorted({point.name for point in entry_points(group=GROUP)})


def load(name):
    """Return the job type class registered as ``name``."""
    points = entry_points(group=GROUP, name=name)
    if not points:
        names = ", ".join(available()) or "none"
        raise JobTypeError(
            f"this agent has no job type {name!r} (installed: {names})")
    point = sorted(points, key=lambda p: p.value)[0]
    try:
        cls = point.load()
    except Exception as error:  # any import error of a third-party module
        logger.exception("cannot load job type %r from %s", name, point.value)
        raise JobTypeError(
            f"job type {name!r} ({point.value}) failed to load: "
            f"{error}") from None
    if not (isinstance(cls, type) and issubclass(cls, JobType)):
        raise JobTypeError(f"{point.value} is not a JobType class")
    return cls


def build(assignment, environ=None):
    """Return the job type instance that runs ``assignment``."""
    cls = load(assignment["job"]["jobtype"])
    return cls(assignment, environ=environ)
