"""The jobs page: the table, its filters, sorting and pages, the htmx
refresh and the bulk actions."""

import html
import json
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from pyfarm.core.enums import Role
from pyfarm.master.db import db, utcnow
from pyfarm.master.errors import BadRequest
from pyfarm.master.models import Job, JobQueue, JobType, Task
from pyfarm.master.services.jobs import JobSpec, submit_job
from pyfarm.master.ui.jobs_query import (
    DEFAULT_PER_PAGE,
    MAX_PER_PAGE,
    JobFilter,
    parse_bulk,
    parse_filter,
)
from pyfarm.master.validation import parse

BULK = "/jobs/bulk"


def make_job(session, user, title="sq010 lighting", frames=10, **fields):
    """Submit a job of ``frames`` frames owned by ``user``; return its id."""
    spec = {"title": title, "jobtype": "command", "start": 1, "end": frames,
            "data": {"argv": ["render", "{frame}"]}}
    spec.update(fields)
    job = submit_job(session, user, parse(JobSpec, spec), utcnow())
    session.commit()
    return job.id


def set_tasks(session, job_id, state, frames):
    """Put the tasks of ``frames`` of job ``job_id`` in ``state``."""
    session.execute(sa.update(Task).where(
        Task.job_id == job_id, Task.frame.in_(list(frames)))
        .values(state=state))
    session.commit()


def set_job(session, job_id, **values):
    """Set columns of one job directly."""
    job = session.get(Job, job_id)
    for name, value in values.items():
        setattr(job, name, value)
    session.commit()


def fresh(session, job_id):
    """Return job ``job_id`` as committed (or None)."""
    session.rollback()
    session.expire_all()
    return session.get(Job, job_id)


def task_states(session, job_id):
    """Return ``{state: count}`` of the committed tasks of a job."""
    session.rollback()
    return dict(session.execute(
        sa.select(Task.state, sa.func.count()).where(Task.job_id == job_id)
        .group_by(Task.state)).all())


def row_ids(response):
    """Return the job ids of the rows in a page, in order."""
    assert response.status_code == 200, response.get_data(as_text=True)
    return [int(i) for i in re.findall(r'<tr id="job-(\d+)"',
                                       response.get_data(as_text=True))]


def notice(response):
    """Return the notice an htmx answer carries."""
    return json.loads(response.headers["HX-Trigger"])["pyfarm-notice"]


@pytest.fixture
def people(ui_user):
    """alice (a user, logged in), bob (a user) and root (an admin)."""
    alice_ui, alice, _ = ui_user("alice")
    bob_ui, bob, _ = ui_user("bob")
    root_ui, root, _ = ui_user("root", Role.ADMIN)
    return {"alice": (alice_ui, alice), "bob": (bob_ui, bob),
            "root": (root_ui, root)}


# -- the page --------------------------------------------------------------

