"""Jobs, their requirements and their dependencies."""

from datetime import datetime

from sqlalchemy import JSON, Column, ForeignKey, Index, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pyfarm.core.enums import WorkState
from pyfarm.master.db import db, utcnow
from pyfarm.master.models.catalog import JobQueue, JobType, Software, Tag
from pyfarm.master.models.user import User

job_tags = Table(
    "job_tags", db.metadata,
    Column("job_id", ForeignKey("jobs.id", ondelete="CASCADE"),
           primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"),
           primary_key=True),
)

job_dependencies = Table(
    "job_dependencies", db.metadata,
    Column("parent_id", ForeignKey("jobs.id", ondelete="CASCADE"),
           primary_key=True),
    Column("child_id", ForeignKey("jobs.id", ondelete="CASCADE"),
           primary_key=True),
    Index("ix_job_dependencies_child_id", "child_id"),
)

job_notified_users = Table(
    "job_notified_users", db.metadata,
    Column("job_id", ForeignKey("jobs.id", ondelete="CASCADE"),
           primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"),
           primary_key=True),
)


class Job(db.Model):
    """A submitted piece of work: a frame range run by one job type."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    jobtype_id: Mapped[int] = mapped_column(
        ForeignKey("jobtypes.id", ondelete="RESTRICT"))
    jobtype_version: Mapped[int] = mapped_column(default=1)
    state: Mapped[str] = mapped_column(
        String(16), default=WorkState.QUEUED, index=True)
    start: Mapped[int]
    end: Mapped[int]
    by: Mapped[int] = mapped_column(default=1)
    batch: Mapped[int] = mapped_column(default=1)
    priority: Mapped[int] = mapped_column(default=0)
    weight: Mapped[int] = mapped_column(default=1)
    minimum_agents: Mapped[int | None]
    maximum_agents: Mapped[int | None]
    requeue: Mapped[int] = mapped_column(default=3)
    cpus: Mapped[int] = mapped_column(default=1)
    ram: Mapped[int] = mapped_column(default=0)
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    environ: Mapped[dict] = mapped_column(JSON, default=dict)
    notes: Mapped[str] = mapped_column(Text, default="")
    jobqueue_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobqueues.id", ondelete="SET NULL"), index=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    jobtype: Mapped[JobType] = relationship()
    jobqueue: Mapped[JobQueue | None] = relationship()
    user: Mapped[User | None] = relationship()
    tags: Mapped[list[Tag]] = relationship(secondary=job_tags)
    notified_users: Mapped[list[User]] = relationship(
        secondary=job_notified_users)
    tag_requirements: Mapped[list["JobTagRequirement"]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True)
    software_requirements: Mapped[list["JobSoftwareRequirement"]] = (
        relationship(cascade="all, delete-orphan", passive_deletes=True))
    parents: Mapped[list["Job"]] = relationship(
        secondary=job_dependencies,
        primaryjoin=lambda: Job.id == job_dependencies.c.child_id,
        secondaryjoin=lambda: Job.id == job_dependencies.c.parent_id,
        back_populates="children")
    children: Mapped[list["Job"]] = relationship(
        secondary=job_dependencies,
        primaryjoin=lambda: Job.id == job_dependencies.c.parent_id,
        secondaryjoin=lambda: Job.id == job_dependencies.c.child_id,
        back_populates="parents")

    def __repr__(self):
        return f"<Job {self.id} {self.title!r} {self.state}>"


class JobTagRequirement(db.Model):
    """A tag an agent must have (or, negated, must not have)."""

    __tablename__ = "job_tag_requirements"

    job_id: Mapped[int] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(
        ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    negate: Mapped[bool] = mapped_column(default=False)

    tag: Mapped[Tag] = relationship()


class JobSoftwareRequirement(db.Model):
    """A program an agent must have, optionally within a version range."""

    __tablename__ = "job_software_requirements"

    job_id: Mapped[int] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    software_id: Mapped[int] = mapped_column(
        ForeignKey("software.id", ondelete="CASCADE"), primary_key=True)
    min_version: Mapped[str | None] = mapped_column(String(64))
    max_version: Mapped[str | None] = mapped_column(String(64))

    software: Mapped[Software] = relationship()
