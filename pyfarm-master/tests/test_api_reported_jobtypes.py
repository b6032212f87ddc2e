"""Job types reported by agents at registration, and jobs checked
against their schemas."""

import logging
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pyfarm.master.app import engine_options
from pyfarm.master.db import configure_sqlite, db, is_sqlite, utcnow
from pyfarm.master.models import Agent, JobType, Software
from pyfarm.master.services.catalog import upsert_jobtypes

AGENTS = "/api/v1/agents/"
JOBTYPES = "/api/v1/jobtypes/"
JOBS = "/api/v1/jobs/"
AGENT_ID = "5d1f7c1e-6d4b-4a43-9f5e-2f1d7e0b8a11"

BLENDER_SCHEMA = {
    "type": "object",
    "properties": {
        "scene": {"type": "string"},
        "output": {"type": "string"},
        "samples": {"type": "integer", "minimum": 1},
    },
    "required": ["scene"],
    "additionalProperties": False,
}


def blender(**fields):
    return {"name": "blender", "description": "Renders Blender scenes.",
            "parameters": BLENDER_SCHEMA, "software": "blender", **fields}


def registration(jobtypes, **fields):
    return {"id": AGENT_ID, "hostname": "node1", "os": "linux", "cpus": 4,
            "ram": 16000, "jobtypes": jobtypes, **fields}


def register(api, jobtypes, status=(200, 201), **fields):
    response = api.post(AGENTS, json=registration(jobtypes, **fields))
    assert response.status_code in (
        status if isinstance(status, tuple) else (status,)), \
        response.get_json()
    return response


def error_of(response, status):
    assert response.status_code == status, response.get_json()
    return response.get_json()["error"]


def stored(session, name):
    session.expire_all()
    return session.execute(
        select(JobType).where(JobType.name == name)).scalar()


# -- registration creates and updates job types --------------------------

def test_a_reported_job_type_becomes_known(agent_api, alice, session):
    register(agent_api, [blender()], 201)
    body = alice.get(JOBTYPES + "blender").get_json()
    assert body["name"] == "blender"
    assert body["description"] == "Renders Blender scenes."
    assert body["parameters"] == BLENDER_SCHEMA
    assert body["software"] == "blender"
    assert body["created_at"].endswith("+00:00")
    names = [item["name"] for item in
             alice.get(JOBTYPES).get_json()["jobtypes"]]
    assert names == ["blender", "command"]


def test_registering_again_does_not_duplicate_or_touch_an_unchanged_type(
        agent_api, session, caplog):
    register(agent_api, [blender()], 201)
    created_at = stored(session, "blender").created_at
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pyfarm.master.catalog"):
        register(agent_api, [blender()], 200)
    assert session.execute(select(func.count()).select_from(JobType)
                           .where(JobType.name == "blender")).scalar() == 1
    assert stored(session, "blender").created_at == created_at
    assert not [r for r in caplog.records if "blender" in r.getMessage()]


def test_changed_schema_description_and_software_are_updated_and_logged(
        agent_api, session, caplog):
    register(agent_api, [blender()], 201)
    schema = {**BLENDER_SCHEMA, "required": ["scene", "output"]}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pyfarm.master.catalog"):
        register(agent_api, [blender(parameters=schema, description="New.",
                                     software="blender-lts")])
    row = stored(session, "blender")
    assert (row.parameters, row.description, row.software) == (
        schema, "New.", "blender-lts")
    changed = [r for r in caplog.records
               if "parameters schema changed" in r.getMessage()]
    assert len(changed) == 1 and changed[0].levelno == logging.INFO
    assert "'blender'" in changed[0].getMessage()
    assert AGENT_ID in changed[0].getMessage()


def test_only_the_description_changing_logs_no_schema_change(
        agent_api, session, caplog):
    register(agent_api, [blender()], 201)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pyfarm.master.catalog"):
        register(agent_api, [blender(description="Other words.")])
    assert stored(session, "blender").description == "Other words."
    assert not [r for r in caplog.records
                if "schema changed" in r.getMessage()]


@pytest.fixture
def command_restored(session):
    """Put the seeded ``command`` job type back after the test (the
    PostgreSQL test database keeps that row between tests)."""
    row = stored(session, "command")
    saved = (row.description, row.parameters, row.software)
    yield
    session.rollback()
    row = stored(session, "command")
    row.description, row.parameters, row.software = saved
    session.commit()


