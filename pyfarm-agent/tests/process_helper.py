"""Run pyfarm.agent.process (or the whole service) on a real reactor.

The tests start this script with ``python process_helper.py MODE ...``
so that each real-reactor scenario gets a fresh process (a reactor runs
only once). It prints one JSON document on stdout:

- ``run ARGV_JSON [GRACE]``: spawn the command, collect output lines and
  status (``GRACE``: seconds the output may stay open after the exit);
- ``kill GRACE SCRIPT``: run ``sh -c SCRIPT``, whose first output line is
  the pid of a child it started; kill the tree; report pids and status;
- ``service ARGV_JSON DATA_DIR``: run AgentService with a fake master that
  hands out one assignment of the command job type; report the calls.
"""

import json
import os
import sys
from pathlib import Path

from twisted.internet import defer, reactor

from pyfarm.agent.config import AgentSettings
from pyfarm.agent.process import spawn

#: Seconds after which the helper gives up (the test fails).
DEADLINE = 30


def finish(result):
    print(json.dumps(result))
    sys.stdout.flush()
    if reactor.running:
        reactor.stop()


def mode_run(argv_json, grace="5"):
    lines, data = [], []
    process = spawn(reactor, json.loads(argv_json), dict(os.environ), None,
                    on_data=lambda chunk: data.append(chunk.decode()),
                    on_line=lines.append, output_grace=float(grace))
    process.ended.addCallback(lambda status: finish(
        {"lines": lines, "data": "".join(data),
         "status": [status.code, status.signal]}))


def mode_kill(grace, script):
    state = {}

    def on_line(line):
        if "child" in state:
            return
        state["child"] = int(line)
        state["killing"] = process.kill(float(grace))
        defer.gatherResults([process.ended, state["killing"]]).addCallback(
            report)

    def report(results):
        status, sigkilled = results
        finish({"pid": process.pid, "child": state["child"],
                "status": [status.code, status.signal],
                "sigkilled": sorted(sigkilled)})

    process = spawn(reactor, ["sh", "-c", script], dict(os.environ), None,
                    on_data=lambda chunk: None, on_line=on_line)


class InlineMaster:
    """Answers at once; hands out one assignment; records calls."""

    def __init__(self, argv):
        self.calls = []
        self.argv = argv
        self.logs = {}
        self.given = False

    def register(self, info):
        self.calls.append(["register", info["id"]])
        return defer.succeed({"sync_interval": 0.05, "state": "online"})

    def sync(self, agent_id, free_ram, running):
        self.calls.append(["sync", [list(pair) for pair in running]])
        answer = {"assignments": [], "cancel": [], "sync_interval": 0.05}
        if not self.given:
            self.given = True
            answer["assignments"] = [{
                "id": "a1",
                "job": {"id": 1, "title": "t", "jobtype": "command",
                        "jobtype_version": 1, "data": {"argv": self.argv},
                        "environ": {"SHOT": "010"}, "cpus": 1, "ram": 0,
                        "by": 1},
                "tasks": [{"id": 11, "frame": 3, "attempt": 1},
                          {"id": 12, "frame": 4, "attempt": 1}]}]
        elif not running and any(c[0] == "update" and c[1]["state"] in (
                "done", "failed") for c in self.calls):
            reactor.callLater(0, finish, {"calls": self.calls,
                                          "logs": self.logs})
        return defer.succeed(answer)

    def update_task(self, agent_id, task_id, attempt, state, progress=None,
                    error=None):
        update = {"task": task_id, "attempt": attempt, "state": state}
        if error is not None:
            update["error"] = error
        self.calls.append(["update", update])
        return defer.succeed({"task": task_id, "attempt": attempt,
                              "state": state})

    def send_log(self, agent_id, assignment_id, offset, data):
        stored = self.logs.get(assignment_id, "")
        assert offset == len(stored.encode()), (offset, stored)
        self.logs[assignment_id] = stored + data
        self.calls.append(["log", offset])
        return defer.succeed({"size": offset + len(data.encode())})

    def batch(self, agent_id, logs, updates, sync=None):
        answer = {"logs": [], "updates": [], "sync": None}
        for chunk in logs:
            size = self.send_log(agent_id, chunk["assignment"],
                                 chunk["offset"], chunk["data"]).result
            answer["logs"].append({"status": 200, **size})
        for item in updates:
            done = self.update_task(agent_id, item["task"], item["attempt"],
                                    item["state"], error=item.get("error"))
            answer["updates"].append({"status": 200, **done.result})
        if sync is not None:
            answer["sync"] = self.sync(agent_id, sync["free_ram"],
                                       sync["running"]).result
        return defer.succeed(answer)

    def close(self):
        return defer.succeed(None)


def mode_service(argv_json, data_dir):
    from pyfarm.agent.service import AgentService

    settings = AgentSettings(
        master_url="http://127.0.0.1:1", token="t", cpus=2, ram=1024,
        data_dir=Path(data_dir), kill_grace=1)
    agent = AgentService(settings, reactor,
                         client=InlineMaster(json.loads(argv_json)))
    agent.startService()


def main(mode, *args):
    reactor.callLater(DEADLINE, finish, {"error": "deadline"})
    handler = {"run": mode_run, "kill": mode_kill,
               "service": mode_service}[mode]
    reactor.callWhenRunning(handler, *args)
    reactor.run()


if __name__ == "__main__":
    main(*sys.argv[1:])
