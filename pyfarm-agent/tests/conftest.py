"""Fakes and fixtures for the agent's tests: no sockets, no wall time."""

import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from twisted.internet import defer, task

from pyfarm.agent.config import AgentSettings
from pyfarm.agent.jobtypes.command import CommandJobType
from pyfarm.agent.master import Conflict, MasterUnavailable
from pyfarm.agent.process import ExitStatus, LineSplitter
from pyfarm.agent.service import AgentService
from pyfarm.agent.software import Discovery, Installation

#: The fake renderers (see fakes/README.rst).
FAKES = Path(__file__).with_name("fakes")


class FakeMaster:
    """Records every call and answers at once, like the real protocol.

    ``down`` makes every call fail as if the master were unreachable;
    ``sync_answers`` are the next sync answers (dicts or exceptions);
    ``update_errors[(task, attempt)]`` is raised for that pair's updates;
    logs behave like the master's log store (offset-based, idempotent).
    """

    def __init__(self):
        self.calls = []
        self.down = False
        self.register_answer = {"sync_interval": 5, "state": "online"}
        self.sync_answers = []
        self.update_errors = {}
        self.logs = {}
        self.hold_logs = False
        self.held = []

    def names(self):
        """Return the names of the calls so far (a batch counts as the
        calls it carries)."""
        return [name for name, _ in self.calls if name != "batch"]

    def of(self, name):
        """Return the arguments of every call of ``name``."""
        return [args for called, args in self.calls if called == name]

    def _answer(self, value):
        if self.down:
            return defer.fail(MasterUnavailable("connection refused"))
        if isinstance(value, Exception):
            return defer.fail(value)
        return defer.succeed(value)

    def register(self, info):
        self.calls.append(("register", info))
        return self._answer(dict(self.register_answer, id=info["id"]))

    def sync(self, agent_id, free_ram, running):
        self.calls.append(("sync", {"agent": agent_id, "free_ram": free_ram,
                                    "running": list(running)}))
        if self.down:
            return self._answer(None)
        answer = self.sync_answers.pop(0) if self.sync_answers else {}
        if isinstance(answer, Exception):
            return self._answer(answer)
        return self._answer({"assignments": [], "cancel": [],
                             "sync_interval": 5, "state": "online",
                             **answer})

    def update_task(self, agent_id, task_id, attempt, state, progress=None,
                    error=None, outputs=None):
        update = {"task": task_id, "attempt": attempt, "state": state}
        if progress is not None:
            update["progress"] = progress
        if error is not None:
            update["error"] = error
        if outputs is not None:
            update["outputs"] = outputs
        self.calls.append(("update", update))
        error = self.update_errors.get((task_id, attempt))
        if error is not None and not self.down:
            return defer.fail(error)
        return self._answer({"task": task_id, "attempt": attempt,
                             "state": state})

    def send_log(self, agent_id, assignment_id, offset, data):
        self.calls.append(("log", {"assignment": assignment_id,
                                   "offset": offset, "data": data}))
        if self.hold_logs:
            waiter = defer.Deferred()
            self.held.append((waiter, assignment_id, offset, data))
            return waiter
        if self.down:
            return self._answer(None)
        return defer.maybeDeferred(self.store_log, assignment_id, offset,
                                   data)

    def store_log(self, assignment_id, offset, data):
        """Append like the master's log store; return the answer."""
        stored = self.logs.get(assignment_id, b"")
        chunk = data.encode("utf-8")
        if offset > len(stored):
            raise Conflict("gap", 409, {"error": "gap", "size": len(stored)})
        stored = stored[:offset] + chunk if offset + len(chunk) > len(
            stored) else stored
        self.logs[assignment_id] = stored
        return {"size": len(stored)}

    def batch(self, agent_id, logs, updates, sync=None):
        """``POST .../updates``: like the calls it stands for, answered
        item by item (recorded as ``batch`` and as those calls)."""
        self.calls.append(("batch", {"logs": list(logs),
                                     "updates": list(updates),
                                     "sync": sync}))
        if self.down:
            for chunk in logs:
                self.calls.append(("log", dict(chunk)))
            for update in updates:
                self.calls.append(("update", dict(update)))
            if sync is not None:
                self.sync(agent_id, sync["free_ram"], sync["running"])
            return self._answer(None)
        answer = {"logs": [], "updates": [], "sync": None}
        refused = False
        for chunk in logs:
            self.calls.append(("log", dict(chunk)))
            try:
                size = self.store_log(chunk["assignment"], chunk["offset"],
                                      chunk["data"])["size"]
                answer["logs"].append({"status": 200, "size": size})
            except Conflict as error:
                refused = True
                answer["logs"].append({"status": 409, **error.body})
        for update in updates:
            if refused:
                answer["updates"].append({"status": 424, "error": "log"})
                continue
            d = self.update_task(agent_id, update["task"], update["attempt"],
                                 update["state"],
                                 progress=update.get("progress"),
                                 error=update.get("error"),
                                 outputs=update.get("outputs"))
            results = []
            d.addBoth(results.append)
            result = results[0]
            if isinstance(result, dict):
                answer["updates"].append({"status": 200, **result})
            else:
                error = result.value
                answer["updates"].append({
                    "status": error.status, "error": error.message,
                    "task": update["task"], "attempt": update["attempt"]})
        if sync is not None:
            results = []
            self.sync(agent_id, sync["free_ram"],
                      sync["running"]).addBoth(results.append)
            if not isinstance(results[0], dict):
                return defer.fail(results[0])
            answer["sync"] = results[0]
        return defer.succeed(answer)

    def release_log(self):
        """Answer the oldest held log request."""
        waiter, assignment_id, offset, data = self.held.pop(0)
        defer.maybeDeferred(self.store_log, assignment_id, offset,
                            data).chainDeferred(waiter)

    def log_text(self, assignment_id):
        """Return what the master stored for ``assignment_id``."""
        return self.logs.get(assignment_id, b"").decode("utf-8")

    def close(self):
        return defer.succeed(None)


