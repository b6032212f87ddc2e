"""MasterClient against a tiny real HTTP server on 127.0.0.1.

Each test builds its own reactor (never the global one, which also
proves the client only uses the reactor it is given), runs it until the
scenario ends, and closes every socket.
"""

import json
import socket

import pytest
from twisted.internet import defer, task
from twisted.internet.selectreactor import SelectReactor
from twisted.web import resource, server

from pyfarm.agent.master import (
    Conflict,
    MasterClient,
    MasterUnavailable,
    NotFound,
    OutdatedMaster,
    Rejected,
    ServerError,
    retryable,
    unknown_agent,
)


class Recorder(resource.Resource):
    """Records requests; answers with the next queued (status, body)."""

    isLeaf = True  # noqa: N815 - Twisted interface

    def __init__(self):
        super().__init__()
        self.requests = []
        self.answers = []

    def render(self, request):
        raw = request.content.read()
        self.requests.append({
            "method": request.method.decode(),
            "path": request.path.decode(),
            "headers": {key.decode().lower(): values[0].decode()
                        for key, values in
                        request.requestHeaders.getAllRawHeaders()},
            "json": json.loads(raw) if raw else None,
        })
        status, body = self.answers.pop(0) if self.answers else (200, {})
        request.setResponseCode(status)
        if isinstance(body, (dict, list)):
            request.setHeader(b"content-type", b"application/json")
            return json.dumps(body).encode()
        request.setHeader(b"content-type", b"text/html")
        return body.encode()


def run_scenario(scenario, answers=(), url=None):
    """Run ``scenario(client)`` (a coroutine) against a fresh server.

    Returns ``(result or exception, recorded requests)``.
    """
    reactor = SelectReactor()
    recorder = Recorder()
    recorder.answers = list(answers)
    port = reactor.listenTCP(0, server.Site(recorder, reactor=reactor),
                             interface="127.0.0.1")
    client = MasterClient(
        reactor, url or f"http://127.0.0.1:{port.getHost().port}/",
        "tok-123", timeout=10)
    outcome = {}

    async def main():
        try:
            outcome["result"] = await scenario(client)
        except Exception as error:  # handed to the test to assert on
            outcome["result"] = error
        finally:
            await client.close()
            await port.stopListening()
            reactor.stop()

    reactor.callWhenRunning(lambda: defer.ensureDeferred(main()))
    guard = reactor.callLater(20, reactor.stop)
    reactor.run(installSignalHandlers=False)
    if guard.active():
        guard.cancel()
    reactor.waker.connectionLost(None)
    assert "result" in outcome, "the scenario did not finish"
    return outcome["result"], recorder.requests


AGENT = "6f1c1a52-6e1f-4b0e-9a2f-0c3f2a1b4c5d"


def test_register_posts_json_with_the_bearer_token():
    info = {"id": AGENT, "hostname": "node1", "os": "linux", "cpus": 4,
            "ram": 8192, "tags": ["gpu"]}
    answer = {"id": AGENT, "state": "online", "sync_interval": 5}
    result, [request] = run_scenario(
        lambda client: client.register(info), [(201, answer)])
    assert result == answer
    assert request["method"] == "POST"
    assert request["path"] == "/api/v1/agents/"
    assert request["json"] == info
    assert request["headers"]["authorization"] == "Bearer tok-123"
    assert request["headers"]["content-type"] == "application/json"
    assert request["headers"]["user-agent"].startswith("pyfarm-agent/")


def test_sync_sends_free_ram_and_the_held_pairs():
    answer = {"assignments": [], "cancel": [], "sync_interval": 5,
              "state": "running"}
    result, [request] = run_scenario(
        lambda client: client.sync(AGENT, 2048, [(7, 1), (8, 2)]),
        [(200, answer)])
    assert result == answer
    assert (request["method"], request["path"]) == (
        "POST", f"/api/v1/agents/{AGENT}/sync")
    assert request["json"] == {"free_ram": 2048, "running": [
        {"task": 7, "attempt": 1}, {"task": 8, "attempt": 2}]}


def test_update_task_puts_only_the_fields_given():
    async def scenario(client):
        await client.update_task(AGENT, 7, 2, "running")
        await client.update_task(AGENT, 7, 2, "running", progress=0.5)
        await client.update_task(AGENT, 7, 2, "done",
                                 outputs=["/out/a.0001.exr"])
        return await client.update_task(AGENT, 7, 2, "failed",
                                         error="exit code 1")

    answer = {"task": 7, "attempt": 2, "state": "queued"}
    result, requests = run_scenario(scenario, [(200, {})] * 3 + [
        (200, answer)])
    assert result == answer
    assert {(r["method"], r["path"]) for r in requests} == {
        ("PUT", f"/api/v1/agents/{AGENT}/tasks/7")}
    assert [r["json"] for r in requests] == [
        {"attempt": 2, "state": "running"},
        {"attempt": 2, "state": "running", "progress": 0.5},
        {"attempt": 2, "state": "done", "outputs": ["/out/a.0001.exr"]},
        {"attempt": 2, "state": "failed", "error": "exit code 1"}]


