"""
The SQLAlchemy base, the Flask-SQLAlchemy extension and shared types.
"""

from datetime import datetime, timezone

from flask import has_request_context, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, registry
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """A timestamp stored as naive UTC and read back as aware UTC.

    SQLite keeps no time zone; storing naive UTC everywhere makes both
    databases compare the same way.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass aware UTC")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    """Declarative base with a constraint naming convention."""

    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: UTCDateTime})


db = SQLAlchemy(model_class=Base, disable_autonaming=True)


def utcnow():
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def is_sqlite(url):
    """Whether the database URL names SQLite."""
    return str(url).startswith("sqlite")


def reads_only():
    """Whether the current request is a page of the web UI, which only
    reads (see :func:`configure_sqlite`)."""
    return (has_request_context() and request.method in ("GET", "HEAD")
            and request.blueprint == "ui")


def configure_sqlite(engine: Engine, busy_timeout_ms=30000):
    """Make an SQLite engine safe for several processes.

    WAL journal, foreign keys on, a busy timeout, and ``BEGIN IMMEDIATE``
    so that a transaction takes the write lock up front instead of failing
    with "database is locked" when it upgrades from reading to writing.

    The web UI's pages (GET requests of the ``ui`` blueprint) only read:
    they begin a plain deferred transaction, which in WAL mode reads a
    snapshot without waiting for a writer, so a page open all day never
    stalls behind the agents' updates. Such a request must not write.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, connection_record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql(
            "BEGIN" if reads_only() else "BEGIN IMMEDIATE")

    return engine
