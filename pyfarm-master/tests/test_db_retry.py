"""Running a transaction again after the database aborted it.

PostgreSQL aborts one of two transactions that deadlock (SQLSTATE 40P01)
or cannot be serialised (40001); SQLite gives up with "database is
locked" after its busy timeout. :func:`retry_transaction` rolls back and
runs the function again, and answers 503 when it keeps losing.
"""

import logging
import sqlite3
import threading
import time

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from pyfarm.core.enums import Role
from pyfarm.master.db import db, retry_transaction, retryable_error
from pyfarm.master.errors import Busy
from pyfarm.master.models import User


class PsycopgError(Exception):
    """Stands for a psycopg 3 error: the code is ``sqlstate``."""

    def __init__(self, sqlstate):
        super().__init__(f"error {sqlstate}")
        self.sqlstate = sqlstate


class Psycopg2Error(Exception):
    """Stands for a psycopg2 error: the code is ``pgcode``."""

    def __init__(self, pgcode):
        super().__init__(f"error {pgcode}")
        self.pgcode = pgcode


def wrapped(orig, kind=OperationalError):
    """Wrap a DBAPI error as SQLAlchemy does."""
    return kind("UPDATE users SET name = ?", {}, orig)


def deadlock():
    return wrapped(PsycopgError("40P01"))


def no_sleep(seconds):
    """A ``sleep`` that returns at once."""


# retryable_error


@pytest.mark.parametrize("code", ["40P01", "40001"])
@pytest.mark.parametrize("orig", [PsycopgError, Psycopg2Error])
@pytest.mark.parametrize("kind", [OperationalError, DBAPIError])
def test_postgresql_deadlock_and_serialization_failure_are_retryable(
        code, orig, kind):
    assert retryable_error(wrapped(orig(code), kind))


def test_sqlite_database_is_locked_is_retryable():
    error = wrapped(sqlite3.OperationalError("database is locked"))
    assert retryable_error(error)


@pytest.mark.parametrize("error", [
    wrapped(PsycopgError("23505"), IntegrityError),
    wrapped(Psycopg2Error("57014")),
    wrapped(PsycopgError(None)),
    wrapped(sqlite3.OperationalError("no such table: users")),
    wrapped(sqlite3.IntegrityError("UNIQUE constraint failed"),
            IntegrityError),
    # "locked" from something that is not SQLite
    wrapped(Exception("database is locked")),
    # the right code outside a SQLAlchemy database error
    PsycopgError("40P01"),
    ValueError("database is locked"),
])
def test_other_errors_are_not_retryable(error):
    assert not retryable_error(error)


# retry_transaction with fabricated errors


def test_runs_again_after_a_deadlock_and_returns_the_result(app, caplog):
    calls, pauses = [], []

    @retry_transaction(sleep=pauses.append, rand=lambda: 0.5)
    def work(value):
        calls.append(value)
        if len(calls) < 3:
            raise deadlock()
        return value * 2

    with caplog.at_level(logging.WARNING, logger="pyfarm.master.db"):
        assert work(21) == 42
    assert calls == [21, 21, 21]
    assert pauses == pytest.approx([0.02, 0.04])
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "attempt 1 of 3" in messages[0]
    assert "deadlock (SQLSTATE 40P01)" in messages[0]
    assert "attempt 2 of 3" in messages[1]


def test_pause_is_jittered_and_grows_with_the_attempt(app):
    pauses = []
    values = iter([0.0, 1.0, 0.25])

    @retry_transaction(attempts=4, sleep=pauses.append,
                       rand=lambda: next(values))
    def work():
        if len(pauses) < 3:
            raise deadlock()

    work()
    assert pauses == pytest.approx([0.01, 0.06, 0.045])


