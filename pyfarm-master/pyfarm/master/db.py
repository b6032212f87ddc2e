"""
The SQLAlchemy base, the Flask-SQLAlchemy extension and shared types.
"""

import functools
import random
import sqlite3
import time
from contextvars import ContextVar
from datetime import datetime, timezone

from flask import has_request_context, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, registry
from sqlalchemy.types import TypeDecorator

from pyfarm.core.logger import getLogger
from pyfarm.master.errors import Busy

logger = getLogger("master.db")

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


#: PostgreSQL's SQLSTATEs of a transaction aborted because it lost to a
#: concurrent one: deadlock_detected and serialization_failure.
RETRYABLE_SQLSTATES = {"40P01": "deadlock", "40001": "serialization failure"}

#: What SQLite says when the busy timeout ran out waiting for a lock.
SQLITE_LOCKED = "database is locked"

#: Whether a :func:`retry_transaction` call is running in this context.
_retrying = ContextVar("pyfarm_master_retrying", default=False)


def sqlstate(error):
    """Return the SQLSTATE of a database error, or None.

    psycopg 3 names it ``sqlstate``, psycopg2 ``pgcode``; SQLite has none.
    """
    orig = getattr(error, "orig", None)
    return (getattr(orig, "sqlstate", None)
            or getattr(orig, "pgcode", None))


def retryable_error(error):
    """Whether ``error`` aborted a transaction that may simply run again.

    True for PostgreSQL's deadlock (40P01) and serialization failure
    (40001), and for SQLite's "database is locked" once its busy timeout
    ran out; False for everything else.
    """
    if not isinstance(error, DBAPIError):
        return False
    if sqlstate(error) in RETRYABLE_SQLSTATES:
        return True
    return (isinstance(error, OperationalError)
            and isinstance(error.orig, sqlite3.OperationalError)
            and SQLITE_LOCKED in str(error.orig))


def busy_cause(error):
    """Name why the database refused: "deadlock", "serialization failure"
    or "lock timeout"."""
    return RETRYABLE_SQLSTATES.get(sqlstate(error), "lock timeout")


def retry_transaction(attempts=3, sleep=time.sleep, rand=random.random):
    """Decorate a function whose work is one transaction of ``db.session``
    so that it runs again when the database aborted it (deadlock,
    serialization failure, SQLite's lock timeout).

    On such an error the session is rolled back (which expires every
    object it holds, so the next attempt reads afresh), a warning is
    logged and, after a short jittered pause of ``0.02 * attempt * (0.5 +
    rand())`` seconds, the function is called again with the same
    arguments. Other exceptions pass through untouched. When the last of
    ``attempts`` fails too, or at once for SQLite (whose busy timeout has
    waited long already), the session is rolled back and
    :class:`~pyfarm.master.errors.Busy` (503) is raised.

    On a Flask view, put it below the route and authentication
    decorators: the whole view runs again, and ``request.get_json()``
    returns the body it cached. The function must commit its own work and
    have no effect outside the database that cannot be repeated. A
    decorated function called by another leaves the retrying to the
    outermost one, which owns the transaction.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts!r}")

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            if _retrying.get():
                return function(*args, **kwargs)
            token = _retrying.set(True)
            try:
                return _run(function, args, kwargs, attempts, sleep, rand)
            finally:
                _retrying.reset(token)
        return wrapper
    return decorate


def _run(function, args, kwargs, attempts, sleep, rand):
    """Call ``function`` until it returns, up to ``attempts`` times (see
    :func:`retry_transaction`)."""
    name = getattr(function, "__qualname__", repr(function))
    for attempt in range(1, attempts + 1):
        try:
            return function(*args, **kwargs)
        except DBAPIError as error:
            if not retryable_error(error):
                raise
            db.session.rollback()
            # SQLite's lock timeout has waited its whole busy timeout
            # already: answer at once rather than wait that long again.
            if attempt == attempts or sqlstate(error) is None:
                logger.warning("%s: attempt %d of %d lost to a %s; giving "
                               "up", name, attempt, attempts,
                               describe(error))
                raise Busy(
                    f"the database was busy ({busy_cause(error)}) "
                    f"{attempts} times in a row; send the request "
                    f"again") from error
            delay = 0.02 * attempt * (0.5 + rand())
            logger.warning("%s: attempt %d of %d lost to a %s; retrying in "
                           "%.3f s", name, attempt, attempts,
                           describe(error), delay)
            sleep(delay)


def describe(error):
    """Describe a retryable error for the log: its cause and SQLSTATE."""
    code = sqlstate(error)
    detail = f"SQLSTATE {code}" if code else f"SQLite: {SQLITE_LOCKED}"
    return f"{busy_cause(error)} ({detail})"
