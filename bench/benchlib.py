"""
What the benchmarks share: the description of the machine they ran on.
"""

import os
import platform
from pathlib import Path


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
