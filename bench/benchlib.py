"""
What the benchmarks share: a farm on a fresh database, and the
description of the machine they ran on.
"""

import contextlib
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from farmlib import Farm, postgres_database  # noqa: E402


@contextlib.contextmanager
def bench_farm(database, settings=None):
    """Yield a :class:`Farm` (not started) on a fresh ``database``
    (``"sqlite"`` or ``"postgresql"``) with ``settings`` (``PYFARM_*``
    variables) and quiet logs; stop it and drop the database after. When
    the benchmark fails, the end of each process's log is printed."""
    with tempfile.TemporaryDirectory(prefix="pyfarm-bench-") as root:
        drop = None
        if database == "sqlite":
            url = f"sqlite:///{root}/pyfarm.sqlite"
        else:
            url, drop = postgres_database()
        farm = Farm(root, url)
        farm.env.update(settings or {})
        farm.env["PYFARM_LOGLEVEL"] = "warning"
        try:
            yield farm
        except BaseException:
            farm.dump_logs(2000)
            raise
        finally:
            farm.stop()
            if drop:
                drop()


def machine(database_url=None):
    """Describe the machine the benchmark runs on (and the database server
    at ``database_url``, when given)."""
    import sqlite3

    import psutil
    import sqlalchemy

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
        **({"database": database_version(database_url)}
           if database_url else {}),
    }


def database_version(url):
    """Return ``"PostgreSQL 15.4"`` or ``"SQLite 3.40.1"`` for ``url``."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                version = connection.exec_driver_sql(
                    "SELECT sqlite_version()").scalar()
                return f"SQLite {version}"
            version = connection.exec_driver_sql("SHOW server_version") \
                .scalar()
            return f"PostgreSQL {version.split()[0]}"
    finally:
        engine.dispose()