def test_page_shows_jobs_with_progress_and_times(app, session, people):
    ui, alice = people["alice"]
    bob = people["bob"][1]
    session.add(JobQueue(name="lighting"))
    session.commit()
    running = make_job(session, alice, "sq010 <lighting>", frames=10,
                       jobqueue="lighting", priority=7, tags=["gpu"])
    set_tasks(session, running, "done", range(1, 4))
    set_tasks(session, running, "running", range(4, 6))
    set_tasks(session, running, "failed", [6])
    now = utcnow()
    set_job(session, running, state="running",
            started_at=now - timedelta(minutes=65))
    finished = make_job(session, bob, "sq020 comp", frames=2)
    set_tasks(session, finished, "done", [1, 2])
    set_job(session, finished, state="done",
            started_at=now - timedelta(hours=3),
            finished_at=now - timedelta(hours=3) + timedelta(seconds=90))

    response = ui.get("/")
    assert row_ids(response) == [finished, running]
    page = response.get_data(as_text=True)
    assert "<html" in page and "<h1>Jobs</h1>" in page
    assert "sq010 &lt;lighting&gt;" in page  # escaped
    row = page[page.index(f'id="job-{running}"'):]
    row = row[:row.index("</tr>")]
    assert 'data-state="running"' in row and 'data-owner="alice"' in row
    assert "3/10" in row and "2 running" in row and "1 failed" in row
    assert "lighting</td>" in row and ">7</td>" in row
    assert "command" in row and ">gpu</a>" in row
    assert "1h 05m" in row  # running: elapsed since it started
    assert f'name="job_ids" value="{running}"' in row
    other = page[page.index(f'id="job-{finished}"'):]
    other = other[:other.index("</tr>")]
    assert "1m 30s" in other  # finished: started .. finished
    assert "2/2" in other and 'data-state="done"' in other
    # alice cannot tick bob's job.
    assert 'name="job_ids"' not in other and "disabled" in other
    if "ui.job" in app.view_functions:
        assert f'href="/jobs/{running}"' in row
    else:
        assert "/jobs/" not in row
    for button in ("Pause", "Resume", "Rerun failed", "Cancel", "Delete",
                   "Set priority"):
        assert f">{button}</button>" in page
    assert 'hx-trigger="every 3s [document.visibilityState' in page
    assert "jobs.css" in page and "jobs.js" in page


def test_login_is_required(app, session, make_user):
    user, _ = make_user("alice")
    job = make_job(session, user)
    client = app.test_client()
    answer = client.get("/?state=queued")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login?next=")
    answer = client.get("/", headers={"HX-Request": "true"})
    assert answer.status_code == 401
    assert answer.headers["HX-Redirect"].startswith("/login")
    answer = client.post(BULK, data={"action": "pause", "job_ids": job})
    assert answer.status_code in (302, 400)
    assert fresh(session, job).state == "queued"


def test_filters(session, people):
    ui, alice = people["alice"]
    bob = people["bob"][1]
    session.add_all([JobQueue(name="comp"),
                     JobType(name="nuke", parameters={})])
    session.commit()
    plain = make_job(session, alice, "SQ010 Lighting")
    percent = make_job(session, alice, "grade 100% final", jobqueue="comp")
    under = make_job(session, bob, "grade 100x_final", tags=["gpu", "fx"],
                     jobtype="nuke", data={})
    other = make_job(session, bob, "sq020 layout", tags=["fx"])
    set_job(session, other, state="paused")

    def ids(query):
        return sorted(row_ids(ui.get("/?" + query)))

    assert ids("") == sorted([plain, percent, under, other])
    assert ids("state=paused") == [other]
    assert ids("state=") == sorted([plain, percent, under, other])
    assert ids("owner=bob") == sorted([under, other])
    assert ids("owner=nobody") == []
    assert ids("mine=1") == sorted([plain, percent])
    assert ids("mine=1&owner=bob") == []
    assert ids("queue=comp") == [percent]
    assert ids("jobtype=nuke") == [under]
    assert ids("jobtype=command") == sorted([plain, percent, other])
    assert ids("tag=fx") == sorted([under, other])
    assert ids("tag=gpu&owner=bob") == [under]
    # Title: a case-insensitive substring, wildcards taken literally.
    assert ids("title=lighting") == [plain]
    assert ids("title=%20SQ0") == sorted([plain, other])
    assert ids("title=100%25") == [percent]
    assert ids("title=100x_") == [under]
    assert ids("title=_") == [under]
    assert ids("title=%25") == [percent]
    # The form shows the filters chosen, the clear link and keeps them
    # in the refresh and the bulk form.
    page = ui.get("/?owner=bob&tag=fx&mine=1").get_data(as_text=True)
    assert 'name="owner" value="bob"' in page
    assert 'name="mine" value="1" checked' in page
    assert "Clear filters" in page
    assert 'hx-get="/?owner=bob&amp;tag=fx&amp;mine=1"' in page
    assert 'action="/jobs/bulk?owner=bob&amp;tag=fx&amp;mine=1"' in page


