"""
A small Python client of the master's REST API, for pipeline scripts.

::

    from pyfarm.core.client import Client

    with Client("http://farm:5000", token) as farm:
        job = farm.submit_job(
            title="shot 10 lighting", jobtype="command", start=1, end=240,
            data={"argv": ["blender", "-b", "shot10.blend", "-f",
                           "{frame}"]})
        job = farm.wait_for_job(job["id"], timeout=3600, poll=10)
        if job["state"] == "failed":
            for task in farm.tasks(job["id"], state="failed"):
                print(task["frame"], task["last_error"])

Every method returns the JSON the master answers (dicts and lists). An
error answer raises :class:`ApiError` with the HTTP status and the
master's message; a master that cannot be reached raises
:class:`MasterUnreachable`. Both derive from :class:`ClientError`.
"""

import time
from dataclasses import dataclass

import requests

#: The prefix of every API URL.
API_PREFIX = "/api/v1"
#: Job states after which a job does not change without a user's action.
FINISHED_JOB_STATES = frozenset({"done", "failed"})
#: Page size used when a method fetches every page of a list.
PAGE_SIZE = 1000


class ClientError(Exception):
    """Base class of the client's errors."""


class ApiError(ClientError):
    """The master answered with an error status.

    ``status`` is the HTTP status, ``message`` the master's error text and
    ``body`` the whole JSON body (``{}`` when it was not JSON).
    """

    def __init__(self, status, message, body=None):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.body = {} if body is None else body


class MasterUnreachable(ClientError):
    """The master could not be reached or did not answer in time."""


@dataclass(frozen=True)
class LogChunk:
    """A piece of a task log: ``data`` read from byte ``offset``.

    ``size`` is the whole log's size when it was read; keep calling
    :meth:`Client.task_log` with ``next_offset`` to follow a running task.
    """

    data: bytes
    offset: int
    size: int

    @property
    def next_offset(self):
        """Where the next read should start."""
        return self.offset + len(self.data)

    @property
    def text(self):
        """The data as text (bad UTF-8 replaced)."""
        return self.data.decode("utf-8", errors="replace")


def base_url(url):
    """Return the API root for a master URL, with or without ``/api/v1``."""
    url = url.rstrip("/")
    if url.endswith(API_PREFIX):
        url = url[:-len(API_PREFIX)]
    return url + API_PREFIX


