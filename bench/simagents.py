"""
Simulated agents: many agents speaking the real agent protocol over HTTP.

Each simulated agent registers (``POST /api/v1/agents/``), then syncs
with the (task, attempt) pairs it holds. It runs no subprocess: every
task of an assignment it gets is done at once. It speaks one of two
protocols (``--protocol``):

``batch`` (the default)
    as the real agent does: one ``POST /api/v1/agents/<id>/updates``
    carries the log chunk of each assignment it got (with
    ``--log-chunk``), a ``done`` update per task (no ``running``: the
    real agent leaves it out when the final state goes in the same
    request) and a sync asking for more work, all in one transaction;
    the assignments of the answer's sync are what it runs next. With
    ``--prefetch N`` the sync also asks for up to ``N`` more assignments
    of the job of its last assignment (``"prefetch"``); it finishes all
    it got at once;
``calls``
    one call each: a sync (``POST /api/v1/agents/<id>/sync``), then per
    task ``running`` and ``done`` (``PUT /api/v1/agents/<id>/tasks/<task>``
    with the attempt), optionally after a log chunk (``POST
    .../assignments/<id>/log``).

The agent asks for work again:

``burst``
    at once after its frames are done, as the real agent does after a
    ``done`` (this measures how fast the master hands out work);
``paced``
    only every ``sync_interval`` seconds (one sync per agent per interval,
    this measures the sync latency of a farm at its normal pace; with the
    batch protocol the ``done`` updates go with that sync, as if every
    assignment took one interval).

An agent that got no work waits ``sync_interval`` seconds (the first
sync of each agent is spread over one interval, as agents that started
at different times would be). Everything runs in one asyncio event loop
over one aiohttp connection pool, so that the tool itself is not what
limits the figures: it reports the CPU time it used per assignment.

Run alone against a master (an agent-role token)::

    .venv/bin/python bench/simagents.py --master http://127.0.0.1:5000 \\
        --token TOKEN [--agents 1000] [--seconds 30] [--mode burst] \\
        [--protocol batch] [--prefetch 0]

or use it from the benchmarks (:func:`simulate`). It needs aiohttp, which
it installs into this Python environment on first use (it is a tool of
the benchmarks only, not a dependency of PyFarm).
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid

#: The job types a simulated agent reports: only the built-in one.
JOBTYPES = [{
    "name": "command",
    "description": "Run any program once for the assignment's frames.",
    "parameters": {
        "type": "object",
        "properties": {
            "argv": {"type": "array", "minItems": 1,
                     "items": {"type": "string"}},
            "cwd": {"type": "string"}},
        "required": ["argv"],
        "additionalProperties": False},
    "software": None,
}]

#: Most log chunks and task updates one ``POST .../updates`` may carry.
MAX_BATCH_LOGS = 100
MAX_BATCH_UPDATES = 1000
#: The protocols a simulated agent speaks.
PROTOCOLS = ("batch", "calls")


def need_aiohttp():
    """Import aiohttp, installing it into this environment if missing."""
    try:
        import aiohttp
    except ImportError:
        print("installing aiohttp for the simulated agents...",
              file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                        "aiohttp"], check=True)
        import aiohttp
    return aiohttp


def percentile(values, fraction):
    """Return the ``fraction`` percentile of ``values`` (nearest rank)."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)
                                                + 0.5) - 1))
    return ordered[index]


