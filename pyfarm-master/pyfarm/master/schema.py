"""
Alembic glue: upgrade the database and check that it is at the head.
"""

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from pyfarm.master.errors import SchemaOutOfDate

UPGRADE_COMMAND = "pyfarm-master db upgrade"


def alembic_config(url):
    """Return an Alembic config for the database at ``url``."""
    config = AlembicConfig()
    config.set_main_option("script_location", "pyfarm.master:migrations")
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision(url="sqlite://"):
    """Return the newest revision the code knows."""
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current_revision(engine):
    """Return the revision the database is at (None when empty)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url, revision="head"):
    """Upgrade the database at ``url`` to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url, revision):
    """Downgrade the database at ``url`` to ``revision``."""
    command.downgrade(alembic_config(url), revision)


def check_schema(engine):
    """Raise :class:`SchemaOutOfDate` unless the database is at the head."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        state = "empty" if current is None else f"at revision {current}"
        raise SchemaOutOfDate(
            f"the database {engine.url.render_as_string(hide_password=True)}"
            f" is {state} but this master needs revision {head}: run "
            f"'{UPGRADE_COMMAND}' (with the same PYFARM_DATABASE_URL) first")
