"""Tasks (one frame of a job) and their attempts."""

from datetime import datetime

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pyfarm.core.enums import WorkState
from pyfarm.master.db import db, utcnow

#: Outcomes of an attempt beyond the task states: the agent was lost, or
#: a user cancelled the work.
ATTEMPT_LOST = "lost"
ATTEMPT_CANCELLED = "cancelled"


class Task(db.Model):
    """One frame of a job.

    ``attempt`` counts assignments; ``failures`` counts the attempts that
    failed through the task's own fault (not lost agents). ``assignment_id``
    names the batch the current attempt belongs to (one process on the
    agent, one log).
    """

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_job_id_state_frame", "job_id", "state", "frame"),
        Index("ix_tasks_agent_id_state", "agent_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"))
    frame: Mapped[int]
    tile: Mapped[int | None]
    state: Mapped[str] = mapped_column(String(16), default=WorkState.QUEUED)
    agent_id: Mapped[str | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"))
    assignment_id: Mapped[str | None] = mapped_column(String(36))
    attempt: Mapped[int] = mapped_column(default=0)
    failures: Mapped[int] = mapped_column(default=0)
    progress: Mapped[float] = mapped_column(default=0.0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_failed_agent_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    assigned_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    job = relationship("Job")
    agent = relationship("Agent")
    attempts: Mapped[list["TaskAttempt"]] = relationship(
        back_populates="task", cascade="all, delete-orphan",
        passive_deletes=True, order_by="TaskAttempt.attempt")

    def __repr__(self):
        return f"<Task {self.id} job={self.job_id} frame={self.frame} " \
               f"{self.state} attempt={self.attempt}>"


class TaskAttempt(db.Model):
    """One run of a task on one agent; its log is the assignment's log.

    ``outputs`` lists the files the run wrote, as the agent reported them
    with ``done`` (None when it reported none).
    """

    __tablename__ = "task_attempts"
    __table_args__ = (
        UniqueConstraint("task_id", "attempt",
                         name="uq_task_attempts_task_id_attempt"),
        Index("ix_task_attempts_agent_id_assigned_at",
              "agent_id", "assigned_at"),
        Index("ix_task_attempts_assignment_id", "assignment_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"))
    attempt: Mapped[int]
    agent_id: Mapped[str | None] = mapped_column(String(36))
    assignment_id: Mapped[str] = mapped_column(String(36))
    state: Mapped[str] = mapped_column(String(16), default=WorkState.ASSIGNED)
    error: Mapped[str | None] = mapped_column(Text)
    outputs: Mapped[list | None] = mapped_column(JSON(none_as_null=True))
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    task: Mapped[Task] = relationship(back_populates="attempts")
