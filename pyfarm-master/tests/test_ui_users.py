"""The users pages of the web UI (admins only): roles, passwords, tokens."""

import html
import re
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from pyfarm.core.enums import Role
from pyfarm.master.auth import check_password
from pyfarm.master.models import ApiToken, User

#: The password of the UI fixtures' users (conftest.PASSWORD).
PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new secret"
USED = datetime(2025, 1, 2, 3, 4, tzinfo=timezone.utc)


def page(response, status=200):
    """Assert ``status`` and return the body with entities decoded."""
    assert response.status_code == status, response.get_data(as_text=True)
    return html.unescape(response.get_data(as_text=True))


def committed(session):
    """Drop what the session holds so reads show committed rows only."""
    session.rollback()
    return session


def user_row(session, name):
    return committed(session).execute(
        select(User).where(User.name == name)).scalar()


def token_count(session, user_id=None):
    query = select(func.count()).select_from(ApiToken)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return committed(session).execute(query).scalar_one()


def state(session, name):
    """What an admin may change about user ``name``."""
    user = user_row(session, name)
    return (user.role, user.active, user.email, user.password_hash)


def browser(ui, name=None, password=None):
    """Return a new browser of ``ui``'s kind, logged in if ``name``."""
    return type(ui)(ui.client.application, name, password)


def logged_out(ui):
    """Whether ``ui``'s session has ended (a page sends it to log in)."""
    response = ui.get("/queues/")
    return response.status_code == 302 and \
        "/login" in response.headers["Location"]


@pytest.fixture
def admin_and_alice(ui_user):
    """``(admin Ui, alice Ui, alice's user row)``."""
    admin = ui_user("root", Role.ADMIN)[0]
    alice, user, _ = ui_user("alice")
    return admin, alice, user


# -- who sees the pages ------------------------------------------------------


