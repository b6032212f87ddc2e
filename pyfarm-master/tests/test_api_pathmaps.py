"""Path maps: the admin API, and the maps agents receive with their work."""

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from pyfarm.master.db import db
from pyfarm.master.models import (
    Job,
    JobSoftwareRequirement,
    JobType,
    PathMap,
    Software,
    Tag,
    Task,
)

PATHMAPS = "/api/v1/pathmaps/"
AGENTS = "/api/v1/agents/"
AGENT_ID = "5d1f7c1e-6d4b-4a43-9f5e-2f1d7e0b8a11"
NOW = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)

SHOW = {"linux": "/mnt/show", "windows": "P:\\show", "mac": "/Volumes/show"}


def error_of(response, status):
    assert response.status_code == status, response.get_json()
    return response.get_json()["error"]


def create(api, status=201, **fields):
    response = api.post(PATHMAPS, json=fields)
    assert response.status_code == status, response.get_json()
    return response.get_json()


# -- create, read -----------------------------------------------------------

def test_admin_creates_a_path_map(admin, alice):
    response = admin.post(PATHMAPS, json={**SHOW, "tag": "studio-a"})
    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"/api/v1/pathmaps/{body['id']}"
    assert body == {"id": body["id"], **SHOW, "tag": "studio-a",
                    "created_at": body["created_at"]}
    assert body["created_at"].endswith("+00:00")
    assert alice.get(f"{PATHMAPS}{body['id']}").get_json() == body


def test_the_tag_is_created_when_missing(admin, session):
    create(admin, **SHOW, tag="new-tag")
    assert session.execute(select(Tag.name)).scalars().all() == ["new-tag"]


def test_two_folders_are_enough_and_no_tag_means_every_agent(admin):
    body = create(admin, linux="/mnt/show", windows="\\\\server\\show")
    assert (body["mac"], body["tag"]) == (None, None)


def test_folders_are_stripped(admin):
    body = create(admin, linux="  /mnt/show ", mac=" /Volumes/show")
    assert (body["linux"], body["mac"]) == ("/mnt/show", "/Volumes/show")


@pytest.mark.parametrize("windows", [
    "P:", "P:\\", "p:/show", "\\\\server\\show", "//server/show"])
def test_windows_folders_on_a_drive_or_a_share(admin, windows):
    assert create(admin, linux="/mnt/show", windows=windows)["windows"] \
        == windows


def test_list_is_paged_oldest_first(admin, alice):
    ids = [create(admin, linux=f"/mnt/{n}", mac=f"/Volumes/{n}",
                  tag="t" if n % 2 else None)["id"] for n in range(3)]
    body = alice.get(PATHMAPS).get_json()
    assert [item["id"] for item in body["pathmaps"]] == ids
    assert [item["tag"] for item in body["pathmaps"]] == [None, "t", None]
    assert (body["total"], body["page"], body["per_page"]) == (3, 1, 100)
    page = alice.get(PATHMAPS + "?per_page=2&page=2").get_json()
    assert [item["id"] for item in page["pathmaps"]] == ids[2:]
    assert page["total"] == 3


def test_list_queries_do_not_grow_with_the_maps(admin, alice):
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    def count():
        statements.clear()
        sa.event.listen(db.engine, "before_cursor_execute", record)
        try:
            assert alice.get(PATHMAPS).status_code == 200
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", record)
        return len(statements)

    create(admin, **SHOW, tag="a")
    count()  # the token's first use of the test is recorded
    few = count()
    for name in "bcdef":
        create(admin, **SHOW, tag=name)
    assert count() == few


# -- validation -------------------------------------------------------------

@pytest.mark.parametrize("body", [
    {}, {"linux": "/mnt/show"}, {"windows": "P:\\show", "tag": "a"},
    {"linux": "/mnt/show", "windows": None, "mac": None},
])
def test_fewer_than_two_folders_is_400(admin, body):
    message = error_of(admin.post(PATHMAPS, json=body), 400)
    assert "at least two" in message
    assert "'linux', 'windows' and 'mac'" in message