def test_the_seeded_command_type_is_updated_by_the_agents_report(
        agent_api, session, command_restored):
    schema = {"type": "object", "properties": {
        "argv": {"type": "array", "items": {"type": "string"}}}}
    register(agent_api, [{"name": "command", "parameters": schema}])
    row = stored(session, "command")
    assert row.parameters == schema
    assert (row.description, row.software) == ("", None)


def test_job_types_are_optional_and_other_types_are_left_alone(
        agent_api, admin, session):
    admin.post(JOBTYPES, json={"name": "nuke", "parameters": {}})
    register(agent_api, [blender()], 201)
    register(agent_api, [])
    response = agent_api.post(AGENTS, json={
        "id": AGENT_ID, "hostname": "node1", "os": "linux", "cpus": 4,
        "ram": 16000})
    assert response.status_code == 200
    assert stored(session, "blender") is not None
    assert stored(session, "nuke") is not None


def test_the_job_type_software_need_not_be_installed(agent_api, session):
    # The job type says what it runs; the agent may not have it.
    register(agent_api, [blender()], 201)
    assert stored(session, "blender").software == "blender"
    assert session.execute(select(func.count()).select_from(Software)
                           ).scalar() == 0


# -- registration refuses bad job types, changing nothing ----------------

@pytest.mark.parametrize("parameters, where", [
    ({"type": "nope"}, "jobtypes[1].parameters.type"),
    ({"properties": {"scene": {"minLength": "one"}}},
     "jobtypes[1].parameters.properties.scene.minLength"),
    ({"required": "scene"}, "jobtypes[1].parameters.required"),
    ({"$ref": "#/$defs/missing"}, "jobtypes[1].parameters"),
])
def test_a_bad_schema_leaves_that_job_type_out_and_says_why(
        agent_api, session, parameters, where, caplog):
    # One studio plugin with a broken schema must not keep the agent and
    # its other job types off the farm.
    response = agent_api.post(AGENTS, json=registration(
        [blender(), {"name": "maya", "parameters": parameters}]))
    assert response.status_code == 201, response.get_json()
    [rejected] = response.get_json()["rejected_jobtypes"]
    assert rejected["name"] == "maya"
    assert f"'{where}" in rejected["error"]
    assert stored(session, "blender").parameters == BLENDER_SCHEMA
    assert stored(session, "maya") is None
    assert session.get(Agent, AGENT_ID) is not None
    assert "job type 'maya' left out" in caplog.text


def test_a_bad_schema_from_a_known_agent_keeps_the_stored_type(
        agent_api, session):
    body = register(agent_api, [blender()], 201).get_json()
    assert body["rejected_jobtypes"] == []
    response = agent_api.post(AGENTS, json=registration(
        [blender(parameters={"type": 5})], hostname="renamed"))
    assert response.status_code == 200
    [rejected] = response.get_json()["rejected_jobtypes"]
    assert "'jobtypes[0].parameters.type'" in rejected["error"]
    assert stored(session, "blender").parameters == BLENDER_SCHEMA
    assert session.get(Agent, AGENT_ID).hostname == "renamed"


@pytest.mark.parametrize("item, field", [
    ({"description": "no name"}, "'jobtypes.0.name'"),
    ({"name": ""}, "'jobtypes.0.name'"),
    ({"name": "a/b"}, "'jobtypes.0.name'"),
    ({"name": "x" * 65}, "'jobtypes.0.name'"),
    ({"name": "tab\tname"}, "'jobtypes.0.name'"),
    ({"name": "maya", "parameters": ["type"]}, "'jobtypes.0.parameters'"),
    ({"name": "maya", "software": "a/b"}, "'jobtypes.0.software'"),
    ({"name": "maya", "software": 5}, "'jobtypes.0.software'"),
    ({"name": "maya", "description": 5}, "'jobtypes.0.description'"),
    ({"name": "maya", "version": 2}, "unknown field 'jobtypes.0.version'"),
])
def test_bad_job_type_fields_are_400_naming_them(agent_api, item, field):
    assert field in error_of(
        agent_api.post(AGENTS, json=registration([item])), 400)


def test_a_job_type_named_twice_is_400(agent_api):
    message = error_of(agent_api.post(AGENTS, json=registration(
        [blender(), blender(description="again")])), 400)
    assert "'jobtypes'" in message and "'blender' twice" in message


def test_job_type_names_are_stripped(agent_api, session):
    register(agent_api, [blender(name=" blender ", software=" blender ")])
    row = stored(session, "blender")
    assert row is not None and row.software == "blender"


def test_jobtypes_must_be_a_list(agent_api):
    assert "'jobtypes'" in error_of(agent_api.post(
        AGENTS, json=registration(blender())), 400)


