"""
Real PyFarm processes for end-to-end tests and benchmarks.

A :class:`Farm` owns a data folder, a free port and its processes (master,
scheduler, agents, each started from its console script) and stops them
all, children included, when asked.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from pyfarm.core.client import Client

POSTGRES_SERVER = os.environ.get(
    "PYFARM_TEST_POSTGRES_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BIN = Path(sys.executable).parent

#: Settings that make a farm react quickly enough for tests.
FAST = {
    "PYFARM_SYNC_INTERVAL": "0.5",
    "PYFARM_SCHEDULER_INTERVAL": "0.2",
    "PYFARM_LOST_TIMEOUT": "4",
    "PYFARM_LOGLEVEL": "info",
}


class NoPostgres(RuntimeError):
    """No PostgreSQL server answers at :data:`POSTGRES_SERVER`."""


def free_port():
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout, interval=0.1, message="condition"):
    """Poll ``predicate`` until it returns a truthy value or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for "
                                 f"{message}")
        time.sleep(interval)


class Farm:
    """A master, its scheduler and agents, as real processes."""

    def __init__(self, root, database_url):
        self.root = Path(root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, **FAST)
        self.env.update(PYFARM_DATA_DIR=str(self.root / "master"),
                        PYFARM_DATABASE_URL=database_url,
                        PYFARM_CONFIG="", XDG_CONFIG_HOME=str(self.root))
        self.processes = {}
        self.logs = {}

    def run(self, *argv):
        """Run a console script to completion; return its stdout."""
        result = subprocess.run(
            [str(BIN / argv[0]), *argv[1:]], env=self.env, text=True,
            capture_output=True, timeout=120)
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}")
        return result.stdout

    def spawn(self, name, *argv, env=None):
        """Start a console script in the background, logging to a file."""
        log = open(self.root / f"{name}.log", "wb")
        self.logs[name] = log
        self.processes[name] = subprocess.Popen(
            [str(BIN / argv[0]), *argv[1:]], env=env or self.env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self.processes[name]

    def start_master(self):
        """Upgrade the database, make users and tokens, start the master."""
        self.run("pyfarm-master", "db", "upgrade")
        self.run("pyfarm-master", "users", "create", "admin",
                 "--role", "admin")
        self.admin_token = self.run(
            "pyfarm-master", "tokens", "create", "admin").strip()
        self.run("pyfarm-master", "users", "create", "agents",
                 "--role", "agent")
        self.agent_token = self.run(
            "pyfarm-master", "tokens", "create", "agents").strip()
        self.spawn("master", "pyfarm-master", "serve", "--host",
                   "127.0.0.1", "--port", str(self.port), "--workers", "2")
        self.spawn("scheduler", "pyfarm-master", "scheduler")
        wait_until(self._answers, 30, message=f"the master at {self.url}")
        self.client = Client(self.url, self.admin_token)

    def _answers(self):
        try:
            return requests.get(self.url + "/api/v1/", timeout=1).ok
        except requests.ConnectionError:
            return False

    def start_agent(self, name, cpus=1, tags=None, env=None):
        """Start an agent in the foreground mode; return its process.

        ``env`` adds environment variables (agent settings) for it.
        """
        argv = ["pyfarm-agent", "start", "--no-daemon", "--master", self.url,
                f"--token={self.agent_token}", "--cpus", str(cpus),
                "--data-dir", str(self.root / name)]
        if tags:
            argv += ["--tags", ",".join(tags)]
        return self.spawn(name, *argv, env=dict(self.env, **(env or {})))

    def agents(self):
        """Return the agents the master knows, by hostname-independent id."""
        return self.client.agents()

    def wait_for_agents(self, count, timeout=30):
        """Wait until ``count`` agents are online or running."""
        return wait_until(
            lambda: len([a for a in self.agents()
                         if a["state"] in ("online", "running")]) >= count,
            timeout, message=f"{count} agents online")

    def kill(self, name, sig=signal.SIGKILL):
        """Send ``sig`` to a process (only that process)."""
        self.processes[name].send_signal(sig)
        self.processes[name].wait(timeout=30)

    def log_of(self, name):
        """Return what a process printed so far."""
        self.logs[name].flush()
        return (self.root / f"{name}.log").read_text(errors="replace")

    def dump_logs(self, tail=6000):
        """Print the end of every process's output (after a failure)."""
        for name in self.processes:
            sys.stderr.write(f"--- {name} ---\n{self.log_of(name)[-tail:]}\n")

    def stop(self):
        """Stop every process and its children."""
        for process in self.processes.values():
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
        for log in self.logs.values():
            log.close()


def postgres_database():
    """Create a fresh PostgreSQL database; return ``(url, drop)``."""
    admin = sa.create_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT",
                             poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as connection:
            name = f"pyfarm_e2e_{uuid.uuid4().hex[:12]}"
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as error:
        raise NoPostgres(f"no PostgreSQL server at {POSTGRES_SERVER}: "
                         f"{str(error).splitlines()[0]}") from None

    def drop():
        with admin.connect() as connection:
            connection.exec_driver_sql(
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    url = sa.engine.make_url(POSTGRES_SERVER).set(database=name)
    return url.render_as_string(hide_password=False), drop


def running_farm(request, tmp_path_factory, backend, agents=2,
                 agent_env=None):
    """Start a farm on ``backend``, yield it, stop it (dumping the
    processes' output when a test of the module failed)."""
    root = tmp_path_factory.mktemp(f"farm-{backend}")
    drop = None
    if backend == "sqlite":
        url = f"sqlite:///{root / 'pyfarm.sqlite'}"
    else:
        try:
            url, drop = postgres_database()
        except NoPostgres as error:
            pytest.skip(str(error))
    farm = Farm(root, url)
    failed_before = request.session.testsfailed
    started = False
    try:
        farm.start_master()
        for number in range(agents):
            farm.start_agent(f"agent-{'abcdefgh'[number]}", env=agent_env)
        farm.wait_for_agents(agents)
        started = True
        yield farm
    finally:
        if not started or request.session.testsfailed > failed_before:
            farm.dump_logs()
        farm.stop()
        if drop:
            drop()