def test_empty_farm_and_no_match(session, people):
    ui, alice = people["alice"]
    page = ui.get("/").get_data(as_text=True)
    assert "No jobs on the farm yet" in page
    assert "curl -X POST http://localhost/api/v1/jobs/" in page
    make_job(session, alice)
    page = ui.get("/?title=nothing-like-it").get_data(as_text=True)
    assert "No jobs match these filters" in page
    assert '<a href="/">Clear the filters</a>' in page
    assert "curl" not in page


def test_sorting(session, people):
    ui, alice = people["alice"]
    bob = people["bob"][1]
    b = make_job(session, bob, "beta", priority=5)
    a = make_job(session, alice, "Alpha", priority=1)
    c = make_job(session, alice, "charlie", priority=9)
    set_job(session, a, state="running")
    set_job(session, c, state="done")

    assert row_ids(ui.get("/")) == [c, a, b]  # newest first
    assert row_ids(ui.get("/?sort=submitted&order=asc")) == [b, a, c]
    assert row_ids(ui.get("/?sort=title")) == [a, b, c]
    assert row_ids(ui.get("/?sort=title&order=desc")) == [c, b, a]
    assert row_ids(ui.get("/?sort=owner")) == [c, a, b]
    assert row_ids(ui.get("/?sort=owner&order=desc")) == [b, c, a]
    assert row_ids(ui.get("/?sort=priority")) == [c, b, a]
    assert row_ids(ui.get("/?sort=priority&order=asc")) == [a, b, c]
    # Running, queued, paused, failed, done.
    assert row_ids(ui.get("/?sort=state")) == [a, b, c]

    page = ui.get("/?sort=title&state=&owner=").get_data(as_text=True)
    head = page[page.index("<thead>"):page.index("</thead>")]
    assert re.search(r'<th aria-sort="ascending">\s*<a href="/\?sort=title'
                     r'&amp;order=desc"', head)
    assert 'aria-sort="descending"' not in head
    assert 'href="/?sort=priority&amp;order=desc"' in head
    assert 'href="/"' in head  # submitted, the default: newest first
    default = ui.get("/").get_data(as_text=True)
    head = default[default.index("<thead>"):default.index("</thead>")]
    assert re.search(r'<th aria-sort="descending">\s*<a href="/\?sort='
                     r'submitted&amp;order=asc"', head)


def test_pagination_and_bad_arguments(session, people):
    ui, alice = people["alice"]
    ids = [make_job(session, alice, f"shot {n}", frames=1)
           for n in range(5)]
    newest = ids[::-1]
    assert row_ids(ui.get("/?per_page=2")) == newest[:2]
    page = ui.get("/?per_page=2&page=2&owner=alice")
    assert row_ids(page) == newest[2:4]
    text = page.get_data(as_text=True)
    assert "Page 2 of 3 · 5 in all" in text
    assert 'href="/?owner=alice&amp;page=1&amp;per_page=2"' in text
    assert 'href="/?owner=alice&amp;page=3&amp;per_page=2"' in text
    # Past the last page: the last page.
    assert row_ids(ui.get("/?per_page=2&page=99")) == newest[4:]
    assert row_ids(ui.get("/?page=&per_page=")) == newest
    for query, words in [
            ("page=abc", "'page' must be a whole number"),
            ("page=0", "'page' must be from 1"),
            ("page=99999999999", "'page' must be from 1"),
            ("per_page=500", f"'per_page' must be from 1 to {MAX_PER_PAGE}"),
            ("per_page=-1", "'per_page'"),
            ("state=bogus", "'state' must be one of"),
            ("sort=cpus", "'sort' must be one of"),
            ("order=up", "'order' must be one of asc, desc"),
            ("title=a%00b", "NUL"),
            ("owner=" + "x" * 65, "at most 64 characters")]:
        answer = ui.get("/?" + query)
        assert answer.status_code == 400, query
        assert words in html.unescape(answer.get_data(as_text=True)), query
        answer = ui.get("/?" + query, htmx=True)
        assert answer.status_code == 400, query
        assert answer.get_data(as_text=True).startswith("query argument")


