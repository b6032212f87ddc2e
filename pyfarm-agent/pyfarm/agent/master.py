"""
HTTP client for the master's agent protocol (``/api/v1/``).

:class:`MasterClient` speaks JSON with a bearer token over treq, on the
reactor it is given (it never touches the global reactor). Every call
returns a Deferred firing with the decoded JSON answer, or failing with
one of these errors:

- :class:`Conflict` - 409: the master says this work is no longer ours;
- :class:`NotFound` - 404: the agent, task or log is unknown;
- :class:`Rejected` - any other 4xx (and unexpected 3xx): the request was
  refused; it will not succeed by sending it again unchanged;
- :class:`MasterUnavailable` - the master could not be reached, timed out,
  or answered 5xx / 408 / 429 (:class:`ServerError`): try again later;
- :class:`OutdatedMaster` - 404 for an endpoint the master does not have
  (it is older than this agent and must be upgraded): try again later.

A 404 for the agent itself (the master forgot it) carries ``"code":
"unknown_agent"``; :func:`unknown_agent` tells it from the others.

:func:`retryable` says which errors are worth sending again.
"""

import json

from treq.client import HTTPClient
from twisted.internet import defer
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from pyfarm.agent import __version__
from pyfarm.core.logger import getLogger

logger = getLogger("agent.master")

#: Statuses that mean "the master is busy or broken, try again later".
TRANSIENT_STATUSES = frozenset({408, 429})

#: 4xx answers worth retrying: a token an admin can still fix at the master.
AUTH_STATUSES = frozenset({401, 403})


class MasterError(Exception):
    """Base class of the errors of a call to the master."""

    def __init__(self, message, status=None, body=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body if isinstance(body, dict) else {}


class MasterUnavailable(MasterError):
    """The master could not be reached or did not answer in time."""


class ServerError(MasterUnavailable):
    """The master answered 5xx, 408 or 429: it is there but cannot help."""


class Conflict(MasterError):
    """409: the master no longer agrees this work is ours."""


class NotFound(MasterError):
    """404: the master does not know the agent, task or log."""


class OutdatedMaster(MasterUnavailable):
    """404 for a whole endpoint: the master is older than the agent."""


class Rejected(MasterError):
    """Another 4xx: the master refused the request as sent."""


def retryable(error):
    """Whether sending the same request again later may succeed."""
    if isinstance(error, MasterUnavailable):
        return True
    return isinstance(error, Rejected) and error.status in AUTH_STATUSES


#: ``code`` of the master's 404 for an agent it does not know.
UNKNOWN_AGENT = "unknown_agent"

#: How a master (any version) starts the error of a 404 for an unknown
#: agent, and of a 404 for an endpoint it does not have.
UNKNOWN_AGENT_TEXT = "no agent with id "
NO_ENDPOINT_TEXT = "no such API endpoint"


def unknown_agent(error):
    """Whether ``error`` says the master does not know this agent."""
    if not isinstance(error, NotFound):
        return False
    text = error.body.get("error")
    return error.body.get("code") == UNKNOWN_AGENT or (
        isinstance(text, str) and text.startswith(UNKNOWN_AGENT_TEXT))


def error_for(status, body, method, url):
    """Return the :class:`MasterError` for an HTTP answer ``status``."""
    text = body.get("error") if isinstance(body, dict) else None
    text = text or f"HTTP {status}"
    message = f"{method} {url}: {status} {text}"
    if status == 409:
        return Conflict(message, status, body)
    if status == 404:
        if isinstance(text, str) and text.startswith(NO_ENDPOINT_TEXT):
            return OutdatedMaster(
                f"{message} (the master is older than this agent: upgrade "
                f"the master first)", status, body)
        return NotFound(message, status, body)
    if status >= 500 or status in TRANSIENT_STATUSES:
        return ServerError(message, status, body)
    if status in AUTH_STATUSES:
        message += " (check the agent's token: PYFARM_AGENT_TOKEN)"
    return Rejected(message, status, body)


@implementer(IBodyProducer)
class BytesProducer:
    """Send a request body that is already in memory.

    treq's own producer uses the global cooperator (and so the global
    reactor); this one writes everything at once.
    """

    def __init__(self, body):
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer):  # noqa: N802 - Twisted interface
        """Write the whole body to ``consumer``."""
        consumer.write(self.body)
        return defer.succeed(None)

    def stopProducing(self):  # noqa: N802 - Twisted interface
        """Nothing to stop: the body was written at once."""

    def pauseProducing(self):  # noqa: N802 - Twisted interface
        """Nothing to pause."""

    def resumeProducing(self):  # noqa: N802 - Twisted interface
        """Nothing to resume."""


class QuietPool(HTTPConnectionPool):
    """A connection pool that does not log every connection it opens."""

    class _factory(HTTPConnectionPool._factory):  # noqa: N801 - Twisted's
        noisy = False


def _decode(data):
    try:
        return json.loads(data.decode("utf-8")) if data else None
    except (UnicodeDecodeError, ValueError):
        return None


