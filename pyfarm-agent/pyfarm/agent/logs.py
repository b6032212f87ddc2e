"""
Stream a process's output to the master's log of its assignment.

A :class:`LogStream` turns the output bytes into UTF-8 text (bad bytes
replaced, characters never cut in two) and sends it with
``POST .../assignments/<id>/log`` in chunks: each chunk names the byte
offset it starts at, one request is in flight at a time, and a chunk goes
out once a second or as soon as 64 KiB are waiting. A chunk that fails
because the master is away is sent again (the master ignores bytes it
already has). Byte counts are those of the UTF-8 text the master stores.

With a ``courier`` (the agent's :class:`~pyfarm.agent.outbox.Outbox`)
the stream sends nothing itself: it prepares its chunk and kicks the
courier, which takes it (:meth:`LogStream.take`) into its next request,
along with the task updates, and reports the answer back; whatever is
waiting also goes along with any request the courier sends anyway.

``written`` counts the bytes given to the stream so far and ``acked`` those
the master stored; :meth:`flushed` tells whether the master has the first
``size`` bytes, which the outbox uses to send a task's final state only
after the output that led to it.
"""

import codecs

from twisted.internet import defer

from pyfarm.agent.master import Conflict, MasterError, retryable
from pyfarm.core.logger import getLogger

logger = getLogger("agent.logs")

#: Send what is waiting after this many seconds.
FLUSH_INTERVAL = 1.0

#: Send at once when this many bytes are waiting; also the largest chunk.
CHUNK_SIZE = 64 * 1024

#: Output kept while the master is away; beyond it output is dropped.
MAX_PENDING = 16 * 1024 * 1024


def cut(data, size):
    """Return how many bytes of UTF-8 ``data`` fit in ``size``.

    The cut never falls inside a character.
    """
    if len(data) <= size:
        return len(data)
    end = size
    while end > 0 and data[end] & 0xC0 == 0x80:  # a continuation byte
        end -= 1
    return end or size


