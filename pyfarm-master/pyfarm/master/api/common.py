"""Helpers shared by the API views: timestamps, pagination, lookups."""

from flask import jsonify, request

from pyfarm.master.db import db
from pyfarm.master.errors import BadRequest, NotFound
from pyfarm.master.validation import MAX_INT, query_int

#: Largest page a list endpoint returns.
MAX_PER_PAGE = 1000


def iso(moment):
    """Return an aware datetime as ISO 8601 text, or None."""
    return None if moment is None else moment.isoformat()


def pagination(default_per_page=100):
    """Read ``page`` (from 1) and ``per_page`` from the query string."""
    page = query_int("page", 1, minimum=1, maximum=MAX_INT)
    per_page = query_int("per_page", default_per_page, minimum=1,
                         maximum=MAX_PER_PAGE)
    return page, per_page


def page_of(session, query, count_query, page, per_page):
    """Run ``query`` for one page; return ``(rows, total)``."""
    total = session.execute(count_query).scalar_one()
    rows = session.execute(
        query.limit(per_page).offset((page - 1) * per_page)).scalars().all()
    return rows, total


def get_or_404(session, model, ident, what=None):
    """Return the row of ``model`` with primary key ``ident`` or 404."""
    row = session.get(model, ident)
    if row is None:
        what = what or model.__name__.lower()
        raise NotFound(f"no {what} with id {ident}")
    return row


def arg(name):
    """Return a stripped query argument or None when absent or empty."""
    value = request.args.get(name, "").strip()
    if "\x00" in value:
        raise BadRequest(f"query argument {name!r} must not contain NUL "
                         f"characters")
    return value or None


def choice_arg(name, allowed):
    """Return query argument ``name`` (or None); 400 unless in ``allowed``."""
    value = arg(name)
    if value is not None and value not in allowed:
        raise BadRequest(
            f"query argument {name!r} must be one of "
            f"{', '.join(sorted(allowed))}, got {value!r}")
    return value


def created(body, location):
    """Commit and answer 201 with ``body`` and a ``Location`` header."""
    db.session.commit()
    response = jsonify(body)
    response.status_code = 201
    response.headers["Location"] = location
    return response
