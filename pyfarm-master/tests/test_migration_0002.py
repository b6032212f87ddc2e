"""Revision 0002 (job type software, path maps, attempt outputs) upgrades
and downgrades a database holding data, on SQLite and PostgreSQL."""

import os
import uuid

import pytest
import sqlalchemy as sa

from pyfarm.master.schema import downgrade, upgrade

POSTGRES_SERVER = os.environ.get(
    "PYFARM_TEST_POSTGRES_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def make_url(backend, tmp_path):
    """Return a function making a fresh, empty database's URL."""
    made = []

    def make():
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'{len(made)}.sqlite'}"
        name = f"pyfarm_migration_{uuid.uuid4().hex[:12]}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        made.append(name)
        return sa.engine.make_url(POSTGRES_SERVER).set(
            database=name).render_as_string(hide_password=False)

    admin = None
    if backend == "postgresql":
        admin = sa.create_engine(POSTGRES_SERVER,
                                 isolation_level="AUTOCOMMIT",
                                 poolclass=sa.pool.NullPool)
        try:
            with admin.connect():
                pass
        except sa.exc.OperationalError as error:
            pytest.skip(f"no PostgreSQL server: {error}")
    yield make
    if admin is not None:
        with admin.connect() as connection:
            for name in made:
                connection.exec_driver_sql(
                    f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def run(url, *statements):
    """Run SQL statements in one transaction; return the last's rows."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            result = None
            for statement, params in statements:
                result = connection.execute(sa.text(statement), params)
            return result.all() if result is not None and \
                result.returns_rows else None
    finally:
        engine.dispose()


def schema(url):
    """Return the tables, columns, keys and indexes of the database."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        inspector = sa.inspect(engine)
        found = {}
        for table in sorted(inspector.get_table_names()):
            found[table] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"])
                            for c in inspector.get_columns(table)],
                "pk": inspector.get_pk_constraint(table)[
                    "constrained_columns"],
                "fks": sorted(
                    (fk["name"], tuple(fk["constrained_columns"]),
                     fk["referred_table"], tuple(fk["referred_columns"]),
                     fk["options"].get("ondelete"))
                    for fk in inspector.get_foreign_keys(table)),
                "indexes": sorted(
                    (ix["name"], tuple(ix["column_names"]), ix["unique"])
                    for ix in inspector.get_indexes(table)),
                "uniques": sorted(
                    (uq["name"], tuple(uq["column_names"]))
                    for uq in inspector.get_unique_constraints(table)),
            }
        return found
    finally:
        engine.dispose()


def seed(url):
    """Add a job, a task and a finished attempt at revision 0001."""
    now = {"now": "2025-01-01 12:00:00"}
    run(url,
        ("INSERT INTO jobs (id, title, jobtype_id, jobtype_version, state, "
         'start, "end", by, batch, priority, weight, requeue, cpus, ram, '
         "data, environ, notes, created_at, updated_at) SELECT 1, 'job', "
         "id, 1, 'done', 1, 1, 1, 1, 0, 1, 3, 1, 0, '{}', '{}', '', "
         ":now, :now FROM jobtypes WHERE name = 'command'", now),
        ("INSERT INTO tasks (id, job_id, frame, state, attempt, failures, "
         "progress, created_at, updated_at) VALUES (1, 1, 1, 'done', 1, 0, "
         "1.0, :now, :now)", now),
        ("INSERT INTO task_attempts (task_id, attempt, agent_id, "
         "assignment_id, state, assigned_at) VALUES (1, 1, NULL, 'a', "
         "'done', :now)", now),
        ("INSERT INTO tags (id, name) VALUES (1, 'studio-a')", {}))


def test_upgrade_keeps_the_data_and_downgrade_gives_back_0001(make_url):
    url = make_url()
    upgrade(url, "0001")
    before = schema(url)
    seed(url)
    upgrade(url, "0002")
    assert run(url, ("SELECT name, software FROM jobtypes", {})) == [
        ("command", None)]
    assert run(url, ("SELECT task_id, state, outputs FROM task_attempts",
                     {})) == [(1, "done", None)]
    run(url,
        ("UPDATE jobtypes SET software = 'sh'", {}),
        ("UPDATE task_attempts SET outputs = :outputs",
         {"outputs": '["/r/1.exr"]'}),
        ("INSERT INTO path_maps (linux, windows, mac, tag_id, created_at) "
         "VALUES ('/mnt/show', 'P:\\show', NULL, 1, :now)",
         {"now": "2025-01-01 12:00:00"}))
    assert run(url, ("SELECT linux, windows, mac, tag_id FROM path_maps",
                     {})) == [("/mnt/show", "P:\\show", None, 1)]
    downgrade(url, "0001")
    assert schema(url) == before
    assert run(url, ("SELECT name FROM jobtypes", {})) == [("command",)]
    assert run(url, ("SELECT task_id, state FROM task_attempts", {})) == [
        (1, "done")]
    assert run(url, ("SELECT state FROM jobs", {})) == [("done",)]
    upgrade(url)
    assert run(url, ("SELECT count(*) FROM path_maps", {})) == [(0,)]


def test_head_from_scratch_equals_0001_then_0002(make_url):
    direct, stepped = make_url(), make_url()
    upgrade(direct)
    upgrade(stepped, "0001")
    upgrade(stepped, "0002")
    assert schema(direct) == schema(stepped)
    tables = schema(direct)
    assert ("software", "VARCHAR(64)", True) in tables["jobtypes"]["columns"]
    assert [column[0] for column in tables["path_maps"]["columns"]] == [
        "id", "linux", "windows", "mac", "tag_id", "created_at"]
    assert tables["path_maps"]["fks"] == [
        ("fk_path_maps_tag_id_tags", ("tag_id",), "tags", ("id",),
         "CASCADE")]
    assert "outputs" in [column[0] for column in
                         tables["task_attempts"]["columns"]]


def test_deleting_a_tag_deletes_its_path_maps_in_the_database(make_url):
    url = make_url()
    upgrade(url)
    pragma = [("PRAGMA foreign_keys = ON", {})] if url.startswith(
        "sqlite") else []
    run(url, *pragma,
        ("INSERT INTO tags (id, name) VALUES (1, 'a')", {}),
        ("INSERT INTO path_maps (linux, mac, tag_id, created_at) VALUES "
         "('/a', '/b', 1, '2025-01-01 12:00:00')", {}))
    run(url, *pragma, ("DELETE FROM tags", {}))
    assert run(url, ("SELECT count(*) FROM path_maps", {})) == [(0,)]
