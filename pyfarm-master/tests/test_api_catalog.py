"""The catalog API: job types, software, tags and job queues."""

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from pyfarm.core.enums import WorkState
from pyfarm.master.db import utcnow
from pyfarm.master.errors import BadRequest
from pyfarm.master.models import Job, JobQueue, JobType, Software, Tag
from pyfarm.master.services import catalog

BLENDER_SCHEMA = {
    "type": "object",
    "properties": {"scene": {"type": "string"}},
    "required": ["scene"],
}


def error_of(response, status):
    """Assert ``status`` and return the JSON error message."""
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()["error"]


def add_job(session, queue_name, state=WorkState.QUEUED):
    """Insert a job in the queue ``queue_name``; return its id."""
    queue = session.execute(
        select(JobQueue).where(JobQueue.name == queue_name)).scalar_one()
    jobtype = session.execute(
        select(JobType).where(JobType.name == "command")).scalar_one()
    job = Job(title="shot", jobtype_id=jobtype.id, start=1, end=1,
              state=state, jobqueue_id=queue.id, created_at=utcnow(),
              updated_at=utcnow(), data={"argv": ["true"]})
    session.add(job)
    session.commit()
    return job.id


# -- job types -----------------------------------------------------------


def test_jobtypes_list_has_the_seeded_command_type(alice):
    response = alice.get("/api/v1/jobtypes/")
    assert response.status_code == 200
    body = response.get_json()
    assert body["total"] == 1 and body["page"] == 1
    assert body["per_page"] == 100
    (command,) = body["jobtypes"]
    assert command["name"] == "command"
    assert command["parameters"]["required"] == ["argv"]
    assert command["software"] is None
    assert set(command) == {"id", "name", "description", "parameters",
                            "software", "created_at"}


def test_admin_creates_a_jobtype(admin, alice, session):
    response = admin.post("/api/v1/jobtypes/", json={
        "name": "blender", "description": "Renders with Blender",
        "parameters": BLENDER_SCHEMA})
    assert response.status_code == 201
    assert response.headers["Location"] == "/api/v1/jobtypes/blender"
    body = response.get_json()
    assert body["name"] == "blender"
    assert body["description"] == "Renders with Blender"
    assert body["parameters"] == BLENDER_SCHEMA
    assert body["created_at"].endswith("+00:00")
    stored = alice.get("/api/v1/jobtypes/blender").get_json()
    assert stored == body
    assert session.execute(select(JobType.parameters).where(
        JobType.name == "blender")).scalar_one() == BLENDER_SCHEMA


def test_jobtype_parameters_default_to_any_object(admin):
    response = admin.post("/api/v1/jobtypes/", json={"name": "nuke"})
    assert response.status_code == 201
    assert response.get_json()["parameters"] == {}
    assert response.get_json()["description"] == ""


def test_duplicate_jobtype_is_409(admin):
    message = error_of(admin.post("/api/v1/jobtypes/",
                                  json={"name": "command"}), 409)
    assert "'command'" in message and "already exists" in message


@pytest.mark.parametrize("parameters, where", [
    ({"type": "nope"}, "parameters.type"),
    ({"properties": {"frame": {"minimum": "one"}}},
     "parameters.properties.frame.minimum"),
    ({"required": "scene"}, "parameters.required"),
])
def test_invalid_json_schema_is_400_naming_the_place(admin, parameters,
                                                     where):
    message = error_of(admin.post("/api/v1/jobtypes/", json={
        "name": "broken", "parameters": parameters}), 400)
    assert f"'{where}'" in message
    assert "not a valid JSON Schema" in message
    assert admin.get("/api/v1/jobtypes/broken").status_code == 404