def cpu_seconds():
    """CPU time (user + system) this process used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Stats:
    """What the simulated agents saw, counted from ``measure_from`` on."""

    def __init__(self):
        self.measure_from = None
        self.latency = {"register": [], "sync": [], "update": [],
                        "log": []}
        self.assignments = 0
        self.tasks = 0
        self.done = 0
        self.conflicts = 0
        self.errors = {}
        #: task id -> the simulated agent holding it now; a task handed
        #: to a second agent while the first holds it is counted.
        self.holders = {}
        self.double = 0

    def measuring(self):
        """Whether what happens now is counted."""
        return (self.measure_from is not None
                and time.monotonic() >= self.measure_from)

    def error(self, kind):
        """Count one unexpected answer or failed request."""
        self.errors[kind] = self.errors.get(kind, 0) + 1


class SimAgent:
    """One simulated agent and its HTTP calls."""

    def __init__(self, http, base, token, stats, agent_id, cpus=1,
                 number=0, log_chunk=False, protocol="batch", prefetch=0):
        self.http = http
        self.base = base.rstrip("/") + "/api/v1"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.stats = stats
        self.id = agent_id
        self.hostname = f"sim-{number:05d}"
        self.cpus = cpus
        self.log_chunk = log_chunk
        self.protocol = protocol
        self.prefetch = prefetch
        #: The (task, attempt) pairs this agent holds.
        self.held = set()
        #: Batch protocol: the assignments got and not reported yet.
        self.unreported = []
        #: The job of the last assignment got (what prefetch asks for).
        self.job = None

    async def call(self, kind, method, path, body, record=True):
        """Send one request; return ``(status, json body)``. Its latency
        is counted as ``kind`` when ``record``."""
        started = time.perf_counter()
        try:
            async with self.http.request(
                    method, self.base + path, json=body,
                    headers=self.headers) as response:
                answer = await response.json(content_type=None)
                status = response.status
        except Exception as error:  # noqa: BLE001 - counted, not fatal
            # A refused or dropped connection under load is a result to
            # count, not a reason to stop the other agents.
            self.stats.error(f"{kind}: {type(error).__name__}")
            return None, None
        if record and (self.stats.measuring() or kind == "register"):
            self.stats.latency[kind].append(time.perf_counter() - started)
        return status, answer

    async def register(self, tries=5):
        """Register this agent, trying again after a failure as the real
        agent does; return whether the master accepted it."""
        for attempt in range(tries):
            status, _ = await self.call("register", "POST", "/agents/", {
                "id": self.id, "hostname": self.hostname, "os": "linux",
                "os_version": "simulated", "cpus": self.cpus,
                "ram": 64000, "free_ram": 60000, "version": "sim",
                "jobtypes": JOBTYPES})
            if status in (200, 201):
                return True
            if status is not None:
                self.stats.error(f"register: HTTP {status}")
            await asyncio.sleep(random.uniform(0.5, 1.5) * 2 ** attempt)
        return False

    def sync_body(self, reported=()):
        """Return the body of a sync: the pairs held but ``reported``
        (ended in the same request) and, when prefetching, what to
        prefetch."""
        ended = set(reported)
        body = {"free_ram": 60000,
                "running": [{"task": task, "attempt": attempt}
                            for task, attempt in sorted(self.held)
                            if (task, attempt) not in ended]}
        if self.prefetch and self.job is not None:
            body["prefetch"] = {"job": self.job,
                                "assignments": self.prefetch}
        return body

    def synced(self, answer):
        """Apply a sync's answer (cancellations, then the assignments it
        hands out, held from now on); return the assignments."""
        for item in answer.get("cancel") or []:
            self.drop(item["task"], item["attempt"])
        assignments = answer.get("assignments") or []
        for assignment in assignments:
            self.take(assignment)
        return assignments

    async def sync(self):
        """Calls protocol: sync once; return the assignments of the
        answer."""
        status, answer = await self.call(
            "sync", "POST", f"/agents/{self.id}/sync", self.sync_body())
        if status != 200:
            if status is not None:  # else counted as the exception
                self.stats.error(f"sync: HTTP {status}")
            return []
        return self.synced(answer)

    def answered(self, state, status):
        """Count the answer (HTTP status, or None after a failed request,
        already counted) to a task update of ``state``."""
        if status == 409:
            if self.stats.measuring():
                self.stats.conflicts += 1
        elif status is not None and status != 200:
            self.stats.error(f"update {state}: HTTP {status}")
        elif status == 200 and state == "done" and self.stats.measuring():
            self.stats.done += 1

    async def update(self, task, attempt, state):
        """Calls protocol: report ``state`` of a task; return the HTTP
        status."""
        status, _ = await self.call(
            "update", "PUT", f"/agents/{self.id}/tasks/{task}",
            {"attempt": attempt, "state": state})
        self.answered(state, status)
        return status

    def take(self, assignment):
        """Hold the tasks of an assignment just got (and count it)."""
        tasks = [(task["id"], task["attempt"])
                 for task in assignment["tasks"]]
        self.held.update(tasks)
        holders = self.stats.holders
        for task, _ in tasks:
            if holders.get(task, self.id) != self.id:
                self.stats.double += 1
            holders[task] = self.id
        if self.stats.measuring():
            self.stats.assignments += 1
            self.stats.tasks += len(tasks)
        self.job = assignment["job"]["id"]
        if self.protocol == "batch":
            self.unreported.append(assignment)

    @staticmethod
    def log_text(assignment):
        """Return the log chunk of an assignment."""
        frames = " ".join(str(task["frame"])
                          for task in assignment["tasks"])
        return f"simulated frames {frames}\n"

    async def run_assignment(self, assignment):
        """Calls protocol: run one assignment at once: running, log,
        done."""
        tasks = [(task["id"], task["attempt"])
                 for task in assignment["tasks"]]
        for task, attempt in tasks:
            if await self.update(task, attempt, "running") != 200:
                self.drop(task, attempt)
        if self.log_chunk:
            status, _ = await self.call(
                "log", "POST",
                f"/agents/{self.id}/assignments/{assignment['id']}/log",
                {"offset": 0, "data": self.log_text(assignment)})
            if status is not None and status != 200:
                self.stats.error(f"log: HTTP {status}")
        for task, attempt in tasks:
            if (task, attempt) not in self.held:
                continue
            await self.update(task, attempt, "done")
            self.drop(task, attempt)

    def batches(self, assignments):
        """Return the ``(logs, updates)`` reporting ``assignments`` done,
        split so that no request carries more than the master takes."""
        parts, logs, updates = [], [], []
        for assignment in assignments:
            if self.log_chunk:
                if len(logs) == MAX_BATCH_LOGS:
                    parts.append((logs, updates))
                    logs, updates = [], []
                logs.append({"assignment": assignment["id"], "offset": 0,
                             "data": self.log_text(assignment)})
            for task in assignment["tasks"]:
                if (task["id"], task["attempt"]) not in self.held:
                    continue  # cancelled meanwhile
                if len(updates) == MAX_BATCH_UPDATES:
                    parts.append((logs, updates))
                    logs, updates = [], []
                updates.append({"task": task["id"],
                                "attempt": task["attempt"],
                                "state": "done"})
        if logs or updates:
            parts.append((logs, updates))
        return parts

    async def report(self, sync=True):
        """Batch protocol: report every assignment got as done (with its
        log chunk) and, with ``sync``, ask for work in the same request;
        return the assignments of the answer."""
        finished, self.unreported = self.unreported, []
        parts = self.batches(finished)
        if sync and not parts:
            parts = [([], [])]
        assignments = []
        for number, (logs, updates) in enumerate(parts):
            body = {"logs": logs, "updates": updates}
            pairs = [(item["task"], item["attempt"]) for item in updates]
            asks = sync and number == len(parts) - 1
            if asks:
                body["sync"] = self.sync_body(reported=pairs)
            assignments = await self.send_batch(body, pairs, asks)
        return assignments

    async def send_batch(self, body, pairs, asks):
        """Send one ``POST .../updates``; count its answers, forget the
        tasks it reported; return the assignments of its sync."""
        # The request that answers a sync is timed as the sync; one
        # without (the last report, or a report too large for one
        # request) is not timed.
        status, answer = await self.call(
            "sync" if asks else "updates", "POST",
            f"/agents/{self.id}/updates", body, record=asks)
        if status != 200:
            if status is not None:  # else counted as the exception
                self.stats.error(f"updates: HTTP {status}")
            answer = {}
        for item in answer.get("logs") or []:
            if item.get("status") != 200:
                self.stats.error(f"log: HTTP {item.get('status')}")
        for item in answer.get("updates") or []:
            self.answered("done", item.get("status"))
        for task, attempt in pairs:
            self.drop(task, attempt)
        if not asks or answer.get("sync") is None:
            return []
        return self.synced(answer["sync"])

    def drop(self, task, attempt):
        """Forget a task this agent held."""
        self.held.discard((task, attempt))
        if self.stats.holders.get(task) == self.id:
            del self.stats.holders[task]

    async def live(self, mode, interval, stop_at, rng):
        """Sync and work until ``stop_at`` (monotonic seconds)."""
        start = rng.uniform(0, interval)
        await asyncio.sleep(min(start, max(0.0, stop_at - time.monotonic())))
        while time.monotonic() < stop_at:
            began = time.monotonic()
            if self.protocol == "batch":
                assignments = await self.report()
            else:
                assignments = await self.sync()
                for assignment in assignments:
                    await self.run_assignment(assignment)
            if mode == "burst" and assignments:
                continue
            wait = interval - (time.monotonic() - began)
            wait = min(wait, stop_at - time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)
        if self.unreported:
            # Finish the last assignments without asking for more.
            await self.report(sync=False)


def agent_ids(count, seed):
    """Return ``count`` agent UUIDs, the same for the same ``seed`` (a
    later run registers the same agents again instead of adding more)."""
    rng = random.Random(seed)
    return [str(uuid.UUID(int=rng.getrandbits(128), version=4))
            for _ in range(count)]


async def _simulate(masters, token, numbers, seconds, mode, interval,
                    warmup, cpus, log_chunk, connections, seed, protocol,
                    prefetch, barrier=None):
    """Run the simulated agents ``numbers`` (indexes into the agent ids of
    ``seed``) in this process; return their raw figures."""
    aiohttp = need_aiohttp()
    stats = Stats()
    rng = random.Random(f"{seed}:{numbers[:1]}")
    ids = agent_ids(max(numbers) + 1, seed) if numbers else []
    # Idle connections are closed before gunicorn's keep-alive (2 s)
    # would close them under a request just being sent.
    connector = aiohttp.TCPConnector(limit=connections,
                                     keepalive_timeout=1.0)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=timeout) as http:
        sims = [SimAgent(http, masters[number % len(masters)], token,
                         stats, ids[number], cpus=cpus, number=number,
                         log_chunk=log_chunk, protocol=protocol,
                         prefetch=prefetch)
                for number in numbers]
        started = time.monotonic()
        registered = await asyncio.gather(*(sim.register() for sim in sims))
        sims = [sim for sim, ok in zip(sims, registered, strict=True) if ok]
        register_seconds = time.monotonic() - started
        if barrier is not None:
            # Every process starts measuring at the same moment.
            await asyncio.get_running_loop().run_in_executor(
                None, barrier.wait)
        stats.measure_from = time.monotonic() + warmup
        stop_at = stats.measure_from + seconds
        cpu_before = None

        async def mark_cpu():
            nonlocal cpu_before
            await asyncio.sleep(max(0.0, stats.measure_from
                                    - time.monotonic()))
            cpu_before = cpu_seconds()

        marker = asyncio.ensure_future(mark_cpu())
        await asyncio.gather(*(sim.live(mode, interval, stop_at, rng)
                               for sim in sims))
        await marker
        measured = time.monotonic() - stats.measure_from
        cpu_used = cpu_seconds() - cpu_before
    return {"agents": len(sims), "register_seconds": register_seconds,
            "measured": measured, "cpu": cpu_used,
            "latency": stats.latency, "assignments": stats.assignments,
            "tasks": stats.tasks, "done": stats.done,
            "conflicts": stats.conflicts, "double": stats.double,
            "errors": stats.errors}


def _in_process(queue, barrier, args):
    """Run one share of the agents in a child process; put its figures
    (or the error) on ``queue``."""
    try:
        queue.put(asyncio.run(_simulate(*args, barrier=barrier)))
    except BaseException as error:  # noqa: BLE001 - handed to the parent
        queue.put(error)


def merge(parts, mode, interval, cpus, protocol="batch", prefetch=0):
    """Merge the raw figures of every process into the summary."""
    latency = {kind: [value for part in parts
                      for value in part["latency"][kind]]
               for kind in parts[0]["latency"]}
    measured = max(part["measured"] for part in parts)
    cpu = sum(part["cpu"] for part in parts)
    total = {key: sum(part[key] for part in parts)
             for key in ("agents", "assignments", "tasks", "done",
                         "conflicts", "double")}
    errors = {}
    for part in parts:
        for kind, count in part["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    syncs = latency["sync"]
    return {
        "mode": mode,
        "protocol": protocol,
        "prefetch": prefetch,
        "agents": total["agents"],
        "processes": len(parts),
        "cpus_per_agent": cpus,
        "sync_interval": interval,
        "register_seconds": round(max(part["register_seconds"]
                                      for part in parts), 2),
        "measured_seconds": round(measured, 2),
        "assignments": total["assignments"],
        "tasks": total["tasks"],
        "done": total["done"],
        "assignments_per_second": round(total["assignments"] / measured, 1),
        "tasks_per_second": round(total["tasks"] / measured, 1),
        "syncs": len(syncs),
        "syncs_per_second": round(len(syncs) / measured, 1),
        "sync_ms": latency_summary(syncs),
        "update_ms": latency_summary(latency["update"]),
        "log_ms": latency_summary(latency["log"]),
        "register_ms": latency_summary(latency["register"]),
        "conflicts": total["conflicts"],
        "held_by_two_agents": total["double"],
        "errors": errors,
        "tool_cpu_seconds": round(cpu, 2),
        "tool_cpu_ms_per_assignment": round(
            1000 * cpu / total["assignments"], 3)
        if total["assignments"] else None,
    }


def latency_summary(values):
    """Return ``{"p50", "p90", "p99", "max"}`` in milliseconds."""
    if not values:
        return None
    return {name: round(1000 * value, 1) for name, value in (
        ("p50", statistics.median(values)),
        ("p90", percentile(values, 0.90)),
        ("p99", percentile(values, 0.99)),
        ("max", max(values)))}


def simulate(masters, token, agents=1000, seconds=30, mode="burst",
             interval=10.0, warmup=None, cpus=1, log_chunk=False,
             connections=0, seed=1, processes=1, protocol="batch",
             prefetch=0):
    """Run ``agents`` simulated agents against ``masters`` (URLs; agent
    ``n`` talks to ``masters[n % len(masters)]``); return figures.

    Nothing is counted during ``warmup`` seconds (default: one
    ``interval``, so that every agent synced once), then for ``seconds``.
    Each simulated agent registers (again: the ids depend on ``seed``
    only, and registering again releases what an agent held).
    ``connections`` limits the HTTP connections open at once per process
    (0: none, every agent has its own as a real agent does);
    ``processes`` shares the agents among that many processes.

    ``protocol`` is ``"batch"`` (one ``POST .../updates`` reports the
    frames done and syncs, as the real agent does; its latency is counted
    as the sync's, and ``update_ms`` and ``log_ms`` are None) or
    ``"calls"`` (a sync, then a call per update and log chunk).
    ``prefetch`` (batch only) asks every sync for up to that many more
    assignments of the job of the agent's last assignment.

    A task handed to a second simulated agent while another holds it is
    counted (``held_by_two_agents``) within one process, so the check
    runs with ``processes=1`` only.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}")
    if prefetch < 0 or (prefetch and protocol != "batch"):
        raise ValueError("prefetch must be 0, or positive with the "
                         "batch protocol")
    if isinstance(masters, str):
        masters = [masters]
    if warmup is None:
        warmup = interval
    shares = [list(range(part, agents, processes))
              for part in range(processes)]
    common = (seconds, mode, interval, warmup, cpus, log_chunk,
              connections, seed, protocol, prefetch)
    if processes == 1:
        parts = [asyncio.run(_simulate(list(masters), token, shares[0],
                                       *common))]
        return merge(parts, mode, interval, cpus, protocol, prefetch)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    barrier = context.Barrier(processes)
    children = [context.Process(
        target=_in_process, daemon=True,
        args=(queue, barrier, (list(masters), token, share, *common)))
        for share in shares]
    for child in children:
        child.start()
    parts = [queue.get() for _ in children]
    for child in children:
        child.join()
    for part in parts:
        if isinstance(part, BaseException):
            raise part
    return merge(parts, mode, interval, cpus, protocol, prefetch)


