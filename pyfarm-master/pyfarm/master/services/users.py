"""Users and API tokens."""

from sqlalchemy import select

from pyfarm.core.enums import Role
from pyfarm.master.auth import hash_password, hash_token, new_token
from pyfarm.master.errors import BadRequest, Conflict, NotFound
from pyfarm.master.models import ApiToken, User


def create_user(session, name, role, now, password=None, email=None):
    """Create a user; a taken name is a :class:`Conflict`."""
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise BadRequest("a user name must have 1 to 64 characters")
    try:
        role = Role(role)
    except ValueError:
        raise BadRequest(
            f"unknown role {role!r}; use one of "
            f"{', '.join(r.value for r in Role)}") from None
    if session.execute(select(User.id).where(User.name == name)).first():
        raise Conflict(f"a user named {name!r} already exists")
    user = User(name=name, role=role, email=email, created_at=now,
                password_hash=hash_password(password) if password else None)
    session.add(user)
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
    token = new_token()
    session.add(ApiToken(user_id=user.id, name=name, created_at=now,
                         token_hash=hash_token(token)))
    session.flush()
    return token
