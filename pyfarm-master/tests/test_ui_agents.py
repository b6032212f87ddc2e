"""The agents pages: the list and its live rows, one agent, disable and
enable."""

import html
import json
import re
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from pyfarm.master.db import db
from pyfarm.master.models import Agent, Job, JobType, Task

AGENTS = "/api/v1/agents/"


def page(response, status=200):
    """Assert ``status``; return the page's text with entities decoded."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, text[:2000]
    return html.unescape(text)


def registration(hostname, **fields):
    return {"id": str(uuid.uuid4()), "hostname": hostname, "os": "linux",
            "os_version": "Debian 12", "cpus": 16, "ram": 65536,
            "free_ram": 16384,
            "gpus": [{"name": "RTX 4090", "ram": 24564}],
            "disks": [{"path": "/", "total": 500000, "free": 200000}],
            "tags": ["gpu"],
            "software": [{"software": "blender", "version": "4.2"},
                         {"software": "blender", "version": "10.0"},
                         {"software": "maya", "version": "2025"}],
            "version": "0.1.0", **fields}


@pytest.fixture
def register(agent_api):
    """``register("node01", tags=[...])``: register an agent through the
    agent protocol; return its id."""
    def make(hostname, **fields):
        body = registration(hostname, **fields)
        response = agent_api.post(AGENTS, json=body)
        assert response.status_code == 201, response.get_json()
        return body["id"]
    return make


def make_job(title="shot 10", frames=3, batch=3):
    """Insert a queued job with one task per frame; return its id."""
    session = db.session
    jobtype = session.execute(
        select(JobType).where(JobType.name == "command")).scalar_one()
    job = Job(title=title, jobtype=jobtype, start=1, end=frames,
              batch=batch, data={"argv": ["true"]})
    session.add(job)
    session.flush()
    session.add_all(Task(job_id=job.id, frame=frame)
                    for frame in range(1, frames + 1))
    session.commit()
    return job.id


def sync(agent_api, agent_id, **body):
    response = agent_api.post(f"{AGENTS}{agent_id}/sync", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def state_of(agent_id):
    db.session.expire_all()
    return db.session.get(Agent, agent_id).state


# -- login --------------------------------------------------------------------


def test_pages_need_a_login(client, register):
    agent_id = register("node01")
    for path in ("/agents/", f"/agents/{agent_id}"):
        response = client.get(path)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]
        response = client.get(path, headers={"HX-Request": "true"})
        assert response.status_code == 401
        assert "/login" in response.headers["HX-Redirect"]
    token = re.search(r'name="csrf-token" content="([^"]+)"',
                      client.get("/login").get_data(as_text=True)).group(1)
    response = client.post(f"/agents/{agent_id}/state",
                           data={"state": "disabled", "csrf_token": token})
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
    assert state_of(agent_id) == "online"


# -- the list -----------------------------------------------------------------


def test_list_shows_the_registered_agents(ui_alice, register):
    agent_id = register("node02", tags=["gpu", "linux"])
    register("node01", os="windows", os_version="11", gpus=[], tags=[])
    text = page(ui_alice.get("/agents/"))
    rows = re.findall(r'<tr id="agent-([^"]+)" data-state="(\w+)" '
                      r'data-hostname="([^"]+)"', text)
    assert [row[2] for row in rows] == ["node01", "node02"]
    assert rows[1] == (agent_id, "online", "node02")
    row = text[text.index(f'id="agent-{agent_id}"'):]
    row = row[:row.index("</tr>")]
    assert f'href="/agents/{agent_id}"' in row
    assert "state-online" in row
    assert "linux" in row and "Debian 12" in row
    assert '<td class="num">16</td>' in row
    assert "16.0 GB free of 64.0 GB" in row and 'class="meter"' in row
    assert "RTX 4090" in row
    assert '<span class="tag">gpu</span><span class="tag">linux</span>' \
        in row
    assert "<b>blender</b> 4.2, 10.0" in row and "<b>maya</b> 2025" in row
    assert "idle" in row and "<time datetime=" in row
    assert 'aria-sort="ascending"' in text
    # The rows refresh themselves.
    assert re.search(r'<tbody id="agent-rows"\s+hx-get="/agents/\?page=1'
                     r'&amp;per_page=50"\s+hx-trigger="every 5s ', text.replace(
                         "&", "&amp;"))
    # A user sees no buttons.
    assert "Disable" not in text and "/state" not in text


def test_list_shows_what_each_agent_runs(ui_alice, agent_api, register):
    agent_id = register("node01")
    job_id = make_job("shot 10", frames=3, batch=2)
    answer = sync(agent_api, agent_id)
    task = answer["assignments"][0]["tasks"][0]
    agent_api.put(f"{AGENTS}{agent_id}/tasks/{task['id']}",
                  json={"attempt": 1, "state": "running"})
    text = page(ui_alice.get("/agents/"))
    assert 'data-state="running"' in text
    work = re.search(rf'<div class="job-work" data-job="{job_id}">.*?'
                     r'</div>', text, re.S).group(0)
    assert "shot 10" in work and "frames 1-3" in work


def test_list_filters_searches_and_pages(ui_alice, ui_admin, register):
    first = register("render-01", tags=["gpu"])
    second = register("render-02", tags=["cpu"])
    register("workstation", tags=["gpu"])
    ui_admin.post(f"/agents/{second}/state", {"state": "disabled"})

    def hostnames(query):
        text = page(ui_alice.get("/agents/" + query))
        return re.findall(r'data-hostname="([^"]+)"', text)

    assert hostnames("") == ["render-01", "render-02", "workstation"]
    assert hostnames("?state=disabled") == ["render-02"]
    assert hostnames("?tag=gpu") == ["render-01", "workstation"]
    assert hostnames("?q=RENDER") == ["render-01", "render-02"]
    assert hostnames("?q=render&tag=gpu&state=online") == ["render-01"]
    assert hostnames("?q=%25") == []
    assert hostnames("?per_page=2&page=2") == ["workstation"]
    text = page(ui_alice.get("/agents/?per_page=2"))
    assert "Page 1 of 2" in text and 'rel="next"' in text
    text = page(ui_alice.get("/agents/?tag=nothing"))
    assert "No agents match these filters." in text
    assert f'id="agent-{first}"' not in text
    # Bad query arguments are a 400 that says what to fix.
    assert "query argument 'state' must be one of" in page(
        ui_alice.get("/agents/?state=asleep"), 400)
    assert "query argument 'page' must be a whole number" in page(
        ui_alice.get("/agents/?page=abc"), 400)


def test_htmx_gets_the_rows_alone(ui_alice, register):
    agent_id = register("node01")
    text = page(ui_alice.get("/agents/?state=online", htmx=True))
    assert "<html" not in text and "<tbody" not in text
    assert text.strip().startswith(f'<tr id="agent-{agent_id}"')
    text = page(ui_alice.get("/agents/?state=offline", htmx=True))
    assert "No agents match these filters." in text
    response = ui_alice.get("/agents/?state=asleep", htmx=True)
    assert response.status_code == 400
    assert response.content_type.startswith("text/plain")
    assert "'state' must be one of" in response.get_data(as_text=True)


# -- one agent ----------------------------------------------------------------


def test_detail_shows_fields_attempts_and_failures(ui_alice, agent_api,
                                                   register):
    agent_id = register("node01", tags=["gpu"])
    job_id = make_job("shot 10", frames=3, batch=1)
    tasks = [a["tasks"][0] for a in sync(agent_api, agent_id)
             ["assignments"]]
    done, failed, running = tasks
    agent_api.put(f"{AGENTS}{agent_id}/tasks/{done['id']}",
                  json={"attempt": 1, "state": "done"})
    agent_api.put(f"{AGENTS}{agent_id}/tasks/{failed['id']}",
                  json={"attempt": 1, "state": "failed",
                        "error": "exit status 3: licence missing"})
    agent_api.put(f"{AGENTS}{agent_id}/tasks/{running['id']}",
                  json={"attempt": 1, "state": "running", "progress": 0.5})
    text = page(ui_alice.get(f"/agents/{agent_id}"))
    assert "<h1>node01" in text and "state-running" in text
    for value in (agent_id, "127.0.0.1", "linux Debian 12", "0.1.0",
                  "RTX 4090", "<b>maya</b> 2025", "16.0 GB free of 64.0 GB",
                  "195 GB free of 488 GB", "by agents"):
        assert value in text, value
    held = text[text.index('id="held"'):text.index('id="attempts"')]
    assert f'id="held-job-{job_id}" data-state="running"' in held
    assert '<td class="frames">3</td>' in held
    assert "1 running" in held and "shot 10" in held
    attempts = text[text.index('id="attempts"'):text.index('id="failures"')]
    rows = re.findall(r'<tr id="attempt-\d+" data-state="(\w+)">', attempts)
    assert sorted(rows) == ["done", "failed", "running"]
    assert "exit status 3: licence missing" in attempts
    assert "Page 1 of 1 · 3 in all" in attempts
    failures = text[text.index('id="failures"'):]
    assert f'id="failure-{job_id}"' in failures
    assert '<td class="num">1</td>' in failures
    assert "After 3 failures of a job" in text
    # Paginated attempts.
    text = page(ui_alice.get(f"/agents/{agent_id}?per_page=2&page=2"))
    assert len(re.findall(r'<tr id="attempt-', text)) == 1
    assert "Page 2 of 2" in text
    assert "no agent with id nope" in page(ui_alice.get("/agents/nope"), 404)


# -- disable and enable -------------------------------------------------------


def test_admin_disables_and_enables(ui_admin, register):
    agent_id = register("node01")
    text = page(ui_admin.get(f"/agents/{agent_id}"))
    assert "Disable</button>" in text
    response = ui_admin.post(f"/agents/{agent_id}/state",
                             {"state": "disabled"})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/agents/{agent_id}")
    assert state_of(agent_id) == "disabled"
    text = page(ui_admin.get(f"/agents/{agent_id}"))
    assert "node01 disabled: it gets no new work" in text
    assert "Enable</button>" in text and "state-disabled" in text
    response = ui_admin.post(f"/agents/{agent_id}/state",
                             {"state": "online", "next": "/agents/?q=node"})
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/agents/?q=node")
    assert state_of(agent_id) == "online"
    # Elsewhere than this site is not followed.
    response = ui_admin.post(f"/agents/{agent_id}/state",
                             {"state": "online",
                              "next": "https://example.com/"})
    assert response.headers["Location"].endswith(f"/agents/{agent_id}")


def test_enabling_an_agent_holding_work_makes_it_running(
        ui_admin, agent_api, register):
    agent_id = register("node01")
    make_job(frames=1)
    sync(agent_api, agent_id)
    ui_admin.post(f"/agents/{agent_id}/state", {"state": "disabled"})
    assert state_of(agent_id) == "disabled"
    ui_admin.post(f"/agents/{agent_id}/state", {"state": "online"})
    assert state_of(agent_id) == "running"


def test_htmx_disable_answers_the_new_row(ui_admin, register):
    agent_id = register("node01")
    text = page(ui_admin.get("/agents/"))
    button = re.search(r'<form method="post" action="/agents/[^"]+/state"'
                       r'[^>]*>', text).group(0)
    assert "hx-post=" in button and 'hx-target="closest tr"' in button
    response = ui_admin.post(f"/agents/{agent_id}/state",
                             {"state": "disabled", "next": "/agents/"},
                             htmx=True)
    text = page(response)
    assert text.strip().startswith(
        f'<tr id="agent-{agent_id}" data-state="disabled"')
    assert "Enable</button>" in text
    assert json.loads(response.headers["HX-Trigger"]) == {
        "pyfarm-notice": "node01 disabled: it gets no new work"}
    assert state_of(agent_id) == "disabled"


def test_users_may_not_disable_agents(ui_alice, register):
    agent_id = register("node01")
    assert "Disable" not in page(ui_alice.get(f"/agents/{agent_id}"))
    response = ui_alice.post(f"/agents/{agent_id}/state",
                             {"state": "disabled"})
    assert response.status_code == 403
    response = ui_alice.post(f"/agents/{agent_id}/state",
                             {"state": "disabled"}, htmx=True)
    assert response.status_code == 403
    assert "only an admin" in response.get_data(as_text=True)
    assert state_of(agent_id) == "online"


def test_bad_state_changes_change_nothing(ui_admin, register):
    agent_id = register("node01")
    response = ui_admin.post(f"/agents/{agent_id}/state",
                             {"state": "disabled"}, csrf=False)
    assert response.status_code == 400
    assert "Reload the page" in response.get_data(as_text=True)
    assert "field 'state' must be 'disabled'" in page(ui_admin.post(
        f"/agents/{agent_id}/state", {"state": "offline"}), 400)
    assert "no agent with id nope" in page(ui_admin.post(
        "/agents/nope/state", {"state": "disabled"}), 404)
    assert state_of(agent_id) == "online"


# -- cost ---------------------------------------------------------------------


def test_pages_read_growing_tables_through_indexes(app, ui_alice, agent_api,
                                                    register):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    agent_id = register("node01", tags=["gpu"])
    make_job(frames=4, batch=1)
    for assignment in sync(agent_api, agent_id)["assignments"][:2]:
        task = assignment["tasks"][0]
        agent_api.put(f"{AGENTS}{agent_id}/tasks/{task['id']}",
                      json={"attempt": 1, "state": "failed", "error": "x"})
    seen = []

    def record(conn, cursor, statement, parameters, context, many):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        for path in ("/agents/?tag=gpu&q=node&state=running",
                     f"/agents/{agent_id}?page=1"):
            page(ui_alice.get(path))
            page(ui_alice.get(path, htmx=True))
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    growing = ("tasks", "task_attempts", "agent_job_failures", "jobs")
    assert any("FROM task_attempts" in statement for statement, _ in seen)
    db.session.rollback()  # SQLite: one writer; this test's session too
    with db.engine.connect() as connection:
        for statement, parameters in seen:
            for row in connection.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, parameters):
                detail = row[-1]
                assert not any(detail == f"SCAN {table}" or detail
                               .startswith(f"SCAN {table} ")
                               for table in growing), (statement, detail)
                if "task_attempts" in statement and "ORDER BY" in statement:
                    assert "TEMP B-TREE" not in detail, (statement, detail)
