"""The application factory, the schema check and error handling."""

import sqlite3
import time

import pytest
import sqlalchemy as sa

from pyfarm.master.app import create_app
from pyfarm.master.errors import SchemaOutOfDate
from pyfarm.master.schema import downgrade, head_revision, upgrade


def test_api_index_needs_no_token(client):
    response = client.get("/api/v1/")
    assert response.status_code == 200
    assert response.get_json()["api"] == "v1"


def test_unknown_api_path_is_json_404(client):
    response = client.get("/api/v1/nope")
    assert response.status_code == 404
    assert "no such API endpoint" in response.get_json()["error"]


def test_refuses_empty_database_and_names_the_command(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    with pytest.raises(SchemaOutOfDate, match="pyfarm-master db upgrade"):
        create_app({"database_url": url, "data_dir": str(tmp_path)})


def test_refuses_old_revision(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    upgrade(url)
    downgrade(url, "base")
    with pytest.raises(SchemaOutOfDate, match="is empty"):
        create_app({"database_url": url, "data_dir": str(tmp_path)})


def test_migration_round_trip(tmp_path):
    url = f"sqlite:///{tmp_path / 'rt.sqlite'}"
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        revision = connection.exec_driver_sql(
            "SELECT version_num FROM alembic_version").scalar()
        names = connection.exec_driver_sql(
            "SELECT name FROM jobtypes").scalars().all()
    engine.dispose()
    assert revision == head_revision()
    assert names == ["command"]
    downgrade(url, "base")
    upgrade(url)


def test_sqlite_uses_wal(app, session):
    if not app.config["PYFARM"].database_url.startswith("sqlite"):
        pytest.skip("WAL is SQLite's")
    mode = session.execute(sa.text("PRAGMA journal_mode")).scalar()
    assert mode == "wal"


def test_ui_pages_do_not_wait_for_a_writer_on_sqlite(app, session,
                                                     ui_alice):
    url = app.config["PYFARM"].database_url
    if not url.startswith("sqlite"):
        pytest.skip("the write lock is SQLite's")
    # The test's application context outlives requests: end what the
    # login left open, as the end of a real request does.
    session.remove()
    writer = sqlite3.connect(url.removeprefix("sqlite:///"),
                             isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # an agent's update, say
        started = time.monotonic()
        assert ui_alice.get("/ui/overview").status_code == 200
        assert ui_alice.get("/").status_code == 200
        # The pages read a snapshot instead of waiting out the busy
        # timeout (30 s).
        assert time.monotonic() - started < 5
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_the_migrations_build_the_models_schema(app):
    # Tables, columns, types, indexes and constraints: a model changed
    # without a migration (or the reverse) shows here.
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from pyfarm.master.db import db

    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []
