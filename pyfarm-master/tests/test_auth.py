"""Authentication and roles on every API route; tokens stored hashed."""

import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from pyfarm.core.enums import Role
from pyfarm.master.auth import (
    LAST_USED_PRECISION,
    check_password,
    hash_token,
    user_for_token,
)
from pyfarm.master.db import db, utcnow
from pyfarm.master.models import ApiToken, User
from pyfarm.master.services.users import create_token, create_user

#: The module whose views agent tokens may call.
AGENT_PROTOCOL = "pyfarm.master.api.agent_protocol"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def api_routes(app):
    """Yield ``(method, url, view)`` for every guarded API route.

    URL arguments are filled with placeholders: the role check comes
    before any look-up, so they need not exist.
    """
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule == "/api/v1/":
            continue
        url = re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>",
                     lambda m: "1" if m.group(1) == "int" else "x",
                     rule.rule)
        for method in sorted(rule.methods & set(METHODS)):
            yield method, url, app.view_functions[rule.endpoint]


def test_there_are_api_routes_to_check(app):
    urls = {url for _, url, _ in api_routes(app)}
    assert {"/api/v1/jobtypes/", "/api/v1/agents/", "/api/v1/agents/x",
            "/api/v1/jobqueues/x", "/api/v1/software/x/versions/"} <= urls


def test_every_api_route_but_the_index_needs_a_token(app, client):
    assert client.get("/api/v1/").status_code == 200
    for method, url, _ in api_routes(app):
        response = client.open(url, method=method, json={})
        assert response.status_code == 401, (method, url)
        assert "Authorization: Bearer" in response.get_json()["error"]


def test_every_api_route_rejects_an_unknown_token(app, client):
    headers = {"Authorization": "Bearer not-a-token"}
    for method, url, _ in api_routes(app):
        response = client.open(url, method=method, json={},
                               headers=headers)
        assert response.status_code == 401, (method, url)
        assert "unknown" in response.get_json()["error"]


def test_agent_tokens_may_call_only_the_agent_protocol(app, agent_api):
    checked = 0
    for method, url, view in api_routes(app):
        if view.__module__ == AGENT_PROTOCOL:
            continue
        response = agent_api.request(method, url, json={})
        assert response.status_code == 403, (method, url)
        assert "'agent'" in response.get_json()["error"]
        checked += 1
    assert checked >= 15


def test_agent_token_cannot_read_jobs(agent_api):
    response = agent_api.get("/api/v1/jobs/")
    assert response.status_code == 403
    assert "admin, user" in response.get_json()["error"]


def test_users_get_403_on_admin_only_routes(app, alice):
    admin_only = [(method, url) for method, url, view in api_routes(app)
                  if getattr(view, "required_roles", None)
                  == frozenset({Role.ADMIN})]
    assert ("POST", "/api/v1/jobtypes/") in admin_only
    assert ("DELETE", "/api/v1/agents/x") in admin_only
    for method, url in admin_only:
        response = alice.request(method, url, json={})
        assert response.status_code == 403, (method, url)
        assert "needs one of: admin" in response.get_json()["error"]


@pytest.mark.parametrize("header", [
    "Basic YWRtaW46c2VjcmV0", "Bearer", "Bearer   ", "Token abc", "abc"])
def test_malformed_authorization_is_401(client, header):
    response = client.get("/api/v1/jobtypes/",
                          headers={"Authorization": header})
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.get_json()["error"]


def test_the_right_token_is_let_in(admin, alice):
    assert admin.get("/api/v1/jobs/").status_code == 200
    assert alice.get("/api/v1/jobtypes/").status_code == 200


