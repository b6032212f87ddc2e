"""
Bearer-token authentication and role checks for the API.

Tokens are random strings shown once; the database keeps their SHA-256
digest. Passwords (for the web UI) are hashed with Werkzeug.
"""

import functools
import hashlib
import secrets
from datetime import timedelta

from flask import g, request
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from pyfarm.core.enums import Role
from pyfarm.master.db import db, utcnow
from pyfarm.master.errors import Forbidden, Unauthorized
from pyfarm.master.models import ApiToken, User

TOKEN_BYTES = 32
USER_KEY = "pyfarm.user"
#: How stale a token's ``last_used_at`` may get before a request records
#: it again (one write per token and interval, not one per request).
LAST_USED_PRECISION = timedelta(minutes=1)


def new_token():
    """Return a new random token (shown to the user once).

    URL-safe text of :data:`TOKEN_BYTES` random bytes that never starts
    with ``-``: a token is passed on command lines (``pyfarm-agent start
    --token TOKEN``), where one starting with ``-`` would be taken for an
    option (one token in 64 did).
    """
    while True:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        if not token.startswith("-"):
            return token


def hash_token(token):
    """Return the stored digest of ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def hash_password(password):
    """Return a salted hash of ``password``."""
    return generate_password_hash(password)


def check_password(user, password):
    """Whether ``password`` is ``user``'s password."""
    return bool(user.password_hash) and check_password_hash(
        user.password_hash, password)


def token_and_user(session, token):
    """Return the ``(ApiToken, User)`` row of an active user's ``token``,
    or ``None``."""
    row = session.execute(
        select(ApiToken, User).join(User, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == hash_token(token))
    ).first()
    return row if row is not None and row.User.active else None


def touch(api_token, now):
    """Set ``last_used_at`` unless it is newer than
    :data:`LAST_USED_PRECISION`; return whether it changed."""
    used = api_token.last_used_at
    if used is not None and now - used < LAST_USED_PRECISION:
        return False
    api_token.last_used_at = now
    return True


def user_for_token(session, token, now=None):
    """Return the active user owning ``token``, or ``None``.

    Records the token's use (:func:`touch`); the caller commits.
    """
    row = token_and_user(session, token)
    if row is None:
        return None
    touch(row.ApiToken, now or utcnow())
    return row.User


def bearer_token(header):
    """Return the token of an ``Authorization: Bearer`` header or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def current_user():
    """Authenticate the request (once) and return its user.

    Raises :class:`Unauthorized` with a message saying what to send.
    """
    # Cached on the request, not on ``g``: an app context (and its ``g``)
    # may outlive one request, as in tests and CLI commands.
    cached = request.environ.get(USER_KEY)
    if cached is not None:
        return cached
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise Unauthorized(
            "authentication required: send 'Authorization: Bearer <token>' "
            "(create one with 'pyfarm-master tokens create NAME')")
    row = token_and_user(db.session, token)
    if row is None:
        raise Unauthorized("the token is unknown, revoked or its user is "
                           "disabled")
    if touch(row.ApiToken, utcnow()):
        # Commit the use now: reads never commit, and a request answered
        # with an error rolls back.
        db.session.commit()
    user = row.User
    request.environ[USER_KEY] = user
    g.user = user
    return user


def require_roles(*roles):
    """Decorate a view so only users with one of ``roles`` may call it."""
    allowed = frozenset(Role(role) for role in roles)

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            user = current_user()
            if user.role not in allowed:
                names = ", ".join(sorted(allowed))
                raise Forbidden(
                    f"role {user.role!r} may not do this; it needs one of: "
                    f"{names}")
            return view(*args, **kwargs)
        wrapper.required_roles = allowed
        return wrapper
    return decorate


#: Roles of people (not agents).
PEOPLE = (Role.ADMIN, Role.USER)


def can_change(user, owner_id):
    """Whether ``user`` may change an object owned by ``owner_id``."""
    return user.role == Role.ADMIN or (
        user.role == Role.USER and owner_id == user.id)