def error_message(response):
    """Return ``(message, body)`` for an error ``response``."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"], body
    text = response.text.strip()[:500]
    return text or response.reason or "no message", {}


class Client:
    """A connection to a master at ``url`` using the API ``token``.

    ``session`` is a :class:`requests.Session` to use (one is made and
    owned by the client otherwise); ``timeout`` is in seconds, per request.
    """

    def __init__(self, url, token, session=None, timeout=30):
        self.url = base_url(url)
        self.token = token
        self.timeout = timeout
        self._owns_session = session is None
        self.session = requests.Session() if session is None else session

    def close(self):
        """Close the HTTP session if the client made it."""
        if self._owns_session:
            self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return f"<Client {self.url}>"

    # -- transport -------------------------------------------------------

    def request(self, method, path, json=None, params=None):
        """Send one request to ``path`` (under ``/api/v1``).

        Returns the :class:`requests.Response` of a 2xx answer; raises
        :class:`ApiError` or :class:`MasterUnreachable` otherwise.
        """
        headers = {"Authorization": f"Bearer {self.token}",
                   "Accept": "application/json"}
        try:
            response = self.session.request(
                method, self.url + path, json=json, params=params,
                headers=headers, timeout=self.timeout)
        except requests.RequestException as error:
            raise MasterUnreachable(
                f"{method} {self.url + path} failed: {error}") from error
        if response.status_code >= 400:
            message, body = error_message(response)
            raise ApiError(response.status_code, message, body)
        return response

    def _json(self, method, path, json=None, params=None):
        response = self.request(method, path, json=json, params=params)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _all_pages(self, path, key, params):
        """Return every item of a paginated list, or one page if asked."""
        params = {k: v for k, v in params.items() if v is not None}
        if "page" in params:
            return self._json("GET", path, params=params)[key]
        params.setdefault("per_page", PAGE_SIZE)
        items, page = [], 1
        while True:
            body = self._json("GET", path, params={**params, "page": page})
            items.extend(body[key])
            if not body[key] or len(items) >= body["total"]:
                return items
            page += 1

    # -- jobs --------------------------------------------------------------

    def submit_job(self, **fields):
        """Submit a job (fields as for ``POST /api/v1/jobs/``)."""
        return self._json("POST", "/jobs/", json=fields)

    def job(self, job_id):
        """Return one job."""
        return self._json("GET", f"/jobs/{int(job_id)}")

    def jobs(self, **filters):
        """Return the jobs matching ``filters`` (``state``, ``user``, ...).

        Every page is fetched unless ``page`` is given, in which case only
        that page's jobs are returned.
        """
        return self._all_pages("/jobs/", "jobs", filters)

    def update_job(self, job_id, **fields):
        """Change a job (``priority``, ``weight``, ``title``, ...)."""
        return self._json("PATCH", f"/jobs/{int(job_id)}", json=fields)

    def pause(self, job_id):
        """Pause a job: agents finish what they run, nothing new starts."""
        return self.update_job(job_id, state="paused")

    def resume(self, job_id):
        """Resume a paused job."""
        return self.update_job(job_id, state="queued")

    def rerun(self, job_id, failed_only=False):
        """Run a job's frames again (only the failed ones if asked)."""
        return self._json("POST", f"/jobs/{int(job_id)}/rerun",
                          json={"failed_only": bool(failed_only)})

    def cancel(self, job_id):
        """Cancel a job; running frames are killed."""
        return self._json("POST", f"/jobs/{int(job_id)}/cancel", json={})

    def delete_job(self, job_id):
        """Delete a job and its tasks."""
        self._json("DELETE", f"/jobs/{int(job_id)}")

    def wait_for_job(self, job_id, timeout, poll=5.0, sleep=time.sleep,
                     clock=time.monotonic):
        """Poll a job every ``poll`` seconds until it is done or failed.

        Returns the finished job. Raises :class:`TimeoutError` when it has
        not finished after ``timeout`` seconds (``None``: wait forever).
        ``sleep`` and ``clock`` may be replaced, for example in tests.
        """
        deadline = None if timeout is None else clock() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in FINISHED_JOB_STATES:
                return job
            now = clock()
            if deadline is not None and now >= deadline:
                raise TimeoutError(
                    f"job {job_id} is still {job['state']} after "
                    f"{timeout} seconds")
            pause = poll if deadline is None else min(poll, deadline - now)
            sleep(pause)

    # -- tasks and logs ----------------------------------------------------

    def tasks(self, job_id, state=None):
        """Return a job's tasks, only those in ``state`` if given."""
        return self._all_pages(f"/jobs/{int(job_id)}/tasks/", "tasks",
                               {"state": state})

    def task_logs(self, job_id, task_id):
        """Return the logs of a task, one per attempt, oldest first."""
        return self._json(
            "GET", f"/jobs/{int(job_id)}/tasks/{int(task_id)}/logs/")["logs"]

    def task_log(self, job_id, task_id, attempt, offset=0):
        """Return the log of one attempt of a task from byte ``offset``.

        Returns a :class:`LogChunk`; works while the task still runs.
        """
        response = self.request(
            "GET",
            f"/jobs/{int(job_id)}/tasks/{int(task_id)}/logs/{int(attempt)}",
            params={"offset": offset} if offset else None)
        data = response.content
        size = response.headers.get("X-Log-Size")
        size = int(size) if size is not None else offset + len(data)
        return LogChunk(data=data, offset=offset, size=size)

    # -- agents ------------------------------------------------------------

    def agents(self, **filters):
        """Return the agents (filters ``state``, ``hostname``, ``tag``)."""
        return self._all_pages("/agents/", "agents", filters)
