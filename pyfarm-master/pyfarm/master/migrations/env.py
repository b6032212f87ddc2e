"""Alembic environment: runs migrations against ``sqlalchemy.url``."""

from alembic import context
from sqlalchemy import create_engine, pool

from pyfarm.master import models  # noqa: F401 - registers the tables
from pyfarm.master.db import db

config = context.config
target_metadata = db.metadata


def run_migrations_offline():
    """Emit SQL without a database connection."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata, literal_binds=True,
        render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run the migrations on a live connection."""
    connectable = config.attributes.get("connection")
    if connectable is None:
        engine = create_engine(
            config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
        with engine.connect() as connection:
            _run(connection)
        engine.dispose()
    else:
        _run(connectable)


def _run(connection):
    context.configure(
        connection=connection, target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