class FakeProcess:
    """A process the test drives: output, exit, kill."""

    def __init__(self, argv, environ, cwd, on_data, on_line):
        self.argv = argv
        self.environ = environ
        self.cwd = cwd
        self.on_data = on_data
        self.splitter = LineSplitter(on_line)
        self.ended = defer.Deferred()
        self.finished = False
        self.kills = []
        self.pid = 4242
        self.dies_when_killed = True

    def output(self, data):
        """Write ``data`` (bytes) to the process's stdout."""
        self.on_data(data)
        self.splitter.feed(data)

    def exit(self, code=0, signal=None):
        """End the process."""
        self.splitter.flush()
        self.finished = True
        self.ended.callback(ExitStatus(code, signal))

    def kill(self, grace):
        self.kills.append(grace)
        if self.dies_when_killed and not self.finished:
            self.exit(None, 15)
        return defer.succeed([])


class FakeSpawner:
    """Stands in for :func:`pyfarm.agent.process.spawn`."""

    def __init__(self):
        self.processes = []
        self.error = None

    def __call__(self, reactor, argv, environ, cwd, on_data, on_line):
        if self.error is not None:
            raise self.error
        process = FakeProcess(argv, environ, cwd, on_data, on_line)
        self.processes.append(process)
        return process


class FakeSysinfo:
    """A machine with 4 CPUs and 8 GB."""

    def collect(self):
        return {"hostname": "node1", "os": "linux", "os_version": "Test 1",
                "cpus": 4, "ram": 8192, "free_ram": 6000,
                "gpus": [{"name": "GPU", "ram": 8192}],
                "disks": [{"path": "/", "total": 1000, "free": 500}]}

    def free_ram(self):
        return 6000


#: The environment the agent runs in during the tests.
AGENT_ENVIRON = {"PATH": "/usr/bin:/bin", "HOME": "/home/render",
                 "PYFARM_AGENT_TOKEN": "secret-token"}


@pytest.fixture
def clock():
    """A fake reactor clock."""
    return task.Clock()


@pytest.fixture
def master():
    """A fake master."""
    return FakeMaster()


@pytest.fixture
def spawner():
    """A fake process spawner."""
    return FakeSpawner()


@pytest.fixture
def settings(tmp_path):
    """Agent settings with a data directory under ``tmp_path``."""
    return AgentSettings(
        master_url="http://master:5000", token="secret-token", cpus=None,
        ram=None, tags=("fast",), software=(("blender", "4.0.2"),),
        data_dir=tmp_path / "agent", kill_grace=7.0)


