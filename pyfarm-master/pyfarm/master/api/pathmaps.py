"""
Path maps: one shared folder as Linux, Windows and macOS mount it.

::

    GET    /api/v1/pathmaps/             list (people)
    POST   /api/v1/pathmaps/             create (admin)
    GET    /api/v1/pathmaps/<id>         one (people)
    PATCH  /api/v1/pathmaps/<id>         change (admin)
    DELETE /api/v1/pathmaps/<id>         delete (admin)

Agents receive the maps that apply to them with each assignment (see
:func:`pyfarm.master.scheduler.claim.assignment_dict`).
"""

from flask import jsonify, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from pyfarm.core.enums import Role
from pyfarm.master.api import api
from pyfarm.master.api.common import iso, page_of, pagination
from pyfarm.master.auth import PEOPLE, require_roles
from pyfarm.master.db import db, utcnow
from pyfarm.master.models import PathMap
from pyfarm.master.services import pathmaps as service
from pyfarm.master.validation import Strict, json_body, parse

#: A folder as sent; the service strips and checks it.
Folder = str


def pathmap_json(pathmap):
    """Return the JSON of a :class:`PathMap`."""
    return {"id": pathmap.id, "linux": pathmap.linux,
            "windows": pathmap.windows, "mac": pathmap.mac,
            "tag": pathmap.tag.name if pathmap.tag else None,
            "created_at": iso(pathmap.created_at)}


class PathMapIn(Strict):
    """``POST /api/v1/pathmaps/``."""

    linux: Folder | None = None
    windows: Folder | None = None
    mac: Folder | None = None
    tag: str | None = None


class PathMapPatch(PathMapIn):
    """``PATCH /api/v1/pathmaps/<id>``: only the fields sent change;
    ``null`` removes a folder, or the tag (the map then applies to every
    agent)."""


@api.get("/pathmaps/")
@require_roles(*PEOPLE)
def list_pathmaps():
    """List path maps, oldest first."""
    page, per_page = pagination()
    rows, total = page_of(
        db.session,
        select(PathMap).options(joinedload(PathMap.tag))
        .order_by(PathMap.id),
        select(func.count()).select_from(PathMap), page, per_page)
    return jsonify({"pathmaps": [pathmap_json(row) for row in rows],
                    "total": total, "page": page, "per_page": per_page})


@api.post("/pathmaps/")
@require_roles(Role.ADMIN)
def create_pathmap():
    """Create a path map; at least two folders, an optional tag."""
    body = parse(PathMapIn, json_body())
    pathmap = service.create_pathmap(
        db.session, utcnow(), linux=body.linux, windows=body.windows,
        mac=body.mac, tag=body.tag)
    db.session.commit()
    response = jsonify(pathmap_json(pathmap))
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_pathmap",
                                           pathmap_id=pathmap.id)
    return response


@api.get("/pathmaps/<int:pathmap_id>")
@require_roles(*PEOPLE)
def get_pathmap(pathmap_id):
    """Return one path map."""
    return jsonify(pathmap_json(service.get_pathmap(db.session, pathmap_id)))


@api.patch("/pathmaps/<int:pathmap_id>")
@require_roles(Role.ADMIN)
def update_pathmap(pathmap_id):
    """Change a path map's folders or tag."""
    body = parse(PathMapPatch, json_body())
    pathmap = service.get_pathmap(db.session, pathmap_id)
    service.update_pathmap(db.session, pathmap,
                           body.model_dump(exclude_unset=True))
    db.session.commit()
    return jsonify(pathmap_json(pathmap))


@api.delete("/pathmaps/<int:pathmap_id>")
@require_roles(Role.ADMIN)
def delete_pathmap(pathmap_id):
    """Delete a path map."""
    service.delete_pathmap(db.session,
                           service.get_pathmap(db.session, pathmap_id))
    db.session.commit()
    return "", 204