def test_htmx_answers_the_rows_only(session, people):
    ui, alice = people["alice"]
    job = make_job(session, alice)
    answer = ui.get("/?state=queued&per_page=25", htmx=True)
    assert answer.status_code == 200
    assert "HX-Request" in answer.headers["Vary"]
    text = answer.get_data(as_text=True)
    assert "<html" not in text and "<thead" not in text
    assert "<form" not in text
    assert text.lstrip().startswith('<tbody id="job-rows"')
    assert f'<tr id="job-{job}"' in text
    assert 'hx-get="/?state=queued&amp;per_page=25"' in text
    assert 'id="job-pager" class="job-pager" hx-swap-oob="true"' in text
    assert "1 in all" in text


def test_statements_do_not_grow_with_the_page(session, people):
    ui, alice = people["alice"]
    session.add(JobQueue(name="comp"))
    session.commit()

    def count(path, htmx):
        statements = []

        def record(conn, cursor, statement, *args):
            statements.append(statement)

        sa.event.listen(db.engine, "before_cursor_execute", record)
        try:
            assert ui.get(path, htmx=htmx).status_code == 200
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", record)
        return len(statements)

    def add_jobs(number):
        for n in range(number):
            make_job(session, alice, f"shot {n}", frames=3,
                     jobqueue="comp", tags=[f"t{n}", "all"])

    add_jobs(2)
    few = (count("/", False), count("/", True),
           count("/?sort=owner&tag=all", True))
    add_jobs(25)
    many = (count("/", False), count("/", True),
            count("/?sort=owner&tag=all", True))
    assert many == few
    assert many[1] <= 6


# -- bulk actions ------------------------------------------------------------

def test_bulk_pause_and_resume_answer_the_rows(session, people):
    ui, alice = people["alice"]
    one = make_job(session, alice, "one")
    two = make_job(session, alice, "two")
    answer = ui.post(BULK + "?state=paused", {"action": "pause",
                                               "job_ids": [one, two]},
                     htmx=True)
    assert answer.status_code == 200
    assert notice(answer) == "2 jobs paused"
    text = answer.get_data(as_text=True)
    assert "<html" not in text
    assert text.lstrip().startswith('<tbody id="job-rows"')
    assert 'hx-get="/?state=paused"' in text  # the page's filters
    assert sorted(row_ids(answer)) == [one, two]
    assert fresh(session, one).state == "paused"
    assert fresh(session, two).state == "paused"

    answer = ui.post(BULK, {"action": "resume", "job_ids": [one]},
                     htmx=True)
    assert notice(answer) == "1 job resumed"
    assert fresh(session, one).state == "queued"
    assert fresh(session, two).state == "paused"


def test_bulk_rerun_cancel_and_priority(session, people):
    ui, alice = people["alice"]
    job = make_job(session, alice, frames=4)
    other = make_job(session, alice, frames=2)
    set_tasks(session, job, "failed", [1, 2])
    set_tasks(session, job, "done", [3])
    answer = ui.post(BULK, {"action": "rerun", "job_ids": [job]}, htmx=True)
    assert notice(answer) == "Failed frames of 1 job requeued"
    assert task_states(session, job) == {"queued": 3, "done": 1}

    answer = ui.post(BULK, {"action": "priority", "priority": "50",
                            "job_ids": [job, other]}, htmx=True)
    assert notice(answer) == "2 jobs set to priority 50"
    assert fresh(session, job).priority == 50
    assert fresh(session, other).priority == 50
    answer = ui.post(BULK, {"action": "priority", "priority": "-3",
                            "job_ids": [other]}, htmx=True)
    assert fresh(session, other).priority == -3

    answer = ui.post(BULK, {"action": "cancel", "job_ids": [job, other]},
                     htmx=True)
    assert notice(answer) == "2 jobs cancelled"
    assert task_states(session, job) == {"failed": 3, "done": 1}
    assert fresh(session, job).state == "failed"
    assert fresh(session, other).state == "failed"


