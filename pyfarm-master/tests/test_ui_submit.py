"""The submit pages: job types, the form built from a job type's schema,
submitting through the API's validation, copies."""

import html
import re

import pytest
from sqlalchemy import func, select

from pyfarm.master.db import utcnow
from pyfarm.master.models import Job, Task
from pyfarm.master.services.jobs import JobSpec, submit_job
from pyfarm.master.validation import parse

RENDER = {
    "name": "render",
    "description": "Renders a scene with the studio renderer.",
    "software": "renderer",
    "parameters": {
        "type": "object",
        "properties": {
            "scene": {"type": "string", "minLength": 1,
                      "description": "The scene file to render."},
            "samples": {"type": "integer", "minimum": 1, "maximum": 4096,
                        "default": 64},
            "gamma": {"type": "number"},
            "denoise": {"type": "boolean", "default": True},
            "format": {"enum": ["png", "exr"], "default": "exr"},
            "layers": {"type": "array", "items": {"type": "string"}},
            "aovs": {"type": "object",
                     "additionalProperties": {"type": "string"}},
        },
        "required": ["scene"],
        "additionalProperties": False,
    },
}


def page(response, status=200):
    """Assert ``status``; return the page's text with entities decoded."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, text[:2000]
    return html.unescape(text)


def job_count(session):
    session.expire_all()
    return session.execute(select(func.count()).select_from(Job)).scalar()


def flashes(ui):
    with ui.client.session_transaction() as state:
        return [message for _, message in state.get("_flashes", [])]


@pytest.fixture
def render_type(admin):
    """The job type "render", registered through the API as an admin."""
    response = admin.post("/api/v1/jobtypes/", json=RENDER)
    assert response.status_code == 201, response.get_json()
    return RENDER["name"]


@pytest.fixture
def catalog(admin, render_type):
    """A queue and software to refer to."""
    assert admin.post("/api/v1/jobqueues/", json={
        "name": "lighting"}).status_code == 201
    assert admin.post("/api/v1/software/", json={
        "name": "maya", "versions": ["2024", "2025"]}).status_code == 201


def base_form(**fields):
    """A valid submission of the "render" job type."""
    form = {"title": "shot 10", "start": "1", "end": "10", "by": "1",
            "batch": "1", "priority": "0", "requeue": "3", "cpus": "1",
            "ram": "0", "data.scene": "/shows/a/shot.ma",
            "data.samples": "64", "data.denoise": "on",
            "data.format": "exr"}
    form.update(fields)
    return form


# -- pages and login ----------------------------------------------------------


def test_pages_need_a_login(client, render_type, session):
    for path in ("/submit", "/submit/command", "/submit/command?copy=1"):
        response = client.get(path)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]
        response = client.get(path, headers={"HX-Request": "true"})
        assert response.status_code == 401
        assert "/login" in response.headers["HX-Redirect"]
    token = re.search(r'name="csrf-token" content="([^"]+)"',
                      client.get("/login").get_data(as_text=True)).group(1)
    response = client.post("/submit/render",
                           data=base_form(csrf_token=token))
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
    assert job_count(session) == 0


def test_submit_lists_the_job_types(ui_alice, render_type):
    text = page(ui_alice.get("/submit"))
    assert "Submit a job" in text
    for name in ("command", "render"):
        assert f'href="/submit/{name}"' in text
        assert f'data-jobtype="{name}"' in text
    assert "Renders a scene with the studio renderer." in text
    assert "runs renderer" in text
    assert "Runs data.argv" in text  # the command job type's description
    assert "<code>scene</code>" in text and "<code>argv</code>" in text


def test_form_shows_the_job_type_parameters(ui_alice, catalog):
    text = page(ui_alice.get("/submit/render"))
    assert "Submit a render job" in text
    assert "The scene file to render." in text
    scene = re.search(r'<input id="(d-\d+)" name="data\.scene"[^>]*>', text,
                      re.S).group(0)
    assert "required" in scene and 'type="text"' in scene
    samples = re.search(r'<input[^>]*name="data\.samples"[^>]*>', text,
                        re.S).group(0)
    assert 'type="number"' in samples and 'value="64"' in samples
    assert 'min="1"' in samples and 'max="4096"' in samples
    assert 'step="any"' in re.search(r'<input[^>]*name="data\.gamma"[^>]*>',
                                     text, re.S).group(0)
    denoise = re.search(r'<input type="checkbox"[^>]*name="data\.denoise"'
                        r'[^>]*>', text).group(0)
    assert "checked" in denoise
    assert re.search(r'<select[^>]*name="data\.format"', text)
    assert '<option value="exr" selected>' in text
    assert re.search(r'<textarea[^>]*name="data\.layers"', text)
    assert "One item per line." in text
    assert re.search(r'<textarea[^>]*name="data\.aovs"', text)
    assert "One NAME=VALUE per line." in text
    # No other data: the schema forbids it.
    assert 'name="data_extra"' not in text
    # The fields every job has, and the catalog's names to choose from.
    for name in ("title", "start", "end", "by", "batch", "priority",
                 "requeue", "cpus", "ram", "tags", "parents", "notes",
                 "environ", "tag_requirements.tag",
                 "tag_requirements.mode", "software_requirements.software",
                 "software_requirements.min_version",
                 "software_requirements.max_version"):
        assert f'name="{name}"' in text, name
    assert '<option value="lighting">lighting</option>' in text
    assert '<option value="maya">' in text
    assert 'name="csrf_token"' in text
    # The command job type: argv, one per line.
    text = page(ui_alice.get("/submit/command"))
    assert re.search(r'<textarea id="d-1" name="data\.argv"[^>]*required',
                     text, re.S)


def test_unknown_job_type_is_404(ui_alice):
    text = page(ui_alice.get("/submit/maya"), 404)
    assert "no job type named 'maya'" in text
    assert ui_alice.post("/submit/maya", base_form()).status_code == 404


def test_job_type_without_parameters_takes_json_data(ui_alice, admin,
                                                     session):
    assert admin.post("/api/v1/jobtypes/", json={
        "name": "free"}).status_code == 201
    text = page(ui_alice.get("/submit/free"))
    assert "Data (JSON object)" in text and 'name="data_extra"' in text
    text = page(ui_alice.post("/submit/free", {
        "title": "t", "start": "1", "end": "2",
        "data_extra": '{"scene": "a.ma"'}), 400)
    assert "field 'data' is not valid JSON" in text
    assert '{"scene": "a.ma"' in text
    assert job_count(session) == 0
    response = ui_alice.post("/submit/free", {
        "title": "t", "start": "1", "end": "2",
        "data_extra": '{"scene": "a.ma", "n": [1]}'})
    assert response.status_code == 302
    assert session.execute(select(Job.data)).scalar() == {
        "scene": "a.ma", "n": [1]}


# -- submitting ---------------------------------------------------------------


def test_submit_creates_the_job(ui_user, catalog, session):
    ui, alice, _ = ui_user("alice")
    parent = submit_job(session, alice, parse(JobSpec, {
        "title": "sim", "jobtype": "command", "start": 1, "end": 1,
        "data": {"argv": ["true"]}}), utcnow())
    session.commit()
    response = ui.post("/submit/render", base_form(**{
        "title": "shot 20", "start": "1", "end": "240", "by": "2",
        "batch": "10", "priority": "5", "weight": "2", "requeue": "1",
        "cpus": "8", "ram": "16000", "maximum_agents": "4",
        "jobqueue": "lighting", "tags": "fx, hero", "notes": "final",
        "parents": str(parent.id), "environ": "OCIO=/show/ocio\nLANG=C",
        "tag_requirements.tag": ["gpu", "", "slow"],
        "tag_requirements.mode": ["must", "must", "must-not"],
        "software_requirements.software": ["maya", ""],
        "software_requirements.min_version": ["2024", ""],
        "software_requirements.max_version": ["", ""],
        "data.samples": "256", "data.gamma": "2.2", "data.denoise": [],
        "data.format": "png", "data.layers": "fg\r\nbg\r\n",
        "data.aovs": "diffuse=d.exr"}))
    assert response.status_code == 302, page(response, 302)
    job = session.execute(select(Job).where(Job.title == "shot 20")) \
        .scalar_one()
    assert response.headers["Location"].endswith(f"/{job.id}") or \
        response.headers["Location"].endswith("/")
    assert flashes(ui) == [f"Job {job.id} submitted (120 frames)"]
    assert job.user_id == alice.id and job.jobtype.name == "render"
    assert (job.start, job.end, job.by, job.batch) == (1, 240, 2, 10)
    assert (job.priority, job.weight, job.requeue, job.cpus, job.ram,
            job.maximum_agents, job.minimum_agents) == (5, 2, 1, 8, 16000,
                                                        4, None)
    assert job.jobqueue.name == "lighting" and job.notes == "final"
    assert sorted(tag.name for tag in job.tags) == ["fx", "hero"]
    assert [p.id for p in job.parents] == [parent.id]
    assert job.environ == {"OCIO": "/show/ocio", "LANG": "C"}
    assert sorted((r.tag.name, r.negate) for r in job.tag_requirements) \
        == [("gpu", False), ("slow", True)]
    [software] = job.software_requirements
    assert (software.software.name, software.min_version,
            software.max_version) == ("maya", "2024", None)
    assert job.data == {"scene": "/shows/a/shot.ma", "samples": 256,
                        "gamma": 2.2, "denoise": False, "format": "png",
                        "layers": ["fg", "bg"],
                        "aovs": {"diffuse": "d.exr"}}
    assert session.execute(select(func.count()).select_from(Task).where(
        Task.job_id == job.id)).scalar() == 120


def test_submit_uses_the_api_defaults(ui_alice, render_type, session):
    response = ui_alice.post("/submit/render", {
        "title": "minimal", "start": "1", "end": "1",
        "data.scene": "/a.ma"})
    assert response.status_code == 302
    assert flashes(ui_alice) == ["Job 1 submitted (1 frame)"]
    job = session.execute(select(Job)).scalar_one()
    assert (job.by, job.batch, job.priority, job.requeue, job.cpus,
            job.jobqueue) == (1, 1, 0, 3, 1, None)
    assert job.data == {"scene": "/a.ma", "denoise": False}


#: (form changes, message the page shows, typed text it keeps)
BAD_SUBMISSIONS = [
    ({"end": "abc"}, "field 'end': 'abc' is not a whole number", "abc"),
    ({"start": "20"},
     "field 'end': end (10) must not be less than start (20)", "20"),
    ({"title": "   "}, "field 'title': must not be blank", None),
    ({"by": "0"}, "field 'by': Input should be greater than or equal to 1",
     None),
    ({"end": "9999999999"}, "field 'end'", "9999999999"),
    ({"data.scene": ""}, "field 'data.scene' is required", None),
    ({"data.samples": "0"}, "field 'data.samples': 0 is less than the "
                            "minimum of 1", None),
    ({"data.samples": "lots"},
     "field 'data.samples': 'lots' is not a whole number", "lots"),
    ({"data.gamma": "1e999"}, "field 'data.gamma': 1e999 is too large",
     "1e999"),
    ({"data.format": "gif"}, "field 'data.format': 'gif' is not one of "
                             "png, exr", None),
    ({"data.aovs": "diffuse"}, "field 'data.aovs': line 1 must be "
                               "NAME=VALUE", "diffuse"),
    ({"jobqueue": "nope"}, "no job queue", None),
    ({"parents": "12345"}, "field 'parents': no job with id 12345",
     "12345"),
    ({"parents": "one"}, "field 'parents': 'one' is not a job id", "one"),
    ({"software_requirements.software": "houdini"},
     "field 'software_requirements': unknown software 'houdini'",
     "houdini"),
    ({"software_requirements.software": "maya",
      "software_requirements.min_version": "3",
      "software_requirements.max_version": "2"},
     "min_version '3' is above max_version '2'", None),
    ({"tag_requirements.tag": ["gpu", "gpu"],
      "tag_requirements.mode": ["must", "must-not"]},
     "names the tag 'gpu' twice", None),
    ({"environ": "PATH"}, "field 'environ': line 1 must be NAME=VALUE",
     "PATH"),
    ({"title": "a\x00b"}, "field 'title' must not contain NUL characters",
     None),
    ({"tags": "x" * 65}, "field 'tags.0'", None),
]


def test_every_mistake_comes_back_with_its_message(ui_alice, catalog,
                                                   session):
    for changes, message, kept in BAD_SUBMISSIONS:
        form = base_form(notes="my notes", **changes)
        text = page(ui_alice.post("/submit/render", form), 400)
        assert message in text, (changes, message)
        assert 'id="form-errors"' in text
        assert 'class="field-error"' in text or message.startswith(
            ("no job queue", "names the tag"))
        # What was typed is still there.
        assert "my notes" in text
        assert 'value="shot 10"' in text or "title" in changes
        assert 'value="/shows/a/shot.ma"' in text or "data.scene" in changes
        if kept is not None:
            assert kept in text, (changes, kept)
    assert job_count(session) == 0
    assert flashes(ui_alice) == []


def test_a_type_mistake_is_shown_as_typed(ui_alice, render_type):
    text = page(ui_alice.post("/submit/render", base_form(**{
        "end": "ten", "data.samples": "x", "data.layers": "fg\nbg",
        "data.denoise": [], "tag_requirements.tag": "gpu",
        "tag_requirements.mode": "must-not"})), 400)
    end = re.search(r'<input id="f-end"[^>]*>', text, re.S).group(0)
    assert 'value="ten"' in end and 'type="text"' in end
    assert 'aria-invalid="true"' in end
    assert "field 'data.samples': 'x' is not a whole number" in text
    assert "fg\nbg</textarea>" in text
    denoise = re.search(r'<input type="checkbox"[^>]*name="data\.denoise"'
                        r'[^>]*>', text).group(0)
    assert "checked" not in denoise
    assert 'value="gpu"' in text
    assert '<option value="must-not" selected>' in text


def test_submit_without_csrf_token_is_400_and_creates_nothing(
        ui_alice, render_type, session):
    response = ui_alice.post("/submit/render", base_form(), csrf=False)
    assert response.status_code == 400
    assert "Reload" in response.get_data(as_text=True)
    assert job_count(session) == 0


# -- copies -------------------------------------------------------------------


def test_copy_fills_the_form_from_a_job(ui_user, ui_alice, catalog,
                                        session):
    _, bob, _ = ui_user("bob")
    parent = submit_job(session, bob, parse(JobSpec, {
        "title": "sim", "jobtype": "command", "start": 1, "end": 1,
        "data": {"argv": ["true"]}}), utcnow())
    job = submit_job(session, bob, parse(JobSpec, {
        "title": "shot 30", "jobtype": "render", "start": 5, "end": 50,
        "by": 5, "batch": 2, "priority": 7, "requeue": 0, "cpus": 4,
        "ram": 2048, "jobqueue": "lighting", "tags": ["hero"],
        "parents": [parent.id], "notes": "again", "environ": {"A": "1"},
        "tag_requirements": [{"tag": "gpu", "negate": True}],
        "software_requirements": [{"software": "maya",
                                   "max_version": "2025"}],
        "data": {"scene": "/b.ma", "samples": 8, "denoise": False,
                 "layers": ["fg", "bg"], "aovs": {"z": "z.exr"}}}),
        utcnow())
    session.commit()
    text = page(ui_alice.get(f"/submit/render?copy={job.id}"))
    assert f'data-job="{job.id}"' in text and "shot 30" in text
    for name, value in (("title", "shot 30"), ("start", "5"),
                        ("end", "50"), ("by", "5"), ("batch", "2"),
                        ("priority", "7"), ("requeue", "0"), ("cpus", "4"),
                        ("ram", "2048"), ("tags", "hero"),
                        ("parents", str(parent.id))):
        assert re.search(rf'<input id="f-{name}" name="{name}" '
                         rf'value="{value}"', text), name
    assert '<option value="lighting" selected>' in text
    assert "again</textarea>" in text and "A=1</textarea>" in text
    assert 'value="gpu"' in text
    assert '<option value="must-not" selected>' in text
    assert 'value="maya"' in text and 'value="2025"' in text
    assert 'value="/b.ma"' in text and 'value="8"' in text
    assert "fg\nbg</textarea>" in text and "z=z.exr</textarea>" in text
    denoise = re.search(r'<input type="checkbox"[^>]*name="data\.denoise"'
                        r'[^>]*>', text).group(0)
    assert "checked" not in denoise
    # Another user's job may be copied: the copy is alice's.
    form = {"title": "shot 30", "start": "5", "end": "50", "by": "5",
            "data.scene": "/b.ma"}
    assert ui_alice.post("/submit/render", form).status_code == 302
    copy = session.execute(select(Job).order_by(Job.id.desc())).scalars() \
        .first()
    assert copy.id != job.id and copy.user.name == "alice"


def test_copy_of_another_job_type_or_a_missing_job(ui_alice, render_type,
                                                   session, make_user):
    user, _ = make_user("carol")
    job = submit_job(session, user, parse(JobSpec, {
        "title": "cmd", "jobtype": "command", "start": 1, "end": 3,
        "data": {"argv": ["echo", "{frame}"]}}), utcnow())
    session.commit()
    response = ui_alice.get(f"/submit/render?copy={job.id}")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(
        f"/submit/command?copy={job.id}")
    text = page(ui_alice.get(f"/submit/command?copy={job.id}"))
    assert "echo\n{frame}</textarea>" in text
    assert "no job with id 999" in page(
        ui_alice.get("/submit/render?copy=999"), 404)
    assert "'copy' must be a whole number" in page(
        ui_alice.get("/submit/render?copy=abc"), 400)