@pytest.fixture
def make_service(clock, master, spawner, settings):
    """Return a function building an AgentService on the fakes."""

    def make(agent_settings=None, **overrides):
        options = {
            "reactor": clock, "client": master, "sysinfo": FakeSysinfo(),
            "rand": lambda: 0.5, "spawn": spawner,
            "environ": dict(AGENT_ENVIRON),
            "now": lambda: datetime(2024, 5, 1, 12, tzinfo=timezone.utc),
            "find_software": lambda settings, environ, os_name: {},
            "describe_jobtypes": lambda: [CommandJobType.describe()],
            # Send at once, as the tests expect (the daemon waits a little
            # for more to go in the same request).
            "linger": 0.0, "coalesce": 0.0,
        }
        options.update(overrides)
        return AgentService(agent_settings or settings, **options)

    return make


@pytest.fixture
def make_assignment():
    """Return a function building an assignment as sync delivers it."""

    def make(assignment_id="a1", frames=(1,), first_task=101, attempt=1,
             cpus=1, ram=0, argv=None, jobtype="command", job_id=7):
        return {
            "id": assignment_id,
            "job": {"id": job_id, "title": "shot 010", "jobtype": jobtype,
                    "jobtype_version": 1,
                    "data": {"argv": argv or [
                        "render", "-s", "{start}", "-e", "{end}"]},
                    "environ": {"SHOT": "010"}, "cpus": cpus, "ram": ram,
                    "by": 1},
            "tasks": [{"id": first_task + index, "frame": frame,
                       "attempt": attempt}
                      for index, frame in enumerate(frames)],
        }

    return make


# -- job types ---------------------------------------------------------------


def job_assignment(jobtype, data, frames=(1,), by=1, environ=None,
                   pathmaps=None, requirements=None, job_id=9):
    """Return an assignment of ``frames`` of a ``jobtype`` job."""
    job = {"id": job_id, "title": "shot 010", "jobtype": jobtype,
           "jobtype_version": 1, "data": data, "environ": environ or {},
           "cpus": 1, "ram": 0, "by": by}
    if pathmaps is not None:
        job["pathmaps"] = pathmaps
    if requirements is not None:
        job["software_requirements"] = requirements
    return {"id": "a-9", "job": job,
            "tasks": [{"id": 500 + index, "frame": frame, "attempt": 1}
                      for index, frame in enumerate(frames)]}


def inventory(software, *found):
    """Return an agent inventory with ``found`` ``(path, version)`` of
    ``software``, as the agent's discovery makes it."""
    return {software: Discovery(software, [
        Installation(software, path, version, "config")
        for path, version in found], ["the test's inventory"])}


def executable(path, body):
    """Write a Python script ``body`` at ``path``, runnable; return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
    path.chmod(0o755)
    return path


def install_fake(name, path):
    """Copy the fake ``name`` to ``path`` (runnable, with this Python)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (FAKES / name).read_text(encoding="utf-8")
    if text.startswith("#!"):
        text = text.split("\n", 1)[1]
        executable(path, text)
    else:
        shutil.copyfile(FAKES / name, path)
    return path


def run_fake(argv, mode="ok", **options):
    """Run ``argv`` (a fake) with ``PYFARM_FAKE_MODE``; return the result."""
    env = dict(os.environ, PYFARM_FAKE_MODE=mode)
    return subprocess.run([str(arg) for arg in argv], env=env,
                          capture_output=True, text=True, timeout=60,
                          check=False, **options)


def feed(jobtype, text):
    """Pass ``text`` line by line to ``jobtype``; return the events."""
    events = []
    for line in text.splitlines():
        events += jobtype.parse_line(line) or []
    return events


@pytest.fixture
def kit():
    """Helpers of the job type tests: ``kit.assignment(...)``,
    ``kit.inventory(...)``, ``kit.executable(...)``,
    ``kit.install_fake(...)``, ``kit.run_fake(...)``, ``kit.feed(...)``."""
    return SimpleNamespace(
        assignment=job_assignment, inventory=inventory,
        executable=executable, install_fake=install_fake,
        run_fake=run_fake, feed=feed, fakes=FAKES)
