"""
Task updates, log chunks and syncs on their way to the master, batched.

The :class:`Outbox` keeps every task update (``{"task", "attempt",
"state", "progress"?, "error"?, "outputs"?}``) in a list and delivers
them oldest first, all that may go in one ``POST
/api/v1/agents/<id>/updates``, together with the log chunks waiting in
the agent's log streams and, when the agent asked for one, a sync: the
master applies them in one transaction and answers each one. One request
is in flight at a time.

The list is saved to a JSON file whenever final updates joined or left
it: :data:`SAVE_DELAY` seconds after they joined, or before that when a
request is about to carry them, and once per answer for those it
acknowledged, so that frames ending close together cost one write, not
one each (an fsync on the reactor's thread). Only final updates are
read back after a restart, so "running" and progress reports cost no
disk write. While the master is away it retries with backoff and
jitter; a master restart loses nothing, and an agent restart loses no
final state either (the file is read back), unless the agent dies within
:data:`SAVE_DELAY` of a frame's end (the frame is then run again). A
"running" report still waiting when the final state of the same attempt
arrives is left out (the final state implies it); one that is alone
waits :data:`LINGER` seconds, so that a frame ending at once
costs one request, not two.

An update may wait for a log: ``"log": [assignment_id, size]`` holds it
back until the first ``size`` bytes of that log reached the master, or are
in the same request (the master stores the chunks before it applies the
updates, and applies none of them when it refused a chunk), so a task is
never done before its output is stored.

What the master answered is passed to ``on_result(result, update,
detail)`` with ``result`` one of ``"ok"`` (detail: the answer),
``"conflict"`` (409), ``"gone"`` (404) or ``"rejected"`` (another 4xx
the master gave that update on its own); in all these cases the update
leaves the outbox. An update answered without a status, 5xx, 408 or 429
stays and is sent again after a backoff.

A request refused as a whole (400, 413, 422: its body, not the master's
state) loses nothing: its updates, chunks and sync are sent again in
requests half as large, down to one item, so that a single bad item is
found and only that one is dropped. A 404 for the whole request means
the master forgot this agent (see :func:`pyfarm.agent.master.unknown_agent`
- a master without the endpoint fails with
:class:`~pyfarm.agent.master.OutdatedMaster` instead, and everything is
kept and sent again).
"""

import json
import os

from twisted.internet import defer
from twisted.python.failure import Failure

from pyfarm.agent.master import (
    Conflict,
    MasterError,
    MasterUnavailable,
    NotFound,
    OutdatedMaster,
    ServerError,
    error_for,
    retryable,
)
from pyfarm.core.logger import getLogger

logger = getLogger("agent.outbox")

#: Task states after which an attempt is over.
FINAL = frozenset({"done", "failed"})

#: Seconds a request carrying nothing urgent (only "running" or progress
#: reports) waits for more to go with it.
LINGER = 0.1

#: Seconds the agent's outbox waits before sending something urgent (a
#: final state, a sync), for what happens at about the same time (the end
#: of another short process) to go along in the same request.
COALESCE = 0.01

#: Seconds a final update may wait in memory before it is saved (it is
#: saved before a request carries it, whatever the wait).
SAVE_DELAY = 0.01

#: Most updates in one request (the master takes up to 1000).
MAX_UPDATES = 500

#: Most log chunks in one request (the master's ``MAX_BATCH_LOGS``).
MAX_LOGS = 100

#: Status of an update the master did not apply because a log chunk of
#: the same request was refused: sent again after the log.
NOT_APPLIED = 424


def pair(update):
    """Return ``(task, attempt)`` of an update."""
    return update["task"], update["attempt"]