def stub_master(port, first=1):
    """Serve a stand-in master on ``port`` that answers the agent protocol
    at once (every sync brings one new assignment of one task, and as many
    more as it asks to prefetch; the task ids count from ``first``), so
    that the tool's own ceiling can be measured; runs until killed."""
    import itertools

    need_aiohttp()
    from aiohttp import web
    counter = itertools.count(first)

    def assignment():
        number = next(counter)
        return {"id": str(uuid.UUID(int=number, version=4)),
                "job": {"id": 1},
                "tasks": [{"id": number, "frame": number, "attempt": 1}]}

    def sync_answer(body):
        more = (body.get("prefetch") or {}).get("assignments", 0)
        return {"assignments": [assignment() for _ in range(1 + more)],
                "cancel": [], "sync_interval": 10, "state": "running"}

    async def register(request):
        body = await request.json()
        return web.json_response({"id": body["id"], "sync_interval": 10},
                                 status=201)

    async def sync(request):
        return web.json_response(sync_answer(await request.json()))

    async def update(request):
        body = await request.json()
        return web.json_response({"task": int(request.match_info["task"]),
                                  "attempt": body["attempt"],
                                  "state": body["state"]})

    async def log(request):
        await request.read()
        return web.json_response({"size": 1})

    async def updates(request):
        body = await request.json()
        sync = body.get("sync")
        return web.json_response({
            "logs": [{"assignment": chunk["assignment"], "status": 200,
                      "size": len(chunk["data"])}
                     for chunk in body.get("logs", [])],
            "updates": [{"task": item["task"], "attempt": item["attempt"],
                         "status": 200, "state": item["state"]}
                        for item in body.get("updates", [])],
            "sync": None if sync is None else sync_answer(sync)})

    app = web.Application()
    app.router.add_post("/api/v1/agents/", register)
    app.router.add_post("/api/v1/agents/{agent}/sync", sync)
    app.router.add_put("/api/v1/agents/{agent}/tasks/{task}", update)
    app.router.add_post("/api/v1/agents/{agent}/assignments/{aid}/log", log)
    app.router.add_post("/api/v1/agents/{agent}/updates", updates)
    web.run_app(app, host="127.0.0.1", port=port, print=None,
                access_log=None, reuse_port=True)