class LogStream:
    """One assignment's log on its way to the master."""

    def __init__(self, reactor, client, agent_id, assignment_id, policy,
                 rand, on_progress=None, flush_interval=FLUSH_INTERVAL,
                 chunk_size=CHUNK_SIZE, max_pending=MAX_PENDING,
                 courier=None):
        self.reactor = reactor
        self.client = client
        self.agent_id = agent_id
        self.assignment_id = assignment_id
        self.policy = policy
        self.rand = rand
        self.on_progress = on_progress or (lambda: None)
        self.flush_interval = flush_interval
        self.chunk_size = chunk_size
        self.max_pending = max_pending
        self.courier = courier
        self.written = 0
        self.acked = 0
        self.remote = 0  # where the master's log ends (our next offset)
        self.dropped = 0
        self.failures = 0
        self.closed = False
        self.gave_up = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = bytearray()
        self._in_flight = None
        self._sending = False
        self._timer = None
        self._retry = None
        self._wanted = 0
        self._waiters = []

    @property
    def finished(self):
        """Whether nothing more will be sent (closed and all delivered)."""
        return self.gave_up or (self.closed and self.acked >= self.written)

    def write(self, data):
        """Add output bytes of the process."""
        self._add(self._decoder.decode(data).encode("utf-8"))

    def write_text(self, text):
        """Add a note of the agent's own (``text`` is a str)."""
        self._add(text.encode("utf-8"))

    def _add(self, data):
        if not data or self.closed or self.gave_up:
            return
        if len(self._pending) + len(data) > self.max_pending:
            self.dropped += len(data)
            return
        if self.dropped:
            note = (f"\n[pyfarm-agent: {self.dropped} bytes of output were "
                    f"dropped while the master could not be reached]\n")
            self.dropped = 0
            data = note.encode("utf-8") + data
        self._pending += data
        self.written += len(data)
        self._schedule()

    def flushed(self, size):
        """Whether the master has the first ``size`` bytes (or never will)."""
        return self.gave_up or self.acked >= size

    def want(self, size):
        """Send at once until the master has the first ``size`` bytes."""
        self._wanted = max(self._wanted, size)
        self._schedule()

    def close(self):
        """End the stream; fire once everything was delivered (or lost)."""
        if not self.closed:
            self._add(self._decoder.decode(b"", final=True).encode("utf-8"))
            self.closed = True
            self._schedule()
        if self.finished:
            return defer.succeed(None)
        waiter = defer.Deferred()
        self._waiters.append(waiter)
        return waiter

    def retry_now(self):
        """The master is back: send a waiting retry at once."""
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
            self._resend()

    def stop(self):
        """Forget what is not delivered (the agent is stopping)."""
        for call in (self._timer, self._retry):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._retry = None
        self._give_up()

    def _urgent(self):
        return self.closed or len(self._pending) >= self.chunk_size or \
            self.acked < self._wanted

    def _schedule(self):
        if self._in_flight is not None or self._retry is not None or \
                self.gave_up:
            return
        if not self._pending:
            self._check_finished()
            return
        if self._urgent():
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            self._send()
        elif self._timer is None:
            self._timer = self.reactor.callLater(
                self.flush_interval, self._timed_flush)

    def _timed_flush(self):
        self._timer = None
        if self._in_flight is None and self._retry is None and \
                self._pending:
            self._send()

    def _send(self, prefix=b""):
        size = cut(self._pending, self.chunk_size)
        chunk = bytes(self._pending[:size])
        del self._pending[:size]
        self._in_flight = (self.remote, prefix + chunk, len(chunk))
        self._post()

    def _post(self):
        if self.courier is not None:
            self._sending = False
            self.courier.kick()
            return
        offset, payload, _ = self._in_flight
        self._sending = True
        d = self.client.send_log(self.agent_id, self.assignment_id, offset,
                                 payload.decode("utf-8"))
        d.addCallbacks(self.sent, self.failed)
        d.addErrback(self._bug)

    # -- the courier's side ------------------------------------------------

    def ready(self):
        """Return how many bytes the next chunk would carry (0: none may
        go now)."""
        if self.gave_up or self._sending or self._retry is not None:
            return 0
        if self._in_flight is not None:
            return self._in_flight[2]
        return cut(self._pending, self.chunk_size)

    def due(self):
        """Whether a chunk must go now (not only along with others)."""
        return self._in_flight is not None and not self._sending and \
            self._retry is None and not self.gave_up

    def take(self):
        """Hand the next chunk to the courier: ``{"assignment", "offset",
        "data"}``; its answer comes back through :meth:`sent` or
        :meth:`failed`."""
        if self._in_flight is None:
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            size = cut(self._pending, self.chunk_size)
            chunk = bytes(self._pending[:size])
            del self._pending[:size]
            self._in_flight = (self.remote, chunk, len(chunk))
        self._sending = True
        offset, payload, _ = self._in_flight
        return {"assignment": self.assignment_id, "offset": offset,
                "data": payload.decode("utf-8")}

    def sending(self):
        """Whether the courier took the chunk and awaits its answer."""
        return self._sending

    def returned(self):
        """The courier brings the chunk back undelivered, through no fault
        of its own (the request was too large): it goes with the next
        request, without a backoff."""
        self._sending = False

    def sent(self, answer):
        """The master stored the chunk in flight."""
        self._sending = False
        offset, payload, length = self._in_flight
        self._in_flight = None
        self.remote = offset + len(payload)
        self.acked += length
        self.failures = 0
        self.on_progress()
        self._schedule()

    def failed(self, failure):
        """The chunk in flight did not reach the master."""
        self._sending = False
        offset, payload, length = self._in_flight
        error = failure.value
        if failure.check(Conflict) and isinstance(
                error.body.get("size"), int) and error.body["size"] < offset:
            size = error.body["size"]
            logger.warning("log %s: the master holds %d bytes, not %d; "
                           "going on from there", self.assignment_id, size,
                           offset)
            note = (f"\n[pyfarm-agent: {offset - size} bytes of this log "
                    f"were lost by the master]\n").encode()
            self._in_flight = (size, note + payload, length)
            self._post()
            return
        if isinstance(error, MasterError) and not retryable(error):
            logger.error("log %s: the master refused a chunk, giving up on "
                         "this log: %s", self.assignment_id, error)
            self._in_flight = None
            self._give_up()
            return
        if not isinstance(error, MasterError):
            logger.error("log %s: unexpected error: %s", self.assignment_id,
                         failure.getTraceback())
        self.failures += 1
        delay = self.policy.delay(self.failures, self.rand)
        logger.warning("log %s: cannot send %d bytes (%s); retry %d in "
                       "%.1f s", self.assignment_id, len(payload), error,
                       self.failures, delay)
        self._retry = self.reactor.callLater(delay, self._resend)

    def _resend(self):
        self._retry = None
        self._post()

    def _give_up(self):
        self.gave_up = True
        self._pending.clear()
        self._check_finished()
        self.on_progress()

    def _check_finished(self):
        if self.finished:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def _bug(self, failure):
        # Keep the agent alive; this log is lost, the work goes on.
        logger.error("log %s: unexpected error: %s", self.assignment_id,
                     failure.getTraceback())
        self._in_flight = None
        self._sending = False
        self._give_up()
