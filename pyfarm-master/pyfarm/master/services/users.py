"""Users and API tokens."""

import re

from sqlalchemy import select

from pyfarm.core.enums import Role
from pyfarm.master.auth import hash_password, hash_token, new_token
from pyfarm.master.errors import BadRequest, Conflict, NotFound
from pyfarm.master.models import ApiToken, User

#: Longest email address and token label (the column sizes).
EMAIL_LENGTH = 255
LABEL_LENGTH = 64

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_role(role):
    """Return ``role`` as a :class:`Role` or raise :class:`BadRequest`."""
    try:
        return Role(role)
    except ValueError:
        raise BadRequest(
            f"unknown role {role!r}; use one of "
            f"{', '.join(r.value for r in Role)}") from None


def check_email(email):
    """Return the stripped address (``None`` for none) or raise
    :class:`BadRequest`."""
    email = (email or "").strip()
    if email and (len(email) > EMAIL_LENGTH or not _EMAIL.match(email)):
        raise BadRequest(f"an email address looks like name@example.com "
                         f"and has at most {EMAIL_LENGTH} characters, got "
                         f"{email!r}")
    return email or None


def create_user(session, name, role, now, password=None, email=None):
    """Create a user; a taken name is a :class:`Conflict`."""
    name = (name or "").strip()
    if not name or len(name) > 64 or _CONTROL.search(name):
        raise BadRequest("a user name must have 1 to 64 characters, none "
                         "of them a control character")
    role = check_role(role)
    email = check_email(email)
    if session.execute(select(User.id).where(User.name == name)).first():
        raise Conflict(f"a user named {name!r} already exists")
    if password is not None:
        check_password_rules(password)
    user = User(name=name, role=role, email=email, created_at=now,
                password_hash=hash_password(password) if password else None)
    session.add(user)
    session.flush()
    return user


#: The shortest password people may set.
MIN_PASSWORD_LENGTH = 8


def check_password_rules(password):
    """Raise :class:`BadRequest` unless ``password`` may be used."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise BadRequest(f"a password needs at least {MIN_PASSWORD_LENGTH} "
                         f"characters")
    if password != password.strip():
        raise BadRequest("a password may not start or end with a space")


def set_password(user, password):
    """Give ``user`` a new password; their browser sessions end."""
    check_password_rules(password)
    user.password_hash = hash_password(password)


def update_user(session, user, acting, role=None, active=None, email=None):
    """Change ``user``'s role, whether they may log in, or their email.

    ``acting`` is the admin making the change; an admin cannot take away
    their own admin role or disable themselves (the farm would be left
    without anyone to undo it).
    """
    if role is not None:
        role = check_role(role)
    change_email = email is not None  # "" clears it
    email = check_email(email)
    if user.id == acting.id and (
            (role is not None and role != Role.ADMIN) or active is False):
        raise BadRequest("you cannot remove your own admin role or disable "
                         "yourself; ask another admin")
    if role is not None:
        user.role = role
    if active is not None:
        user.active = bool(active)
    if change_email:
        user.email = email
    session.flush()
    return user


def get_user(session, name):
    """Return the user called ``name`` or raise :class:`NotFound`."""
    user = session.execute(select(User).where(User.name == name)).scalar()
    if user is None:
        raise NotFound(f"no user named {name!r}")
    return user


def create_token(session, user, now, name=""):
    """Give ``user`` a new token; return the token (shown once)."""
    name = (name or "").strip()
    if len(name) > LABEL_LENGTH or _CONTROL.search(name):
        raise BadRequest(f"a token label has at most {LABEL_LENGTH} "
                         f"characters and no control characters")
    token = new_token()
    session.add(ApiToken(user_id=user.id, name=name, created_at=now,
                         token_hash=hash_token(token)))
    session.flush()
    return token


def revoke_token(session, user_id, token_id):
    """Delete the token ``token_id`` of the user ``user_id``; return its
    label (``#id`` when it has none)."""
    token = session.execute(
        select(ApiToken).where(ApiToken.id == token_id,
                               ApiToken.user_id == user_id)).scalar()
    if token is None:
        raise NotFound(f"user {user_id} has no token with id {token_id}")
    label = token.name or f"#{token.id}"
    session.delete(token)
    session.flush()
    return label