class MasterClient:
    """The agent protocol of the master at ``url`` (``http://host:port``)."""

    def __init__(self, reactor, url, token, timeout=30.0, http=None):
        self.reactor = reactor
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._pool = None
        if http is None:
            # A fresh connection per request: a few requests a second do
            # not need keep-alive, and a reused connection the server has
            # just closed fails a POST that cannot be retried blindly.
            self._pool = QuietPool(reactor, persistent=False)
            http = HTTPClient(Agent(reactor, pool=self._pool,
                                    connectTimeout=timeout))
        self.http = http

    def api_url(self, path):
        """Return the full URL of ``path`` under ``/api/v1``."""
        return f"{self.url}/api/v1{path}"

    def headers(self):
        """Return the headers sent with every request."""
        return {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"pyfarm-agent/{__version__}",
        }

    def request(self, method, path, payload):
        """Send ``payload`` as JSON; fire with the decoded JSON answer."""
        url = self.api_url(path)
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        d = self.http.request(
            method, url, data=BytesProducer(body), headers=self.headers(),
            allow_redirects=False, reactor=self.reactor)
        d.addCallback(
            lambda response: response.content().addCallback(
                lambda data: (response.code, data)))
        d.addTimeout(self.timeout, self.reactor)
        d.addCallbacks(self._answered, self._unreachable,
                       callbackArgs=(method, url), errbackArgs=(method, url))
        return d

    def _answered(self, result, method, url):
        status, data = result
        body = _decode(data)
        if 200 <= status < 300:
            if not isinstance(body, dict):
                raise ServerError(
                    f"{method} {url}: {status} but the answer is not a "
                    f"JSON object", status)
            return body
        raise error_for(status, body if isinstance(body, dict) else {},
                        method, url)

    def _unreachable(self, failure, method, url):
        if failure.check(defer.TimeoutError):
            raise MasterUnavailable(
                f"{method} {url}: no answer within {self.timeout:g} s")
        if failure.check(defer.CancelledError):
            return failure
        # Any other failure here comes from the network stack (refused,
        # reset, DNS, TLS, a broken answer): all mean "cannot reach".
        raise MasterUnavailable(
            f"{method} {url}: {failure.getErrorMessage() or failure.type}")

    def register(self, info):
        """POST /agents/: register (or re-register) this agent."""
        return self.request("POST", "/agents/", info)

    def sync(self, agent_id, free_ram, running):
        """POST /agents/<id>/sync with what the agent holds."""
        return self.request(
            "POST", f"/agents/{agent_id}/sync",
            {"free_ram": free_ram,
             "running": [{"task": task, "attempt": attempt}
                         for task, attempt in running]})

    def update_task(self, agent_id, task_id, attempt, state, progress=None,
                    error=None, outputs=None):
        """PUT /agents/<id>/tasks/<task>: report a task's state.

        ``outputs`` lists the files a frame wrote (with a "done").
        """
        payload = {"attempt": attempt, "state": state}
        if progress is not None:
            payload["progress"] = float(progress)
        if error is not None:
            payload["error"] = error
        if outputs:
            payload["outputs"] = list(outputs)
        return self.request(
            "PUT", f"/agents/{agent_id}/tasks/{task_id}", payload)

    def send_log(self, agent_id, assignment_id, offset, data):
        """POST /agents/<id>/assignments/<a>/log: append a log chunk."""
        return self.request(
            "POST", f"/agents/{agent_id}/assignments/{assignment_id}/log",
            {"offset": offset, "data": data})

    def batch(self, agent_id, logs, updates, sync=None):
        """POST /agents/<id>/updates: log chunks, task updates and a sync
        in one request (one transaction on the master).

        ``logs`` are ``{"assignment", "offset", "data"}``, ``updates``
        ``{"task", "attempt", "state", ...}`` and ``sync`` is None or
        ``{"free_ram", "running": [(task, attempt), ...], "prefetch"?:
        {"job", "assignments"}}``. The answer
        has one item per log chunk and per update, each with its own
        ``status``, and the sync's answer (or None).

        A 404 that is not about the agent (a master without this
        endpoint, or a proxy's page) fails with :class:`OutdatedMaster`:
        nothing in it is refused, it is all sent again later.
        """
        payload = {"logs": list(logs), "updates": list(updates)}
        if sync is not None:
            payload["sync"] = {
                "free_ram": sync.get("free_ram"),
                "running": [{"task": task, "attempt": attempt}
                            for task, attempt in sync.get("running", ())]}
            if sync.get("prefetch"):
                payload["sync"]["prefetch"] = dict(sync["prefetch"])
        d = self.request("POST", f"/agents/{agent_id}/updates", payload)
        d.addErrback(self._not_the_agent)
        return d

    @staticmethod
    def _not_the_agent(failure):
        error = failure.value
        if isinstance(error, NotFound) and not unknown_agent(error):
            raise OutdatedMaster(
                f"{error.message} (not an answer about this agent: is the "
                f"master older than this agent? upgrade it first)",
                error.status, error.body)
        return failure

    def close(self):
        """Close idle connections; fire when they are closed."""
        if self._pool is None:
            return defer.succeed(None)
        return self._pool.closeCachedConnections()