def test_bearer_scheme_is_case_insensitive(client, make_user):
    _, token = make_user("carol")
    response = client.get("/api/v1/jobtypes/",
                          headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 200


def test_disabled_user_is_401(client, make_user, session):
    user, token = make_user("carol")
    user.active = False
    session.commit()
    response = client.get("/api/v1/jobtypes/",
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "disabled" in response.get_json()["error"]


def test_a_read_records_when_the_token_was_used(alice, session):
    assert session.execute(select(ApiToken.last_used_at)).scalar() is None
    before = utcnow()
    assert alice.get("/api/v1/tags/").status_code == 200
    session.rollback()  # what the request committed, not what it left
    used = session.execute(select(ApiToken.last_used_at)).scalar()
    assert used is not None and used >= before


def test_a_refused_request_records_the_token_use_too(alice, session):
    assert alice.get("/api/v1/tags/nope").status_code == 404
    session.rollback()
    assert session.execute(select(ApiToken.last_used_at)).scalar()


def test_token_use_is_written_once_per_interval(alice, session):
    assert alice.get("/api/v1/tags/").status_code == 200
    session.rollback()
    first = session.execute(select(ApiToken.last_used_at)).scalar()
    assert alice.get("/api/v1/tags/").status_code == 200
    session.rollback()
    assert session.execute(select(ApiToken.last_used_at)).scalar() == first
    row = session.execute(select(ApiToken)).scalar_one()
    row.last_used_at = first - LAST_USED_PRECISION
    session.commit()
    assert alice.get("/api/v1/tags/").status_code == 200
    session.rollback()
    assert session.execute(select(ApiToken.last_used_at)).scalar() > first


def test_each_request_is_authenticated_on_its_own(admin, alice, client):
    # One app context serves every request of the test (as a CLI command
    # or a worker may): a user must not stick to the next request.
    assert admin.get("/api/v1/jobtypes/").status_code == 200
    assert alice.post("/api/v1/jobtypes/", json={"name": "x"}
                      ).status_code == 403
    assert client.get("/api/v1/jobtypes/").status_code == 401
    assert admin.post("/api/v1/jobtypes/", json={"name": "x"}
                      ).status_code == 201
    assert alice.delete("/api/v1/agents/x").status_code == 403


def database_text(session):
    """Return every value of every table as one string."""
    parts = []
    for table in db.metadata.sorted_tables:
        for row in session.execute(sa.select(table)):
            parts.extend(repr(value) for value in row)
    return "\n".join(parts)


def test_tokens_and_passwords_are_stored_hashed(app, session):
    now = utcnow()
    user = create_user(session, "carol", Role.USER, now,
                       password="correct horse battery")
    tokens = [create_token(session, user, now, name="farm")
              for _ in range(2)]
    session.commit()
    stored = database_text(session)
    for token in tokens:
        assert len(token) >= 40
        assert token not in stored
        assert hash_token(token) in stored
        assert user_for_token(session, token).name == "carol"
    assert "correct horse battery" not in stored
    assert check_password(user, "correct horse battery")
    assert not check_password(user, "wrong")
    url = app.config["PYFARM"].database_url
    if url.startswith("sqlite"):
        files = Path(url.removeprefix("sqlite:///")).parent.glob(
            "pyfarm.sqlite*")
        raw = b"".join(path.read_bytes() for path in files)
        assert raw and hash_token(tokens[0]).encode() in raw
        for token in tokens:
            assert token.encode() not in raw


def test_tokens_are_unique_per_call(session, app):
    user = create_user(session, "carol", Role.USER, utcnow())
    first = create_token(session, user, utcnow())
    second = create_token(session, user, utcnow())
    assert first != second
    assert session.execute(
        select(sa.func.count()).select_from(ApiToken)).scalar_one() == 2
    assert session.get(User, user.id).tokens[0].token_hash in {
        hash_token(first), hash_token(second)}


def test_a_token_never_starts_with_a_dash(monkeypatch):
    # On a command line (pyfarm-agent start --token TOKEN) a token
    # starting with "-" would be taken for an option.
    from pyfarm.master import auth

    drawn = iter(["-starts-with-a-dash", "_then_fine-"])
    monkeypatch.setattr(auth.secrets, "token_urlsafe",
                        lambda size: next(drawn))
    assert auth.new_token() == "_then_fine-"


def test_real_tokens_pass_as_command_line_values():
    import argparse

    from pyfarm.master import auth

    parser = argparse.ArgumentParser()
    parser.add_argument("--token")
    for _ in range(2000):  # about 30 would start with "-" if allowed
        token = auth.new_token()
        assert parser.parse_args(["--token", token]).token == token