def selftest(agents, seconds, processes, servers=2, protocol="batch",
             prefetch=0, log_chunk=False):
    """Measure the tool against ``servers`` stand-in master processes;
    return its figures."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = multiprocessing.get_context("fork")
    # Each stand-in hands out task ids of its own, so that no task is
    # held by two agents.
    stubs = [context.Process(target=stub_master, daemon=True,
                             args=(port, 1 + number * 10 ** 9))
             for number in range(servers)]
    for stub in stubs:
        stub.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return simulate(f"http://127.0.0.1:{port}", "stub", agents=agents,
                        seconds=seconds, mode="burst", warmup=1,
                        processes=processes, protocol=protocol,
                        prefetch=prefetch, log_chunk=log_chunk)
    finally:
        for stub in stubs:
            stub.terminate()
            stub.join()


def main(argv=None):
    """Run simulated agents against a master and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--selftest", action="store_true",
                        help="measure the tool itself against stand-in "
                        "masters that answer at once (no --master)")
    parser.add_argument("--master", action="append",
                        help="the master's URL, http://host:port (again "
                        "for more masters: the agents are spread)")
    parser.add_argument("--token",
                        help="an agent-role (or admin) API token")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds not counted (default: one interval)")
    parser.add_argument("--mode", choices=["burst", "paced"],
                        default="burst")
    parser.add_argument("--sync-interval", type=float, default=10.0)
    parser.add_argument("--cpus", type=int, default=1,
                        help="cpus (slots) per simulated agent")
    parser.add_argument("--log-chunk", action="store_true",
                        help="send one log chunk per assignment")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="batch",
                        help="batch (default, as the real agent): the "
                        "frames done and the next sync in one POST "
                        ".../updates; calls: a sync, then one call per "
                        "task update and log chunk")
    parser.add_argument("--prefetch", type=int, default=0,
                        help="batch protocol: ask every sync for up to "
                        "this many more assignments of the job of the "
                        "agent's last assignment (default 0: none)")
    parser.add_argument("--connections", type=int, default=0,
                        help="most HTTP connections open at once per "
                        "process (default 0: one per agent)")
    parser.add_argument("--processes", type=int, default=1,
                        help="share the agents among this many processes")
    args = parser.parse_args(argv)
    if args.prefetch < 0 or (args.prefetch and args.protocol != "batch"):
        parser.error("--prefetch must be 0, or positive with --protocol "
                     "batch")
    if args.selftest:
        result = selftest(args.agents, args.seconds, args.processes,
                          protocol=args.protocol, prefetch=args.prefetch,
                          log_chunk=args.log_chunk)
        result["load"] = [round(value, 2) for value in os.getloadavg()]
        print(json.dumps(result, indent=2))
        return 0
    if not args.master or not args.token:
        parser.error("--master and --token are needed (or --selftest)")
    result = simulate(args.master, args.token, agents=args.agents,
                      seconds=args.seconds, mode=args.mode,
                      interval=args.sync_interval, warmup=args.warmup,
                      cpus=args.cpus, log_chunk=args.log_chunk,
                      connections=args.connections,
                      processes=args.processes, protocol=args.protocol,
                      prefetch=args.prefetch)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