def test_bulk_delete_with_a_plain_form(session, people):
    ui, alice = people["alice"]
    keep = make_job(session, alice, "keep")
    parent = make_job(session, alice, "parent")
    child = make_job(session, alice, "child", parents=[parent])
    answer = ui.post(BULK + "?owner=alice&page=1&per_page=25",
                     {"action": "delete", "job_ids": [parent, child]})
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/?owner=alice&per_page=25"
    assert fresh(session, parent) is None and fresh(session, child) is None
    assert fresh(session, keep) is not None
    page = ui.get(answer.headers["Location"]).get_data(as_text=True)
    assert "2 jobs deleted" in page
    assert row_ids_of(page) == [keep]


def row_ids_of(text):
    """Return the job ids of the rows in a page's text."""
    return [int(i) for i in re.findall(r'<tr id="job-(\d+)"', text)]


def test_bulk_refuses_jobs_of_other_users(session, people):
    ui, alice = people["alice"]
    bob = people["bob"][1]
    own = make_job(session, alice, "own")
    theirs = make_job(session, bob, "theirs")
    for action in ("pause", "delete", "cancel", "rerun"):
        for ids in ([theirs], [own, theirs]):
            answer = ui.post(BULK, {"action": action, "job_ids": ids},
                             htmx=True)
            assert answer.status_code == 403, action
            text = answer.get_data(as_text=True)
            assert f"job {theirs} ('theirs')" in text
            assert "Nothing was changed" in text
    answer = ui.post(BULK, {"action": "priority", "priority": "9",
                            "job_ids": [own, theirs]})
    # A plain form: the page again, the error said, the jobs still ticked.
    assert answer.status_code == 403
    text = answer.get_data(as_text=True)
    assert "<html" in text and 'role="alert"' in text
    assert f"job {theirs} (&#39;theirs&#39;) belongs to another user" in text
    assert re.search(f'value="{own}" [^>]*checked', text)
    assert 'name="priority" step="1"' in text and 'value="9"' in text
    for job_id in (own, theirs):
        job = fresh(session, job_id)
        assert (job.state, job.priority) == ("queued", 0)
    assert task_states(session, own) == {"queued": 10}


def test_admin_may_act_on_anyones_jobs(session, people):
    root_ui = people["root"][0]
    alice, bob = people["alice"][1], people["bob"][1]
    one = make_job(session, alice)
    two = make_job(session, bob)
    page = root_ui.get("/").get_data(as_text=True)
    assert f'name="job_ids" value="{one}"' in page
    assert f'name="job_ids" value="{two}"' in page
    answer = root_ui.post(BULK, {"action": "pause", "job_ids": [one, two]},
                          htmx=True)
    assert notice(answer) == "2 jobs paused"
    assert fresh(session, one).state == fresh(session, two).state \
        == "paused"
    answer = root_ui.post(BULK, {"action": "delete", "job_ids": [one, two]},
                          htmx=True)
    assert answer.status_code == 200
    assert fresh(session, one) is None and fresh(session, two) is None


def test_bulk_bad_requests_change_nothing(session, people):
    ui, alice = people["alice"]
    job = make_job(session, alice)
    done = make_job(session, alice, frames=1)
    set_tasks(session, done, "done", [1])
    set_job(session, done, state="done")
    for data, status, words in [
            ({"action": "explode", "job_ids": [job]}, 400,
             "unknown action 'explode'"),
            ({"job_ids": [job]}, 400, "unknown action ''"),
            ({"action": "pause"}, 400, "no jobs selected"),
            ({"action": "pause", "job_ids": ["x1"]}, 400,
             "job_ids must be job ids"),
            ({"action": "priority", "job_ids": [job]}, 400,
             "priority must be a whole number"),
            ({"action": "priority", "priority": "1.5", "job_ids": [job]},
             400, "priority must be a whole number"),
            ({"action": "priority", "priority": str(2**31),
              "job_ids": [job]}, 400, "priority must be from"),
            ({"action": "pause", "job_ids": [job, 999999]}, 404,
             "no job with id 999999"),
            ({"action": "pause", "job_ids": [job, done]}, 409,
             f"job {done} ("),
            ({"action": "resume", "job_ids": [done]}, 409,
             "cannot be resumed")]:
        answer = ui.post(BULK, data, htmx=True)
        assert answer.status_code == status, data
        assert words in answer.get_data(as_text=True), data
        answer = ui.post(BULK, data)
        assert answer.status_code == status, data
        assert "<html" in answer.get_data(as_text=True)
    answer = ui.post(BULK + "?page=abc", {"action": "pause",
                                          "job_ids": [job]})
    assert answer.status_code == 400
    job_row = fresh(session, job)
    assert (job_row.state, job_row.priority) == ("queued", 0)
    assert fresh(session, done).state == "done"


