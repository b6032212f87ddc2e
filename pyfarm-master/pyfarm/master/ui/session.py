"""
Who is logged in: Flask-Login sessions and Flask-WTF CSRF protection.

A session names the user and a fragment of their password hash, so
changing a password (or disabling the user) ends their sessions. Agents
cannot log in: the UI is for people.
"""

import functools
from datetime import timedelta
from urllib.parse import urlsplit

from flask import abort, current_app, g, redirect, request, url_for
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFProtect

from pyfarm.core.enums import Role
from pyfarm.master.auth import PEOPLE
from pyfarm.master.db import db
from pyfarm.master.models import User

login_manager = LoginManager()
csrf = CSRFProtect()

#: How long a login lasts without visiting the farm.
SESSION_LIFETIME = timedelta(days=7)


def session_id(user):
    """Return what the session cookie stores to name ``user``."""
    fragment = (user.password_hash or "")[-12:]
    return f"{user.id}:{fragment}"


def load_user(value):
    """Return the active person a session names, or ``None``."""
    user_id, _, fragment = str(value).partition(":")
    if not user_id.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if (user is None or not user.active or user.role not in PEOPLE
            or (user.password_hash or "")[-12:] != fragment):
        return None
    return user


def is_htmx():
    """Whether the request comes from htmx (a part of a page)."""
    return request.headers.get("HX-Request") == "true"


def unauthorized():
    """Send people who are not logged in to the login page."""
    target = url_for("ui.login", next=safe_next(request.full_path))
    if is_htmx():
        # htmx follows HX-Redirect with a full page load.
        return "", 401, {"HX-Redirect": target}
    return redirect(target)


def safe_next(target):
    """Return ``target`` if it is a path on this site, else ``None``."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") \
            or target.startswith("//") or "\\" in target:
        return None
    return target.rstrip("?") or "/"


def init_app(app):
    """Configure the session cookie, Flask-Login and CSRF protection."""
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    app.config.setdefault("PERMANENT_SESSION_LIFETIME", SESSION_LIFETIME)
    # Artists keep the farm's page open all day: a token that expired
    # after an hour would break every button. It lives as long as the
    # session instead.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    app.config.setdefault("WTF_CSRF_SSL_STRICT", False)
    login_manager.init_app(app)
    login_manager.user_loader(load_user)
    login_manager.unauthorized_handler(unauthorized)
    login_manager.session_protection = "basic"
    csrf.init_app(app)
    app.before_request(forget_cached_user)
    from pyfarm.master.api import api
    csrf.exempt(api)  # bearer tokens, never cookies


def forget_cached_user():
    """Make Flask-Login and Flask-WTF read the session again on every
    request.

    They cache the user and the CSRF token on ``g``, which lives as long
    as the application context; one that outlives a request (tests,
    commands) would carry a login or a token into the next request.
    """
    g.pop("_login_user", None)
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)


def login_required(view):
    """Decorate a UI view: log in first."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        return view(*args, **kwargs)
    return wrapper


def admin_required(view):
    """Decorate a UI view: log in first, and be an admin (else 403)."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if current_user.role != Role.ADMIN:
            abort(403, "only an admin may do this")
        return view(*args, **kwargs)
    return wrapper
