"""The API client against a small local HTTP server."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from pyfarm.core.client import (
    ApiError,
    Client,
    ClientError,
    LogChunk,
    MasterUnreachable,
    base_url,
)

TOKEN = "s3cret-token"


class FakeMaster:
    """Records requests and answers from a script of responses.

    ``answer(method, path, status, body, headers)`` queues one answer for
    that method and path (the path without the query string); a body that
    is a dict or list is sent as JSON, bytes as they are.
    """

    def __init__(self):
        self.requests = []
        self.answers = {}

    def answer(self, method, path, status=200, body=None, headers=None):
        self.answers.setdefault((method, path), []).append(
            (status, body, headers or {}))

    def respond(self, handler):
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        self.requests.append({
            "method": handler.command, "path": parts.path,
            "query": parse_qs(parts.query), "headers": handler.headers,
            "json": json.loads(raw) if raw else None})
        queue = self.answers.get((handler.command, parts.path))
        if not queue:
            status, body, headers = 404, {"error": "not scripted"}, {}
        else:
            status, body, headers = queue.pop(0) if len(queue) > 1 \
                else queue[0]
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **headers}
        else:
            data = body or b""
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    @property
    def last(self):
        return self.requests[-1]


@pytest.fixture
def master():
    fake = FakeMaster()

    class Handler(BaseHTTPRequestHandler):
        def handle_any(self):
            fake.respond(self)

        # The names http.server looks up.
        do_GET = do_POST = do_PUT = handle_any  # noqa: N815
        do_PATCH = do_DELETE = handle_any  # noqa: N815

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,),
                              daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def farm(master):
    with Client(master.url, TOKEN, timeout=5) as client:
        yield client


JOB = {"id": 12, "title": "shot", "state": "queued"}


def test_base_url():
    for url in ("http://farm:5000", "http://farm:5000/",
                "http://farm:5000/api/v1", "http://farm:5000/api/v1/"):
        assert base_url(url) == "http://farm:5000/api/v1"


def test_submit_job_posts_json_with_the_token(farm, master):
    master.answer("POST", "/api/v1/jobs/", 201, JOB,
                  {"Location": "/api/v1/jobs/12"})
    job = farm.submit_job(title="shot", jobtype="command", start=1, end=3,
                          data={"argv": ["true"]})
    assert job == JOB
    request = master.last
    assert request["method"] == "POST"
    assert request["json"] == {"title": "shot", "jobtype": "command",
                               "start": 1, "end": 3,
                               "data": {"argv": ["true"]}}
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert request["headers"]["Accept"] == "application/json"
    assert request["headers"]["Content-Type"] == "application/json"


def test_job_and_update_job(farm, master):
    master.answer("GET", "/api/v1/jobs/12", 200, JOB)
    master.answer("PATCH", "/api/v1/jobs/12", 200, {**JOB, "priority": 5})
    assert farm.job(12) == JOB
    assert master.last["method"] == "GET"
    assert farm.update_job(12, priority=5, notes="rush")["priority"] == 5
    assert master.last["json"] == {"priority": 5, "notes": "rush"}


@pytest.mark.parametrize("action, state", [("pause", "paused"),
                                           ("resume", "queued")])
def test_pause_and_resume_patch_the_state(farm, master, action, state):
    master.answer("PATCH", "/api/v1/jobs/12", 200, {**JOB, "state": state})
    assert getattr(farm, action)(12)["state"] == state
    assert master.last["method"] == "PATCH"
    assert master.last["json"] == {"state": state}


def test_rerun_cancel_and_delete(farm, master):
    master.answer("POST", "/api/v1/jobs/12/rerun", 200, JOB)
    master.answer("POST", "/api/v1/jobs/12/cancel", 200, JOB)
    master.answer("DELETE", "/api/v1/jobs/12", 204, b"")
    assert farm.rerun(12) == JOB
    assert master.last["json"] == {"failed_only": False}
    farm.rerun(12, failed_only=True)
    assert master.last["json"] == {"failed_only": True}
    assert farm.cancel(12) == JOB
    assert master.last["json"] == {}
    assert farm.delete_job(12) is None
    assert master.last["method"] == "DELETE"


def page(items, total, number, per_page=1000, key="jobs"):
    return {key: items, "total": total, "page": number, "per_page": per_page}


def test_jobs_fetches_every_page(farm, master):
    master.answer("GET", "/api/v1/jobs/", 200,
                  page([{"id": 1}, {"id": 2}], 3, 1))
    master.answer("GET", "/api/v1/jobs/", 200, page([{"id": 3}], 3, 2))
    jobs = farm.jobs(state="running", user="alice", jobqueue=None)
    assert [job["id"] for job in jobs] == [1, 2, 3]
    queries = [r["query"] for r in master.requests]
    assert queries == [
        {"state": ["running"], "user": ["alice"], "per_page": ["1000"],
         "page": [str(number)]} for number in (1, 2)]


def test_jobs_stops_on_an_empty_page(farm, master):
    master.answer("GET", "/api/v1/jobs/", 200, page([{"id": 1}], 5, 1))
    master.answer("GET", "/api/v1/jobs/", 200, page([], 5, 2))
    assert farm.jobs() == [{"id": 1}]
    assert len(master.requests) == 2


def test_jobs_with_a_page_fetches_only_that_page(farm, master):
    master.answer("GET", "/api/v1/jobs/", 200, page([{"id": 3}], 3, 2, 2))
    assert farm.jobs(page=2, per_page=2) == [{"id": 3}]
    assert master.last["query"] == {"page": ["2"], "per_page": ["2"]}


def test_tasks_and_agents(farm, master):
    master.answer("GET", "/api/v1/jobs/12/tasks/", 200,
                  page([{"id": 7, "state": "failed"}], 1, 1, key="tasks"))
    master.answer("GET", "/api/v1/agents/", 200,
                  page([{"id": "a"}], 1, 1, key="agents"))
    assert farm.tasks(12, state="failed") == [{"id": 7, "state": "failed"}]
    assert master.last["query"]["state"] == ["failed"]
    farm.tasks(12)
    assert "state" not in master.last["query"]
    assert farm.agents() == [{"id": "a"}]
    assert farm.agents(tag="gpu") == [{"id": "a"}]
    assert master.last["query"]["tag"] == ["gpu"]


def test_task_log(farm, master):
    path = "/api/v1/jobs/12/tasks/7/logs/2"
    text = "frame 1 ✓\n".encode()
    master.answer("GET", path, 200, text,
                  {"Content-Type": "text/plain; charset=utf-8",
                   "X-Log-Size": "40"})
    chunk = farm.task_log(12, 7, 2)
    assert chunk == LogChunk(data=text, offset=0, size=40)
    assert chunk.text == "frame 1 ✓\n"
    assert chunk.next_offset == len(text)
    assert master.last["query"] == {}
    farm.task_log(12, 7, 2, offset=chunk.next_offset)
    assert master.last["query"] == {"offset": [str(len(text))]}


def test_task_logs_lists_the_attempts(farm, master):
    path = "/api/v1/jobs/12/tasks/7/logs/"
    logs = [{"attempt": 1, "state": "failed"}, {"attempt": 2,
                                                "state": "running"}]
    master.answer("GET", path, 200, {"logs": logs})
    assert farm.task_logs(12, 7) == logs
    assert master.last["method"] == "GET"


def test_task_log_without_a_size_header(farm, master):
    master.answer("GET", "/api/v1/jobs/1/tasks/2/logs/1", 200, b"abc")
    chunk = farm.task_log(1, 2, 1, offset=10)
    assert (chunk.size, chunk.next_offset) == (13, 13)


def test_error_answers_raise_api_error_with_the_message(farm, master):
    master.answer("GET", "/api/v1/jobs/99", 404, {"error": "no job 99"})
    with pytest.raises(ApiError) as error:
        farm.job(99)
    assert (error.value.status, error.value.message) == (404, "no job 99")
    assert str(error.value) == "HTTP 404: no job 99"
    assert isinstance(error.value, ClientError)


def test_api_error_keeps_the_whole_body(farm, master):
    body = {"error": "field 'end': too small", "problems": ["a", "b"]}
    master.answer("POST", "/api/v1/jobs/", 400, body)
    with pytest.raises(ApiError) as error:
        farm.submit_job(title="x")
    assert error.value.body == body
    assert error.value.message == "field 'end': too small"


def test_non_json_errors_keep_their_text(farm, master):
    master.answer("GET", "/api/v1/jobs/1", 502, b"Bad gateway from proxy")
    with pytest.raises(ApiError) as error:
        farm.job(1)
    assert error.value.status == 502
    assert error.value.message == "Bad gateway from proxy"
    assert error.value.body == {}
    master.answer("GET", "/api/v1/jobs/2", 500, b"")
    with pytest.raises(ApiError) as error:
        farm.job(2)
    assert error.value.message == "Internal Server Error"


def test_unreachable_master():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}", TOKEN, timeout=5) as client:
        with pytest.raises(MasterUnreachable, match="GET .*/api/v1/jobs/1"):
            client.job(1)


class RecordingSession:
    """A stand-in for requests.Session that records its calls."""

    def __init__(self, status=200, body=b"{}"):
        self.calls = []
        self.closed = False
        self.status, self.body = status, body

    def request(self, method, url, **kwargs):
        self.calls.append((method, url, kwargs))
        response = requests.Response()
        response.status_code = self.status
        response._content = self.body
        return response

    def close(self):
        self.closed = True


def test_timeout_and_a_given_session():
    session = RecordingSession(body=b'{"id": 1}')
    client = Client("http://farm", TOKEN, session=session, timeout=12)
    assert client.job("1") == {"id": 1}
    ((method, url, kwargs),) = session.calls
    assert (method, url) == ("GET", "http://farm/api/v1/jobs/1")
    assert kwargs["timeout"] == 12
    client.close()
    assert not session.closed


def test_job_ids_must_be_numbers():
    client = Client("http://farm", TOKEN, session=RecordingSession())
    with pytest.raises(ValueError):
        client.job("1/../../agents")


class FakeTime:
    """A clock that moves only when someone sleeps."""

    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_for_job_polls_until_it_finishes(farm, master):
    for state in ("queued", "running", "running", "done"):
        master.answer("GET", "/api/v1/jobs/12", 200, {**JOB, "state": state})
    time = FakeTime()
    job = farm.wait_for_job(12, timeout=60, poll=5, sleep=time.sleep,
                            clock=time.clock)
    assert job["state"] == "done"
    assert time.sleeps == [5, 5, 5]
    assert len(master.requests) == 4


def test_wait_for_job_returns_failed_jobs_at_once(farm, master):
    master.answer("GET", "/api/v1/jobs/12", 200, {**JOB, "state": "failed"})
    time = FakeTime()
    assert farm.wait_for_job(12, 10, 1, sleep=time.sleep,
                             clock=time.clock)["state"] == "failed"
    assert time.sleeps == []


def test_wait_for_job_times_out(farm, master):
    master.answer("GET", "/api/v1/jobs/12", 200, {**JOB, "state": "paused"})
    time = FakeTime()
    with pytest.raises(TimeoutError, match="job 12 is still paused after 12"):
        farm.wait_for_job(12, timeout=12, poll=5, sleep=time.sleep,
                          clock=time.clock)
    assert time.sleeps == [5, 5, 2]
    assert time.now == 112
    assert len(master.requests) == 4


def test_wait_for_job_without_timeout(farm, master):
    for state in ["running"] * 30 + ["done"]:
        master.answer("GET", "/api/v1/jobs/12", 200, {**JOB, "state": state})
    time = FakeTime()
    assert farm.wait_for_job(12, None, 60, sleep=time.sleep,
                             clock=time.clock)["state"] == "done"
    assert time.sleeps == [60] * 30
