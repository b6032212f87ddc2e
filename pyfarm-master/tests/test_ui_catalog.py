"""The catalog pages of the web UI: queues, tags, software, path maps."""

import html
import re
import uuid

import pytest
from sqlalchemy import func, select

from pyfarm.core.enums import Role, WorkState
from pyfarm.master.db import utcnow
from pyfarm.master.models import (
    Agent,
    JobQueue,
    PathMap,
    Software,
    SoftwareVersion,
    Tag,
)
from pyfarm.master.services import catalog
from pyfarm.master.services import pathmaps as pathmap_service
from pyfarm.master.services.jobs import JobSpec, submit_job
from pyfarm.master.validation import parse

PAGES = ("/queues/", "/tags/", "/software/", "/pathmaps/")


def text(response):
    """The response body with HTML entities decoded."""
    return html.unescape(response.get_data(as_text=True))


def page(response, status=200):
    """Assert ``status`` and return the decoded body."""
    assert response.status_code == status, response.get_data(as_text=True)
    return text(response)


def row(body, row_id):
    """Return the HTML of the table row ``<tr id=row_id>``."""
    match = re.search(rf'<tr id="{row_id}".*?</tr>', body, re.S)
    assert match, f"no row {row_id}"
    return match.group(0)


def committed(session):
    """Drop what the session holds so reads show committed rows only."""
    session.rollback()
    return session


def count(session, model):
    return committed(session).execute(
        select(func.count()).select_from(model)).scalar_one()


def queue(session, name, **fields):
    """Create a job queue and return its id."""
    row_ = catalog.create_jobqueue(session, name, utcnow(), **fields)
    session.commit()
    return row_.id


def queue_row(session, name):
    return committed(session).execute(
        select(JobQueue).where(JobQueue.name == name)).scalar()


def submit(session, user, **fields):
    """Submit a job through the service; return it."""
    spec = {"title": "sq010", "jobtype": "command", "start": 1, "end": 2,
            "data": {"argv": ["render", "{frame}"]}, **fields}
    job = submit_job(session, user, parse(JobSpec, spec), utcnow())
    session.commit()
    return job


def agent(session, hostname, tags=(), versions=()):
    """Create an agent with ``tags`` and software ``versions`` rows."""
    row_ = Agent(id=str(uuid.uuid4()), hostname=hostname, os="linux",
                 cpus=8, ram=16384, tags=list(tags),
                 software=list(versions))
    session.add(row_)
    session.commit()
    return row_


def catalog_rows(session):
    """One of everything, for the pages to show."""
    queue(session, "film", priority=5, weight=2, maximum_agents=10)
    catalog.create_tag(session, "gpu")
    catalog.create_software(session, "blender", ["4.2"])
    pathmap_service.create_pathmap(session, utcnow(), linux="/mnt/show",
                                   windows="P:\\show", tag="gpu")
    session.commit()


# -- who sees what --------------------------------------------------------


def test_pages_are_read_only_for_users(ui_alice, session):
    catalog_rows(session)
    body = page(ui_alice.get("/queues/"))
    film = row(body, f"queue-{queue_row(session, 'film').id}")
    assert "film" in film and "10" in film
    assert "Create queue" not in body and "Edit" not in body
    assert "/delete" not in body
    assert "hx-get" in body  # the rows refresh themselves
    body = page(ui_alice.get("/software/"))
    assert "blender" in body and "4.2" in body
    assert "Add software" not in body and "/versions/" not in body
    body = page(ui_alice.get("/pathmaps/"))
    assert "/mnt/show" in body and "P:\\show" in body and "gpu" in body
    assert "Create path map" not in body and "/delete" not in body
    # Anyone may add a tag, as in the API.
    body = page(ui_alice.get("/tags/"))
    assert "gpu" in body and "Create tag" in body
    # The navigation links the pages; the users page is for admins.
    for path in PAGES:
        assert f'href="{path}"' in body
    assert 'href="/users/"' not in body


