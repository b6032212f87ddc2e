"""The job page: parameters, frame grid, task table, logs, thumbnails,
actions and the edit form."""

import html
import re
import struct
import time
import uuid
import zlib

import pytest
import sqlalchemy as sa

from pyfarm.master.db import db, utcnow
from pyfarm.master.models import (
    Job,
    JobQueue,
    PathMap,
    Software,
    Task,
    TaskAttempt,
)
from pyfarm.master.services.jobs import JobSpec, submit_job
from pyfarm.master.ui import job as job_view
from pyfarm.master.ui import job_helpers as helpers
from pyfarm.master.validation import parse

AGENTS = "/api/v1/agents/"
CELL = re.compile(r'<i class="(\w)" data-t="(\d+)" title="([^"]*)">')
ROW = re.compile(r'<tr id="task-(\d+)" data-task="\d+" data-frame="(-?\d+)"')


# -- helpers -----------------------------------------------------------------

def submit(session, user, **fields):
    """Submit a job of ``user`` through the service; return it."""
    spec = {"title": "sq010 lighting", "jobtype": "command", "start": 1,
            "end": 5, "data": {"argv": ["render", "{frame}"]}}
    spec.update(fields)
    job = submit_job(session, user, parse(JobSpec, spec), utcnow())
    session.commit()
    return job


def fresh(session, model, ident):
    """Return a row as committed (not as the session last saw it)."""
    session.rollback()
    return session.get(model, ident, populate_existing=True)


def tasks_of(session, job_id):
    """Return the job's tasks by frame, as committed."""
    session.rollback()
    return session.execute(sa.select(Task).where(Task.job_id == job_id)
                           .order_by(Task.frame)).scalars().all()


def text(response):
    return response.get_data(as_text=True)


def message(response):
    """Return the text of a response with HTML entities decoded."""
    return html.unescape(text(response))


