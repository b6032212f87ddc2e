"""
Task updates the master has not acknowledged yet, delivered in order.

The :class:`Outbox` keeps every update (``{"task", "attempt", "state",
"progress"?, "error"?, "outputs"?}``) in a list and sends them one at a
time, oldest first. The list is saved to a JSON file whenever a final
update joins or leaves it: only those are read back after a restart, so
"running" and progress reports cost no disk write (an fsync on the
reactor's thread).
While the master is away it retries with backoff and jitter; a master
restart loses nothing, and an agent restart loses no final state either
(the file is read back).

An update may wait for a log: ``"log": [assignment_id, size]`` holds it
back until the first ``size`` bytes of that log reached the master, so a
task is never done before its output is stored.

What the master answered is passed to ``on_result(result, update,
detail)`` with ``result`` one of ``"ok"`` (detail: the answer),
``"conflict"`` (409), ``"gone"`` (404) or ``"rejected"`` (other 4xx); in
all these cases the update leaves the outbox.
"""

import json
import os

from twisted.internet import defer

from pyfarm.agent.master import Conflict, MasterError, NotFound, retryable
from pyfarm.core.logger import getLogger

logger = getLogger("agent.outbox")

#: Task states after which an attempt is over.
FINAL = frozenset({"done", "failed"})


def pair(update):
    """Return ``(task, attempt)`` of an update."""
    return update["task"], update["attempt"]


class Outbox:
    """Ordered, persisted, retried delivery of task updates."""

    def __init__(self, reactor, client, agent_id, path, policy, rand,
                 gate=None, on_result=None):
        self.reactor = reactor
        self.client = client
        self.agent_id = agent_id
        self.path = path
        self.policy = policy
        self.rand = rand
        self.gate = gate or (lambda update: True)
        self.on_result = on_result or (lambda result, update, detail: None)
        self.items = []
        self.paused = True
        self.failures = 0
        self._in_flight = None
        self._retry = None
        self._waiters = []

    def __len__(self):
        return len(self.items)

    def load(self):
        """Read updates a previous run could not deliver (final ones only).

        A file that cannot be read is renamed to ``*.bad`` and ignored.
        """
        try:
            with open(self.path, encoding="utf-8") as stream:
                items = json.load(stream)
            if not isinstance(items, list):
                raise ValueError("not a list")
            items = [item for item in items
                     if isinstance(item, dict) and item.get("state") in FINAL]
            for item in items:
                item.pop("log", None)  # that log died with the old process
                pair(item)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError) as error:
            logger.error("cannot read %s (%s); moving it aside", self.path,
                         error)
            os.replace(self.path, f"{self.path}.bad")
            return 0
        self.items = items + self.items
        self.save()
        return len(items)

    def save(self):
        """Write the updates to the file (atomically).

        A failure (disk full) is logged: the updates are still delivered
        from memory, they would only not survive an agent restart.
        """
        temporary = f"{self.path}.tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as stream:
                json.dump(self.items, stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self.path)
        except OSError as error:
            logger.error("cannot save undelivered updates to %s: %s",
                         self.path, error)

    def final_pairs(self):
        """Return the ``(task, attempt)`` pairs with a final update queued."""
        return {pair(item) for item in self.items if item["state"] in FINAL}

    def put(self, update):
        """Queue ``update``; a progress report may merge into a queued one."""
        if update["state"] == "running" and self._merge_progress(update):
            return
        self.items.append(dict(update))
        if update["state"] in FINAL:
            self.save()
        self.kick()

    def _merge_progress(self, update):
        first = 1 if self._in_flight is not None else 0
        for item in reversed(self.items[first:]):
            if pair(item) != pair(update):
                continue
            if item["state"] != "running":
                return True  # the attempt is over: progress means nothing
            if update.get("progress") is not None:
                item["progress"] = update["progress"]
            return True
        return False

    def resume(self):
        """Start (or go on) delivering."""
        self.paused = False
        self.kick()

    def pause(self):
        """Stop sending new requests (one in flight may still finish)."""
        self.paused = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def retry_now(self):
        """The master is back: send a waiting retry at once."""
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
            self._retry = None
            self.kick()

    def drained(self):
        """Return a Deferred firing once the outbox is empty."""
        if not self.items:
            return defer.succeed(None)
        waiter = defer.Deferred()
        self._waiters.append(waiter)
        return waiter

    def kick(self):
        """Send the oldest update if nothing stops it."""
        if self.paused or self._in_flight is not None or \
                self._retry is not None or not self.items:
            return
        head = self.items[0]
        if not self.gate(head):
            return  # the log it waits for calls kick() when it moves on
        self._in_flight = head
        extra = {"outputs": head["outputs"]} if head.get("outputs") else {}
        d = self.client.update_task(
            self.agent_id, head["task"], head["attempt"], head["state"],
            progress=head.get("progress"), error=head.get("error"), **extra)
        d.addCallbacks(self._delivered, self._failed,
                       callbackArgs=(head,), errbackArgs=(head,))
        d.addErrback(self._bug, head)

    def _done_with(self, head, result, detail):
        self._in_flight = None
        if self.items and self.items[0] is head:
            self.items.pop(0)
            if head["state"] in FINAL:
                self.save()
        self.failures = 0
        try:
            self.on_result(result, head, detail)
        finally:  # an error in on_result must not stop the deliveries
            if not self.items:
                waiters, self._waiters = self._waiters, []
                for waiter in waiters:
                    waiter.callback(None)
            self.kick()

    def _delivered(self, answer, head):
        logger.debug("task %s attempt %s: %s delivered", head["task"],
                     head["attempt"], head["state"])
        self._done_with(head, "ok", answer)

    def _failed(self, failure, head):
        error = failure.value
        where = f"task {head['task']} attempt {head['attempt']}"
        if failure.check(Conflict):
            logger.warning("%s: the master refused %r (409): %s", where,
                           head["state"], error)
            return self._done_with(head, "conflict", error)
        if failure.check(NotFound):
            logger.warning("%s: unknown to the master (404): %s", where,
                           error)
            return self._done_with(head, "gone", error)
        if not isinstance(error, MasterError):
            logger.error("%s: unexpected error sending %r: %s", where,
                         head["state"], failure.getTraceback())
        elif not retryable(error):
            logger.error("%s: the master rejected %r, dropping it: %s",
                         where, head["state"], error)
            return self._done_with(head, "rejected", error)
        self._in_flight = None
        self.failures += 1
        delay = self.policy.delay(self.failures, self.rand)
        logger.warning("%s: cannot deliver %r (%s); retry %d in %.1f s",
                       where, head["state"], error, self.failures, delay)
        if not self.paused:
            self._retry = self.reactor.callLater(delay, self._retry_now)

    def _retry_now(self):
        self._retry = None
        self.kick()

    def _bug(self, failure, head):
        # A bug in on_result or the gate must not stop deliveries forever:
        # log it and try again later (with backoff, in case it repeats).
        logger.error("outbox: unexpected error: %s",
                     failure.getTraceback())
        if self._in_flight is head:
            self._in_flight = None
        if self._in_flight is not None or self.paused or \
                self._retry is not None or not self.items:
            return
        self.failures += 1
        self._retry = self.reactor.callLater(
            self.policy.delay(self.failures, self.rand), self._retry_now)
