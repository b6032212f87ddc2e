"""
The master's settings, read once from :class:`pyfarm.core.config.Config`.

Every setting is a key of the config files and a ``PYFARM_*`` variable
(``lost_timeout`` is ``PYFARM_LOST_TIMEOUT``).
"""

import os
from dataclasses import dataclass
from pathlib import Path

from pyfarm.core.config import Config, ConfigError

DEFAULTS = {
    # Where the SQLite database (by default) and the task logs live.
    "data_dir": None,
    # SQLAlchemy URL; default: an SQLite file in data_dir.
    "database_url": None,
    # Seconds without a sync after which an agent is offline.
    "lost_timeout": 60,
    # Seconds an agent waits between syncs when nothing happens.
    "sync_interval": 5,
    # Seconds between two passes of the scheduler loop.
    "scheduler_interval": 1.0,
    # Whether a sync claims work for the agent right away.
    "claim_on_sync": True,
    # Most assignments of a job with short frames an agent may hold beyond
    # what it runs at once, when its sync asks for them (0: never).
    "prefetch_limit": 256,
    # Failures of one job on one agent after which the agent is kept off
    # the job, and seconds after which that is forgiven.
    "blocklist_failures": 3,
    "blocklist_forgive": 1800,
    # Refuse to start on a database that is not at the head revision.
    "check_schema": True,
    # Largest accepted request body, in bytes.
    "max_request_size": 64 * 1024 * 1024,
    # Secret for signing browser sessions; default: generated in data_dir.
    "secret_key": None,
}


def default_data_dir(environ=None):
    """Return the default data directory of the master."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "pyfarm" / "master"


@dataclass(frozen=True)
class Settings:
    """Typed master settings; build with :func:`load_settings`."""

    data_dir: Path
    database_url: str
    lost_timeout: float
    sync_interval: float
    scheduler_interval: float
    claim_on_sync: bool
    prefetch_limit: int
    blocklist_failures: int
    blocklist_forgive: float
    check_schema: bool
    max_request_size: int
    secret_key: str | None

    @property
    def log_dir(self):
        """The directory holding task logs."""
        return self.data_dir / "logs"


def load_settings(overrides=None, environ=None, files=None):
    """Read :class:`Settings` from defaults, files, env and ``overrides``.

    Raises :class:`~pyfarm.core.config.ConfigError` naming a bad key.
    """
    config = Config(DEFAULTS, files=files, environ=environ,
                    overrides=overrides)
    data_dir = config.get_path("data_dir") or default_data_dir(
        config.environ)
    url = config.get_str("database_url") or (
        f"sqlite:///{data_dir / 'pyfarm.sqlite'}")
    if "://" not in url:
        raise ConfigError(
            f"setting 'database_url' (PYFARM_DATABASE_URL) must be an "
            f"SQLAlchemy URL such as sqlite:///path/pyfarm.sqlite or "
            f"postgresql+psycopg://user@host/db, got {url!r}")
    return Settings(
        data_dir=data_dir,
        database_url=url,
        lost_timeout=config.get_float("lost_timeout", minimum=1),
        sync_interval=config.get_float("sync_interval", minimum=0.1),
        scheduler_interval=config.get_float(
            "scheduler_interval", minimum=0.05),
        claim_on_sync=config.get_bool("claim_on_sync"),
        prefetch_limit=config.get_int("prefetch_limit", minimum=0),
        blocklist_failures=config.get_int("blocklist_failures", minimum=1),
        blocklist_forgive=config.get_float("blocklist_forgive", minimum=0),
        check_schema=config.get_bool("check_schema"),
        max_request_size=config.get_int("max_request_size", minimum=1024),
        secret_key=config.get_str("secret_key"),
    )
