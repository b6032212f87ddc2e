"""
The agent daemon: register, sync, run assignments, report.

:class:`AgentService` is a Twisted ``MultiService``; the reactor, the
master client, the system probe, the randomness, the process spawner and
the job type factory are all passed in, so tests drive it with
``task.Clock`` and fakes.

The loop:

1. Start: read (or create) the agent's UUID in ``data_dir/agent_id``;
   find the renderers this node has (:mod:`pyfarm.agent.software`);
   deliver the final task states a previous run could not (they wait in
   ``data_dir/outbox.json``); then register, retrying with backoff and
   jitter until the master answers. Registration says what the machine
   is, which software versions it has and which job types it runs (with
   the JSON Schema of each one's ``data``).
2. Sync every ``sync_interval`` seconds (the master's answer sets it),
   telling the master the ``(task, attempt)`` pairs held; the answer
   brings assignments to start and pairs to cancel. A 404 means the master
   forgot this agent: stop everything and register again.
3. Run each assignment through its job type as one process, as many at
   once as the agent's cpus and ram allow: report every task "running",
   stream the output to the assignment's log, report a frame "done" when
   the job type sees it finish, and at the end "done" for the rest, or
   "failed" with the reason, the exit status and the last lines of
   output. A "done" carries the files the frame wrote (``outputs``). A
   final state is sent only once the log before it reached the master.
4. Task updates go through the :class:`~pyfarm.agent.outbox.Outbox`, in
   order, retried while the master is away (a sync cuts a long backoff
   short); it sends them in one request together with the waiting log
   chunks and the sync, so a frame's end, its output and the claim of the
   next frame cost one round trip. A 409 or 404 for an update, or a
   "cancel" from sync, of a task still open kills the assignment's
   process tree; its tasks are dropped without a report (the master
   requeues them as lost). A process that ended well asks for work in
   the request reporting its end (after a failure the agent keeps the
   master's pace).
"""

import functools
import json
import math
import os
import random
import shlex
import uuid
from collections import deque
from datetime import datetime, timezone

from twisted.application import service
from twisted.internet import defer

from pyfarm.agent import __version__, jobtypes, prefetch
from pyfarm.agent import process as process_module
from pyfarm.agent import software as software_module
from pyfarm.agent import sysinfo as sysinfo_module
from pyfarm.agent.errors import AgentError
from pyfarm.agent.jobtypes import FrameDone, JobTypeError, Progress
from pyfarm.agent.logs import LogStream
from pyfarm.agent.master import MasterClient, NotFound
from pyfarm.agent.outbox import COALESCE, LINGER, Outbox
from pyfarm.agent.process import SpawnError
from pyfarm.agent.retry import RetryPolicy
from pyfarm.core.framerange import compact
from pyfarm.core.logger import getLogger

logger = getLogger("agent.service")

#: Seconds between syncs until the master says otherwise.
DEFAULT_SYNC_INTERVAL = 5.0

#: Bounds on the interval the master may ask for.
MIN_SYNC_INTERVAL = 0.1
MAX_SYNC_INTERVAL = 300.0

#: The longest wait between two sync attempts while the master is away:
#: sync is the heartbeat, and the master declares an agent lost after
#: ``lost_timeout`` (60 s by default) without one.
MAX_SYNC_RETRY = 15.0

#: At most one progress report per task in this many seconds.
PROGRESS_INTERVAL = 5.0

#: Lines of output kept for the failure message.
TAIL_LINES = jobtypes.ERROR_LINES

#: The longest output path reported (longer ones are left out).
MAX_OUTPUT_PATH = 4096


def installed_software(settings, environ, os_name):
    """Return the software inventory of the installed job types."""
    return jobtypes.find_software(settings.executables, environ, os_name)


