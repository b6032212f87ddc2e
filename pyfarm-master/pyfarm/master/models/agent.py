"""Render nodes and their per-job failure memory."""

from datetime import datetime

from sqlalchemy import JSON, Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pyfarm.core.enums import AgentState
from pyfarm.master.db import db, utcnow
from pyfarm.master.models.catalog import SoftwareVersion, Tag

agent_tags = Table(
    "agent_tags", db.metadata,
    Column("agent_id", ForeignKey("agents.id", ondelete="CASCADE"),
           primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"),
           primary_key=True),
)

agent_software = Table(
    "agent_software", db.metadata,
    Column("agent_id", ForeignKey("agents.id", ondelete="CASCADE"),
           primary_key=True),
    Column("software_version_id",
           ForeignKey("software_versions.id", ondelete="CASCADE"),
           primary_key=True),
)


class Agent(db.Model):
    """A render node; ``id`` is the UUID the agent chose for itself."""

    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255), index=True)
    os: Mapped[str] = mapped_column(String(16))
    os_version: Mapped[str] = mapped_column(String(255), default="")
    cpus: Mapped[int]
    ram: Mapped[int]
    free_ram: Mapped[int] = mapped_column(default=0)
    gpus: Mapped[list] = mapped_column(JSON, default=list)
    disks: Mapped[list] = mapped_column(JSON, default=list)
    version: Mapped[str] = mapped_column(String(32), default="")
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(
        String(16), default=AgentState.ONLINE, index=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"))
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_heard_at: Mapped[datetime] = mapped_column(default=utcnow)

    tags: Mapped[list[Tag]] = relationship(secondary=agent_tags)
    software: Mapped[list[SoftwareVersion]] = relationship(
        secondary=agent_software)

    def __repr__(self):
        return f"<Agent {self.id} {self.hostname!r} {self.state}>"


class AgentJobFailure(db.Model):
    """How often an agent failed a job; used to keep it off that job."""

    __tablename__ = "agent_job_failures"

    agent_id: Mapped[str] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)
    job_id: Mapped[int] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True,
        index=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failed_at: Mapped[datetime] = mapped_column(default=utcnow)