class Outbox:
    """Ordered, persisted, retried, batched delivery to the master.

    ``gate(update, sizes)`` says whether ``update`` may go, ``sizes``
    mapping an assignment id to the bytes of its log the master will have
    once the request being built is answered; ``logs()`` returns the log
    streams whose chunks go with the updates (see
    :meth:`pyfarm.agent.logs.LogStream.take`).
    """

    def __init__(self, reactor, client, agent_id, path, policy, rand,
                 gate=None, on_result=None, logs=None, linger=LINGER,
                 coalesce=0.0):
        self.reactor = reactor
        self.client = client
        self.agent_id = agent_id
        self.path = path
        self.policy = policy
        self.rand = rand
        self.gate = gate or (lambda update, sizes: True)
        self.on_result = on_result or (lambda result, update, detail: None)
        self.logs = logs or (lambda: ())
        self.linger = linger
        self.coalesce = coalesce
        self.items = []
        self.paused = True
        self.failures = 0
        #: Whether the request being answered carried a sync.
        self.synced = False
        self._in_flight = None
        self._retry = None
        self._linger = None
        self._busy = 0
        self._sync = None
        self._sync_waiters = []
        self._waiters = []
        #: Most items (chunks, updates, a sync) per request while finding
        #: the one item of a request the master refused as a whole.
        self._limit = None
        self._outdated = False
        #: Whether final updates joined or left since the last save, and
        #: the call that saves them.
        self._dirty = False
        self._save_call = None
        #: Smoothed seconds from sending a request to its answer.
        self.round_trip = None

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

    def flush(self):
        """Save now if final updates joined or left since the last save."""
        if self._save_call is not None and self._save_call.active():
            self._save_call.cancel()
        self._save_call = None
        if self._dirty:
            self._dirty = False
            self.save()

    def _changed(self):
        """Final updates joined or left: save soon (:data:`SAVE_DELAY`)."""
        self._dirty = True
        if self._save_call is None or not self._save_call.active():
            self._save_call = self.reactor.callLater(SAVE_DELAY, self.flush)

    def final_pairs(self):
        """Return the ``(task, attempt)`` pairs with a final update queued."""
        return {pair(item) for item in self.items if item["state"] in FINAL}

    def put(self, update):
        """Queue ``update``; a progress report may merge into a queued one,
        and a final one replaces a "running" report not sent yet."""
        if update["state"] == "running" and self._merge_progress(update):
            return
        if update["state"] in FINAL:
            self.items = [item for item in self.items
                          if item["state"] != "running"
                          or pair(item) != pair(update)
                          or self._sending(item)]
        self.items.append(dict(update))
        if update["state"] in FINAL:
            self._changed()
        self.kick()

    def _sending(self, item):
        return self._in_flight is not None and any(
            item is sent for sent in self._in_flight)

    def _merge_progress(self, update):
        for item in reversed(self.items):
            if pair(item) != pair(update):
                continue
            if item["state"] != "running":
                return True  # the attempt is over: progress means nothing
            if self._sending(item):
                return False
            if update.get("progress") is not None:
                item["progress"] = update["progress"]
            return True
        return False

    def request_sync(self, body):
        """Sync with the next request; return a Deferred of the answer.

        ``body()`` returns ``{"free_ram", "running"}`` when the request
        is sent. A sync does not wait out the backoff of the updates: it
        is the agent's heartbeat, paced by the agent itself, so it goes at
        once, without the updates that failed (they may be why); once it
        got through, those are sent again at once.
        """
        self._sync = body
        waiter = defer.Deferred()
        self._sync_waiters.append(waiter)
        self.kick()
        return waiter

    def sync_pending(self):
        """Whether a sync waits to be sent."""
        return self._sync is not None

    def resume(self):
        """Start (or go on) delivering."""
        self.paused = False
        self.kick()

    def pause(self):
        """Stop sending new requests (one in flight may still finish)."""
        self.flush()
        self.paused = True
        for call in (self._retry, self._linger):
            if call is not None and call.active():
                call.cancel()
        self._retry = self._linger = None

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

    def holding(self):
        """Return a context manager that sends nothing until it exits, so
        that what happens inside goes in one request."""
        return _Holding(self)

    def _blocked(self):
        # While the updates wait out a backoff only a sync may go.
        return self.paused or self._busy or self._in_flight is not None \
            or (self._retry is not None and self._sync is None)

    def _select(self):
        """Return the updates and the log streams of the next request.

        At most :data:`MAX_LOGS` chunks: first those the first updates
        wait for, then those due; an update whose log is not in the
        request waits (with the ones after it).
        """
        streams = [stream for stream in self.logs() if stream.ready()]
        budget = MAX_UPDATES + MAX_LOGS if self._limit is None else \
            self._limit - (self._sync is not None)
        candidates = [] if self._retry is not None or budget <= 0 else \
            self.items[:MAX_UPDATES]
        by_id = {stream.assignment_id: stream for stream in streams}
        chosen = []
        for item in candidates:
            gate = item.get("log")
            stream = by_id.pop(gate[0], None) if gate else None
            if stream is not None:
                chosen.append(stream)
        chosen += sorted(by_id.values(), key=lambda stream: not stream.due())
        chosen = chosen[:min(MAX_LOGS, max(budget, 0))]
        sizes = {stream.assignment_id: stream.acked + stream.ready()
                 for stream in chosen}
        updates = []
        for item in candidates:
            if len(updates) + len(chosen) >= budget or \
                    not self.gate(item, sizes):
                break  # the log it waits for calls kick() when it moves on
            updates.append(item)
        return updates, chosen

    def kick(self):
        """Send what waits, unless something stops it."""
        if self._blocked():
            return
        updates, streams = self._select()
        urgent = self._sync is not None or \
            any(item["state"] in FINAL for item in updates) or \
            any(stream.due() for stream in streams)
        if not updates and not streams and self._sync is None:
            return
        if not urgent and self.linger > 0:
            if self._linger is None:
                self._linger = self.reactor.callLater(self.linger,
                                                      self._lingered)
            return
        if self.coalesce > 0:
            due = self.reactor.seconds() + self.coalesce
            if self._linger is not None:
                if self._linger.getTime() <= due:
                    return
                self._linger.cancel()
            self._linger = self.reactor.callLater(self.coalesce,
                                                  self._lingered)
            return
        self._send(updates, streams)

    def _lingered(self):
        self._linger = None
        if self._blocked():
            return
        updates, streams = self._select()
        if updates or streams or self._sync is not None:
            self._send(updates, streams)

    def _send(self, updates, streams):
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        # What goes to the master is on disk first.
        self.flush()
        chunks = [(stream, stream.take()) for stream in streams]
        sync, waiters, body = None, [], None
        if self._sync is not None:
            body, self._sync = self._sync, None
            waiters, self._sync_waiters = self._sync_waiters, []
            try:
                sync = body()
            except Exception as error:  # noqa: BLE001 - reported to waiters
                for waiter in waiters:
                    waiter.errback(Failure(error))
                sync, waiters = None, []
        self._in_flight = updates
        sent = _Request(updates, chunks, waiters, body if waiters else None)
        sent.sent_at = self.reactor.seconds()
        # maybeDeferred: an error building the request must reach the
        # errback, or the outbox and the logs would wait for it forever.
        d = defer.maybeDeferred(
            self.client.batch, self.agent_id,
            [chunk for _, chunk in chunks],
            [self._payload(item) for item in updates], sync)
        d.addCallbacks(self._answered, self._failed,
                       callbackArgs=(sent,), errbackArgs=(sent,))
        d.addErrback(self._bug, sent)

    @staticmethod
    def _payload(item):
        payload = {"task": item["task"], "attempt": item["attempt"],
                   "state": item["state"]}
        if item.get("progress") is not None:
            payload["progress"] = float(item["progress"])
        if item.get("error") is not None:
            payload["error"] = item["error"]
        if item.get("outputs"):
            payload["outputs"] = list(item["outputs"])
        return payload

    def _answered(self, answer, sent):
        self._in_flight = None
        self.failures = 0
        took = max(self.reactor.seconds() - sent.sent_at, 0.0)
        self.round_trip = took if self.round_trip is None else (
            0.3 * took + 0.7 * self.round_trip)
        self._outdated = False
        if self._limit is not None:
            self._limit *= 2
            if self._limit >= MAX_UPDATES + MAX_LOGS:
                self._limit = None
        self._busy += 1
        later = False
        try:
            logs = answer.get("logs") or []
            for index, (stream, _) in enumerate(sent.chunks):
                item = logs[index] if index < len(logs) else {}
                status = item.get("status")
                if status == 200 and isinstance(item.get("size"), int):
                    stream.sent(item)
                elif isinstance(status, int) and status != 200:
                    stream.failed(Failure(error_for(
                        status, item, "POST", "log chunk")))
                else:  # no answer for it: as a 5xx, sent again later
                    stream.failed(Failure(ServerError(
                        f"log chunk: no status in the answer: {item!r}")))
            results = answer.get("updates") or []
            self.synced = bool(sent.waiters)
            for index, head in enumerate(sent.updates):
                item = results[index] if index < len(results) else {}
                later = self._result(head, item) or later
            for waiter in sent.waiters:
                waiter.callback(answer.get("sync") or {})
        finally:
            self.synced = False
            self._busy -= 1
            self.flush()  # what the answer acknowledged, in one write
        if later:
            self._back_off(f"{len(sent.updates)} update(s) not answered")
        elif sent.waiters and not sent.updates and self._retry is not None:
            # The heartbeat got through: the master is back.
            self._retry.cancel()
            self._retry = None
        self._after()

    def _result(self, head, item):
        """Act on the master's answer for ``head``; return True when it
        is to be sent again after a backoff."""
        status = item.get("status")
        where = f"task {head['task']} attempt {head['attempt']}"
        if status == NOT_APPLIED:
            logger.info("%s: %r waits for its log", where, head["state"])
            return False
        if status == 200:
            logger.debug("%s: %s delivered", where, head["state"])
            self._done_with(head, "ok", item)
            return False
        if not isinstance(status, int) or isinstance(status, bool):
            logger.warning("%s: no status in the master's answer %r; "
                           "sending it again", where, item)
            return True
        error = error_for(status, item, "POST", where)
        if isinstance(error, MasterError) and retryable(error):
            logger.warning("%s: not applied (%s); sending it again", where,
                           error)
            return True
        if isinstance(error, Conflict):
            logger.warning("%s: the master refused %r (409): %s", where,
                           head["state"], error)
            self._done_with(head, "conflict", error)
        elif isinstance(error, NotFound):
            logger.warning("%s: unknown to the master (404): %s", where,
                           error)
            self._done_with(head, "gone", error)
        else:
            logger.error("%s: the master rejected %r, dropping it: %s",
                         where, head["state"], error)
            self._done_with(head, "rejected", error)
        return False

    def _done_with(self, head, result, detail):
        for index, item in enumerate(self.items):
            if item is head:
                del self.items[index]
                if head["state"] in FINAL:
                    self._changed()
                break
        try:
            self.on_result(result, head, detail)
        except Exception:  # an error in on_result must not stop deliveries
            logger.exception("outbox: on_result failed for %r", head)

    def _after(self):
        if not self.items:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)
        self.kick()

    def _failed(self, failure, sent):
        self._in_flight = None
        error = failure.value
        updates = sent.updates
        self._busy += 1
        try:
            if failure.check(NotFound):
                # The client tells a master that forgot this agent from
                # one without the endpoint: none of these will be taken.
                for stream, _ in sent.chunks:
                    stream.failed(failure)
                for waiter in sent.waiters:
                    waiter.errback(failure)
                for head in updates:
                    logger.warning("task %s attempt %s: unknown to the "
                                   "master (404): %s", head["task"],
                                   head["attempt"], error)
                    self._done_with(head, "gone", error)
                return
            if isinstance(error, MasterError) and not retryable(error):
                self._refused(failure, sent)
                return
            if failure.check(OutdatedMaster):
                if not self._outdated:
                    logger.error("the master at %s is older than this "
                                 "agent (%s): upgrade the master first; "
                                 "keeping every update and log and trying "
                                 "again", getattr(self.client, "url", "?"),
                                 error)
                self._outdated = True
            elif not isinstance(error, MasterError):
                logger.error("outbox: unexpected error: %s",
                             failure.getTraceback())
            for stream, _ in sent.chunks:
                stream.failed(failure)
            for waiter in sent.waiters:
                waiter.errback(failure)
            if updates:
                self._back_off(f"cannot deliver {len(updates)} task "
                               f"update(s) ({error})")
        finally:
            self._busy -= 1
            self.flush()
            self._after()

    def _refused(self, failure, sent):
        """The master refused the request as a whole (its body): keep it
        all and send it again in smaller requests, unless it held one
        item, which is the one the master refuses."""
        error = failure.value
        size = len(sent.chunks) + len(sent.updates) + bool(sent.waiters)
        if size > 1:
            self._limit = max(1, size // 2)
            logger.warning("the master refused a request of %d items as a "
                           "whole (%s); sending them again %d at a time",
                           size, error, self._limit)
            for stream, _ in sent.chunks:
                stream.returned()
            if sent.waiters:
                if self._sync is None:
                    self._sync = sent.body
                self._sync_waiters[:0] = sent.waiters
            return
        for stream, _ in sent.chunks:
            stream.failed(failure)  # logged by the stream
        for waiter in sent.waiters:
            waiter.errback(failure)
        for head in sent.updates:
            logger.error("task %s attempt %s: the master rejected %r, "
                         "dropping it: %s", head["task"], head["attempt"],
                         head["state"], error)
            self._done_with(head, "rejected", error)

    def _back_off(self, reason):
        self.failures += 1
        delay = self.policy.delay(self.failures, self.rand)
        logger.warning("%s; retry %d in %.1f s", reason, self.failures,
                       delay)
        if not self.paused and self._retry is None:
            self._retry = self.reactor.callLater(delay, self._retry_now)

    def _retry_now(self):
        self._retry = None
        self.kick()

    def _bug(self, failure, sent):
        # A bug in on_result or the gate must not stop deliveries forever:
        # log it, fail what is still waiting for this request's answer
        # (the chunks are sent again, the sync is asked for again) and try
        # again later (with backoff, in case it repeats).
        logger.error("outbox: unexpected error: %s",
                     failure.getTraceback())
        self._in_flight = None
        lost = Failure(MasterUnavailable(
            f"outbox: unexpected error: {failure.getErrorMessage()}"))
        for stream, _ in sent.chunks:
            if stream.sending():
                try:
                    stream.failed(lost)
                except Exception:  # noqa: BLE001 - logged, the rest go on
                    logger.exception("outbox: log %s", stream.assignment_id)
        for waiter in sent.waiters:
            if not waiter.called:
                waiter.errback(lost)
        if self.paused or self._retry is not None:
            return
        self.failures += 1
        self._retry = self.reactor.callLater(
            self.policy.delay(self.failures, self.rand), self._retry_now)


class _Request:
    """What one request carried: the updates, ``(stream, chunk)`` pairs,
    the sync's waiters and the function building the sync's body."""

    def __init__(self, updates, chunks, waiters, body):
        self.updates = updates
        self.chunks = chunks
        self.waiters = waiters
        self.body = body
        self.sent_at = 0.0


class _Holding:
    """See :meth:`Outbox.holding`."""

    def __init__(self, outbox):
        self.outbox = outbox

    def __enter__(self):
        self.outbox._busy += 1
        return self.outbox

    def __exit__(self, *exc_info):
        self.outbox._busy -= 1
        self.outbox.kick()
        return False
