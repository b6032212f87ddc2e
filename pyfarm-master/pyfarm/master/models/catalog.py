"""Job types, queues, tags and software: what jobs and agents refer to."""

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from pyfarm.master.db import db, utcnow


class JobType(db.Model):
    """A kind of job the agents know how to run (``command``, ...).

    ``parameters`` is a JSON Schema that a job's ``data`` must satisfy;
    ``software`` names the program the job type runs (informative), or is
    None. Agents report the job types they have installed when they
    register, which creates or updates these rows.
    """

    __tablename__ = "jobtypes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    parameters: Mapped[dict] = mapped_column(JSON, default=dict)
    software: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobQueue(db.Model):
    """A queue in a tree of queues, with priority, weight and limits."""

    __tablename__ = "jobqueues"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobqueues.id", ondelete="RESTRICT"))
    priority: Mapped[int] = mapped_column(default=0)
    weight: Mapped[int] = mapped_column(default=1)
    minimum_agents: Mapped[int | None]
    maximum_agents: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    parent: Mapped["JobQueue | None"] = relationship(
        remote_side="JobQueue.id", back_populates="children")
    children: Mapped[list["JobQueue"]] = relationship(
        back_populates="parent")


class Tag(db.Model):
    """A label on agents (``gpu``, ``bigmem``) and jobs."""

    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)


class Software(db.Model):
    """A program agents may have (``blender``, ``maya``)."""

    __tablename__ = "software"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)

    versions: Mapped[list["SoftwareVersion"]] = relationship(
        back_populates="software", cascade="all, delete-orphan",
        passive_deletes=True)


class SoftwareVersion(db.Model):
    """One version of a program; compared numerically by the scheduler."""

    __tablename__ = "software_versions"
    __table_args__ = (UniqueConstraint(
        "software_id", "version", name="uq_software_versions_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    software_id: Mapped[int] = mapped_column(
        ForeignKey("software.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(64))

    software: Mapped[Software] = relationship(back_populates="versions")


class PathMap(db.Model):
    """One shared folder as Linux, Windows and macOS mount it.

    At least two of ``linux``, ``windows`` and ``mac`` are set (a map
    with one folder maps nothing). With ``tag_id`` the map applies only
    to agents with that tag; without, to every agent.
    """

    __tablename__ = "path_maps"

    id: Mapped[int] = mapped_column(primary_key=True)
    linux: Mapped[str | None] = mapped_column(String(1024))
    windows: Mapped[str | None] = mapped_column(String(1024))
    mac: Mapped[str | None] = mapped_column(String(1024))
    tag_id: Mapped[int | None] = mapped_column(
        ForeignKey("tags.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tag: Mapped[Tag | None] = relationship()

    def __repr__(self):
        return f"<PathMap {self.id} linux={self.linux!r} " \
               f"windows={self.windows!r} mac={self.mac!r}>"