@pytest.mark.parametrize("body, field", [
    ({"linux": "mnt/show", "mac": "/Volumes/show"}, "'linux'"),
    ({"linux": "/mnt/show", "mac": "Volumes/show"}, "'mac'"),
    ({"linux": "/mnt/show", "windows": "show"}, "'windows'"),
    ({"linux": "/mnt/show", "windows": "/show"}, "'windows'"),
    ({"linux": "/mnt/show", "windows": "PP:\\show"}, "'windows'"),
    ({"linux": "  ", "mac": "/Volumes/show"}, "'linux'"),
    ({"linux": "", "mac": "/Volumes/show"}, "'linux'"),
    ({"linux": "/mnt/\tshow", "mac": "/Volumes/show"}, "'linux'"),
    ({"linux": "/" + "x" * 1024, "mac": "/Volumes/show"}, "'linux'"),
    ({"linux": 5, "mac": "/Volumes/show"}, "'linux'"),
    ({"linux": "/mnt/show", "mac": "/Volumes/show", "tag": ""}, "'tag'"),
    ({"linux": "/mnt/show", "mac": "/Volumes/show", "tag": "a/b"}, "'tag'"),
    ({"linux": "/mnt/show", "mac": "/Volumes/show", "tag": 5}, "'tag'"),
    ({"linux": "/mnt/show", "mac": "/Volumes/show", "bsd": "/x"},
     "unknown field 'bsd'"),
])
def test_bad_fields_are_400_naming_them(admin, session, body, field):
    assert field in error_of(admin.post(PATHMAPS, json=body), 400)
    assert session.execute(select(PathMap)).first() is None


def test_nul_in_a_folder_is_400(admin):
    response = admin.post(PATHMAPS, json={"linux": "/mnt/\x00show",
                                          "mac": "/Volumes/show"})
    assert "NUL" in error_of(response, 400)


def test_a_folder_of_1024_characters_fits(admin):
    folder = "/" + "x" * 1023
    assert create(admin, linux=folder, mac="/Volumes/show")["linux"] \
        == folder


# -- change, delete ---------------------------------------------------------

def test_patch_changes_only_what_is_sent(admin):
    body = create(admin, **SHOW, tag="a")
    response = admin.patch(f"{PATHMAPS}{body['id']}",
                           json={"mac": None, "windows": "Q:\\show"})
    assert response.status_code == 200
    changed = response.get_json()
    assert changed == {**body, "mac": None, "windows": "Q:\\show"}
    assert admin.get(f"{PATHMAPS}{body['id']}").get_json() == changed


def test_patch_sets_and_clears_the_tag(admin):
    body = create(admin, **SHOW)
    url = f"{PATHMAPS}{body['id']}"
    assert admin.patch(url, json={"tag": "b"}).get_json()["tag"] == "b"
    assert admin.patch(url, json={"tag": None}).get_json()["tag"] is None


def test_patch_with_nothing_changes_nothing(admin):
    body = create(admin, **SHOW)
    response = admin.patch(f"{PATHMAPS}{body['id']}", json={})
    assert response.status_code == 200 and response.get_json() == body


def test_patch_leaving_one_folder_is_400_and_changes_nothing(admin):
    body = create(admin, linux="/mnt/show", mac="/Volumes/show")
    url = f"{PATHMAPS}{body['id']}"
    assert "at least two" in error_of(
        admin.patch(url, json={"mac": None}), 400)
    assert "'linux'" in error_of(admin.patch(url, json={"linux": "x"}), 400)
    assert admin.get(url).get_json() == body


def test_delete_forgets_the_map(admin):
    body = create(admin, **SHOW)
    url = f"{PATHMAPS}{body['id']}"
    response = admin.delete(url)
    assert response.status_code == 204 and response.data == b""
    assert admin.get(url).status_code == 404
    assert admin.delete(url).status_code == 404


def test_deleting_the_tag_deletes_its_maps(admin, session):
    body = create(admin, **SHOW, tag="gone")
    session.execute(sa.delete(Tag).where(Tag.name == "gone"))
    session.commit()
    assert admin.get(f"{PATHMAPS}{body['id']}").status_code == 404


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
@pytest.mark.parametrize("ident", ["4242", str(2**31), "0"])
def test_unknown_or_impossible_ids_are_404(admin, method, ident):
    kwargs = {"json": {"mac": None}} if method == "patch" else {}
    response = getattr(admin, method)(f"{PATHMAPS}{ident}", **kwargs)
    # An id beyond an SQL INTEGER matches no route: 404, or 405 from
    # Werkzeug for a method other than GET (as everywhere in the API).
    assert response.status_code == 404 or (
        ident == str(2**31) and method != "get"
        and response.status_code == 405)
    assert response.is_json
    if ident == "4242":
        assert "no path map with id 4242" in response.get_json()["error"]


def test_roles(admin, alice, agent_api, client):
    body = create(admin, **SHOW)
    url = f"{PATHMAPS}{body['id']}"
    assert client.get(PATHMAPS).status_code == 401
    assert agent_api.get(PATHMAPS).status_code == 403
    assert agent_api.get(url).status_code == 403
    assert alice.get(PATHMAPS).status_code == 200
    assert alice.post(PATHMAPS, json=SHOW).status_code == 403
    assert alice.patch(url, json={"mac": None}).status_code == 403
    assert alice.delete(url).status_code == 403
    assert admin.get(url).get_json() == body


