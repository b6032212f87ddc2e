"""
Pure helpers of the job page: the frame grid, which outputs are images,
how a recorded output becomes a file the master may serve, and reading a
live log without splitting a character.

Nothing here touches the database or the request.
"""

import hashlib
import json
import ntpath
import os
import posixpath
from collections import Counter
from typing import NamedTuple

from markupsafe import Markup, escape

from pyfarm.core.enums import FINAL_STATES
from pyfarm.master.services.rollup import TASK_STATE_ORDER

#: The outputs shown as thumbnails: extension -> MIME type.
IMAGE_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
}

#: Short class names of the grid's cells (one per task: keep them small).
CELL_CLASSES = {"queued": "q", "assigned": "a", "running": "r",
                "done": "d", "failed": "f"}


class Cell(NamedTuple):
    """One cell of the frame grid: a task as the grid's query reads it."""

    id: int
    frame: int
    tile: int | None
    state: str
    attempt: int


def cell_title(cell):
    """Return the tooltip of a cell: ``frame 12: failed (attempt 3)``."""
    where = f"frame {cell.frame}"
    if cell.tile is not None:
        where += f" tile {cell.tile}"
    text = f"{where}: {cell.state}"
    if cell.attempt:
        text += f" (attempt {cell.attempt})"
    return text


def cell_class(state):
    """Return the short CSS class of a task state (``"f"`` for failed)."""
    return CELL_CLASSES.get(state, "q")


def grid_html(cells):
    """Return the grid's cells as HTML, one short ``<i>`` per task.

    Built here rather than in a template loop, and kept short: a
    10,000-frame job has 10,000 cells, refreshed every few seconds. The
    cell's class is its state (colour and pattern), ``data-t`` its task,
    ``title`` what it shows in words.
    """
    return Markup("".join(
        f'<i class="{cell_class(cell.state)}" data-t="{cell.id}" '
        f'title="{escape(cell_title(cell))}"></i>' for cell in cells))


def grid_size(count):
    """Return the grid's cell size class for ``count`` cells: big jobs
    get smaller cells so the grid stays on one screen."""
    if count > 4000:
        return "tiny"
    if count > 1200:
        return "small"
    return "normal"


def state_counts(cells):
    """Return ``{state: n}`` of ``cells`` with every task state present,
    in the order people read them."""
    found = Counter(cell.state for cell in cells)
    counts = {str(state): found.pop(str(state), 0)
              for state in TASK_STATE_ORDER}
    counts.update(found)
    return counts


def grid_digest(cells):
    """Return a short digest of what the grid shows.

    The page sends it back when it refreshes; an unchanged grid is not
    sent again (a 10,000-frame job's grid is a few hundred kilobytes).
    """
    digest = hashlib.blake2b(digest_size=8)
    for cell in cells:
        digest.update(f"{cell.id}:{cell.state}:{cell.attempt};".encode())
    return digest.hexdigest()


def position(cells, task_id):
    """Return the index of task ``task_id`` in ``cells``, or None."""
    for index, cell in enumerate(cells):
        if cell.id == task_id:
            return index
    return None


def frame_position(cells, frame):
    """Return the index of the first task of ``frame``, or None."""
    for index, cell in enumerate(cells):
        if cell.frame == frame:
            return index
    return None


def page_count(total, per_page):
    """Return the number of pages of ``total`` rows (at least 1)."""
    return max(1, (total + per_page - 1) // per_page)


def is_live(state):
    """Whether a job in ``state`` may still change by itself (the page
    keeps refreshing)."""
    return state not in FINAL_STATES


# -- outputs -----------------------------------------------------------------

def image_type(path):
    """Return the MIME type of an output shown as an image, or None.

    Decided by the extension alone; :func:`looks_like` checks the file's
    first bytes before it is served.
    """
    name = ntpath.basename(path) if "\\" in path else \
        posixpath.basename(path)
    _, dot, extension = name.rpartition(".")
    if not dot:
        return None
    return IMAGE_TYPES.get(extension.lower())


def looks_like(mimetype, head):
    """Whether the first bytes ``head`` of a file are an image of
    ``mimetype`` (so that a text file named ``.png`` is not served)."""
    if mimetype == "image/png":
        return head.startswith(b"\x89PNG\r\n\x1a\n")
    if mimetype == "image/jpeg":
        return head.startswith(b"\xff\xd8\xff")
    if mimetype == "image/gif":
        return head.startswith((b"GIF87a", b"GIF89a"))
    if mimetype == "image/webp":
        return head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    if mimetype == "image/bmp":
        return head.startswith(b"BM")
    return False


def path_problem(path):
    """Return why the master must not open the recorded output ``path``,
    or None.

    Only absolute paths without ``..`` (a relative path would be read from
    the master's working directory) and without control characters.
    """
    if not path or any(ord(char) < 32 for char in path):
        return "it is empty or holds control characters"
    if not os.path.isabs(path):
        return "it is not an absolute path on the master"
    parts = path.replace("\\", "/").split("/")
    if ".." in parts:
        return "it holds '..'"
    return None


def thumbnails(outputs):
    """Return ``[(index, path)]`` of the outputs shown as images."""
    return [(index, path) for index, path in enumerate(outputs or ())
            if image_type(path)]


# -- logs --------------------------------------------------------------------

def complete_utf8(data):
    """Return how many bytes of ``data`` end on a whole UTF-8 character.

    A chunk read from a growing log may stop inside a character; its
    first bytes wait for the next read instead of becoming U+FFFD.
    Bytes that cannot start a character are left for the decoder.
    """
    end = len(data)
    for back in range(1, min(4, end) + 1):
        byte = data[end - back]
        if byte & 0xC0 == 0x80:  # a continuation byte: look further back
            continue
        if byte >= 0xF0:
            needed = 4
        elif byte >= 0xE0:
            needed = 3
        elif byte >= 0xC0:
            needed = 2
        else:
            return end
        return end - back if back < needed else end
    return end


# -- parameters --------------------------------------------------------------

#: Values longer than this are shown as pretty JSON in a block.
INLINE_LENGTH = 80


def readable(data):
    """Return ``[(key, text, block)]`` to show a job's ``data``.

    Strings are shown as they are, other values as compact JSON; long
    or nested values as indented JSON (``block`` true).
    """
    rows = []
    for key, value in (data or {}).items():
        if isinstance(value, str) and "\n" not in value \
                and len(value) <= INLINE_LENGTH:
            rows.append((key, value, False))
            continue
        compact = json.dumps(value, ensure_ascii=False)
        if len(compact) <= INLINE_LENGTH and "\n" not in compact:
            rows.append((key, compact, False))
        else:
            rows.append((key, json.dumps(value, indent=2,
                                         ensure_ascii=False), True))
    return rows


def pretty_json(value):
    """Return ``value`` as indented JSON text."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