@pytest.mark.parametrize("parameters, says", [
    ({"$ref": "#/$defs/nope"}, "cannot be resolved"),
    ({"properties": {"a": {"$ref": "https://example.com/a.json"}}},
     "cannot be resolved"),
    ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
     "refers to itself"),
])
def test_json_schema_whose_ref_cannot_be_followed_is_400(admin, parameters,
                                                         says):
    # The meta-schema accepts these; every submission would then fail.
    message = error_of(admin.post("/api/v1/jobtypes/", json={
        "name": "broken", "parameters": parameters}), 400)
    assert "'parameters'" in message and says in message
    assert admin.get("/api/v1/jobtypes/broken").status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"description": "x"}, "name"),
    ({"name": "x", "parameters": ["type"]}, "parameters"),
    ({"name": 5}, "name"),
    ({"name": "x", "colour": "red"}, "colour"),
    ({"name": ""}, "name"),
    ({"name": "a/b"}, "name"),
    ({"name": "x" * 65}, "name"),
])
def test_bad_jobtype_body_is_400_naming_the_field(admin, body, field):
    assert f"'{field}'" in error_of(
        admin.post("/api/v1/jobtypes/", json=body), 400)


def test_jobtype_body_must_be_json(admin):
    response = admin.post("/api/v1/jobtypes/", data="name=x",
                          content_type="application/x-www-form-urlencoded")
    assert "application/json" in error_of(response, 400)


def test_unknown_jobtype_is_404_naming_it(alice):
    assert "'maya'" in error_of(alice.get("/api/v1/jobtypes/maya"), 404)


def test_only_admins_create_jobtypes(alice):
    message = error_of(alice.post("/api/v1/jobtypes/",
                                  json={"name": "x"}), 403)
    assert "admin" in message


def test_agents_cannot_read_the_catalog(agent_api):
    for path in ("/api/v1/jobtypes/", "/api/v1/jobtypes/command",
                 "/api/v1/software/", "/api/v1/tags/",
                 "/api/v1/jobqueues/"):
        assert agent_api.get(path).status_code == 403, path


def test_jobtypes_are_paginated_by_name(admin):
    for name in ("zeta", "alpha"):
        assert admin.post("/api/v1/jobtypes/",
                          json={"name": name}).status_code == 201
    body = admin.get("/api/v1/jobtypes/?per_page=2&page=2").get_json()
    assert [t["name"] for t in body["jobtypes"]] == ["zeta"]
    assert (body["total"], body["page"], body["per_page"]) == (3, 2, 2)
    first = admin.get("/api/v1/jobtypes/?per_page=2").get_json()
    assert [t["name"] for t in first["jobtypes"]] == ["alpha", "command"]
    assert "'per_page'" in error_of(
        admin.get("/api/v1/jobtypes/?per_page=0"), 400)


# -- software ------------------------------------------------------------


def test_admin_creates_software_with_versions_sorted_numerically(admin,
                                                                 alice):
    response = admin.post("/api/v1/software/", json={
        "name": "blender", "versions": ["10.1", "4.0.2", "9.5", "4.0",
                                        "4.0"]})
    assert response.status_code == 201
    assert response.headers["Location"] == "/api/v1/software/blender"
    expected = ["4.0", "4.0.2", "9.5", "10.1"]
    assert response.get_json()["versions"] == expected
    assert alice.get("/api/v1/software/blender").get_json()[
        "versions"] == expected
    listed = alice.get("/api/v1/software/").get_json()
    assert listed["total"] == 1
    assert listed["software"] == [response.get_json()]


def test_software_versions_default_to_none(admin):
    response = admin.post("/api/v1/software/", json={"name": "maya"})
    assert response.status_code == 201
    assert response.get_json()["versions"] == []


def test_duplicate_software_is_409(admin):
    admin.post("/api/v1/software/", json={"name": "maya"})
    assert "'maya'" in error_of(
        admin.post("/api/v1/software/", json={"name": "maya"}), 409)


@pytest.mark.parametrize("body, field", [
    ({"versions": ["1"]}, "name"),
    ({"name": "maya", "versions": "2024"}, "versions"),
    ({"name": "maya", "versions": [2024]}, "versions.0"),
    ({"name": "maya", "versions": ["2024", "..."]}, "versions.1"),
    ({"name": "maya", "versions": [""]}, "versions.0"),
])
def test_bad_software_body_is_400_naming_the_field(admin, session, body,
                                                   field):
    assert f"'{field}'" in error_of(
        admin.post("/api/v1/software/", json=body), 400)
    assert session.execute(select(Software)).first() is None


def test_admin_adds_a_software_version(admin):
    admin.post("/api/v1/software/", json={"name": "maya",
                                          "versions": ["2025"]})
    response = admin.post("/api/v1/software/maya/versions/",
                          json={"version": "2024.2"})
    assert response.status_code == 201
    assert response.headers["Location"] == "/api/v1/software/maya"
    assert response.get_json()["versions"] == ["2024.2", "2025"]


