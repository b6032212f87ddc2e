"""
Path maps: a shared folder as Linux, Windows and macOS mount it.

Agents receive the maps that apply to them with each assignment and
rewrite the paths in the job's data for their own system
(:mod:`pyfarm.core.pathmap`). A map with a tag applies only to agents
with that tag; a map without one applies to every agent.
"""

import re

from sqlalchemy import or_, select

from pyfarm.core.logger import getLogger
from pyfarm.master.errors import BadRequest, NotFound
from pyfarm.master.models import PathMap
from pyfarm.master.services import catalog

logger = getLogger("master.pathmaps")

#: The systems a map has a folder for, in the order they are listed.
SYSTEMS = ("linux", "windows", "mac")
#: Longest folder (the column size).
MAX_PREFIX = 1024
#: A Windows folder: on a drive (``P:``, ``P:\\show``) or a share
#: (``\\\\server\\show``, forward slashes allowed).
_WINDOWS = re.compile(r"^(?:[A-Za-z]:(?:[\\/]|$)|[\\/]{2}[^\\/])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def prefix_problem(value, system):
    """Return why the stripped ``value`` cannot be ``system``'s folder,
    or None when it can."""
    if not value:
        return "must not be empty (send null for no folder)"
    if len(value) > MAX_PREFIX:
        return f"must have at most {MAX_PREFIX} characters"
    if _CONTROL.search(value):
        return "may not contain control characters"
    if system == "windows":
        if not _WINDOWS.match(value):
            return ("must be an absolute Windows folder, on a drive "
                    "('P:\\show') or a share ('\\\\server\\show')")
    elif not value.startswith("/"):
        return f"must be an absolute {system} folder, starting with '/'"
    return None


def check_prefix(value, system):
    """Return the folder ``value`` stripped (None stays None), or raise
    :class:`BadRequest` naming the field ``system``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"field {system!r} must be a string or null, "
                         f"got {value!r}")
    problem = prefix_problem(value.strip(), system)
    if problem:
        raise BadRequest(f"field {system!r} {problem}, got {value!r}")
    return value.strip()


def _check_complete(pathmap):
    given = [system for system in SYSTEMS
             if getattr(pathmap, system) is not None]
    if len(given) < 2:
        raise BadRequest(
            f"a path map needs the folder of at least two of the fields "
            f"'linux', 'windows' and 'mac' (it maps one to the other); "
            f"got {', '.join(repr(s) for s in given) or 'none'}")


def get_pathmap(session, pathmap_id):
    """Return path map ``pathmap_id`` or raise :class:`NotFound`."""
    pathmap = session.get(PathMap, pathmap_id)
    if pathmap is None:
        raise NotFound(f"no path map with id {pathmap_id}")
    return pathmap


def _tag(session, name):
    if name is None:
        return None
    return catalog.ensure_tags(session, [name], "tag")[0]


def create_pathmap(session, now, linux=None, windows=None, mac=None,
                   tag=None):
    """Create a path map; ``tag`` (a name, created if missing) limits it
    to the agents with that tag."""
    folders = {system: check_prefix(value, system) for system, value in
               zip(SYSTEMS, (linux, windows, mac), strict=True)}
    pathmap = PathMap(created_at=now, **folders)
    _check_complete(pathmap)
    pathmap.tag = _tag(session, _tag_name(tag))
    session.add(pathmap)
    session.flush()
    logger.info("path map %d added: %r", pathmap.id, pathmap)
    return pathmap


def _tag_name(tag):
    if tag is None:
        return None
    return catalog.check_name(tag, "tag", "tag")


def update_pathmap(session, pathmap, changes):
    """Apply ``changes`` (a dict of ``linux``, ``windows``, ``mac``,
    ``tag``; ``None`` clears one) to ``pathmap``."""
    for system in SYSTEMS:
        if system in changes:
            setattr(pathmap, system, check_prefix(changes[system], system))
    _check_complete(pathmap)
    if "tag" in changes:
        pathmap.tag = _tag(session, _tag_name(changes["tag"]))
    session.flush()
    logger.info("path map %d changed: %r", pathmap.id, pathmap)
    return pathmap


def delete_pathmap(session, pathmap):
    """Delete ``pathmap``; agents stop receiving it with new work."""
    session.delete(pathmap)
    session.flush()
    logger.info("path map %d deleted", pathmap.id)


def pathmaps_for(session, tag_ids):
    """Return ``[{"linux", "windows", "mac"}]`` of the maps that apply to
    an agent with the tags ``tag_ids``, in one query.

    Maps for one of its tags come first, then those for every agent, each
    in the order they were made: where two maps name the same folder the
    agent uses the first, so a tag's map wins over a general one.
    """
    rows = session.execute(
        select(PathMap.linux, PathMap.windows, PathMap.mac)
        .where(or_(PathMap.tag_id.is_(None),
                   PathMap.tag_id.in_(sorted(tag_ids))))
        .order_by(PathMap.tag_id.is_(None), PathMap.id))
    return [{"linux": row.linux, "windows": row.windows, "mac": row.mac}
            for row in rows]
