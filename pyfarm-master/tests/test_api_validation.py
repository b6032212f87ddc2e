"""Odd input anywhere in the API is a 4xx naming what to fix, never a 500.

Numbers beyond an SQL INTEGER, NUL characters (PostgreSQL text refuses
them), lone surrogates (not UTF-8), NaN, deep nesting, ids beyond any row
in URLs: each once made the database or the encoder fail.
"""

import pytest

JOBS = "/api/v1/jobs/"
MAX = 2**31 - 1


def job_body(**fields):
    """Return a valid submission with ``fields`` changed."""
    body = {"title": "sq010 lighting", "jobtype": "command", "start": 1,
            "end": 10, "data": {"argv": ["render", "{frame}"]}}
    body.update(fields)
    return body


def error_of(response, status):
    """Assert ``status`` and return the JSON error message."""
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()["error"]


@pytest.fixture
def job(alice):
    """A job of alice's, frames 1 to 3."""
    response = alice.post(JOBS, json=job_body(end=3))
    assert response.status_code == 201
    return response.get_json()


@pytest.mark.parametrize("field, value", [
    ("start", MAX + 1),
    ("end", 2**63),
    ("by", 2**64),
    ("batch", MAX + 1),
    ("priority", -MAX - 2),
    ("weight", 10**20),
    ("requeue", MAX + 1),
    ("cpus", MAX + 1),
    ("ram", MAX + 1),
    ("minimum_agents", MAX + 1),
    ("maximum_agents", MAX + 1),
    ("jobtype_version", MAX + 1),
    ("parents", [MAX + 1]),
])
def test_submit_numbers_beyond_an_integer_column_are_400(alice, field,
                                                         value):
    error = error_of(alice.post(JOBS, json=job_body(**{field: value})), 400)
    assert f"'{field}" in error


def test_frames_up_to_the_largest_integer_are_fine(alice):
    # The frame after the last one passes the largest INTEGER while the
    # tasks are counted out; PostgreSQL refused that.
    response = alice.post(JOBS, json=job_body(start=MAX - 10, end=MAX,
                                              by=4))
    assert response.status_code == 201, response.get_json()
    job = response.get_json()
    tasks = alice.get(f"{JOBS}{job['id']}/tasks/").get_json()["tasks"]
    assert [task["frame"] for task in tasks] == [MAX - 10, MAX - 6, MAX - 2]


@pytest.mark.parametrize("field, value", [
    ("priority", MAX + 1),
    ("weight", 2**63),
    ("title", "a\x00b"),
    ("notes", "\ud800"),
])
def test_patch_values_the_database_cannot_hold_are_400(alice, job, field,
                                                       value):
    response = alice.patch(f"{JOBS}{job['id']}", json={field: value})
    assert f"'{field}'" in error_of(response, 400)


@pytest.mark.parametrize("fields, named", [
    ({"title": "sq\x00010"}, "'title'"),
    ({"notes": "x\x00"}, "'notes'"),
    ({"jobtype": "command\x00"}, "'jobtype'"),
    ({"jobqueue": "\x00"}, "'jobqueue'"),
    ({"notified_users": ["\x00"]}, "'notified_users.0'"),
    ({"software_requirements": [{"software": "a\x00"}]},
     "'software_requirements.0.software'"),
    ({"data": {"argv": ["render", "\x00"]}}, "'data.argv.1'"),
    ({"environ": {"A\x00": "1"}}, "key 'environ.A"),
    ({"notes": "\ud83c"}, "'notes'"),
    ({"tags": ["\udfff"]}, "'tags.0'"),
    ({"environ": {"": "1"}}, "'environ."),
    ({"environ": {"A=B": "1"}}, "'environ."),
])
def test_submit_text_the_database_or_a_process_cannot_hold_is_400(
        alice, fields, named):
    error = error_of(alice.post(JOBS, json=job_body(**fields)), 400)
    assert named in error