def test_known_version_is_409(admin):
    admin.post("/api/v1/software/", json={"name": "maya",
                                          "versions": ["2025"]})
    message = error_of(admin.post("/api/v1/software/maya/versions/",
                                  json={"version": "2025"}), 409)
    assert "maya 2025" in message


def test_version_of_unknown_software_is_404(admin):
    assert "'houdini'" in error_of(admin.post(
        "/api/v1/software/houdini/versions/", json={"version": "20"}), 404)


def test_version_body_is_checked(admin):
    admin.post("/api/v1/software/", json={"name": "maya"})
    assert "'version'" in error_of(admin.post(
        "/api/v1/software/maya/versions/", json={}), 400)
    assert "'version'" in error_of(admin.post(
        "/api/v1/software/maya/versions/", json={"version": 2025}), 400)


def test_only_admins_change_software(admin, alice):
    admin.post("/api/v1/software/", json={"name": "maya"})
    assert error_of(alice.post("/api/v1/software/",
                               json={"name": "nuke"}), 403)
    assert error_of(alice.post("/api/v1/software/maya/versions/",
                               json={"version": "1"}), 403)


def test_unknown_software_is_404(alice):
    assert "'houdini'" in error_of(alice.get("/api/v1/software/houdini"),
                                   404)


# -- tags ----------------------------------------------------------------


def test_users_create_tags(alice, session):
    response = alice.post("/api/v1/tags/", json={"name": " gpu "})
    assert response.status_code == 201
    assert response.headers["Location"] == "/api/v1/tags/gpu"
    body = response.get_json()
    assert body["name"] == "gpu"
    assert alice.get("/api/v1/tags/gpu").get_json() == body
    assert session.execute(select(Tag.name)).scalars().all() == ["gpu"]


def test_tags_are_listed_by_name(admin, alice):
    for name in ("linux", "bigmem", "gpu"):
        assert admin.post("/api/v1/tags/", json={"name": name}) \
            .status_code == 201
    body = alice.get("/api/v1/tags/").get_json()
    assert [t["name"] for t in body["tags"]] == ["bigmem", "gpu", "linux"]
    assert body["total"] == 3


def test_duplicate_tag_is_409(alice):
    alice.post("/api/v1/tags/", json={"name": "gpu"})
    assert "'gpu'" in error_of(alice.post("/api/v1/tags/",
                                          json={"name": "gpu"}), 409)


def test_bad_tag_is_400(alice):
    assert "'name'" in error_of(alice.post("/api/v1/tags/",
                                           json={"name": "  "}), 400)
    assert "'name'" in error_of(alice.post("/api/v1/tags/", json={}), 400)


def test_unknown_tag_is_404(alice):
    assert "'gpu'" in error_of(alice.get("/api/v1/tags/gpu"), 404)


def test_agents_cannot_create_tags(agent_api):
    assert error_of(agent_api.post("/api/v1/tags/", json={"name": "x"}),
                    403)


# -- job queues ----------------------------------------------------------


def make_queue(api, **fields):
    response = api.post("/api/v1/jobqueues/", json=fields)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_admin_creates_a_queue_tree(admin, alice):
    top = make_queue(admin, name="lighting", priority=5)
    assert top["parent"] is None and top["children"] == []
    assert (top["priority"], top["weight"]) == (5, 1)
    assert top["minimum_agents"] is None and top["maximum_agents"] is None
    response = admin.post("/api/v1/jobqueues/", json={
        "name": "lighting-rush", "parent": "lighting", "priority": 10,
        "weight": 3, "minimum_agents": 1, "maximum_agents": 4})
    assert response.status_code == 201
    assert response.headers["Location"] == "/api/v1/jobqueues/lighting-rush"
    child = response.get_json()
    assert child["parent"] == "lighting"
    assert (child["weight"], child["minimum_agents"],
            child["maximum_agents"]) == (3, 1, 4)
    assert alice.get("/api/v1/jobqueues/lighting").get_json()[
        "children"] == ["lighting-rush"]
    listed = alice.get("/api/v1/jobqueues/").get_json()
    assert [q["name"] for q in listed["jobqueues"]] == [
        "lighting", "lighting-rush"]
    assert listed["total"] == 2


