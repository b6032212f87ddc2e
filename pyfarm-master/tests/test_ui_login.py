"""Logging in and out of the web UI, CSRF protection, the error pages and
the header's overview."""

import gzip
import json

import pytest

from pyfarm.core.enums import Role
from pyfarm.master.db import utcnow
from pyfarm.master.models import Agent, Job, JobType, Task, User
from pyfarm.master.services.users import set_password, update_user
from pyfarm.master.ui.context import nav_current

PASSWORD = "correct horse battery"  # the conftest's ui_password


def test_ui_fixtures_use_this_password(ui_password):
    assert ui_password == PASSWORD


def test_pages_need_a_login(new_ui):
    ui = new_ui()
    answer = ui.get("/")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/login?next=/"
    # htmx follows HX-Redirect with a full page load.
    answer = ui.get("/ui/overview", htmx=True)
    assert answer.status_code == 401
    assert answer.headers["HX-Redirect"] == "/login?next=/ui/overview"


def test_login_goes_to_the_page_asked_for(new_ui, ui_user):
    ui_user("alice")
    ui = new_ui()
    page = ui.get("/login?next=/ui/overview").get_data(as_text=True)
    assert 'name="next" value="/ui/overview"' in page
    answer = ui.post("/login", {"name": "alice", "password": PASSWORD,
                                "next": "/ui/overview"})
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/ui/overview"
    assert ui.get("/ui/overview").status_code == 200
    # Once logged in, the login page sends people on.
    assert ui.get("/login").headers["Location"] == "/"


def test_login_never_redirects_to_another_site(new_ui, ui_user):
    ui_user("alice")
    for target in ("https://evil.example/", "//evil.example/x",
                   "/\\evil.example", "javascript:alert(1)"):
        ui = new_ui()
        answer = ui.post("/login", {"name": "alice", "password": PASSWORD,
                                    "next": target})
        assert answer.headers["Location"] == "/", target


def test_wrong_password_unknown_user_and_agents_cannot_log_in(
        new_ui, make_user):
    make_user("alice", Role.USER, password=PASSWORD)
    make_user("agents", Role.AGENT, password=PASSWORD)
    make_user("nopass", Role.USER)
    for name, password in (("alice", "wrong password"),
                           ("nobody", PASSWORD), ("agents", PASSWORD),
                           ("nopass", ""), ("nopass", PASSWORD)):
        ui = new_ui()
        answer = ui.post("/login", {"name": name, "password": password})
        assert answer.status_code == 401, name
        page = answer.get_data(as_text=True)
        assert "Unknown user or wrong password." in page
        assert f'value="{name}"' in page  # the name typed is kept
        assert ui.get("/").status_code == 302


def test_login_without_csrf_token_is_refused(new_ui, make_user):
    make_user("alice", Role.USER, password=PASSWORD)
    ui = new_ui()
    answer = ui.post("/login", {"name": "alice", "password": PASSWORD},
                     csrf=False)
    assert answer.status_code == 400
    assert "did not come from this site" in answer.get_data(as_text=True)
    assert ui.get("/").status_code == 302
    answer = ui.post("/login", {"name": "alice", "password": PASSWORD,
                                "csrf_token": "forged"}, csrf=False)
    assert answer.status_code == 400


def test_logout_needs_a_post_with_the_token(ui_alice):
    assert ui_alice.get("/logout").status_code == 405
    answer = ui_alice.post("/logout", csrf=False)
    assert answer.status_code == 400
    assert ui_alice.get("/").status_code == 200  # still logged in
    answer = ui_alice.post("/logout")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/login"
    assert ui_alice.get("/").status_code == 302
    assert "You are logged out." in ui_alice.get("/login").get_data(
        as_text=True)


def test_a_new_password_or_disabling_ends_sessions(app, session, ui_user):
    ui, alice, _ = ui_user("alice")
    root = session.get(User, ui_user("root", Role.ADMIN)[1].id)
    assert ui.get("/").status_code == 200
    set_password(session.get(User, alice.id), "another password")
    session.commit()
    assert ui.get("/").status_code == 302
    assert ui.login("alice", "another password").status_code == 302
    assert ui.get("/").status_code == 200
    update_user(session, session.get(User, alice.id), root, active=False)
    session.commit()
    assert ui.get("/").status_code == 302
    assert ui.login("alice", "another password").status_code == 401