def test_users_page_lists_users_for_admins_only(admin_and_alice, session,
                                                app):
    admin, alice, user = admin_and_alice
    user_row(session, "alice").email = "alice@studio.example"
    tokens = session.execute(
        select(ApiToken).where(ApiToken.user_id == user.id)).scalars().all()
    tokens[0].last_used_at = USED
    session.commit()
    body = page(admin.get("/users/"))
    alice_row = re.search(rf'<tr id="user-{user.id}".*?</tr>', body,
                          re.S).group(0)
    assert 'data-role="user"' in alice_row
    assert 'data-active="yes"' in alice_row
    assert "alice@studio.example" in alice_row
    assert 'data-count="tokens">1<' in alice_row
    assert 'title="2025-01-02 03:04 UTC"' in alice_row  # token last used
    assert "Create user" in body and 'href="/users/"' in body
    detail = page(admin.get(f"/users/{user.id}"))
    assert "Set password" in detail and "Create token" in detail
    assert f"/users/{user.id}/tokens/{tokens[0].id}/revoke" in detail
    # Users get 403 on every page and action.
    assert "only an admin may do this" in page(alice.get("/users/"), 403)
    assert alice.get(f"/users/{user.id}").status_code == 403
    assert 'href="/users/"' not in page(alice.get("/tags/"))
    assert page(admin.get("/users/999"), 404)
    assert "'page' must be a whole number" in page(
        admin.get("/users/?page=x"), 400)
    response = app.test_client().get("/users/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_users_cannot_change_users(admin_and_alice, session):
    _, alice, user = admin_and_alice
    token_id = committed(session).execute(select(ApiToken.id).where(
        ApiToken.user_id == user.id)).scalar()
    before = state(session, "alice")
    posts = [
        ("/users/", {"name": "mallory", "role": "admin",
                     "password": NEW_PASSWORD,
                     "password_repeat": NEW_PASSWORD}),
        (f"/users/{user.id}", {"role": "admin", "active": "yes"}),
        (f"/users/{user.id}/password", {"password": NEW_PASSWORD,
                                        "password_repeat": NEW_PASSWORD}),
        (f"/users/{user.id}/tokens/", {"label": "mine"}),
        (f"/users/{user.id}/tokens/{token_id}/revoke", {}),
    ]
    for path, form in posts:
        assert "only an admin may do this" in page(alice.post(path, form),
                                                   403)
    assert state(session, "alice") == before
    assert user_row(session, "mallory") is None
    assert token_count(session, user.id) == 1


def test_posts_without_csrf_token_change_nothing(admin_and_alice, session):
    admin, _, user = admin_and_alice
    token_id = committed(session).execute(select(ApiToken.id).where(
        ApiToken.user_id == user.id)).scalar()
    before = state(session, "alice")
    posts = [
        ("/users/", {"name": "bob", "role": "user"}),
        (f"/users/{user.id}", {"role": "admin", "active": "no"}),
        (f"/users/{user.id}/password", {"password": NEW_PASSWORD,
                                        "password_repeat": NEW_PASSWORD}),
        (f"/users/{user.id}/tokens/", {"label": "x"}),
        (f"/users/{user.id}/tokens/{token_id}/revoke", {}),
    ]
    for path, form in posts:
        body = page(admin.post(path, form, csrf=False), 400)
        assert "Reload the page and try again" in body
    assert state(session, "alice") == before
    assert user_row(session, "bob") is None
    assert token_count(session, user.id) == 1


# -- creating and changing users -------------------------------------------


def test_admin_creates_a_user_who_can_log_in(ui_admin, session, app):
    response = ui_admin.post("/users/", {
        "name": " bob ", "role": "admin", "email": "bob@studio.example",
        "password": NEW_PASSWORD, "password_repeat": NEW_PASSWORD})
    assert response.status_code == 302
    bob = user_row(session, "bob")
    assert response.headers["Location"].endswith(f"/users/{bob.id}")
    assert (bob.role, bob.email, bob.active) == (
        "admin", "bob@studio.example", True)
    assert check_password(bob, NEW_PASSWORD)
    assert "User 'bob' created." in page(ui_admin.get(f"/users/{bob.id}"))
    bob_browser = browser(ui_admin, "bob", NEW_PASSWORD)
    assert bob_browser.get("/users/").status_code == 200
    # An account for tokens only (an agent) needs no password.
    response = ui_admin.post("/users/", {"name": "agents", "role": "agent",
                                         "password": "",
                                         "password_repeat": ""})
    assert response.status_code == 302
    agents = user_row(session, "agents")
    assert (agents.role, agents.password_hash) == ("agent", None)


@pytest.mark.parametrize("fields, status, message", [
    ({"name": "alice"}, 409, "a user named 'alice' already exists"),
    ({"name": ""}, 400, "a user name must have 1 to 64 characters"),
    ({"role": "boss"}, 400, "unknown role 'boss'"),
    ({"email": "not an address"}, 400,
     "an email address looks like name@example.com"),
    ({"password": "short", "password_repeat": "short"}, 400,
     "a password needs at least 8 characters"),
    ({"password_repeat": "something else"}, 400,
     "the two passwords differ"),
    ({"name": "bo\x00b"}, 400, "Name may not contain control characters"),
])
def test_bad_new_user_is_refused_with_what_was_typed(ui_user, session,
                                                     fields, status,
                                                     message):
    admin = ui_user("root", Role.ADMIN)[0]
    ui_user("alice")
    form = {"name": "bob", "role": "user", "email": "bob@studio.example",
            "password": NEW_PASSWORD, "password_repeat": NEW_PASSWORD,
            **fields}
    body = page(admin.post("/users/", form), status)
    assert message in body and 'role="alert"' in body
    assert 'value="bob@studio.example"' in body or "email" in fields
    assert NEW_PASSWORD not in body  # passwords are never sent back
    assert committed(session).execute(
        select(func.count()).select_from(User)).scalar_one() == 2


def test_admin_changes_role_email_and_login(admin_and_alice, session, app):
    admin, alice, user = admin_and_alice
    response = admin.post(f"/users/{user.id}", {
        "role": "admin", "active": "yes", "email": " a@studio.example "})
    assert response.status_code == 302
    assert state(session, "alice")[:3] == ("admin", True, "a@studio.example")
    assert "User 'alice' saved." in page(admin.get(f"/users/{user.id}"))
    assert alice.get("/users/").status_code == 200  # now an admin
    # Disabled: her session ends, she cannot log in, her token stops.
    response = admin.post(f"/users/{user.id}", {
        "role": "user", "active": "no", "email": ""})
    assert response.status_code == 302
    assert state(session, "alice")[:3] == ("user", False, None)
    assert logged_out(alice)
    answer = browser(admin).login("alice", PASSWORD)
    assert answer.status_code == 401
    assert "Unknown user or wrong password." in page(answer, 401)
    body = page(admin.get("/users/"))
    assert 'data-active="no"' in body and "disabled" in body


def test_bad_user_changes_change_nothing(admin_and_alice, session):
    admin, _, user = admin_and_alice
    root = user_row(session, "root")
    before = state(session, "alice"), state(session, "root")
    cases = [
        (root.id, {"role": "user", "active": "yes"}, 400,
         "you cannot remove your own admin role or disable yourself"),
        (root.id, {"role": "admin", "active": "no"}, 400,
         "you cannot remove your own admin role or disable yourself"),
        (root.id, {"role": "boss", "active": "yes"}, 400,
         "unknown role 'boss'"),
        (user.id, {"role": "admin", "active": "maybe"}, 400,
         "'active' must be one of yes, no"),
        (user.id, {"role": "admin", "active": "yes", "email": "x@"}, 400,
         "an email address looks like name@example.com"),
    ]
    for user_id, form, status, message in cases:
        body = page(admin.post(f"/users/{user_id}", form), status)
        assert message in body and 'role="alert"' in body
        if "email" in form:
            assert 'value="x@"' in body
    assert (state(session, "alice"), state(session, "root")) == before
    assert page(admin.post("/users/999", {"role": "user"}), 404)


# -- passwords -------------------------------------------------------------


def test_new_password_ends_the_old_session(admin_and_alice, session, app):
    admin, alice, user = admin_and_alice
    assert alice.get("/queues/").status_code == 200
    response = admin.post(f"/users/{user.id}/password", {
        "password": NEW_PASSWORD, "password_repeat": NEW_PASSWORD})
    assert response.status_code == 302
    assert "sessions ended" in page(admin.get(f"/users/{user.id}"))
    assert logged_out(alice)
    assert browser(admin).login("alice", PASSWORD).status_code == 401
    again = browser(admin, "alice", NEW_PASSWORD)
    assert again.get("/queues/").status_code == 200


def test_admin_changing_their_own_password_stays_logged_in(ui_user,
                                                           session, app):
    admin, root, _ = ui_user("root", Role.ADMIN)
    elsewhere = browser(admin, "root", PASSWORD)
    response = admin.post(f"/users/{root.id}/password", {
        "password": NEW_PASSWORD, "password_repeat": NEW_PASSWORD})
    assert response.status_code == 302
    assert "Your password is changed." in page(admin.get("/users/"))
    assert logged_out(elsewhere)


def test_bad_password_changes_nothing(admin_and_alice, session):
    admin, alice, user = admin_and_alice
    before = state(session, "alice")
    for form, message in (
            ({"password": "short", "password_repeat": "short"},
             "a password needs at least 8 characters"),
            ({"password": NEW_PASSWORD, "password_repeat": "other one!"},
             "the two passwords differ"),
            ({"password": " padded secret ",
              "password_repeat": " padded secret "},
             "may not start or end with a space")):
        body = page(admin.post(f"/users/{user.id}/password", form), 400)
        assert message in body
    assert state(session, "alice") == before
    assert alice.get("/queues/").status_code == 200


# -- tokens ----------------------------------------------------------------


def test_new_token_is_shown_once_and_works(admin_and_alice, session, app):
    admin, _, user = admin_and_alice
    response = admin.post(f"/users/{user.id}/tokens/",
                          {"label": "farm script"})
    body = page(response)
    assert response.headers["Cache-Control"] == "no-store"
    assert "Copy this token now" in body and "farm script" in body
    token = re.search(r'id="new-token"[^>]*value="([^"]+)"', body).group(1)
    client = app.test_client()
    answer = client.get("/api/v1/jobs/",
                        headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.get_json()
    detail = page(admin.get(f"/users/{user.id}"))
    assert token not in detail and "farm script" in detail
    assert token not in page(admin.get("/users/"))
    assert token_count(session, user.id) == 2
    # Revoked, it stops working.
    token_id = committed(session).execute(select(ApiToken.id).where(
        ApiToken.name == "farm script")).scalar_one()
    response = admin.post(f"/users/{user.id}/tokens/{token_id}/revoke")
    assert response.status_code == 302
    assert "Token 'farm script' revoked." in page(
        admin.get(f"/users/{user.id}"))
    assert token_count(session, user.id) == 1
    answer = client.get("/api/v1/jobs/",
                        headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    # Another user's token id under this user is not found.
    root_token = committed(session).execute(select(ApiToken.id).join(
        User).where(User.name == "root")).scalar_one()
    assert page(admin.post(
        f"/users/{user.id}/tokens/{root_token}/revoke"), 404)
    assert token_count(session) == 2


def test_bad_token_label_is_refused(admin_and_alice, session):
    admin, _, user = admin_and_alice
    body = page(admin.post(f"/users/{user.id}/tokens/", {"label": "x" * 65}),
                400)
    assert "a token label has at most 64 characters" in body
    assert 'value="' + "x" * 65 + '"' in body
    assert token_count(session, user.id) == 1
    assert page(admin.post("/users/999/tokens/", {"label": "x"}), 404)