def test_gives_up_after_attempts_with_busy(app):
    calls, pauses = [], []

    @retry_transaction(attempts=4, sleep=pauses.append)
    def work():
        calls.append(1)
        raise wrapped(Psycopg2Error("40001"))

    with pytest.raises(Busy) as raised:
        work()
    assert len(calls) == 4
    assert len(pauses) == 3
    assert raised.value.status == 503
    assert "serialization failure" in raised.value.message
    assert "send the request again" in raised.value.message
    assert retryable_error(raised.value.__cause__)


def test_sqlite_lock_timeout_gives_busy_at_once_naming_it(app):
    # SQLite waited its whole busy timeout already: no second wait.
    calls, pauses = [], []

    @retry_transaction(attempts=3, sleep=pauses.append)
    def work():
        calls.append(1)
        raise wrapped(sqlite3.OperationalError("database is locked"))

    with pytest.raises(Busy, match="lock timeout"):
        work()
    assert calls == [1] and pauses == []


def test_other_errors_pass_through_at_once(app):
    calls, pauses = [], []
    error = wrapped(PsycopgError("23505"), IntegrityError)

    @retry_transaction(sleep=pauses.append)
    def work():
        calls.append(1)
        raise error

    with pytest.raises(IntegrityError) as raised:
        work()
    assert raised.value is error
    assert calls == [1]
    assert pauses == []

    @retry_transaction(sleep=pauses.append)
    def bad():
        calls.append(2)
        raise KeyError("x")

    with pytest.raises(KeyError):
        bad()
    assert calls == [1, 2]
    assert pauses == []


def test_rejects_fewer_than_one_attempt():
    with pytest.raises(ValueError, match="attempts"):
        retry_transaction(attempts=0)


def test_keeps_the_function_name(app):
    @retry_transaction()
    def register_agent():
        """Docstring."""

    assert register_agent.__name__ == "register_agent"
    assert register_agent.__doc__ == "Docstring."


def test_retry_starts_from_a_clean_session(app, make_user):
    # The first attempt added a user and changed another before it lost;
    # the second attempt sees neither.
    make_user("alice")
    seen = []

    @retry_transaction(sleep=no_sleep)
    def work():
        alice = db.session.execute(
            select(User).where(User.name == "alice")).scalar_one()
        seen.append((alice.email, db.session.execute(
            select(User.name).order_by(User.name)).scalars().all()))
        if len(seen) == 1:
            alice.email = "half@example.com"
            db.session.add(User(name="half", role=Role.USER))
            db.session.flush()
            raise deadlock()
        db.session.add(User(name="whole", role=Role.USER))
        db.session.commit()

    work()
    assert seen == [(None, ["alice"]), (None, ["alice"])]
    db.session.expire_all()
    names = db.session.execute(
        select(User.name).order_by(User.name)).scalars().all()
    assert names == ["alice", "whole"]
    assert db.session.execute(
        select(User.email).where(User.name == "alice")).scalar_one() is None


def test_nested_calls_leave_the_retry_to_the_outermost(app):
    inner_calls, outer_calls = [], []

    @retry_transaction(sleep=no_sleep)
    def inner():
        inner_calls.append(1)
        if len(inner_calls) == 1:
            raise deadlock()

    @retry_transaction(sleep=no_sleep)
    def outer():
        outer_calls.append(1)
        inner()
        return "done"

    assert outer() == "done"
    # The inner call did not run its half of a rolled back transaction
    # again on its own: the whole outer function ran again.
    assert inner_calls == [1, 1]
    assert outer_calls == [1, 1]
    # Outside any other call it retries itself.
    inner_calls.clear()
    inner()
    assert inner_calls == [1, 1]


# Through the application


