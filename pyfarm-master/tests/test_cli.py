"""The ``pyfarm-master`` command: db, users and tokens."""

import io

import pytest
import sqlalchemy as sa

from pyfarm.master import app as app_module
from pyfarm.master.app import create_app
from pyfarm.master.auth import hash_token
from pyfarm.master.cli import PasswordMismatch, main, read_password
from pyfarm.master.db import db
from pyfarm.master.schema import head_revision


@pytest.fixture(autouse=True)
def dispose_cli_engines(monkeypatch):
    """Close the database connections of the apps the commands create.

    The command leaves them to the end of its process; a test process
    goes on, and an open PostgreSQL connection would be reported.
    """
    apps = []

    def tracking_create_app(*args, **kwargs):
        app = create_app(*args, **kwargs)
        apps.append(app)
        return app

    monkeypatch.setattr(app_module, "create_app", tracking_create_app)
    yield
    for app in apps:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


@pytest.fixture
def farm_env(monkeypatch, tmp_path):
    """Point the settings at ``tmp_path`` only (no config files)."""
    for name in ("PYFARM_CONFIG", "PYFARM_DATABASE_URL", "PYFARM_DATA_DIR",
                 "PYFARM_CHECK_SCHEMA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PYFARM_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


@pytest.fixture
def empty_url(farm_env, monkeypatch):
    """An SQLite file that does not exist yet."""
    url = f"sqlite:///{farm_env / 'data' / 'farm.sqlite'}"
    monkeypatch.setenv("PYFARM_DATABASE_URL", url)
    return url


@pytest.fixture
def farm_url(farm_env, monkeypatch, database_url):
    """A database at the head revision (SQLite and PostgreSQL)."""
    monkeypatch.setenv("PYFARM_DATABASE_URL", database_url)
    return database_url


def run(capsys, *argv):
    """Run ``pyfarm-master argv``; return ``(status, stdout, stderr)``."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def query(url, sql):
    """Run one SELECT on the database at ``url``; return all rows."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql(sql).all()
    finally:
        engine.dispose()


def test_db_check_on_an_empty_database_names_the_fix(capsys, empty_url):
    status, out, err = run(capsys, "db", "check")
    assert status == 1
    assert "pyfarm-master db upgrade" in err
    assert "is empty" in err
    assert out == ""


def test_db_upgrade_then_check(capsys, empty_url):
    status, out, _ = run(capsys, "db", "upgrade")
    assert status == 0
    assert "newest schema" in out
    assert query(empty_url, "SELECT version_num FROM alembic_version") == [
        (head_revision(),)]
    status, out, err = run(capsys, "db", "check")
    assert (status, err) == (0, "")
    assert "newest schema" in out
    # Upgrading again is harmless.
    assert run(capsys, "db", "upgrade")[0] == 0


def test_db_upgrade_uses_the_data_dir_by_default(capsys, farm_env):
    status, _, _ = run(capsys, "db", "upgrade")
    assert status == 0
    assert (farm_env / "data" / "pyfarm.sqlite").is_file()


def test_users_need_an_upgraded_database(capsys, empty_url):
    status, _, err = run(capsys, "users", "create", "alice")
    assert status == 1
    assert "pyfarm-master db upgrade" in err


def test_users_create_and_list(capsys, farm_url):
    status, out, err = run(capsys, "users", "create", "alice")
    assert (status, err) == (0, "")
    assert "created user 'alice'" in out
    status, out, _ = run(capsys, "users", "create", "root", "--role",
                         "admin", "--password", "s3cret pass",
                         "--email", "root@example.com")
    assert status == 0 and "created admin 'root'" in out
    status, out, _ = run(capsys, "users", "list")
    assert status == 0
    assert out.splitlines() == ["alice\tuser", "root\tadmin"]
    rows = query(farm_url, "SELECT name, role, email, password_hash "
                           "FROM users ORDER BY name")
    assert rows[0][:3] == ("alice", "user", None) and rows[0][3] is None
    assert rows[1][:3] == ("root", "admin", "root@example.com")
    assert rows[1][3] and "s3cret pass" not in rows[1][3]


def test_users_password_reads_stdin(capsys, farm_url, monkeypatch):
    from werkzeug.security import check_password_hash
    run(capsys, "users", "create", "alice")
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    status, out, err = run(capsys, "users", "password", "alice")
    assert (status, err) == (0, "")
    assert "password of 'alice' set" in out
    [(stored,)] = query(farm_url, "SELECT password_hash FROM users")
    assert check_password_hash(stored, "a long password")


def test_users_password_refuses_short_ones_and_unknown_users(
        capsys, farm_url, monkeypatch):
    run(capsys, "users", "create", "alice")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    status, _, err = run(capsys, "users", "password", "alice")
    assert status == 1 and "at least 8 characters" in err
    assert query(farm_url, "SELECT password_hash FROM users") == [(None,)]
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    status, _, err = run(capsys, "users", "password", "bob")
    assert status == 1 and "no user named 'bob'" in err


def test_password_typed_twice_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    answers = iter(["first one!", "first one!"])
    assert read_password(Terminal(), lambda prompt: next(answers)) == \
        "first one!"
    answers = iter(["first one!", "other one!"])
    with pytest.raises(PasswordMismatch, match="differ"):
        read_password(Terminal(), lambda prompt: next(answers))


def test_users_list_marks_disabled_users(capsys, farm_url):
    run(capsys, "users", "create", "alice")
    engine = sa.create_engine(farm_url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE users SET active = false")
    engine.dispose()
    assert run(capsys, "users", "list")[1] == "alice\tuser (disabled)\n"


def test_duplicate_user_exits_1_with_a_clear_message(capsys, farm_url):
    assert run(capsys, "users", "create", "alice")[0] == 0
    status, out, err = run(capsys, "users", "create", "alice", "--role",
                           "admin")
    assert status == 1
    assert out == ""
    assert err == "pyfarm-master: a user named 'alice' already exists\n"
    assert query(farm_url, "SELECT role FROM users") == [("user",)]


def test_unknown_role_is_refused(capsys, farm_url):
    with pytest.raises(SystemExit) as exit_info:
        main(["users", "create", "alice", "--role", "wizard"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'wizard'" in capsys.readouterr().err


def test_tokens_create_prints_a_working_token(capsys, farm_url, farm_env):
    run(capsys, "users", "create", "alice")
    status, out, err = run(capsys, "tokens", "create", "alice", "--label",
                           "pipeline")
    assert (status, err) == (0, "")
    token = out.strip()
    assert len(token) >= 40 and out.count("\n") == 1
    rows = query(farm_url, "SELECT name, token_hash FROM api_tokens")
    assert rows == [("pipeline", hash_token(token))]
    app = create_app({"database_url": farm_url,
                      "data_dir": str(farm_env / "data")})
    try:
        response = app.test_client().get(
            "/api/v1/jobtypes/", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_tokens_for_an_unknown_user_exit_1(capsys, farm_url):
    status, out, err = run(capsys, "tokens", "create", "nobody")
    assert (status, out) == (1, "")
    assert "no user named 'nobody'" in err


def test_a_bad_setting_exits_1_naming_it(capsys, farm_env, monkeypatch):
    monkeypatch.setenv("PYFARM_DATABASE_URL", "farm.sqlite")
    status, _, err = run(capsys, "users", "list")
    assert status == 1
    assert "PYFARM_DATABASE_URL" in err
