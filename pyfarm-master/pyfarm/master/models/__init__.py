"""
SQLAlchemy models, one module per noun.

Importing this package registers every table on ``db.metadata``.
"""

from pyfarm.master.models.agent import Agent, AgentJobFailure
from pyfarm.master.models.catalog import (
    JobQueue,
    JobType,
    PathMap,
    Software,
    SoftwareVersion,
    Tag,
)
from pyfarm.master.models.job import (
    Job,
    JobSoftwareRequirement,
    JobTagRequirement,
)
from pyfarm.master.models.task import Task, TaskAttempt
from pyfarm.master.models.user import ApiToken, User

__all__ = [
    "Agent", "AgentJobFailure", "ApiToken", "Job", "JobQueue",
    "JobSoftwareRequirement", "JobTagRequirement", "JobType", "PathMap",
    "Software", "SoftwareVersion", "Tag", "Task", "TaskAttempt", "User",
]