def test_queue_with_unknown_parent_is_404(admin):
    message = error_of(admin.post("/api/v1/jobqueues/", json={
        "name": "x", "parent": "nope"}), 404)
    assert "'nope'" in message and "'parent'" in message


def test_duplicate_queue_is_409(admin):
    make_queue(admin, name="fx")
    assert "'fx'" in error_of(admin.post("/api/v1/jobqueues/",
                                         json={"name": "fx"}), 409)


@pytest.mark.parametrize("body, field", [
    ({"name": "q", "minimum_agents": 0}, "minimum_agents"),
    ({"name": "q", "maximum_agents": 0}, "maximum_agents"),
    ({"name": "q", "minimum_agents": 3, "maximum_agents": 2},
     "minimum_agents"),
    ({"name": "q", "weight": -1}, "weight"),
    ({"name": "q", "priority": "5"}, "priority"),
    ({"name": "q", "priority": 2**40}, "priority"),
    ({"name": "q", "priority": True}, "priority"),
    ({"priority": 1}, "name"),
    ({"name": "q", "parents": ["a"]}, "parents"),
])
def test_bad_queue_body_is_400_naming_the_field(admin, body, field):
    assert f"'{field}'" in error_of(
        admin.post("/api/v1/jobqueues/", json=body), 400)


def test_only_admins_change_queues(admin, alice):
    make_queue(admin, name="fx")
    assert alice.get("/api/v1/jobqueues/fx").status_code == 200
    assert error_of(alice.post("/api/v1/jobqueues/", json={"name": "x"}),
                    403)
    assert error_of(alice.patch("/api/v1/jobqueues/fx",
                                json={"priority": 1}), 403)
    assert error_of(alice.delete("/api/v1/jobqueues/fx"), 403)


def test_patch_changes_only_the_fields_sent(admin):
    make_queue(admin, name="fx", priority=2, weight=4, maximum_agents=8)
    make_queue(admin, name="comp")
    response = admin.patch("/api/v1/jobqueues/fx", json={
        "priority": 7, "parent": "comp", "minimum_agents": 2})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["priority"], body["weight"], body["parent"]) == (
        7, 4, "comp")
    assert (body["minimum_agents"], body["maximum_agents"]) == (2, 8)
    again = admin.get("/api/v1/jobqueues/fx").get_json()
    assert again == body
    cleared = admin.patch("/api/v1/jobqueues/fx", json={
        "parent": None, "maximum_agents": None}).get_json()
    assert cleared["parent"] is None and cleared["maximum_agents"] is None
    assert admin.get("/api/v1/jobqueues/comp").get_json()["children"] == []


def test_patch_renames_a_queue(admin):
    make_queue(admin, name="fx")
    response = admin.patch("/api/v1/jobqueues/fx", json={"name": "vfx"})
    assert response.get_json()["name"] == "vfx"
    assert admin.get("/api/v1/jobqueues/fx").status_code == 404
    assert admin.get("/api/v1/jobqueues/vfx").status_code == 200


def test_patch_rename_to_a_taken_name_is_409(admin):
    make_queue(admin, name="fx")
    make_queue(admin, name="comp")
    assert "'comp'" in error_of(admin.patch(
        "/api/v1/jobqueues/fx", json={"name": "comp"}), 409)


def test_patch_refuses_a_loop_in_the_tree(admin):
    make_queue(admin, name="a")
    make_queue(admin, name="b", parent="a")
    make_queue(admin, name="c", parent="b")
    for parent in ("c", "a"):
        path = "/api/v1/jobqueues/a"
        assert "'parent'" in error_of(
            admin.patch(path, json={"parent": parent}), 400)
    assert admin.get("/api/v1/jobqueues/a").get_json()["parent"] is None