def test_pages_show_admins_the_forms(ui_admin, session):
    catalog_rows(session)
    film = queue_row(session, "film").id
    body = page(ui_admin.get("/queues/"))
    assert "Create queue" in body and f"/queues/{film}/edit" in body
    assert f"/queues/{film}/delete" in body
    assert 'name="csrf_token"' in body
    body = page(ui_admin.get(f"/queues/{film}/edit"))
    assert 'value="film"' in body and "Save" in body
    assert "Add software" in page(ui_admin.get("/software/"))
    body = page(ui_admin.get("/pathmaps/"))
    pathmap_id = committed(session).execute(select(PathMap.id)).scalar()
    assert "Create path map" in body and f"/pathmaps/{pathmap_id}/edit" in body
    body = page(ui_admin.get(f"/pathmaps/{pathmap_id}/edit"))
    assert 'value="/mnt/show"' in body and 'value="gpu"' in body


def test_pages_need_a_login(app):
    client = app.test_client()
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]
    response = client.get("/queues/", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert "/login" in response.headers["HX-Redirect"]


def test_bad_query_arguments_are_400(ui_alice):
    for path in PAGES:
        body = page(ui_alice.get(path + "?page=abc"), 400)
        assert "'page' must be a whole number" in body
    assert "'per_page' must be at least 1" in page(
        ui_alice.get("/tags/?per_page=0"), 400)


# -- queues ----------------------------------------------------------------


def test_admin_creates_edits_and_deletes_a_queue(ui_admin, session):
    queue(session, "film")
    response = ui_admin.post("/queues/", {
        "name": " lighting ", "parent": "film", "priority": "7",
        "weight": "3", "minimum_agents": "2", "maximum_agents": ""})
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/queues/")
    created = queue_row(session, "lighting")
    assert (created.parent.name, created.priority, created.weight,
            created.minimum_agents, created.maximum_agents) == (
        "film", 7, 3, 2, None)
    assert "Queue 'lighting' created." in page(ui_admin.get("/queues/"))

    response = ui_admin.post(f"/queues/{created.id}", {
        "name": "lighting2", "parent": "", "priority": "-1",
        "weight": "0", "minimum_agents": "", "maximum_agents": "4"})
    assert response.status_code == 302
    changed = queue_row(session, "lighting2")
    assert changed.id == created.id
    assert (changed.parent, changed.priority, changed.weight,
            changed.minimum_agents, changed.maximum_agents) == (
        None, -1, 0, None, 4)

    response = ui_admin.post(f"/queues/{created.id}/delete")
    assert response.status_code == 302
    assert queue_row(session, "lighting2") is None
    assert "Queue 'lighting2' deleted." in page(ui_admin.get("/queues/"))


def test_queue_rows_count_queued_and_running_jobs(ui_user, session):
    ui, user, _ = ui_user("alice")
    film = queue(session, "film")
    queue(session, "empty")
    jobs = [submit(session, user, jobqueue="film") for _ in range(3)]
    jobs[0].state = WorkState.RUNNING
    jobs[1].state = WorkState.DONE
    session.commit()
    film_row = row(page(ui.get("/queues/")), f"queue-{film}")
    assert re.search(r'data-count="queued">1<', film_row)
    assert re.search(r'data-count="running">1<', film_row)
    # htmx polls only the rows.
    fragment = page(ui.get("/queues/", htmx=True))
    assert fragment.lstrip().startswith("<tbody")
    assert "<html" not in fragment and 'id="queue-rows"' in fragment
    assert re.search(r'data-count="queued">1<', row(fragment,
                                                    f"queue-{film}"))


@pytest.mark.parametrize("fields, status, message", [
    ({"name": "film"}, 409, "a job queue named 'film' already exists"),
    ({"name": ""}, 400, "field 'name' must have 1 to 128 characters"),
    ({"name": "a/b"}, 400, "may not contain '/'"),
    ({"priority": "high"}, 400, "Priority must be a whole number, got "
                                "'high'"),
    ({"weight": "-1"}, 400, "field 'weight'"),
    ({"minimum_agents": "5", "maximum_agents": "2"}, 400,
     "'minimum_agents' (5) must not be more than 'maximum_agents' (2)"),
    ({"maximum_agents": "0"}, 400, "field 'maximum_agents'"),
    ({"parent": "nowhere"}, 404, "no job queue named 'nowhere'"),
    ({"name": "x\x00y"}, 400, "may not contain control characters"),
])
def test_bad_queue_form_is_refused_with_what_was_typed(ui_admin, session,
                                                       fields, status,
                                                       message):
    queue(session, "film")
    form = {"name": "comp", "parent": "film", "priority": "3",
            "weight": "2", "minimum_agents": "", "maximum_agents": "",
            **fields}
    body = page(ui_admin.post("/queues/", form), status)
    assert message in body
    assert 'role="alert"' in body
    assert f'value="{form["priority"]}"' in body  # what was typed stays
    assert count(session, JobQueue) == 1


def test_bad_queue_edit_changes_nothing(ui_admin, session):
    film = queue(session, "film")
    shots = queue(session, "shots", parent="film", priority=2)
    queue(session, "other")
    form = {"name": "shots", "parent": "film", "priority": "2",
            "weight": "1", "minimum_agents": "", "maximum_agents": ""}
    cases = [
        (film, {**form, "name": "film", "parent": "shots"}, 400,
         "cannot be its own ancestor"),
        (shots, {**form, "name": "other"}, 409,
         "a job queue named 'other' already exists"),
        (shots, {**form, "priority": "9", "minimum_agents": "x"}, 400,
         "Minimum agents must be a whole number"),
    ]
    for queue_id, fields, status, message in cases:
        body = page(ui_admin.post(f"/queues/{queue_id}", fields), status)
        assert message in body
        assert f'value="{fields["name"]}"' in body
    changed = queue_row(session, "shots")
    assert (changed.priority, changed.parent.name) == (2, "film")
    assert queue_row(session, "film").parent is None
    assert page(ui_admin.get("/queues/999/edit"), 404)


def test_queue_in_use_is_not_deleted(ui_user, session):
    ui, _, _ = ui_user("root", Role.ADMIN)
    _, user, _ = ui_user("alice")
    film = queue(session, "film")
    queue(session, "shots", parent="film")
    body = page(ui.post(f"/queues/{film}/delete"), 409)
    assert "has 1 sub-queue(s)" in body
    busy = queue(session, "busy")
    submit(session, user, jobqueue="busy")
    body = page(ui.post(f"/queues/{busy}/delete"), 409)
    assert "still holds 1 job(s)" in body
    assert count(session, JobQueue) == 3


def test_users_cannot_change_queues(ui_alice, session):
    film = queue(session, "film", priority=1)
    form = {"name": "film2", "priority": "5", "weight": "1"}
    for path in ("/queues/", f"/queues/{film}", f"/queues/{film}/delete"):
        body = page(ui_alice.post(path, form), 403)
        assert "only an admin may do this" in body
    assert ui_alice.get(f"/queues/{film}/edit").status_code == 403
    assert [(q.name, q.priority) for q in committed(session).execute(
        select(JobQueue)).scalars()] == [("film", 1)]


def test_posts_without_csrf_token_change_nothing(ui_admin, session):
    film = queue(session, "film")
    catalog.create_software(session, "blender")
    pathmap = pathmap_service.create_pathmap(
        session, utcnow(), linux="/a", mac="/b")
    session.commit()
    blender, pathmap_id = (committed(session).execute(
        select(Software.id)).scalar(), pathmap.id)
    posts = [
        ("/queues/", {"name": "new", "priority": "0", "weight": "1"}),
        (f"/queues/{film}", {"name": "renamed", "priority": "0",
                             "weight": "1"}),
        (f"/queues/{film}/delete", {}),
        ("/tags/", {"name": "gpu"}),
        ("/software/", {"name": "maya"}),
        (f"/software/{blender}/versions/", {"version": "4.2"}),
        ("/pathmaps/", {"linux": "/c", "mac": "/d"}),
        (f"/pathmaps/{pathmap_id}", {"linux": "/e", "mac": "/f"}),
        (f"/pathmaps/{pathmap_id}/delete", {}),
    ]
    for path, form in posts:
        body = page(ui_admin.post(path, form, csrf=False), 400)
        assert "Reload the page and try again" in body
    assert [q.name for q in committed(session).execute(
        select(JobQueue)).scalars()] == ["film"]
    assert count(session, Tag) == 0
    assert count(session, Software) == 1
    assert count(session, SoftwareVersion) == 0
    assert [(p.linux, p.mac) for p in committed(session).execute(
        select(PathMap)).scalars()] == [("/a", "/b")]


# -- tags ------------------------------------------------------------------


def test_users_create_tags(ui_alice, session):
    response = ui_alice.post("/tags/", {"name": " gpu "})
    assert response.status_code == 302
    assert committed(session).execute(select(Tag.name)).scalars().all() \
        == ["gpu"]
    body = page(ui_alice.get("/tags/"))
    assert "Tag 'gpu' created." in body
    body = page(ui_alice.post("/tags/", {"name": "gpu"}), 409)
    assert "a tag named 'gpu' already exists" in body
    assert 'value="gpu"' in body
    body = page(ui_alice.post("/tags/", {"name": "a/b"}), 400)
    assert "may not contain '/'" in body and 'value="a/b"' in body
    body = page(ui_alice.post("/tags/", {"name": "  "}), 400)
    assert "must have 1 to 64 characters" in body
    assert count(session, Tag) == 1


def test_tags_count_agents_and_jobs(ui_user, session):
    ui, user, _ = ui_user("alice")
    submit(session, user, tags=["gpu", "fx"],
           tag_requirements=[{"tag": "gpu"}])
    submit(session, user, tags=["gpu"])
    gpu, fx = (catalog.get_tag(session, name) for name in ("gpu", "fx"))
    agent(session, "node01", tags=[gpu])
    agent(session, "node02", tags=[gpu, fx])
    agent(session, "node03", tags=[fx])
    catalog.create_tag(session, "unused")
    session.commit()
    body = page(ui.get("/tags/"))
    counts = {}
    for name in ("gpu", "fx", "unused"):
        tag_row = row(body, f"tag-{catalog.get_tag(session, name).id}")
        counts[name] = tuple(
            int(re.search(rf'data-count="{what}">(\d+)<', tag_row).group(1))
            for what in ("agents", "jobs", "required"))
    assert counts == {"gpu": (2, 2, 1), "fx": (2, 1, 0),
                      "unused": (0, 0, 0)}


# -- software --------------------------------------------------------------


def test_software_versions_sorted_with_agent_counts(ui_admin, session):
    response = ui_admin.post("/software/", {"name": "blender",
                                            "versions": "10.0, 9.5,2.79,"})
    assert response.status_code == 302
    program = catalog.get_software(committed(session), "blender")
    response = ui_admin.post(f"/software/{program.id}/versions/",
                             {"version": "10.1"})
    assert response.status_code == 302
    versions = {v.version: v for v in catalog.get_software(
        committed(session), "blender").versions}
    agent(session, "node01", versions=[versions["9.5"], versions["10.0"]])
    agent(session, "node02", versions=[versions["10.0"]])
    body = page(ui_admin.get("/software/"))
    assert "blender 10.1 added." in body
    software_row = row(body, f"software-{program.id}")
    assert re.findall(r'data-version="([^"]+)"', software_row) == [
        "2.79", "9.5", "10.0", "10.1"]
    assert dict(re.findall(r'data-version="([^"]+)" data-agents="(\d+)"',
                           software_row)) == {
        "2.79": "0", "9.5": "1", "10.0": "2", "10.1": "0"}
    assert "2 agents" in software_row and "1 agent<" in software_row


def test_bad_software_forms(ui_user, session):
    ui, _, _ = ui_user("root", Role.ADMIN)
    alice, _, _ = ui_user("alice")
    catalog.create_software(session, "blender", ["4.2"])
    session.commit()
    blender = committed(session).execute(select(Software.id)).scalar()
    body = page(ui.post("/software/", {"name": "blender"}), 409)
    assert "software named 'blender' already exists" in body
    body = page(ui.post("/software/", {"name": "maya",
                                       "versions": "2024, ..."}), 400)
    assert "field 'versions.1' must contain a number or a letter" in body
    assert 'value="2024, ..."' in body
    body = page(ui.post(f"/software/{blender}/versions/",
                        {"version": "4.2"}), 409)
    assert "blender 4.2 is already known" in body
    body = page(ui.post(f"/software/{blender}/versions/",
                        {"version": "a/b"}), 400)
    assert "may not contain '/'" in body and 'value="a/b"' in body
    assert page(ui.post("/software/999/versions/", {"version": "1"}), 404)
    for path, form in (("/software/", {"name": "maya"}),
                       (f"/software/{blender}/versions/",
                        {"version": "5.0"})):
        assert alice.post(path, form).status_code == 403
    assert count(session, Software) == 1
    assert committed(session).execute(
        select(SoftwareVersion.version)).scalars().all() == ["4.2"]


# -- path maps -------------------------------------------------------------


def pathmaps(session):
    return [(p.linux, p.windows, p.mac, p.tag.name if p.tag else None)
            for p in committed(session).execute(
                select(PathMap).order_by(PathMap.id)).scalars()]


def test_admin_creates_edits_and_deletes_path_maps(ui_admin, session):
    response = ui_admin.post("/pathmaps/", {
        "linux": " /mnt/show ", "windows": "P:\\show", "mac": "",
        "tag": "gpu"})
    assert response.status_code == 302
    assert pathmaps(session) == [("/mnt/show", "P:\\show", None, "gpu")]
    pathmap_id = committed(session).execute(select(PathMap.id)).scalar()
    assert f"Path map {pathmap_id} created." in page(
        ui_admin.get("/pathmaps/"))
    response = ui_admin.post(f"/pathmaps/{pathmap_id}", {
        "linux": "/mnt/show", "windows": "", "mac": "/Volumes/show",
        "tag": ""})
    assert response.status_code == 302
    assert pathmaps(session) == [("/mnt/show", None, "/Volumes/show", None)]
    body = page(ui_admin.get("/pathmaps/"))
    assert "every agent" in row(body, f"pathmap-{pathmap_id}")
    response = ui_admin.post(f"/pathmaps/{pathmap_id}/delete")
    assert response.status_code == 302
    assert pathmaps(session) == []
    assert page(ui_admin.post(f"/pathmaps/{pathmap_id}/delete"), 404)


def test_bad_path_maps_show_the_services_message(ui_user, session):
    ui, _, _ = ui_user("root", Role.ADMIN)
    alice, _, _ = ui_user("alice")
    pathmap_service.create_pathmap(session, utcnow(), linux="/a", mac="/b")
    session.commit()
    pathmap_id = committed(session).execute(select(PathMap.id)).scalar()
    body = page(ui.post("/pathmaps/", {"linux": "/mnt/show",
                                       "windows": "/mnt/show"}), 400)
    assert "field 'windows' must be an absolute Windows folder" in body
    assert 'value="/mnt/show"' in body
    body = page(ui.post("/pathmaps/", {"linux": "/mnt/show"}), 400)
    assert "needs the folder of at least two" in body
    body = page(ui.post("/pathmaps/", {"linux": "mnt", "mac": "/m",
                                       "tag": "a/b"}), 400)
    assert "field 'linux' must be an absolute linux folder" in body
    body = page(ui.post(f"/pathmaps/{pathmap_id}", {
        "linux": "/a", "windows": "", "mac": ""}), 400)
    assert "needs the folder of at least two" in body
    assert 'value="/a"' in body and "Save" in body
    for path in ("/pathmaps/", f"/pathmaps/{pathmap_id}",
                 f"/pathmaps/{pathmap_id}/delete"):
        body = page(alice.post(path, {"linux": "/x", "mac": "/y"}), 403)
    assert alice.get(f"/pathmaps/{pathmap_id}/edit").status_code == 403
    assert pathmaps(session) == [("/a", None, "/b", None)]
    assert count(session, Tag) == 0
