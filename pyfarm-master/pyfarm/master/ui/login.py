"""Logging in and out of the web UI."""

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from sqlalchemy import select

from pyfarm.master.auth import PEOPLE, check_password
from pyfarm.master.db import db
from pyfarm.master.models import User
from pyfarm.master.ui import ui
from pyfarm.master.ui.session import login_required, safe_next

FAILED = "Unknown user or wrong password."


@ui.get("/login")
def login():
    """The login form."""
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")) or
                        url_for("ui.jobs"))
    return render_template("login.html", next=request.args.get("next", ""))


@ui.post("/login")
def login_submit():
    """Check the name and password; start a session."""
    name = request.form.get("name", "").strip()
    password = request.form.get("password", "")
    user = db.session.execute(
        select(User).where(User.name == name)).scalar_one_or_none()
    if (user is None or not user.active or user.role not in PEOPLE
            or not check_password(user, password)):
        return render_template("login.html", error=FAILED, name=name,
                               next=request.form.get("next", "")), 401
    session.permanent = True
    login_user(user)
    return redirect(safe_next(request.form.get("next")) or url_for("ui.jobs"))


@ui.post("/logout")
@login_required
def logout():
    """End the session."""
    logout_user()
    flash("You are logged out.")
    return redirect(url_for("ui.login"))