# -- what agents receive ----------------------------------------------------

def make_job(session, title="job", frames=2, software=(), **fields):
    jobtype = session.execute(
        select(JobType).where(JobType.name == "command")).scalar_one()
    job = Job(title=title, jobtype=jobtype, start=1, end=frames,
              data={"argv": ["render", "/mnt/show/a.blend"]},
              created_at=NOW, updated_at=NOW, **fields)
    for name, low, high in software:
        row = session.execute(select(Software).where(
            Software.name == name)).scalar() or Software(name=name)
        job.software_requirements.append(JobSoftwareRequirement(
            software=row, min_version=low, max_version=high))
    session.add(job)
    session.flush()
    session.add_all(Task(job_id=job.id, frame=frame, created_at=NOW,
                         updated_at=NOW) for frame in range(1, frames + 1))
    session.commit()
    return job.id


def register(agent_api, tags=(), cpus=1):
    response = agent_api.post(AGENTS, json={
        "id": AGENT_ID, "hostname": "node1", "os": "linux", "cpus": cpus,
        "ram": 16000, "tags": list(tags),
        "software": [{"software": "blender", "version": "4.2.3"},
                     {"software": "ocio", "version": "2.3"}]})
    assert response.status_code in (200, 201), response.get_json()


def sync(agent_api, running=()):
    response = agent_api.post(f"{AGENTS}{AGENT_ID}/sync", json={
        "running": [{"task": task, "attempt": attempt}
                    for task, attempt in running]})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_assignments_carry_the_software_requirements(agent_api, session):
    make_job(session, software=[("ocio", None, None),
                                ("blender", "4.0", "4.9")])
    register(agent_api)
    [assignment] = sync(agent_api)["assignments"]
    assert assignment["job"]["software_requirements"] == [
        {"software": "blender", "min_version": "4.0", "max_version": "4.9"},
        {"software": "ocio", "min_version": None, "max_version": None}]


def test_assignments_carry_the_maps_of_the_agents_tags(admin, agent_api,
                                                       session):
    general = create(admin, **SHOW)
    create(admin, linux="/mnt/other", mac="/Volumes/other", tag="studio-b")
    mine = create(admin, linux="/mnt/show", windows="Q:\\show",
                  tag="studio-a")
    later = create(admin, linux="/mnt/lib", windows="L:\\", mac=None)
    make_job(session)
    register(agent_api, tags=["studio-a", "gpu"])
    [assignment] = sync(agent_api)["assignments"]
    strip = ("id", "tag", "created_at")
    assert assignment["job"]["pathmaps"] == [
        {key: value for key, value in item.items() if key not in strip}
        for item in (mine, general, later)]


def test_an_agent_without_tags_gets_only_the_general_maps(admin, agent_api,
                                                          session):
    create(admin, **SHOW)
    create(admin, linux="/mnt/other", mac="/Volumes/other", tag="studio-b")
    make_job(session)
    register(agent_api)
    [assignment] = sync(agent_api)["assignments"]
    assert assignment["job"]["pathmaps"] == [SHOW]


def test_redelivered_assignments_carry_them_too(admin, agent_api, session):
    create(admin, **SHOW, tag="studio-a")
    make_job(session, software=[("blender", "4.0", None)])
    register(agent_api, tags=["studio-a"])
    [first] = sync(agent_api)["assignments"]
    # The answer was lost: the agent lists nothing and gets it again.
    [again] = sync(agent_api)["assignments"]
    assert again == first
    assert again["job"]["pathmaps"] == [SHOW]
    assert again["job"]["software_requirements"] == [
        {"software": "blender", "min_version": "4.0", "max_version": None}]


def test_one_query_for_the_path_maps_per_claim(admin, agent_api, session):
    create(admin, **SHOW)
    create(admin, linux="/mnt/lib", windows="L:\\")
    for index in range(4):
        make_job(session, title=f"job {index}", frames=1,
                 software=[("blender", None, None)])
    register(agent_api, cpus=4)
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        answer = sync(agent_api)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    assert len(answer["assignments"]) == 4
    assert all(len(a["job"]["pathmaps"]) == 2 for a in answer["assignments"])
    assert len([s for s in statements if "FROM path_maps" in s]) == 1
    requirements = [s for s in statements
                    if "FROM job_software_requirements" in s]
    # The scheduler's requirement check, and loading the assignments'.
    assert len(requirements) == 2


def test_a_sync_without_work_reads_no_path_maps(admin, agent_api):
    create(admin, **SHOW)
    register(agent_api)
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert sync(agent_api)["assignments"] == []
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    assert not [s for s in statements if "path_maps" in s]