def png_bytes():
    """Return a real 1x1 PNG image."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(
            ">I", zlib.crc32(body) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x80\x00")
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


class Agent:
    """An agent speaking the agent protocol through the API."""

    def __init__(self, api, hostname="node07"):
        self.api = api
        self.id = str(uuid.uuid4())
        response = api.post(AGENTS, json={
            "id": self.id, "hostname": hostname, "os": "linux", "cpus": 1,
            "ram": 16000})
        assert response.status_code == 201, response.get_json()

    def url(self, *parts):
        return AGENTS + "/".join([self.id, *map(str, parts)])

    def sync(self):
        """Sync; return the new assignments."""
        response = self.api.post(self.url("sync"), json={})
        assert response.status_code == 200, response.get_json()
        return response.get_json()["assignments"]

    def take(self):
        """Sync once and return ``(assignment id, [(task, attempt)])``."""
        [assignment] = self.sync()
        return assignment["id"], [(task["id"], task["attempt"])
                                  for task in assignment["tasks"]]

    def report(self, task, state, **fields):
        task_id, attempt = task
        response = self.api.put(self.url("tasks", task_id),
                                json={"attempt": attempt, "state": state,
                                      **fields})
        assert response.status_code == 200, response.get_json()

    def log(self, assignment, offset, data):
        """Append a log chunk as the agent does; return the new size."""
        response = self.api.post(self.url("assignments", assignment, "log"),
                                 json={"offset": offset, "data": data})
        assert response.status_code == 200, response.get_json()
        return response.get_json()["size"]


@pytest.fixture
def alice(ui_user):
    """``(Ui, user)`` of the user alice."""
    ui, user, _ = ui_user("alice")
    return ui, user


@pytest.fixture
def agent(agent_api):
    """An agent registered through the API."""
    return Agent(agent_api)


# -- the page ----------------------------------------------------------------

def test_page_shows_every_parameter_and_links(alice, ui_user, session):
    ui, user = alice
    _, bob, _ = ui_user("bob")
    session.add_all([JobQueue(name="lighting"), Software(name="maya")])
    session.commit()
    parent = submit(session, user, title="sq010 sim", end=1)
    job = submit(
        session, user, title="sq010 <lighting>", start=1, end=9, by=2,
        batch=2, priority=7, weight=3, requeue=5, cpus=4, ram=8192,
        data={"argv": ["render", "-s", "{start}"],
              "cwd": "/show/sq010/lighting"},
        environ={"OCIO": "/show/aces.ocio"}, notes="retake after notes",
        tags=["sq010"], tag_requirements=[
            {"tag": "gpu"}, {"tag": "slow", "negate": True}],
        software_requirements=[{"software": "maya", "min_version": "2024"}],
        parents=[parent.id], jobqueue="lighting", notified_users=["bob"])
    child = submit(session, bob, title="sq010 comp", parents=[job.id])
    response = ui.get(f"/jobs/{job.id}")
    assert response.status_code == 200
    page = text(response)
    assert "sq010 &lt;lighting&gt;" in page  # escaped
    for expected in (
            'id="param-jobtype">command <span class="muted">version 1',
            'id="param-frames">1 to 9 by 2', "5 tasks",
            'id="param-priority">7<',
            'id="param-weight">3<', ">lighting</a>", "5 per frame",
            'id="param-cpus">4<', "8192 MB", "<code>cwd</code>",
            "<code>/show/sq010/lighting</code>",
            "&#34;-s&#34;", "Data as JSON", "<code>OCIO</code>",
            "<code>/show/aces.ocio</code>", ">sq010</span>", ">gpu</span>",
            "not slow</span>", "maya ≥ 2024", "retake after notes",
            'id="param-owner"><a href="/?owner=alice">alice</a>',
            'id="param-notified">bob<', 'id="param-batch">2 frames',
            'id="job-submitted">submitted <time',
            'id="job-started">started <span class="muted">'):
        assert expected in page, expected
    assert f'<li id="parent-{parent.id}" data-state="queued">' \
           f'<a href="/jobs/{parent.id}">' in page
    assert f'<li id="child-{child.id}" data-state="queued">' \
           f'<a href="/jobs/{child.id}">' in page
    assert "Waiting for parent" in page
    assert f'<a href="/jobs/{parent.id}">{parent.id}</a>.' in page
    assert 'href="/ui/static/job.css"' in page
    assert 'src="/ui/static/job.js"' in page
    # Live refresh while the job may change; the log viewer and the edit
    # form stay outside the refreshed part.
    assert 'hx-trigger="every 3s [document.visibilityState === ' \
           "'visible']\"" in page
    head = page.index('id="job-head"')
    assert page.index('id="log-viewer"') > page.index('id="job-tasks"')
    assert head < page.index('id="job-frames"') < page.index('id="job-edit"')
    assert page.index('id="job-edit"') < page.index('id="job-tasks"')
    for label in ("Pause", "Cancel", "Delete", "Save"):
        assert f">{label}</button>" in page


def test_dependencies_tell_what_blocks_the_job(alice, session):
    ui, user = alice
    done = submit(session, user, title="done parent", end=1)
    failed = submit(session, user, title="failed parent", end=1)
    running = submit(session, user, title="running parent", end=1)
    job = submit(session, user, parents=[done.id, failed.id, running.id])
    for parent, state in ((done, "done"), (failed, "failed"),
                          (running, "running")):
        parent.state = state
    session.commit()
    page = text(ui.get(f"/jobs/{job.id}"))
    assert f'Blocked: parent <a href="/jobs/{failed.id}">{failed.id}</a> ' \
           f"failed." in page
    assert f'Waiting for parent <a href="/jobs/{running.id}">' \
           f"{running.id}</a>." in page
    assert f'id="parent-{done.id}" data-state="done"' in page
    page = text(ui.get(f"/jobs/{done.id}"))
    assert "Waiting for" not in page and "Blocked" not in page
    assert f'id="child-{job.id}" data-state="queued"' in page


def test_frame_grid_cells_match_task_states(alice, session):
    ui, user = alice
    job = submit(session, user, start=10, end=18, by=2)
    tasks = tasks_of(session, job.id)
    wanted = {10: ("done", 1), 12: ("failed", 3), 14: ("running", 2),
              16: ("assigned", 1), 18: ("queued", 0)}
    for task in tasks:
        task.state, task.attempt = wanted[task.frame]
    session.commit()
    page = text(ui.get(f"/jobs/{job.id}"))
    cells = CELL.findall(page)
    assert [(int(task_id), title) for _, task_id, title in cells] == [
        (tasks[0].id, "frame 10: done (attempt 1)"),
        (tasks[1].id, "frame 12: failed (attempt 3)"),
        (tasks[2].id, "frame 14: running (attempt 2)"),
        (tasks[3].id, "frame 16: assigned (attempt 1)"),
        (tasks[4].id, "frame 18: queued")]
    assert [css for css, _, _ in cells] == ["d", "f", "r", "a", "q"]
    counts = re.findall(r'<li class="count-(\w+)">.*?<b>(\d+)</b>', page)
    assert dict(counts) == {"queued": "1", "assigned": "1", "running": "1",
                            "done": "1", "failed": "1"}
    # The legend names every pattern in words.
    assert "hollow" in page and "crossed" in page


def test_task_table_is_paged_and_finds_a_task(alice, session):
    ui, user = alice
    job = submit(session, user, start=1, end=250)
    tasks = tasks_of(session, job.id)
    for task in tasks[:3]:
        task.state = "failed"
    session.commit()
    url = f"/jobs/{job.id}"

    def frames(response):
        assert response.status_code == 200, text(response)
        return [int(frame) for _, frame in ROW.findall(text(response))]

    first = ui.get(url)
    assert frames(first) == list(range(1, 101))
    assert "Page 1 of 3 · 250 in all" in text(first)
    assert len(CELL.findall(text(first))) == 250
    assert frames(ui.get(url + "?page=3")) == list(range(201, 251))
    assert frames(ui.get(url + "?page=2&per_page=50")) == list(
        range(51, 101))
    assert frames(ui.get(url + "?page=99")) == list(range(201, 251))
    assert frames(ui.get(url + "?state=failed")) == [1, 2, 3]
    # A task of a grid cell or a frame: the page holding it, marked.
    found = ui.get(f"{url}?task={tasks[149].id}&state=failed")
    assert frames(found) == list(range(101, 201))
    assert f'data-focus="{tasks[149].id}"' in text(found)
    assert f'<tr id="task-{tasks[149].id}"' in text(found)
    assert frames(ui.get(url + "?frame=230")) == list(range(201, 251))
    missing = ui.get(url + "?frame=999")
    assert frames(missing) == list(range(1, 101))
    assert f"job {job.id} has no frame 999" in text(missing)
    for query, field in (("page=abc", "'page'"), ("per_page=0", "'per_page'"),
                         ("state=lost", "'state'"), ("task=x", "'task'")):
        response = ui.get(f"{url}?{query}")
        assert response.status_code == 400, query
        assert field in message(response)


def test_live_part_is_a_fragment_and_stops_when_the_job_ends(alice,
                                                              session):
    ui, user = alice
    job = submit(session, user, end=3)
    response = ui.get(f"/jobs/{job.id}?page=1", htmx=True)
    assert response.status_code == 200
    fragment = text(response)
    assert "<html" not in fragment and "<body" not in fragment
    assert fragment.lstrip().startswith('<section id="job-head"')
    assert 'id="job-frames" class="job-frames" hx-swap-oob="true"' \
        in fragment
    assert 'id="job-tasks" class="job-tasks" hx-swap-oob="true"' in fragment
    assert "every 3s" in fragment
    # Neither the log viewer nor the edit form is in it.
    assert 'id="log-viewer"' not in fragment
    assert 'id="job-edit"' not in fragment
    # An unchanged grid is not sent again.
    digest = re.search(r"grid=(\w+)", fragment).group(1)
    same = text(ui.get(f"/jobs/{job.id}?grid={digest}&page=1", htmx=True))
    assert '<div id="frame-grid" hx-preserve="true"></div>' in same
    assert not CELL.findall(same)
    # htmx restoring its history gets the whole page.
    restored = ui.client.get(f"/jobs/{job.id}", headers={
        "HX-Request": "true", "HX-History-Restore-Request": "true"})
    assert "<html" in text(restored)
    # The full page never leaves the grid out.
    assert len(CELL.findall(text(ui.get(f"/jobs/{job.id}?grid={digest}")))) \
        == 3
    tasks = tasks_of(session, job.id)
    tasks[0].state = "done"
    session.commit()
    changed = text(ui.get(f"/jobs/{job.id}?grid={digest}", htmx=True))
    assert [css for css, _, _ in CELL.findall(changed)] == ["d", "q", "q"]
    # An ended job is not refreshed; a rerun refreshes it again.
    session.execute(sa.update(Task).where(Task.job_id == job.id)
                    .values(state="done"))
    session.execute(sa.update(Job).where(Job.id == job.id)
                    .values(state="done", started_at=utcnow(),
                            finished_at=utcnow()))
    session.commit()
    ended = text(ui.get(f"/jobs/{job.id}", htmx=True))
    assert "hx-trigger" not in ended.split('id="job-frames"')[0]
    assert "no longer refreshes" in ended
    assert 'id="job-finished">finished <time' in ended
    rerun = ui.post(f"/jobs/{job.id}/rerun", htmx=True)
    assert rerun.status_code == 200
    assert "every 3s" in text(rerun)


def test_unknown_job_and_action_are_404(alice, session):
    ui, user = alice
    job = submit(session, user, end=1)
    response = ui.get("/jobs/999")
    assert response.status_code == 404
    assert "no job with id 999" in text(response)
    response = ui.post(f"/jobs/{job.id}/explode")
    assert response.status_code == 404
    assert "no action 'explode'" in message(response)
    assert ui.get(f"/jobs/{job.id}/tasks/999/log").status_code == 404


# -- logs --------------------------------------------------------------------

def test_log_follows_a_running_task_by_offset(alice, agent, session):
    ui, user = alice
    job = submit(session, user, end=2)
    assignment, [task] = agent.take()
    url = f"/jobs/{job.id}/tasks/{task[0]}/log"
    # Assigned, nothing written yet.
    assert ui.get(url).get_json() == {
        "text": "", "offset": 0, "attempt": 1, "final": False, "size": 0,
        "attempts": 1, "state": "assigned", "task_state": "assigned"}
    agent.report(task, "running", progress=0.1)
    # The task table links the agent running it.
    assert f'<a href="/agents/{agent.id}">node07</a>' in text(
        ui.get(f"/jobs/{job.id}"))
    size = agent.log(assignment, 0, "frame 1: loading scene\n")
    body = ui.get(url).get_json()
    assert (body["text"], body["offset"], body["final"]) == (
        "frame 1: loading scene\n", size, False)
    assert body["state"] == "running"
    # Nothing new yet, then the rest from the offset the page has.
    assert ui.get(f"{url}?offset={size}").get_json()["text"] == ""
    size = agent.log(assignment, size, "rendering 50%\n")
    body = ui.get(f"{url}?offset={body['offset']}&attempt=1").get_json()
    assert (body["text"], body["offset"], body["final"]) == (
        "rendering 50%\n", size, False)
    # Done: final once everything is read, not before.
    size = agent.log(assignment, size, "done\n")
    agent.report(task, "done")
    partial = ui.get(f"{url}?offset=0").get_json()
    assert partial["final"] is True and partial["offset"] == size
    assert partial["text"] == ("frame 1: loading scene\nrendering 50%\n"
                               "done\n")
    assert ui.get(f"{url}?offset=5").get_json()["final"] is True
    # A task never started has no log yet.
    other = [item for item in tasks_of(session, job.id)
             if item.id != task[0]][0]
    assert ui.get(f"/jobs/{job.id}/tasks/{other.id}/log").get_json() == {
        "text": "", "offset": 0, "attempt": 0, "final": False, "size": 0,
        "attempts": 0, "state": "queued", "task_state": "queued"}
    # Bad arguments are JSON errors the viewer shows.
    for query, status, message in (
            ("?attempt=7", 404, "has no attempt 7"),
            ("?offset=-1", 400, "'offset'"),
            ("?attempt=x", 400, "'attempt'")):
        response = ui.get(url + query)
        assert response.status_code == status
        assert message in response.get_json()["error"]
    # A task of another job is not found.
    assert ui.get(f"/jobs/{job.id + 1}/tasks/{task[0]}/log") \
        .status_code == 404


def test_log_reads_in_chunks_without_splitting_characters(
        alice, agent, session, monkeypatch):
    ui, user = alice
    job = submit(session, user, end=1)
    assignment, [task] = agent.take()
    agent.report(task, "running")
    line = "é→🎬 frame\n"
    agent.log(assignment, 0, line * 3)
    monkeypatch.setattr(job_view, "LOG_CHUNK", 5)
    url = f"/jobs/{job.id}/tasks/{task[0]}/log"
    pieces, offset = [], 0
    for _ in range(100):
        body = ui.get(f"{url}?offset={offset}").get_json()
        assert "\ufffd" not in body["text"]
        assert body["final"] is False
        pieces.append(body["text"])
        if body["offset"] == body["size"]:
            break
        assert body["offset"] > offset
        offset = body["offset"]
    assert "".join(pieces) == line * 3


def test_log_of_each_attempt(alice, agent, session):
    ui, user = alice
    job = submit(session, user, end=1, requeue=2)
    first, [task] = agent.take()
    agent.report(task, "running")
    agent.log(first, 0, "attempt one\n")
    agent.report(task, "failed", error="exit 1")
    other = Agent(agent.api, "node08")
    second, [again] = other.take()
    assert again == (task[0], 2)
    agent_size = other.log(second, 0, "attempt two\n")
    url = f"/jobs/{job.id}/tasks/{task[0]}/log"
    latest = ui.get(url).get_json()
    assert (latest["attempt"], latest["attempts"], latest["text"]) == (
        2, 2, "attempt two\n")
    assert latest["offset"] == agent_size and latest["final"] is False
    earlier = ui.get(f"{url}?attempt=1").get_json()
    assert (earlier["text"], earlier["final"], earlier["state"]) == (
        "attempt one\n", True, "failed")
    page = text(ui.get(f"/jobs/{job.id}"))
    assert 'data-state="assigned" data-attempts="2"' in page
    assert f'data-log-url="/jobs/{job.id}/tasks/{task[0]}/log"' in page


# -- outputs -----------------------------------------------------------------

def test_thumbnails_serve_only_recorded_images(alice, agent, session,
                                               tmp_path):
    ui, user = alice
    job = submit(session, user, end=2)
    image = tmp_path / "renders" / "sq010.0001.png"
    image.parent.mkdir()
    image.write_bytes(png_bytes())
    fake = tmp_path / "renders" / "notes.png"
    fake.write_text("not an image")
    exr = tmp_path / "renders" / "sq010.0001.exr"
    exr.write_bytes(b"v/1\x01")
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes())
    outputs = [str(image), str(exr), str(fake),
               str(tmp_path / "renders" / "missing.png"),
               str(tmp_path / "renders" / ".." / "secret.png"),
               "renders/relative.png"]
    _, [task] = agent.take()
    agent.report(task, "done", outputs=outputs)
    base = f"/jobs/{job.id}/tasks/{task[0]}/outputs/"
    served = ui.get(base + "0")
    assert served.status_code == 200
    assert served.mimetype == "image/png"
    assert served.data == png_bytes()
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    served.close()
    refused = {
        "1": "is not an image", "2": "is not a image/png file",
        "3": "not a file on the master", "4": "not a file on the master",
        "5": "not a file on the master", "6": "has no output 6",
        "-1": None, "..%2F..%2Fsecret.png": None, "0%2F..": None}
    for index, why in refused.items():
        response = ui.get(base + index)
        assert response.status_code == 404, index
        if why:
            assert why in message(response), index
    # Only the task's own outputs: not through another task's URL.
    other = [item for item in tasks_of(session, job.id)
             if item.id != task[0]][0]
    assert ui.get(f"/jobs/{job.id}/tasks/{other.id}/outputs/0") \
        .status_code == 404
    # The table shows a lazy thumbnail and lists every file.
    page = text(ui.get(f"/jobs/{job.id}"))
    assert f'<img class="thumb" src="{base}0" loading="lazy" width="64" ' \
           f'height="36"' in page
    assert "6 files" in page and str(exr) in page
    # A rerun: the outputs are no longer the current attempt's.
    assert ui.post(f"/jobs/{job.id}/rerun").status_code == 302
    assert ui.get(base + "0").status_code == 404


def test_thumbnail_through_a_path_map(alice, agent, session, tmp_path):
    ui, user = alice
    job = submit(session, user, end=1)
    image = tmp_path / "show" / "a.png"
    image.parent.mkdir()
    image.write_bytes(png_bytes())
    session.add(PathMap(linux=str(tmp_path / "show"), windows="P:\\show",
                        mac=str(tmp_path / "show")))
    session.commit()
    _, [task] = agent.take()
    agent.report(task, "done", outputs=["P:\\show\\a.png"])
    if helpers.os.name == "nt":  # pragma: no cover - a Windows master
        pytest.skip("the master is on Windows")
    response = ui.get(f"/jobs/{job.id}/tasks/{task[0]}/outputs/0")
    assert response.status_code == 200
    assert response.data == png_bytes()
    response.close()


# -- actions and edits -------------------------------------------------------

def test_each_action_persists(alice, session):
    ui, user = alice
    job = submit(session, user, end=3)
    tasks = tasks_of(session, job.id)
    response = ui.post(f"/jobs/{job.id}/pause")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/jobs/{job.id}"
    assert fresh(session, Job, job.id).state == "paused"
    page = text(ui.get(f"/jobs/{job.id}"))
    assert f"Job {job.id} paused." in page
    assert ">Resume</button>" in page and ">Pause</button>" not in page
    # htmx: the live part comes back with a notice.
    response = ui.post(f"/jobs/{job.id}/resume?page=1", htmx=True)
    assert response.status_code == 200
    assert f"Job {job.id} resumed." in response.headers["HX-Trigger"]
    assert text(response).lstrip().startswith('<section id="job-head"')
    assert fresh(session, Job, job.id).state == "queued"
    tasks = tasks_of(session, job.id)
    tasks[0].state, tasks[0].last_error = "failed", "exit 1"
    tasks[1].state = "done"
    session.commit()
    # Back to the page of the table it was on, and nowhere else.
    response = ui.post(f"/jobs/{job.id}/rerun-failed?page=1&state=failed"
                       f"&job_id=7&_external=1&_scheme=javascript")
    assert response.status_code == 302
    assert response.headers["Location"] == \
        f"/jobs/{job.id}?page=1&state=failed"
    assert [task.state for task in tasks_of(session, job.id)] == [
        "queued", "done", "queued"]
    assert ui.post(f"/jobs/{job.id}/rerun").status_code == 302
    assert [task.state for task in tasks_of(session, job.id)] == [
        "queued"] * 3
    assert ui.post(f"/jobs/{job.id}/cancel").status_code == 302
    assert [task.state for task in tasks_of(session, job.id)] == [
        "failed"] * 3
    assert fresh(session, Job, job.id).state == "failed"
    # A refused change says why (409) and changes nothing.
    response = ui.post(f"/jobs/{job.id}/pause")
    assert response.status_code == 409
    assert "cannot be paused" in text(response)
    response = ui.post(f"/jobs/{job.id}/delete")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert fresh(session, Job, job.id) is None
    assert f"Job {job.id} deleted." in text(ui.get("/"))
    other = submit(session, user, end=1)
    response = ui.post(f"/jobs/{other.id}/delete", htmx=True)
    assert response.headers["HX-Redirect"] == "/"
    assert fresh(session, Job, other.id) is None


def test_other_users_job_is_403_and_unchanged(alice, ui_user, session):
    ui, user = alice
    job = submit(session, user, end=2, priority=1, notes="mine")
    bob = ui_user("bob")[0]
    page = text(bob.get(f"/jobs/{job.id}"))
    assert "Only alice or an admin may change this job." in page
    for label in ("Pause", "Cancel", "Delete", "Save"):
        assert f">{label}</button>" not in page
    for action in ("pause", "rerun", "rerun-failed", "cancel", "delete"):
        for htmx in (False, True):
            response = bob.post(f"/jobs/{job.id}/{action}", htmx=htmx)
            assert response.status_code == 403, action
            assert "belongs to another user" in text(response)
    response = bob.post(f"/jobs/{job.id}/edit",
                        {"priority": "99", "weight": "5", "notes": "bob's"})
    assert response.status_code == 403
    row = fresh(session, Job, job.id)
    assert (row.state, row.priority, row.weight, row.notes) == (
        "queued", 1, 1, "mine")
    assert [task.state for task in tasks_of(session, job.id)] == [
        "queued"] * 2


def test_admin_changes_any_job(alice, ui_admin, session):
    ui, user = alice
    job = submit(session, user, end=2)
    page = text(ui_admin.get(f"/jobs/{job.id}"))
    assert ">Pause</button>" in page and 'id="job-edit"' in page
    assert ui_admin.post(f"/jobs/{job.id}/pause").status_code == 302
    assert ui_admin.post(f"/jobs/{job.id}/edit", {
        "priority": "50", "weight": "2", "notes": ""}).status_code == 302
    row = fresh(session, Job, job.id)
    assert (row.state, row.priority, row.weight) == ("paused", 50, 2)


def test_missing_csrf_token_is_400_and_changes_nothing(alice, session):
    ui, user = alice
    job = submit(session, user, end=1)
    for action in ("pause", "delete"):
        response = ui.post(f"/jobs/{job.id}/{action}", csrf=False)
        assert response.status_code == 400
        assert "did not come from this site" in text(response)
    response = ui.post(f"/jobs/{job.id}/edit", {"priority": "9"},
                       csrf=False)
    assert response.status_code == 400
    response = ui.post(f"/jobs/{job.id}/cancel", csrf=False, htmx=True)
    assert response.status_code == 400
    row = fresh(session, Job, job.id)
    assert (row.state, row.priority) == ("queued", 0)


def test_edit_saves_or_says_what_is_wrong(alice, session):
    ui, user = alice
    job = submit(session, user, end=1, notes="first")
    response = ui.post(f"/jobs/{job.id}/edit", {
        "priority": " 25 ", "weight": "4", "notes": "hero shot\nsecond"})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/jobs/{job.id}"
    row = fresh(session, Job, job.id)
    assert (row.priority, row.weight, row.notes) == (25, 4,
                                                     "hero shot\nsecond")
    assert f"Job {job.id} saved." in text(ui.get(f"/jobs/{job.id}"))
    for form, expected in (
            ({"priority": "high", "weight": "4", "notes": "typed"},
             "field 'priority': Input should be a valid integer"),
            ({"priority": "1", "weight": "-2", "notes": "typed"},
             "field 'weight': Input should be greater than or equal to 0"),
            ({"priority": "99999999999", "weight": "1", "notes": "typed"},
             "field 'priority': Input should be less than or equal to"),
            ({"priority": "1", "weight": "1", "notes": "a\x00b"},
             "must not contain NUL characters")):
        response = ui.post(f"/jobs/{job.id}/edit", form)
        assert response.status_code == 400, form
        page = message(response)
        assert expected in page, page
        # What was typed is kept.
        assert f'name="priority" type="number" step="1" required ' \
               f'value="{form["priority"]}"' in page
        assert f'value="{form["weight"]}"' in page
        assert f'>{form["notes"]}</textarea>' in text(response)
    row = fresh(session, Job, job.id)
    assert (row.priority, row.weight, row.notes) == (25, 4,
                                                     "hero shot\nsecond")


def test_every_view_needs_a_login(alice, app, session):
    _, user = alice
    job = submit(session, user, end=1)
    task = tasks_of(session, job.id)[0]
    client = app.test_client()
    for path in (f"/jobs/{job.id}", f"/jobs/{job.id}/tasks/{task.id}/log",
                 f"/jobs/{job.id}/tasks/{task.id}/outputs/0"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login")
        response = client.get(path, headers={"HX-Request": "true"})
        assert response.status_code == 401
        assert response.headers["HX-Redirect"].startswith("/login")
    app.config["WTF_CSRF_ENABLED"] = False
    try:
        for path in (f"/jobs/{job.id}/pause", f"/jobs/{job.id}/edit"):
            response = client.post(path, data={"priority": "1"})
            assert response.status_code == 302
            assert response.headers["Location"].startswith("/login")
    finally:
        app.config["WTF_CSRF_ENABLED"] = True
    row = fresh(session, Job, job.id)
    assert (row.state, row.priority) == ("queued", 0)


# -- cost --------------------------------------------------------------------

def count_statements(ui, path, **kwargs):
    """Return ``(response, number of SQL statements)`` of one request."""
    seen = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    db.session.rollback()
    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        response = ui.get(path, **kwargs)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    return response, len(seen)


def test_statements_do_not_grow_with_tasks_or_dependencies(
        alice, agent, session, tmp_path):
    ui, user = alice
    parent = submit(session, user, end=1)
    parent.state = "done"
    session.commit()
    job = submit(session, user, end=3, parents=[parent.id], tags=["a"],
                 priority=10)
    _, [task] = agent.take()
    assert task[0] in [item.id for item in tasks_of(session, job.id)]
    agent.report(task, "done", outputs=[str(tmp_path / "a.png")])
    small, count = count_statements(ui, f"/jobs/{job.id}")
    assert small.status_code == 200
    assert count <= 14
    parents = [submit(session, user, end=1).id for _ in range(4)]
    big = submit(session, user, end=300, parents=parents,
                 tags=["a", "b", "c"])
    submit(session, user, end=1, parents=[big.id])
    for frame_task in tasks_of(session, big.id)[:50]:
        frame_task.state = "done"
        frame_task.attempt = 1
        session.add(TaskAttempt(task_id=frame_task.id, attempt=1,
                                assignment_id=str(uuid.uuid4()),
                                state="done", outputs=["/r/x.png"]))
    session.commit()
    large, more = count_statements(ui, f"/jobs/{big.id}")
    assert large.status_code == 200
    assert more == count
    _, fragment = count_statements(ui, f"/jobs/{big.id}", htmx=True)
    assert fragment <= count


def test_the_page_reads_only_indexed_rows(alice, agent, session):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    ui, user = alice
    parent = submit(session, user, end=1, priority=5)
    job = submit(session, user, end=20, priority=9)
    submit(session, user, end=1, parents=[job.id])
    submit(session, user, end=50)
    assignment, [task] = agent.take()
    agent.report(task, "running")
    agent.log(assignment, 0, "line\n")
    agent.report(task, "done", outputs=["/r/a.png"])
    session.execute(sa.insert(Job.parents.property.secondary).values(
        parent_id=parent.id, child_id=job.id))
    session.commit()
    seen = []

    def record(conn, cursor, statement, parameters, *args):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        for path in (f"/jobs/{job.id}?state=done",
                     f"/jobs/{job.id}?task={task[0]}",
                     f"/jobs/{job.id}/tasks/{task[0]}/log",
                     f"/jobs/{job.id}/tasks/{task[0]}/outputs/0"):
            ui.get(path).close()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    db.session.rollback()
    scans = []
    with db.engine.connect() as connection:
        for statement, parameters in seen:
            for row in connection.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, parameters):
                line = row[-1]
                if re.match(r"SCAN (jobs|tasks|task_attempts)\b", line):
                    scans.append((line, statement))
    assert not scans, scans


def test_a_10000_frame_job_renders_fast(alice, session):
    ui, user = alice
    job = submit(session, user, start=1, end=10000)
    ui.get(f"/jobs/{job.id}")  # warm up the templates
    started = time.perf_counter()
    response, statements = count_statements(ui, f"/jobs/{job.id}?page=37")
    took = time.perf_counter() - started
    page = text(response)
    assert response.status_code == 200
    assert len(CELL.findall(page)) == 10000
    assert [int(frame) for _, frame in ROW.findall(page)] == list(
        range(3601, 3701))
    assert 'class="frame-grid tiny"' in page
    assert statements <= 14
    assert took < 3, took
    started = time.perf_counter()
    digest = re.search(r"grid=(\w+)", page).group(1)
    fragment = text(ui.get(f"/jobs/{job.id}?grid={digest}&page=37",
                           htmx=True))
    assert time.perf_counter() - started < 3
    assert len(fragment) < 100_000  # the grid was not sent again


# -- pure helpers ------------------------------------------------------------

def test_complete_utf8_keeps_partial_characters_for_later():
    data = "a→".encode()  # b"a\xe2\x86\x92"
    assert helpers.complete_utf8(data) == 4
    assert helpers.complete_utf8(data[:3]) == 1
    assert helpers.complete_utf8(data[:2]) == 1
    assert helpers.complete_utf8("🎬".encode()[:3]) == 0
    assert helpers.complete_utf8(b"") == 0
    assert helpers.complete_utf8(b"\x80\x80\x80\x80\x80") == 5


def test_outputs_images_and_paths():
    assert helpers.image_type("/r/a.PNG") == "image/png"
    assert helpers.image_type("P:\\r\\a.jpeg") == "image/jpeg"
    assert helpers.image_type("/r/a.exr") is None
    assert helpers.image_type("/r/png") is None
    assert helpers.image_type("/r.png/a") is None
    assert helpers.looks_like("image/png", png_bytes()[:16])
    assert not helpers.looks_like("image/png", b"GIF89a")
    assert helpers.looks_like("image/webp", b"RIFF\0\0\0\0WEBPVP8 ")
    assert helpers.path_problem("/r/a.png") is None
    assert helpers.path_problem("r/a.png")
    assert helpers.path_problem("/r/../etc/a.png")
    assert helpers.path_problem("/r/a\n.png")
    assert helpers.thumbnails(["/a.exr", "/a.png", "/b.jpg"]) == [
        (1, "/a.png"), (2, "/b.jpg")]


def test_readable_data_and_grid_titles():
    rows = helpers.readable({"scene": "/s.ma", "argv": ["a", "b"],
                             "nested": {"x": list(range(40))}})
    assert rows[0] == ("scene", "/s.ma", False)
    assert rows[1] == ("argv", '["a", "b"]', False)
    assert rows[2][2] is True and rows[2][1].startswith("{\n")
    cell = helpers.Cell(1, 12, None, "failed", 3)
    assert helpers.cell_title(cell) == "frame 12: failed (attempt 3)"
    assert helpers.cell_title(cell._replace(tile=2, attempt=0)) == \
        "frame 12 tile 2: failed"
    html = str(helpers.grid_html([cell]))
    assert html == ('<i class="f" data-t="1" '
                    'title="frame 12: failed (attempt 3)"></i>')