def test_bulk_without_csrf_changes_nothing(session, people):
    ui, alice = people["alice"]
    job = make_job(session, alice)
    for htmx in (False, True):
        answer = ui.post(BULK, {"action": "delete", "job_ids": [job]},
                         csrf=False, htmx=htmx)
        assert answer.status_code == 400
    answer = ui.post(BULK, {"action": "delete", "job_ids": [job],
                            "csrf_token": "forged"}, csrf=False)
    assert answer.status_code == 400
    assert fresh(session, job) is not None


# -- the query helpers (no database) -----------------------------------------

def test_parse_filter_defaults_and_round_trip():
    assert parse_filter({}) == JobFilter()
    assert JobFilter().args(page=True) == {}
    assert parse_filter({"state": "", "mine": "", "page": ""}) == JobFilter()
    jf = parse_filter(MultiDict({
        "state": "running", "owner": " bob ", "mine": "on",
        "queue": "comp", "jobtype": "nuke", "tag": "fx", "title": "100%",
        "sort": "priority", "page": "3", "per_page": "25"}))
    assert jf == JobFilter(state="running", owner="bob", mine=True,
                           queue="comp", jobtype="nuke", tag="fx",
                           title="100%", sort="priority", order="desc",
                           page=3, per_page=25)
    assert jf.filtered and not JobFilter().filtered
    assert parse_filter(jf.args(page=True)) == jf
    assert "page" not in jf.args()
    assert parse_filter({"mine": "false"}).mine is False
    assert parse_filter({"sort": "title"}).order == "asc"
    assert DEFAULT_PER_PAGE == JobFilter().per_page == 50


def test_sort_links():
    jf = JobFilter(owner="bob", page=4, per_page=25)
    assert jf.sort_args("title") == {"owner": "bob", "sort": "title",
                                     "order": "asc", "per_page": 25}
    assert jf.sort_args("submitted") == {"owner": "bob", "sort": "submitted",
                                         "order": "asc", "per_page": 25}
    title = JobFilter(sort="title", order="asc")
    assert title.sort_args("title") == {"sort": "title", "order": "desc"}
    assert title.aria_sort("title") == "ascending"
    assert title.aria_sort("owner") is None
    assert JobFilter(sort="title", order="desc").sort_args("submitted") \
        == {}


def test_parse_bulk():
    form = MultiDict([("action", "priority"), ("priority", " 7 "),
                      ("job_ids", "3"), ("job_ids", "1"), ("job_ids", "3")])
    bulk = parse_bulk(form)
    assert (bulk.action, bulk.job_ids, bulk.priority) == ("priority",
                                                          (3, 1), 7)
    assert parse_bulk(MultiDict([("action", "pause"),
                                 ("job_ids", "2")])).priority is None
    for form in ([("action", "pause"), ("job_ids", "0")],
                 [("action", "pause"), ("job_ids", "٣")],
                 [("action", "pause"), ("job_ids", str(2**31))],
                 [("action", "pause")] + [("job_ids", str(n))
                                          for n in range(1, 1002)]):
        with pytest.raises(BadRequest):
            parse_bulk(MultiDict(form))