# -- submissions are checked against a reported schema --------------------

@pytest.fixture
def blender_known(agent_api):
    register(agent_api, [blender()], 201)


def job(**data):
    return {"title": "shot 10", "jobtype": "blender", "start": 1, "end": 5,
            "data": data}


def test_a_job_matching_the_reported_schema_is_accepted(blender_known,
                                                        alice):
    response = alice.post(JOBS, json=job(scene="/shots/010.blend",
                                         samples=64))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["jobtype"] == "blender"


def test_a_missing_scene_is_400_naming_it(blender_known, alice):
    message = error_of(alice.post(JOBS, json=job(output="/r/####")), 400)
    assert "'data.scene'" in message and "required" in message


def test_an_unknown_field_is_400_naming_it(blender_known, alice):
    message = error_of(alice.post(JOBS, json=job(
        scene="/shots/010.blend", camera="cam1", layer="a")), 400)
    assert message == "unknown field 'data.camera', 'data.layer'"


def test_an_unknown_nested_field_is_named_with_its_path(agent_api, alice):
    schema = {"type": "object", "properties": {"passes": {
        "type": "array", "items": {
            "type": "object", "properties": {"name": {"type": "string"}},
            "patternProperties": {"^x-": {}},
            "additionalProperties": False}}}}
    register(agent_api, [blender(name="nuke", parameters=schema)], 201)
    message = error_of(alice.post(JOBS, json={**job(passes=[
        {"name": "a"}, {"name": "b", "x-note": "ok", "colour": "red"}]),
        "jobtype": "nuke"}), 400)
    assert message == "unknown field 'data.passes[1].colour'"


def test_a_wrong_type_is_400_naming_the_field(blender_known, alice):
    message = error_of(alice.post(JOBS, json=job(
        scene="/shots/010.blend", samples=0)), 400)
    assert "'data.samples'" in message


def test_the_newest_reported_schema_is_the_one_checked(agent_api, alice):
    register(agent_api, [blender()], 201)
    relaxed = {**BLENDER_SCHEMA, "additionalProperties": True}
    register(agent_api, [blender(parameters=relaxed)])
    response = alice.post(JOBS, json=job(scene="/s.blend", camera="cam1"))
    assert response.status_code == 201, response.get_json()


# -- POST /jobtypes/ with software ----------------------------------------

def test_admin_may_name_the_software_of_a_job_type(admin):
    response = admin.post(JOBTYPES, json={
        "name": "houdini", "parameters": {}, "software": " houdini "})
    assert response.status_code == 201
    assert response.get_json()["software"] == "houdini"


@pytest.mark.parametrize("software", ["", "a/b", 5])
def test_bad_software_of_a_job_type_is_400(admin, software):
    assert "'software'" in error_of(admin.post(JOBTYPES, json={
        "name": "houdini", "software": software}), 400)


# -- two agents reporting a new job type at once --------------------------

@pytest.fixture
def other_engine(app):
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    engine = sa.create_engine(url, **engine_options(url))
    if is_sqlite(url):
        configure_sqlite(engine)
    yield engine
    engine.dispose()


def reported(**fields):
    return [{"name": "blender", "description": "", "software": None,
             "parameters": BLENDER_SCHEMA, **fields}]


def test_two_agents_reporting_the_same_new_type_at_once(app, session,
                                                        other_engine):
    # The first transaction inserts and stays open; the second waits
    # (PostgreSQL) or runs after it (SQLite) and finds the row.
    upsert_jobtypes(session, reported(), utcnow())
    errors = []

    def other():
        try:
            with Session(other_engine) as second:
                upsert_jobtypes(second, reported(description="other"),
                                utcnow())
                second.commit()
        except Exception as error:  # reported through the assert below
            errors.append(error)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(timeout=0.5)
    session.commit()
    thread.join(timeout=30)
    assert not thread.is_alive() and errors == []
    row = stored(session, "blender")
    assert row.description == "other"
    assert session.execute(select(func.count()).select_from(JobType)
                           .where(JobType.name == "blender")).scalar() == 1


def test_upsert_returns_the_rows_in_name_order(session):
    rows = upsert_jobtypes(session, reported(name="maya") + reported(),
                           utcnow())
    assert [row.name for row in rows] == ["blender", "maya"]
    again = upsert_jobtypes(session, reported(), utcnow())
    assert again[0].id == rows[0].id
    assert db.session.execute(select(func.count()).select_from(JobType)
                              ).scalar() == 3
