"""
The users pages, for admins only: who may log in and with which role,
their passwords and their API tokens.

A new password or disabling a user ends their browser sessions (see
:mod:`pyfarm.master.ui.session`); a disabled user's tokens stop working
too. A new token is shown once, on the page that answers its creation:
only its digest is stored.
"""


from flask import (
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_user
from sqlalchemy import func, select

from pyfarm.core.enums import Role
from pyfarm.master.api.common import page_of, pagination
from pyfarm.master.db import db, utcnow
from pyfarm.master.errors import ApiError, BadRequest, NotFound
from pyfarm.master.models import ApiToken, User
from pyfarm.master.services import users as service
from pyfarm.master.ui import ui
from pyfarm.master.ui.catalog import form_text, refused
from pyfarm.master.ui.session import admin_required

#: Users per page.
PER_PAGE = 50
#: The roles, in the order the forms offer them.
ROLES = (str(Role.USER), str(Role.ADMIN), str(Role.AGENT))
#: The form values of "may log in".
ACTIVE = {"yes": True, "no": False}
#: Form fields never shown again.
SECRET_FIELDS = ("password", "password_repeat", "csrf_token")

# -- reading forms -------------------------------------------------------


def check_role(value):
    """Return ``value`` if it names a role, else raise :class:`BadRequest`."""
    if value not in ROLES:
        raise BadRequest(f"unknown role {value!r}; choose one of "
                         f"{', '.join(ROLES)}")
    return value


def check_email(value):
    """Return the stripped address ``value`` ("" for none) or raise
    :class:`BadRequest`."""
    return service.check_email(value) or ""


def check_active(value):
    """Return what the "may log in" field says, or None when absent."""
    if value is None:
        return None
    if value not in ACTIVE:
        raise BadRequest(f"'active' must be one of yes, no, got {value!r}")
    return ACTIVE[value]


def new_password():
    """Return the password typed twice in the form ("" when none).

    Raises :class:`BadRequest` when the two differ.
    """
    password = request.form.get("password", "")
    repeat = request.form.get("password_repeat")
    if repeat is not None and repeat != password:
        raise BadRequest("the two passwords differ; type the same password "
                         "in both fields")
    return password


def typed():
    """Return the form's fields but the secrets, to show them again."""
    return {key: value for key, value in request.form.items()
            if key not in SECRET_FIELDS}


def acting_user():
    """Return the logged-in admin as a model instance."""
    return current_user._get_current_object()


def get_user_row(user_id):
    """Return user ``user_id`` or raise :class:`NotFound`."""
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


# -- pages ---------------------------------------------------------------


def token_summary(session, user_ids):
    """Return ``{user_id: (tokens, last used)}`` for ``user_ids``."""
    if not user_ids:
        return {}
    return {row.user_id: (row.count, row.last_used) for row in session.execute(
        select(ApiToken.user_id, func.count().label("count"),
               func.max(ApiToken.last_used_at).label("last_used"))
        .where(ApiToken.user_id.in_(user_ids))
        .group_by(ApiToken.user_id))}


def users_page(form=None, error=None):
    """Render the user list with the create form."""
    page, per_page = pagination(PER_PAGE)
    users, total = page_of(db.session, select(User).order_by(User.name),
                           select(func.count()).select_from(User), page,
                           per_page)
    return render_template(
        "users.html", users=users, total=total, page=page,
        per_page=per_page, roles=ROLES, form=form or {}, error=error,
        tokens=token_summary(db.session, [user.id for user in users]))


def user_page(user, error=None, section=None, form=None):
    """Render one user's page; ``section`` names the form ``error`` is
    about (``fields``, ``password`` or ``token``)."""
    tokens = db.session.execute(
        select(ApiToken).where(ApiToken.user_id == user.id)
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    ).scalars().all()
    fields = {"role": user.role, "email": user.email or "",
              "active": "yes" if user.active else "no"}
    if section == "fields" and form is not None:
        fields = form
    token_form = form if section == "token" and form is not None else {}
    return render_template(
        "users_detail.html", user=user, tokens=tokens, roles=ROLES,
        fields=fields, token_form=token_form, error=error, section=section,
        is_self=user.id == current_user.id)


@ui.get("/users/")
@admin_required
def users():
    """Every user with their role and tokens (admins)."""
    return users_page()


@ui.post("/users/")
@admin_required
def users_create():
    """Create a user with a role and, for people, a password."""
    try:
        email = check_email(form_text("email", "Email"))
        user = service.create_user(
            db.session, form_text("name", "Name"),
            check_role(form_text("role", "Role")), utcnow(),
            password=new_password() or None, email=email or None)
        user_id, name = user.id, user.name
        db.session.commit()
    except ApiError as error:
        return refused(error, users_page, form=typed())
    flash(f"User {name!r} created.")
    return redirect(url_for("ui.users_detail", user_id=user_id))


@ui.get("/users/<int:user_id>")
@admin_required
def users_detail(user_id):
    """One user: role, email, whether they may log in, password, tokens."""
    return user_page(get_user_row(user_id))


def refused_on_user_page(error, user_id, section, form=None):
    """Roll back and show the user's page with ``error`` at ``section``."""
    db.session.rollback()
    return user_page(get_user_row(user_id), error=error.message,
                     section=section, form=form), error.status


@ui.post("/users/<int:user_id>")
@admin_required
def users_update(user_id):
    """Change a user's role, whether they may log in, or their email.

    An admin cannot demote or disable themselves (the service refuses).
    """
    user = get_user_row(user_id)
    try:
        role = request.form.get("role")
        email = None
        if "email" in request.form:
            email = check_email(form_text("email", "Email"))
        service.update_user(
            db.session, user, acting_user(),
            role=None if role is None else check_role(role),
            active=check_active(request.form.get("active")), email=email)
        name = user.name
        db.session.commit()
    except ApiError as error:
        return refused_on_user_page(error, user_id, "fields", typed())
    flash(f"User {name!r} saved.")
    return redirect(url_for("ui.users_detail", user_id=user_id))


@ui.post("/users/<int:user_id>/password")
@admin_required
def users_password(user_id):
    """Set a user's password; their browser sessions end."""
    user = get_user_row(user_id)
    try:
        service.set_password(user, new_password())
        name = user.name
        db.session.commit()
    except ApiError as error:
        return refused_on_user_page(error, user_id, "password")
    if user.id == current_user.id:
        # The session names the old password: keep the admin logged in.
        login_user(user)
        flash("Your password is changed.")
    else:
        flash(f"Password of {name!r} changed; their sessions ended.")
    return redirect(url_for("ui.users_detail", user_id=user_id))


@ui.post("/users/<int:user_id>/tokens/")
@admin_required
def users_token_create(user_id):
    """Create an API token and show it, once."""
    user = get_user_row(user_id)
    try:
        label = form_text("label", "Label")
        token = service.create_token(db.session, user, utcnow(), name=label)
        db.session.commit()
    except ApiError as error:
        return refused_on_user_page(error, user_id, "token", typed())
    response = make_response(render_template(
        "users_token.html", user=user, token=token, label=label,
        api_url=url_for("api.job_list", _external=True)))
    # The token is in this page only: keep it out of every cache.
    response.headers["Cache-Control"] = "no-store"
    return response


@ui.post("/users/<int:user_id>/tokens/<int:token_id>/revoke")
@admin_required
def users_token_revoke(user_id, token_id):
    """Revoke (delete) one of a user's tokens."""
    label = service.revoke_token(db.session, user_id, token_id)
    db.session.commit()
    flash(f"Token {label!r} revoked.")
    return redirect(url_for("ui.users_detail", user_id=user_id))