@pytest.mark.parametrize("body, field", [
    ({"name": None}, "name"),
    ({"priority": None}, "priority"),
    ({"weight": "high"}, "weight"),
    ({"minimum_agents": 9}, "minimum_agents"),
    ({"state": "open"}, "state"),
])
def test_bad_patch_is_400_and_changes_nothing(admin, body, field):
    make_queue(admin, name="fx", priority=1, maximum_agents=4)
    assert f"'{field}'" in error_of(
        admin.patch("/api/v1/jobqueues/fx", json=body), 400)
    queue = admin.get("/api/v1/jobqueues/fx").get_json()
    assert (queue["name"], queue["priority"], queue["minimum_agents"]) == (
        "fx", 1, None)


def test_patch_unknown_queue_or_parent_is_404(admin):
    assert error_of(admin.patch("/api/v1/jobqueues/nope",
                                json={"priority": 1}), 404)
    make_queue(admin, name="fx")
    assert "'nope'" in error_of(admin.patch(
        "/api/v1/jobqueues/fx", json={"parent": "nope"}), 404)


def test_delete_a_queue(admin):
    make_queue(admin, name="fx")
    response = admin.delete("/api/v1/jobqueues/fx")
    assert response.status_code == 204
    assert admin.get("/api/v1/jobqueues/fx").status_code == 404
    assert error_of(admin.delete("/api/v1/jobqueues/fx"), 404)


def test_delete_a_queue_with_sub_queues_is_409(admin):
    make_queue(admin, name="fx")
    make_queue(admin, name="fx-rush", parent="fx")
    assert "sub-queue" in error_of(admin.delete("/api/v1/jobqueues/fx"),
                                   409)
    assert admin.get("/api/v1/jobqueues/fx").status_code == 200


@pytest.mark.parametrize("state", [WorkState.QUEUED, WorkState.RUNNING,
                                   WorkState.PAUSED])
def test_delete_a_queue_with_unfinished_jobs_is_409(admin, session, state):
    make_queue(admin, name="fx")
    add_job(session, "fx", state)
    assert "not done or failed" in error_of(
        admin.delete("/api/v1/jobqueues/fx"), 409)
    assert admin.get("/api/v1/jobqueues/fx").status_code == 200


def test_delete_a_queue_keeps_its_finished_jobs(admin, session):
    make_queue(admin, name="fx")
    done = add_job(session, "fx", WorkState.DONE)
    failed = add_job(session, "fx", WorkState.FAILED)
    assert admin.delete("/api/v1/jobqueues/fx").status_code == 204
    session.expire_all()
    for job_id in (done, failed):
        job = session.get(Job, job_id)
        assert job is not None and job.jobqueue_id is None


# -- services used by other parts ----------------------------------------


def test_ensure_tags_creates_missing_tags_in_order(session):
    existing = catalog.create_tag(session, "gpu")
    session.commit()
    tags = catalog.ensure_tags(session, ["linux", " gpu", "linux"])
    assert [tag.name for tag in tags] == ["linux", "gpu"]
    assert tags[1].id == existing.id
    assert catalog.ensure_tags(session, []) == []
    with pytest.raises(BadRequest, match="'agent_tags.1'"):
        catalog.ensure_tags(session, ["ok", ""], field="agent_tags")


def test_a_name_taken_concurrently_keeps_the_transaction(session, app):
    # Another connection creates the tag after our look-up.
    other = sa.create_engine(app.config["PYFARM"].database_url,
                             poolclass=sa.pool.NullPool)
    with other.begin() as connection:
        connection.exec_driver_sql("INSERT INTO tags (name) VALUES ('gpu')")
    other.dispose()
    session.add(Tag(name="linux"))
    assert catalog._insert_once(session, Tag(name="gpu")) is False
    session.commit()
    assert sorted(session.execute(select(Tag.name)).scalars()) == [
        "gpu", "linux"]


def test_ensure_software_version(session):
    first = catalog.ensure_software_version(session, "blender", "4.2")
    again = catalog.ensure_software_version(session, "blender", "4.2")
    other = catalog.ensure_software_version(session, "blender", "4.1")
    session.commit()
    assert first.id == again.id != other.id
    assert first.software.name == "blender"
    assert session.execute(select(Software)).scalars().all() == [
        first.software]
    with pytest.raises(BadRequest, match="'version'"):
        catalog.ensure_software_version(session, "blender", "..")


def test_sorted_versions_tolerates_odd_strings():
    assert catalog.sorted_versions(["10", "-", "9.5", "2"]) == [
        "-", "2", "9.5", "10"]