def test_send_log_posts_offset_and_text():
    result, [request] = run_scenario(
        lambda client: client.send_log(AGENT, "as-1", 120, "frame 3 é\n"),
        [(200, {"size": 131})])
    assert result == {"size": 131}
    assert (request["method"], request["path"]) == (
        "POST", f"/api/v1/agents/{AGENT}/assignments/as-1/log")
    assert request["json"] == {"offset": 120, "data": "frame 3 é\n"}


def test_batch_posts_logs_updates_and_sync_in_one_request():
    answer = {"logs": [{"status": 200, "size": 4}],
              "updates": [{"status": 200, "state": "done"}], "sync": None}
    result, [request] = run_scenario(
        lambda client: client.batch(
            AGENT, [{"assignment": "as-1", "offset": 0, "data": "end\n"}],
            [{"task": 7, "attempt": 2, "state": "done"}],
            {"free_ram": 512, "running": [(7, 2)]}),
        [(200, answer)])
    assert result == answer
    assert (request["method"], request["path"]) == (
        "POST", f"/api/v1/agents/{AGENT}/updates")
    assert request["json"] == {
        "logs": [{"assignment": "as-1", "offset": 0, "data": "end\n"}],
        "updates": [{"task": 7, "attempt": 2, "state": "done"}],
        "sync": {"free_ram": 512,
                 "running": [{"task": 7, "attempt": 2}]}}


def test_a_batch_sync_carries_its_prefetch():
    answer = {"logs": [], "updates": [], "sync": {"assignments": []}}
    _, [request] = run_scenario(
        lambda client: client.batch(
            AGENT, [], [], {"free_ram": 512, "running": [],
                            "prefetch": {"job": 3, "assignments": 5}}),
        [(200, answer)])
    assert request["json"]["sync"] == {
        "free_ram": 512, "running": [],
        "prefetch": {"job": 3, "assignments": 5}}


@pytest.mark.parametrize("status, body, error, can_retry", [
    (409, {"error": "stale attempt", "size": 10}, Conflict, False),
    (404, {"error": "no agent"}, NotFound, False),
    (400, {"error": "unknown field 'x'"}, Rejected, False),
    (401, {"error": "the token is unknown"}, Rejected, True),
    (403, {"error": "role 'user' may not"}, Rejected, True),
    (500, {"error": "internal"}, ServerError, True),
    (502, "<html>bad gateway</html>", ServerError, True),
    (429, {"error": "slow down"}, ServerError, True),
    (200, "<html>not json</html>", ServerError, True),
])
def test_answers_map_to_distinct_errors(status, body, error, can_retry):
    result, _ = run_scenario(
        lambda client: client.update_task(AGENT, 1, 1, "done"),
        [(status, body)])
    assert type(result) is error
    assert result.status == status
    assert retryable(result) is can_retry
    if isinstance(body, dict) and status != 200:
        assert body["error"] in str(result)
        assert result.body == body


def test_a_409_keeps_the_size_of_the_log():
    result, _ = run_scenario(
        lambda client: client.send_log(AGENT, "as-1", 99, "x"),
        [(409, {"error": "gap", "size": 40})])
    assert isinstance(result, Conflict)
    assert result.body["size"] == 40


def test_connection_refused_is_master_unavailable():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    result, requests = run_scenario(
        lambda client: client.sync(AGENT, 1, []),
        url=f"http://127.0.0.1:{free}")
    assert isinstance(result, MasterUnavailable)
    assert not isinstance(result, ServerError)
    assert retryable(result)
    assert requests == []


class Silent:
    """An HTTP client whose requests never get an answer."""

    def request(self, *args, **kwargs):
        return defer.Deferred()


def test_no_answer_within_the_timeout_is_master_unavailable():
    clock = task.Clock()
    client = MasterClient(clock, "http://master:5000", "t", timeout=30,
                          http=Silent())
    failures = []
    client.sync(AGENT, 1, []).addErrback(failures.append)
    clock.advance(29.9)
    assert failures == []
    clock.advance(0.1)
    [failure] = failures
    assert failure.check(MasterUnavailable)
    assert "no answer within 30 s" in failure.getErrorMessage()


def test_a_master_without_the_endpoint_is_not_an_unknown_agent():
    """An old master answers 404 for ``/updates`` itself: retried, not
    taken for a master that forgot this agent."""
    old = (404, {"error": f"no such API endpoint: /api/v1/agents/{AGENT}"
                          f"/updates"})
    result, _ = run_scenario(
        lambda client: client.batch(AGENT, [], [], None), [old])
    assert type(result) is OutdatedMaster and retryable(result)
    assert "upgrade the master" in str(result)
    # A 404 the agent cannot read (a proxy's page) is not "unknown" either.
    result, _ = run_scenario(
        lambda client: client.batch(AGENT, [], [], None),
        [(404, "<html>not found</html>")])
    assert type(result) is OutdatedMaster
    forgot = (404, {"error": f"no agent with id {AGENT}; register it first",
                    "code": "unknown_agent"})
    result, _ = run_scenario(
        lambda client: client.batch(AGENT, [], [], None), [forgot])
    assert type(result) is NotFound and unknown_agent(result)
    assert not retryable(result)