def test_the_header_names_the_user_and_the_pages(ui_alice, ui_user):
    page = ui_alice.get("/").get_data(as_text=True)
    assert "alice" in page and "Log out" in page
    assert '<meta name="csrf-token"' in page
    assert ">Users<" not in page  # admins only
    admin = ui_user("root", Role.ADMIN)[0]
    page = admin.get("/").get_data(as_text=True)
    assert "admin</span>" in page


def test_overview_counts_agents_and_open_frames(app, session, ui_alice):
    now = utcnow()
    for index, state in enumerate(("online", "online", "running",
                                   "offline", "disabled")):
        session.add(Agent(id=f"00000000-0000-0000-0000-00000000000{index}",
                          hostname=f"node{index}", os="linux", cpus=4,
                          ram=8192, state=state, registered_at=now,
                          last_heard_at=now))
    command = session.query(JobType).filter_by(name="command").one()
    running = Job(title="open", jobtype=command, start=1, end=6,
                  state="running", created_at=now, updated_at=now)
    finished = Job(title="old", jobtype=command, start=1, end=3,
                   state="done", created_at=now, updated_at=now)
    session.add_all([running, finished])
    session.flush()
    for frame, state in enumerate(("queued", "queued", "assigned",
                                   "running", "done", "failed"), 1):
        session.add(Task(job_id=running.id, frame=frame, state=state,
                         created_at=now, updated_at=now))
    for frame in (1, 2, 3):
        session.add(Task(job_id=finished.id, frame=frame, state="done",
                         created_at=now, updated_at=now))
    session.commit()
    text = ui_alice.get("/ui/overview", htmx=True).get_data(as_text=True)
    assert "<html" not in text
    counts = {}
    for label in ("online", "running", "offline", "disabled",
                  "frames running", "queued"):
        marker = f"</b> {label}<"
        assert marker in text, label
        counts[label] = int(text.split(marker)[0].rsplit("<b>", 1)[1])
    assert counts == {"online": 2, "running": 1, "offline": 1,
                      "disabled": 1, "frames running": 2, "queued": 2}


def test_errors_are_pages_for_people_and_messages_for_htmx(ui_alice):
    answer = ui_alice.get("/no/such/page")
    assert answer.status_code == 404
    page = answer.get_data(as_text=True)
    assert "404 · Not found" in page and "Traceback" not in page
    answer = ui_alice.get("/no/such/page", htmx=True)
    assert answer.status_code == 404
    assert answer.mimetype == "text/plain"
    assert "<html" not in answer.get_data(as_text=True)
    # The API keeps answering JSON.
    answer = ui_alice.client.get("/api/v1/nothing")
    assert answer.status_code == 404
    assert json.loads(answer.get_data())["error"]


@pytest.mark.parametrize("current, item, expected", [
    ("ui.jobs", "ui.jobs", True), ("ui.job", "ui.jobs", True),
    ("ui.job_action", "ui.jobs", True), ("ui.jobs_bulk", "ui.jobs", True),
    ("ui.agent", "ui.agents", True), ("ui.submit_form", "ui.submit", True),
    ("ui.jobqueues_create", "ui.jobs", False),
    ("ui.jobqueues_create", "ui.jobqueues", True),
    ("ui.users_detail", "ui.users", True), ("ui.login", "ui.jobs", False),
    (None, "ui.jobs", False),
])
def test_navigation_marks_the_page_family(current, item, expected):
    assert nav_current(item, current) is expected


def test_pages_are_compressed_for_browsers_and_the_api_is_not(ui_alice):
    answer = ui_alice.client.get("/", headers={"Accept-Encoding": "gzip"})
    assert answer.headers["Content-Encoding"] == "gzip"
    assert b"Log out" in gzip.decompress(answer.get_data())
    answer = ui_alice.client.get("/api/v1/", headers={
        "Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in answer.headers