def test_busy_in_a_request_answers_json_503(app, client):
    calls = []

    @retry_transaction(sleep=no_sleep)
    def always_deadlocked():
        calls.append(1)
        raise deadlock()

    @retry_transaction(sleep=no_sleep)
    def deadlocked_once():
        calls.append(2)
        if calls.count(2) == 1:
            raise deadlock()
        return {"ok": True}

    app.add_url_rule("/api/v1/test-busy", view_func=always_deadlocked)
    app.add_url_rule("/api/v1/test-once", view_func=deadlocked_once)
    answer = client.get("/api/v1/test-busy")
    assert answer.status_code == 503
    assert answer.is_json
    assert "database was busy (deadlock)" in answer.get_json()["error"]
    assert answer.headers["Retry-After"] == "1"
    assert calls == [1, 1, 1]

    answer = client.get("/api/v1/test-once")
    assert answer.status_code == 200
    assert answer.get_json() == {"ok": True}


def test_busy_to_dict_and_status():
    error = Busy()
    assert error.status == 503
    assert error.to_dict() == {
        "error": "the database was busy (deadlock or lock timeout); "
                 "send the request again"}


# A real deadlock on PostgreSQL


def make_users(names):
    """Add users; return their ids in the same order."""
    users = [User(name=name, role=Role.USER) for name in names]
    db.session.add_all(users)
    db.session.commit()
    return [user.id for user in users]


def lock_user(user_id):
    """``SELECT ... FOR UPDATE`` one user; return it."""
    return db.session.execute(
        select(User).where(User.id == user_id).with_for_update()
    ).scalar_one()


def wait_until_waiting(pid, timeout=10.0):
    """Wait until the backend ``pid`` waits for a lock (read in the
    current session, which ``pg_locks`` shows live)."""
    deadline = time.monotonic() + timeout
    query = text("SELECT count(*) FROM pg_locks "
                 "WHERE pid = :pid AND NOT granted")
    while db.session.execute(query, {"pid": pid}).scalar_one() == 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"backend {pid} never waited for a lock")
        time.sleep(0.005)


def test_real_deadlock_on_postgresql_is_retried(app, backend, caplog):
    if backend != "postgresql":
        pytest.skip("a deadlock needs row locks taken in two orders at "
                    "once; SQLite serialises writers")
    first, second = make_users(["first", "second"])
    barrier = threading.Barrier(2, timeout=10)
    other_pid = []
    attempts, errors, failures = [], [], []

    @retry_transaction(sleep=no_sleep)
    def retried():
        # Locks first, then second; on a short deadlock_timeout this
        # transaction is the one PostgreSQL aborts.
        attempts.append(1)
        db.session.execute(text("SET LOCAL deadlock_timeout = '100ms'"))
        lock_user(first).email = f"retried-{len(attempts)}@example.com"
        db.session.flush()
        if len(attempts) == 1:
            barrier.wait()
            wait_until_waiting(other_pid[0])
        try:
            lock_user(second)
        except DBAPIError as error:
            errors.append(error)
            raise
        db.session.commit()

    def plain():
        # Locks second, then first, as another request would.
        db.session.execute(text("SET LOCAL deadlock_timeout = '10s'"))
        other_pid.append(db.session.execute(
            text("SELECT pg_backend_pid()")).scalar_one())
        lock_user(second).email = "plain@example.com"
        db.session.flush()
        barrier.wait()
        lock_user(first)
        db.session.commit()

    def run(function):
        with app.app_context():
            try:
                function()
            except BaseException as error:  # reported by the test
                failures.append(error)
                barrier.abort()

    threads = [threading.Thread(target=run, args=(function,))
               for function in (retried, plain)]
    with caplog.at_level(logging.WARNING, logger="pyfarm.master.db"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert len(attempts) == 2
    assert len(errors) == 1
    assert errors[0].orig.sqlstate == "40P01"
    assert retryable_error(errors[0])
    assert any("SQLSTATE 40P01" in record.getMessage()
               for record in caplog.records)
    db.session.expire_all()
    emails = dict(db.session.execute(
        select(User.name, User.email).where(User.id.in_([first, second]))
    ).all())
    assert emails == {"first": "retried-2@example.com",
                      "second": "plain@example.com"}