def clip(text, limit=jobtypes.MAX_ERROR):
    """Return ``text`` cut to ``limit`` characters, keeping head and tail.

    The master refuses a longer error (400), and a refused final update
    would be dropped: the frame would come back as lost, again and again.
    """
    if len(text) <= limit:
        return text
    marker = "\n...\n"
    head = min(200, (limit - len(marker)) // 2)
    return text[:head] + marker + text[-(limit - len(marker) - head):]


def load_agent_id(path):
    """Return the agent's UUID kept in ``path``, creating it if missing."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        agent_id = str(uuid.uuid4())
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(agent_id + "\n", encoding="utf-8")
        os.replace(temporary, path)
        logger.info("this is a new agent: id %s (kept in %s)", agent_id, path)
        return agent_id
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise AgentError(
            f"{path} should hold this agent's id (a UUID) but holds "
            f"{text[:60]!r}; delete the file to register as a new "
            f"agent") from None


class TaskRun:
    """One task of an assignment on this agent.

    ``state``: pending (not started), running, done, failed, or released
    (dropped without a report).
    """

    def __init__(self, task):
        self.id = task["id"]
        self.frame = task["frame"]
        self.attempt = task["attempt"]
        self.state = "pending"
        self.progress = 0.0
        self.progress_sent_at = None

    @property
    def open(self):
        """Whether the agent still holds this task and has not ended it."""
        return self.state in ("pending", "running")


class Run:
    """One assignment: its tasks, process, log and last lines of output."""

    def __init__(self, assignment):
        self.id = str(assignment["id"])
        self.assignment = assignment
        self.job = assignment["job"]
        self.tasks = [TaskRun(task) for task in assignment["tasks"]]
        if not self.tasks:
            raise ValueError("an assignment without tasks")
        self.cpus = int(self.job.get("cpus") or 1)
        self.ram = int(self.job.get("ram") or 0)
        self.started = False
        self.started_at = None
        self.jobtype = None
        self.process = None
        self.log = None
        self.tail = deque(maxlen=TAIL_LINES)
        self.stop_reason = None

    def describe(self):
        """Say what this is, for the agent's log."""
        frames = compact(task.frame for task in self.tasks)
        return (f"assignment {self.id} (job {self.job.get('id')}, frames "
                f"{frames})")

    def task_for_frame(self, frame):
        """Return the task of ``frame`` or None."""
        for task in self.tasks:
            if task.frame == frame:
                return task
        return None

    def current_task(self):
        """Return the first task still running, or None."""
        for task in self.tasks:
            if task.state == "running":
                return task
        return None


class AgentService(service.MultiService):
    """The agent: see the module documentation for the loop."""

    name = "pyfarm-agent"

    def __init__(self, settings, reactor, client=None, sysinfo=None,
                 rand=None, spawn=None, build_jobtype=None, policy=None,
                 environ=None, now=None,
                 progress_interval=PROGRESS_INTERVAL, find_software=None,
                 describe_jobtypes=None, linger=LINGER, coalesce=COALESCE):
        super().__init__()
        self.linger = linger
        self.coalesce = coalesce
        self.settings = settings
        self.reactor = reactor
        self.client = client
        self.sysinfo = sysinfo or sysinfo_module
        self.rand = rand or random.Random().random
        self.spawn = spawn or process_module.spawn
        #: Job type classes by name, loaded once (see jobtypes.build).
        self.jobtype_classes = {}
        self.build_jobtype = build_jobtype or functools.partial(
            jobtypes.build, classes=self.jobtype_classes)
        self.policy = policy or RetryPolicy()
        self.environ = os.environ if environ is None else environ
        self.now = now or (lambda: datetime.now(timezone.utc))
        self.progress_interval = progress_interval
        self.find_software = find_software or installed_software
        self.describe_jobtypes = describe_jobtypes or \
            jobtypes.describe_installed
        self.installed = {}
        self.jobtype_info = []
        self.agent_id = None
        self.info = {}
        self.cpus = self.ram = None
        self.registered = False
        self.state = None
        self.sync_interval = DEFAULT_SYNC_INTERVAL
        self.runs = {}
        self.logs = {}
        self.outbox = None
        self.stopping = False
        self._register_call = None
        self._register_failures = 0
        self._sync_call = None
        self._sync_in_flight = False
        self._sync_again = False
        self._sync_failures = 0
        self._status = {}
        #: The master's ``prefetch_limit`` (0: an older master, or off).
        self.prefetch_limit = 0
        self.run_times = prefetch.RunTimes()

    # -- start and stop ------------------------------------------------

    def startService(self):  # noqa: N802 - Twisted interface
        """Load the identity and pending updates, then register."""
        super().startService()
        self.stopping = False
        data_dir = self.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.agent_id = load_agent_id(data_dir / "agent_id")
        self.info = self.sysinfo.collect()
        self.cpus = self.settings.cpus or self.info["cpus"]
        self.ram = self.settings.ram or self.info["ram"]
        self.look_for_software()
        if self.client is None:
            self.client = MasterClient(
                self.reactor, self.settings.master_url, self.settings.token)
        self.outbox = Outbox(
            self.reactor, self.client, self.agent_id,
            data_dir / "outbox.json", self.policy, self.rand,
            gate=self._log_gate, on_result=self._update_result,
            logs=lambda: list(self.logs.values()), linger=self.linger,
            coalesce=self.coalesce)
        self._status = {}
        self.write_status(pid=os.getpid(), id=self.agent_id,
                          master=self.settings.master_url,
                          started_at=self.now().isoformat())
        recovered = self.outbox.load()
        if recovered:
            logger.info("delivering %d task updates from before the "
                        "restart before registering", recovered)
            self.outbox.resume()
            self.outbox.drained().addCallback(lambda _: self._register())
        else:
            self._register()

    def stopService(self):  # noqa: N802 - Twisted interface
        """Stop syncing, kill running processes; fire when they are gone.

        Their tasks are not reported: the master requeues them without
        counting a failure when this agent registers again.
        """
        self.stopping = True
        for call in (self._register_call, self._sync_call):
            if call is not None and call.active():
                call.cancel()
        self._register_call = self._sync_call = None
        if self.outbox is not None:
            self.outbox.pause()
        ends = []
        for run in list(self.runs.values()):
            if run.process is not None and not run.process.finished:
                ends.append(run.process.ended)
            self._stop_run(run, "the agent is stopping")
        for log in list(self.logs.values()):
            log.stop()
        d = defer.DeferredList(ends, consumeErrors=True)
        if self.client is not None:
            d.addCallback(lambda _: self.client.close())
        d.addBoth(lambda _: service.MultiService.stopService(self))
        return d

    def write_status(self, **changes):
        """Record for ``pyfarm-agent status`` who and where this agent is.

        A failure (disk full) is logged and otherwise ignored: the file is
        only for people, and the agent's work must go on without it.
        """
        self._status.update(changes)
        path = self.settings.data_dir / "status.json"
        temporary = path.with_name(path.name + ".tmp")
        try:
            temporary.write_text(json.dumps(self._status, indent=2),
                                 encoding="utf-8")
            os.replace(temporary, path)
        except OSError as error:
            logger.warning("cannot write %s: %s", path, error)

    def look_for_software(self):
        """Find the renderers and describe the job types of this agent.

        A failure is logged: the agent still runs what needs no software.
        """
        try:
            self.installed = self.find_software(
                self.settings, self.environ, self.info["os"])
        except Exception:  # a job type's bug must not stop the agent
            logger.exception("looking for software failed")
            self.installed = {}
        try:
            self.jobtype_info = list(self.describe_jobtypes())
        except Exception:  # a job type's bug must not stop the agent
            logger.exception("describing the job types failed")
            self.jobtype_info = []
        logger.info("job types: %s", ", ".join(
            item["name"] for item in self.jobtype_info) or "none")

    def free_ram(self):
        """Return the free memory in MB, or None when it cannot be read."""
        try:
            return self.sysinfo.free_ram()
        except Exception:  # psutil's errors vary by platform; report None
            logger.exception("cannot read the free memory")
            return None

    # -- registration --------------------------------------------------

    def registration(self):
        """Return the body of ``POST /api/v1/agents/``."""
        return {
            "id": self.agent_id,
            "hostname": self.info["hostname"],
            "os": self.info["os"],
            "os_version": self.info["os_version"],
            "cpus": self.cpus,
            "ram": self.ram,
            "free_ram": self.free_ram() or 0,
            "gpus": self.info.get("gpus") or [],
            "disks": self.info.get("disks") or [],
            "tags": list(self.settings.tags),
            "software": software_module.report(self.installed,
                                               self.settings.software),
            "jobtypes": self.jobtype_info,
            "version": __version__,
        }

    def _register(self):
        self._register_call = None
        if self.stopping:
            return
        # maybeDeferred: an error building the request must end in the
        # errback (and a retry), not stop registering for good.
        d = defer.maybeDeferred(
            lambda: self.client.register(self.registration()))
        d.addCallbacks(self._registered, self._register_failed)
        d.addErrback(self._register_bug)

    def _registered(self, body):
        self.registered = True
        self._register_failures = 0
        # A master that does not say its limit (an older one) would
        # refuse a sync asking to prefetch.
        self.prefetch_limit = 0
        self._apply_answer(body)
        logger.info("registered with %s as %s (%s, sync every %g s)",
                    self.settings.master_url, self.agent_id, self.state,
                    self.sync_interval)
        for item in body.get("rejected_jobtypes") or []:
            logger.error("the master left out job type %r: %s (fix the "
                         "package that provides it; the other job types "
                         "work)", item.get("name"), item.get("error"))
        self.write_status(registered_at=self.now().isoformat())
        self.outbox.resume()
        self._master_is_back()
        self.sync_soon()

    def _master_is_back(self):
        # Deliveries waiting out a long backoff need not wait any more.
        self.outbox.retry_now()
        for log in list(self.logs.values()):
            log.retry_now()

    def _register_failed(self, failure):
        if self.stopping:
            return
        self._register_failures += 1
        delay = self.policy.delay(self._register_failures, self.rand)
        logger.warning("cannot register with %s (%s); trying again in "
                       "%.1f s", self.settings.master_url,
                       failure.getErrorMessage(), delay)
        self._register_call = self.reactor.callLater(delay, self._register)

    def _register_bug(self, failure):
        # A bug while handling the answer must not end registration, nor
        # leave a registered agent without deliveries and syncs.
        logger.error("registering: unexpected error: %s",
                     failure.getTraceback())
        if not self.registered:
            if self._register_call is None:
                self._register_failed(failure)
        elif not self.stopping:
            self.outbox.resume()
            self.sync_soon()

    def _apply_answer(self, body):
        interval = body.get("sync_interval")
        if isinstance(interval, (int, float)) and not isinstance(
                interval, bool) and interval > 0:
            self.sync_interval = float(min(max(
                interval, MIN_SYNC_INTERVAL), MAX_SYNC_INTERVAL))
        limit = body.get("prefetch_limit")
        if isinstance(limit, int) and not isinstance(limit, bool) \
                and limit >= 0:
            self.prefetch_limit = limit
        state = body.get("state")
        if state and state != self.state:
            logger.info("the master says this agent is %s", state)
            self.state = state

    # -- sync ----------------------------------------------------------

    def held(self):
        """Return the ``(task, attempt)`` pairs this agent holds.

        Tasks of assignments waiting or running, and tasks whose final
        state the master has not acknowledged yet.
        """
        pairs = set(self.outbox.final_pairs()) if self.outbox else set()
        for run in self.runs.values():
            pairs.update((task.id, task.attempt) for task in run.tasks
                         if task.open)
        return pairs

    def sync_body(self):
        """Return the body of a sync: free RAM, what the agent holds and,
        for a job whose frames end within moments, a prefetch."""
        body = {"free_ram": self.free_ram(), "running": sorted(self.held())}
        asked = self.prefetch_request()
        if asked is not None:
            body["prefetch"] = asked
        return body

    def prefetch_request(self):
        """Return the sync's ``prefetch`` (see :mod:`pyfarm.agent.
        prefetch`) for the job run last, or None."""
        job_id = self.run_times.latest()
        if job_id is None or not self.prefetch_limit:
            return None
        jobs = {run.job.get("id") for run in self.runs.values()}
        if jobs and jobs != {job_id}:
            # Busy with another job: what it queued would wait behind it.
            return None
        seconds, cpus, ram = self.run_times.get(job_id)
        waiting = sum(1 for run in self.runs.values() if not run.started)
        count = prefetch.wanted(
            seconds, self.settings.prefetch,
            prefetch.slots(self.cpus, self.ram, cpus, ram), waiting,
            self.prefetch_limit, round_trip=self.outbox.round_trip)
        if count < 1:
            return None
        return {"job": job_id, "assignments": count}

    def sync_soon(self, delay=0.0):
        """Sync within ``delay`` seconds (sooner if one is due sooner).

        With no delay the sync joins the outbox's next request.
        """
        if not self.registered or self.stopping:
            return
        if self._sync_in_flight:
            if delay == 0 and not self.outbox.sync_pending():
                self._sync_again = True
            return
        if delay == 0:
            if self._sync_call is not None and self._sync_call.active():
                self._sync_call.cancel()
            self._sync()
            return
        due = self.reactor.seconds() + delay
        if self._sync_call is not None and self._sync_call.active():
            if self._sync_call.getTime() <= due:
                return
            self._sync_call.cancel()
        self._sync_call = self.reactor.callLater(delay, self._sync)

    def _sync(self):
        self._sync_call = None
        if not self.registered or self.stopping:
            return
        self._sync_in_flight = True
        self._sync_again = False
        # maybeDeferred: an error building the request must reach the
        # errback, or _sync_in_flight would stay set and sync never again.
        d = defer.maybeDeferred(lambda: self.outbox.request_sync(
            self.sync_body))
        d.addCallbacks(self._synced, self._sync_failed)
        d.addErrback(self._sync_bug)

    def _synced(self, body):
        self._sync_in_flight = False
        self._sync_failures = 0
        if self.stopping:
            return
        self._master_is_back()
        self._apply_answer(body)
        for item in body.get("cancel") or []:
            self._drop(item.get("task"), item.get("attempt"),
                       "the master cancelled it")
        for assignment in body.get("assignments") or []:
            self._accept(assignment)
        self._start_waiting()
        self.sync_soon(0 if self._sync_again else self.sync_interval)

    def _sync_failed(self, failure):
        self._sync_in_flight = False
        if self.stopping:
            return
        if failure.check(NotFound):
            logger.warning("the master does not know this agent (404); "
                           "registering again")
            self.registered = False
            try:
                self._release_all("the master forgot this agent")
            finally:  # whatever happens, register again
                self._register()
            return
        self._sync_failures += 1
        delay = max(self.sync_interval, min(
            MAX_SYNC_RETRY,
            self.policy.delay(self._sync_failures, self.rand)))
        logger.warning("cannot sync with %s (%s); trying again in %.1f s",
                       self.settings.master_url, failure.getErrorMessage(),
                       delay)
        self.sync_soon(delay)

    def _sync_bug(self, failure):
        # A bug while handling an answer must not stop the sync loop.
        logger.error("sync: unexpected error: %s", failure.getTraceback())
        self._sync_in_flight = False
        self.sync_soon(self.sync_interval)

    # -- assignments ---------------------------------------------------

    def _accept(self, assignment):
        try:
            run = Run(assignment)
        except (KeyError, TypeError, ValueError) as error:
            logger.error("ignoring a malformed assignment %r: %s",
                         assignment, error)
            return
        if run.id in self.runs:
            return
        logger.info("received %s", run.describe())
        self.runs[run.id] = run

    def _fits(self, run):
        active = [other for other in self.runs.values() if other.started]
        if not active:
            return True  # never wait forever for a job larger than us
        cpus = sum(other.cpus for other in active) + run.cpus
        ram = sum(other.ram for other in active) + run.ram
        return cpus <= self.cpus and ram <= self.ram

    def _start_waiting(self):
        if self.stopping:
            return
        for run in list(self.runs.values()):
            if run.started:
                continue
            if not self._fits(run):
                break  # keep the master's order
            self._start(run)

    def _start(self, run):
        run.started = True
        run.started_at = self.reactor.seconds()
        run.log = LogStream(self.reactor, self.client, self.agent_id, run.id,
                            self.policy, self.rand,
                            on_progress=self.outbox.kick,
                            courier=self.outbox)
        self.logs[run.id] = run.log
        try:
            run.jobtype = self.build_jobtype(
                run.assignment, environ=self.environ,
                installed=self.installed, os_name=self.info.get("os"))
            argv = run.jobtype.argv()
            if not isinstance(argv, (list, tuple)):
                raise JobTypeError(f"{type(run.jobtype).__name__}.argv() "
                                   f"must return a list, got {argv!r}")
            argv = [str(arg) for arg in argv]  # spawn and shlex want str
            environ = run.jobtype.environ()
            cwd = run.jobtype.cwd
        except JobTypeError as error:
            return self._fail_to_start(run, str(error))
        except Exception as error:  # a job type's bug fails its tasks only
            logger.exception("%s: job type error", run.describe())
            return self._fail_to_start(run, f"job type error: {error!r}")
        run.log.write_text(
            f"[pyfarm-agent] {self.info.get('hostname')}: "
            f"{run.describe()}: {shlex.join(argv)}\n")
        try:
            run.process = self.spawn(
                self.reactor, argv, environ, cwd,
                on_data=run.log.write,
                on_line=lambda line: self._line(run, line))
        except SpawnError as error:
            return self._fail_to_start(run, str(error))
        except Exception as error:  # spawnProcess's errors vary by platform
            logger.exception("%s: spawn failed", run.describe())
            return self._fail_to_start(run, f"cannot start: {error!r}")
        logger.info("started %s", run.describe())
        run.process.ended.addCallback(self._ended, run)
        run.process.ended.addErrback(self._end_bug, run)
        for task in run.tasks:
            task.state = "running"
        for task in run.tasks:
            if task.state == "running":  # a 409 may have dropped them
                self.outbox.put({"task": task.id, "attempt": task.attempt,
                                 "state": "running"})

    def _fail_to_start(self, run, message):
        logger.error("%s cannot start: %s", run.describe(), message)
        run.log.write_text(f"[pyfarm-agent] cannot start: {message}\n")
        for task in run.tasks:
            if task.open:
                self._final(run, task, "failed", message)
        self._finish(run)

    def _line(self, run, line):
        run.tail.append(line)
        if run.stop_reason is not None:
            return
        try:
            for event in run.jobtype.parse_line(line) or []:
                self._event(run, event)
        except Exception:  # a parser bug must not break the run
            logger.exception("%s: parsing failed on %r", run.describe(),
                             line)

    def _event(self, run, event):
        if isinstance(event, FrameDone):
            task = run.task_for_frame(event.frame)
            if task is not None and task.state == "running":
                self._final(run, task, "done")
        elif isinstance(event, Progress):
            self._progress(run, event)
        else:
            logger.warning("%s: unknown event %r", run.describe(), event)

    def _progress(self, run, event):
        task = run.current_task() if event.frame is None \
            else run.task_for_frame(event.frame)
        if task is None or task.state != "running":
            return
        value = float(event.value)
        if math.isnan(value):  # the master refuses it (and JSON has no NaN)
            return
        task.progress = min(max(value, 0.0), 1.0)
        now = self.reactor.seconds()
        if task.progress_sent_at is not None and \
                now - task.progress_sent_at < self.progress_interval:
            return
        task.progress_sent_at = now
        self.outbox.put({"task": task.id, "attempt": task.attempt,
                         "state": "running", "progress": task.progress})

    def _final(self, run, task, state, error=None):
        task.state = state
        update = {"task": task.id, "attempt": task.attempt, "state": state}
        if error is not None:  # the master refuses NUL characters
            update["error"] = clip(str(error).replace("\x00", "\ufffd"))
        if state == "done":
            outputs = self._outputs(run, task)
            if outputs:
                update["outputs"] = outputs
        if run.log is not None and not run.log.finished:
            update["log"] = [run.id, run.log.written]
            run.log.want(run.log.written)
        logger.info("task %s (frame %s) attempt %s: %s", task.id,
                    task.frame, task.attempt, state)
        self.outbox.put(update)

    def _outputs(self, run, task):
        """Return the files the job type says ``task``'s frame wrote."""
        if run.jobtype is None:
            return []
        try:
            paths = run.jobtype.outputs(task.frame) or []
        except Exception:  # a job type's bug costs the list, not the frame
            logger.exception("%s: listing the outputs of frame %s failed",
                             run.describe(), task.frame)
            return []
        return [path for path in paths[:jobtypes.MAX_OUTPUTS]
                if isinstance(path, str) and path and "\x00" not in path
                and len(path) <= MAX_OUTPUT_PATH]

    def _ended(self, status, run):
        # The log's end, the final states and the sync asking for more
        # work go in one request.
        with self.outbox.holding():
            self._end(status, run)

    def _end(self, status, run):
        elapsed = self.reactor.seconds() - run.started_at
        logger.info("%s ended: %s after %.1f s", run.describe(),
                    status.describe(), elapsed)
        if run.stop_reason is not None:
            run.log.write_text(f"\n[pyfarm-agent] stopped ({run.stop_reason})"
                               f": {status.describe()}\n")
            for task in run.tasks:
                if task.open:
                    task.state = "released"
            return self._finish(run)
        try:
            succeeded = run.jobtype.succeeded(status, list(run.tail))
            error = None if succeeded else run.jobtype.error_message(
                status, list(run.tail))
        except Exception as failure:  # a job type's bug fails its tasks
            logger.exception("%s: deciding success failed", run.describe())
            succeeded, error = False, f"job type error: {failure!r}"
        run.log.write_text(f"[pyfarm-agent] {status.describe()} after "
                           f"{elapsed:.1f} s\n")
        for task in run.tasks:
            if task.state == "running":
                self._final(run, task, "done" if succeeded else "failed",
                            error)
        if succeeded and isinstance(run.job.get("id"), int):
            self.run_times.add(run.job["id"], elapsed, run.cpus, run.ram)
        self._finish(run)
        if succeeded:
            # A slot is free: ask for work now (after a failure, wait for
            # the master's interval).
            self.sync_soon()

    def _end_bug(self, failure, run):
        logger.error("%s: unexpected error at its end: %s", run.describe(),
                     failure.getTraceback())
        self._finish(run)

    def _finish(self, run):
        self.runs.pop(run.id, None)
        if run.log is not None:
            closed = run.log.close()
            closed.addCallback(self._log_closed, run.id)
        self._start_waiting()

    def _log_closed(self, _, assignment_id):
        self.logs.pop(assignment_id, None)
        self.outbox.kick()

    # -- cancellation ----------------------------------------------------

    def _drop(self, task_id, attempt, reason):
        """Stop the assignment holding ``(task_id, attempt)`` if it is open.

        A task whose end the agent already reported is left alone: the
        master may cancel it because that report crossed a sync, and the
        frames after it in the same process are still wanted.
        """
        for run in list(self.runs.values()):
            if any(task.id == task_id and task.attempt == attempt
                   and task.open for task in run.tasks):
                self._stop_run(run, f"task {task_id} attempt {attempt}: "
                                    f"{reason}")

    def _stop_run(self, run, reason):
        for task in run.tasks:
            if task.open:
                task.state = "released"
        if not run.started:
            logger.info("dropping %s: %s", run.describe(), reason)
            self.runs.pop(run.id, None)
            return
        if run.process is None or run.process.finished or \
                run.stop_reason is not None:
            return
        run.stop_reason = reason
        logger.warning("%s: %s; killing its processes", run.describe(),
                       reason)
        d = run.process.kill(self.settings.kill_grace)
        d.addErrback(lambda failure: logger.error(
            "%s: kill failed: %s", run.describe(), failure.getTraceback()))

    def _release_all(self, reason):
        for run in list(self.runs.values()):
            self._stop_run(run, reason)

    # -- outbox callbacks ----------------------------------------------

    def _log_gate(self, update, sizes=None):
        gate = update.get("log")
        if not gate:
            return True
        log = self.logs.get(gate[0])
        return log is None or log.flushed(gate[1]) or \
            (sizes or {}).get(gate[0], 0) >= gate[1]

    def _update_result(self, result, update, detail):
        if result in ("conflict", "gone"):
            self._drop(update["task"], update["attempt"],
                       "the master refused its update")
        # Ask for work at once after frames were done; after a failure wait
        # for the master's interval, so that work failing at once (a
        # missing renderer) does not turn into a loop as fast as the master
        # can answer.
        if update["state"] == "done" and not self.outbox.final_pairs() \
                and not self.outbox.synced:
            self.sync_soon()

