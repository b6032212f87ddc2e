"""
Enums and platform constants shared by the master and the agent.

States are :class:`enum.StrEnum` members, so they compare equal to their
string values and serialise to JSON without help.
"""

import enum
import sys


class WorkState(enum.StrEnum):
    """State of a job or a task.

    Jobs use ``queued running paused done failed``; tasks use ``queued
    assigned running done failed``.
    """

    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"


#: Job states a job can be in.
JOB_STATES = frozenset(
    {WorkState.QUEUED, WorkState.RUNNING, WorkState.PAUSED,
     WorkState.DONE, WorkState.FAILED})

#: Task states a task can be in.
TASK_STATES = frozenset(
    {WorkState.QUEUED, WorkState.ASSIGNED, WorkState.RUNNING,
     WorkState.DONE, WorkState.FAILED})

#: Task states in which an agent holds the task.
ACTIVE_TASK_STATES = frozenset({WorkState.ASSIGNED, WorkState.RUNNING})

#: States after which nothing more happens without a user's action.
FINAL_STATES = frozenset({WorkState.DONE, WorkState.FAILED})


class AgentState(enum.StrEnum):
    """State of a render node as the master sees it."""

    ONLINE = "online"
    RUNNING = "running"
    OFFLINE = "offline"
    DISABLED = "disabled"


class OperatingSystem(enum.StrEnum):
    """Operating system families an agent may run."""

    LINUX = "linux"
    MAC = "mac"
    WINDOWS = "windows"
    BSD = "bsd"
    OTHER = "other"

    @classmethod
    def current(cls, platform=None):
        """Return the member for ``platform`` (default ``sys.platform``)."""
        platform = sys.platform if platform is None else platform
        if platform.startswith("linux"):
            return cls.LINUX
        if platform == "darwin":
            return cls.MAC
        if platform in ("win32", "cygwin"):
            return cls.WINDOWS
        if "bsd" in platform:
            return cls.BSD
        return cls.OTHER


class Role(enum.StrEnum):
    """What a user may do: see DESIGN.md, "Auth"."""

    ADMIN = "admin"
    USER = "user"
    AGENT = "agent"


#: The operating system this interpreter runs on.
OS = OperatingSystem.current()
LINUX = OS is OperatingSystem.LINUX
MAC = OS is OperatingSystem.MAC
WINDOWS = OS is OperatingSystem.WINDOWS
BSD = OS is OperatingSystem.BSD
POSIX = not WINDOWS