@pytest.mark.parametrize("raw, says", [
    (b'{"title": NaN}', "NaN"),
    (b'{"title": "t", "data": {"x": Infinity}}', "Infinity"),
    (b'{"title": "t", "data": {"x": 1e999}}', "too large"),
    (b'{"data": ' + b"[" * 5000 + b"]" * 5000 + b"}", "recursion"),
    # Shallow enough to parse, too deep for validating (RecursionError).
    (b'{"parameters": ' + b'{"items": ' * 300 + b"{}" + b"}" * 301,
     "deeper than 64 levels"),
    (b'{"data": {"a": ' + b"[" * 100 + b"]" * 100 + b"}}",
     "deeper than 64 levels"),
    (b"\xff\xfe{", "not valid JSON"),
    (b"null", "JSON object"),
])
def test_bodies_that_are_not_plain_json_are_400(alice, admin, raw, says):
    for api, url in ((alice, JOBS), (admin, "/api/v1/jobtypes/")):
        response = api.post(url, data=raw, content_type="application/json")
        assert says in error_of(response, 400)


@pytest.mark.parametrize("path", [
    f"{JOBS}{MAX + 1}",
    f"{JOBS}{2**63}",
    f"{JOBS}{10**20}/tasks/",
    f"{JOBS}1/tasks/{MAX + 1}",
    f"{JOBS}1/tasks/1/logs/{2**64}",
    "/api/v1/jobtypes/command%00",
    "/api/v1/tags/%00",
    "/api/v1/software/%01",
    "/api/v1/jobqueues/%00",
    "/api/v1/agents/%00",
])
def test_urls_naming_what_cannot_exist_are_404(admin, job, path):
    for method in ("GET", "PATCH", "DELETE"):
        response = admin.request(method, path, json={})
        assert response.status_code in (404, 405), (method, path)
        assert response.is_json


@pytest.mark.parametrize("query", [
    "title=%00", "user=a%00", "jobqueue=%00", "state=%00",
    f"page={MAX + 1}", f"page={10**20}",
])
def test_odd_query_arguments_are_400(alice, query):
    for url in (JOBS, "/api/v1/agents/", "/api/v1/tags/"):
        response = alice.get(f"{url}?{query}")
        if response.status_code == 200:  # an argument the list ignores
            continue
        assert error_of(response, 400).startswith("query argument")


@pytest.mark.parametrize("body, named", [
    ({"name": "gpu\ud800"}, "'name'"),
    ({"name": "x", "description": "a\x00b"}, "'description'"),
    ({"name": "x", "parameters": {"\x00": {}}}, "key 'parameters."),
])
def test_catalog_text_the_database_cannot_hold_is_400(admin, body, named):
    for url in ("/api/v1/tags/", "/api/v1/jobtypes/", "/api/v1/software/",
                "/api/v1/jobqueues/"):
        assert named in error_of(admin.post(url, json=body), 400), url


def test_log_read_far_past_the_end_is_empty(alice, job, app, session):
    import uuid

    from pyfarm.master.models import Agent, Task, TaskAttempt

    task = session.get(Task, alice.get(f"{JOBS}{job['id']}/tasks/")
                       .get_json()["tasks"][0]["id"])
    agent = Agent(id=str(uuid.uuid4()), hostname="n", os="linux", cpus=1,
                  ram=1)
    session.add(agent)
    task.attempt, task.assignment_id = 1, str(uuid.uuid4())
    session.add(TaskAttempt(task_id=task.id, attempt=1, agent_id=agent.id,
                            assignment_id=task.assignment_id))
    session.commit()
    app.extensions["pyfarm.logstore"].append(task.assignment_id, 0, b"abc")
    url = f"{JOBS}{job['id']}/tasks/{task.id}/logs/1"
    for query in (f"offset={10**20}", f"offset={2**62}&length={10**20}"):
        response = alice.get(f"{url}?{query}")
        assert response.status_code == 200, query
        assert response.data == b""
        assert response.headers["X-Log-Size"] == "3"
