"""
The jobs page's query: its filters, sorting and page read from the URL,
and the SELECTs built from them.

Pure functions, without a request: :func:`parse_filter` turns query
arguments into a :class:`JobFilter` (or a :class:`BadRequest` saying
what to fix), :func:`filter_clauses`, :func:`page_query` and
:func:`count_query` build the statements, and :func:`parse_bulk` reads
the form of a bulk action.
"""

import dataclasses

from sqlalchemy import case, func, select
from sqlalchemy.orm import contains_eager, joinedload, selectinload

from pyfarm.core.enums import JOB_STATES, WorkState
from pyfarm.master.api.jobs import escape_like
from pyfarm.master.errors import BadRequest
from pyfarm.master.models import Job, JobQueue, JobType, Tag, User
from pyfarm.master.models.job import job_tags
from pyfarm.master.validation import MAX_INT

#: Rows on a page unless ``per_page`` says otherwise, and the most.
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 200
#: The page sizes the filter form offers.
PER_PAGE_CHOICES = (25, 50, 100, 200)

#: Sortable columns and the direction a first click on each sorts by.
SORT_COLUMNS = {"title": "asc", "owner": "asc", "priority": "desc",
                "state": "asc", "submitted": "desc"}
DEFAULT_SORT = "submitted"
ORDERS = ("asc", "desc")

#: The order of job states when sorting by state: the work needing
#: attention first, finished work last.
STATE_ORDER = (WorkState.RUNNING, WorkState.QUEUED, WorkState.PAUSED,
               WorkState.FAILED, WorkState.DONE)

#: The text filters: query argument -> longest accepted value.
TEXT_FILTERS = {"owner": 64, "queue": 128, "jobtype": 64, "tag": 64,
                "title": 255}

#: What ``mine`` may say for "no"; anything else non-empty means yes.
FALSE_WORDS = ("0", "false", "off", "no")

#: Bulk actions: form value -> the notice once done (``{jobs}`` is
#: ``3 jobs``, ``{priority}`` the priority set).
BULK_ACTIONS = {
    "pause": "{jobs} paused",
    "resume": "{jobs} resumed",
    "rerun": "failed frames of {jobs} requeued",
    "cancel": "{jobs} cancelled",
    "delete": "{jobs} deleted",
    "priority": "{jobs} set to priority {priority}",
}
#: The most jobs one bulk action changes.
MAX_BULK = 1000


@dataclasses.dataclass(frozen=True)
class JobFilter:
    """What the jobs page shows: filters, sort order and page."""

    state: str | None = None
    owner: str | None = None
    mine: bool = False
    queue: str | None = None
    jobtype: str | None = None
    tag: str | None = None
    title: str | None = None
    sort: str = DEFAULT_SORT
    order: str = SORT_COLUMNS[DEFAULT_SORT]
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    @property
    def filtered(self):
        """Whether any filter narrows the list."""
        return any((self.state, self.owner, self.mine, self.queue,
                    self.jobtype, self.tag, self.title))

    def args(self, page=False):
        """Return the query arguments that differ from the defaults (the
        page's bookmarkable URL); with ``page`` the page and its size
        too."""
        values = {}
        for name in ("state", "owner", "queue", "jobtype", "tag", "title"):
            if getattr(self, name):
                values[name] = getattr(self, name)
        if self.mine:
            values["mine"] = "1"
        if self.sort != DEFAULT_SORT or self.order != SORT_COLUMNS[
                DEFAULT_SORT]:
            values["sort"] = self.sort
            values["order"] = self.order
        if page:
            if self.page != 1:
                values["page"] = self.page
            if self.per_page != DEFAULT_PER_PAGE:
                values["per_page"] = self.per_page
        return values

    def sort_args(self, column):
        """Return the query arguments of the link in ``column``'s header:
        sort by it (the other way round if it sorts already), page 1."""
        if column == self.sort:
            order = "asc" if self.order == "desc" else "desc"
        else:
            order = SORT_COLUMNS[column]
        values = dataclasses.replace(self, sort=column, order=order,
                                     page=1).args()
        if self.per_page != DEFAULT_PER_PAGE:
            values["per_page"] = self.per_page
        return values

    def aria_sort(self, column):
        """Return ``ascending``/``descending`` for the sorted column, else
        ``None``."""
        if column != self.sort:
            return None
        return "ascending" if self.order == "asc" else "descending"

    def on_page(self, page):
        """Return this filter showing ``page``."""
        return dataclasses.replace(self, page=page)


def _text(args, name):
    value = str(args.get(name) or "").strip()
    if "\x00" in value:
        raise BadRequest(f"query argument {name!r} must not contain NUL "
                         f"characters")
    limit = TEXT_FILTERS.get(name)
    if limit is not None and len(value) > limit:
        raise BadRequest(f"query argument {name!r} must be at most {limit} "
                         f"characters long")
    return value or None


def _whole(args, name, default, minimum, maximum):
    raw = str(args.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query argument {name!r} must be a whole number, "
                         f"got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise BadRequest(f"query argument {name!r} must be from {minimum} "
                         f"to {maximum}, got {value}")
    return value


def _choice(args, name, allowed, default):
    value = _text(args, name)
    if value is None:
        return default
    if value not in allowed:
        raise BadRequest(f"query argument {name!r} must be one of "
                         f"{', '.join(allowed)}, got {value!r}")
    return value


def parse_filter(args):
    """Read a :class:`JobFilter` from the query arguments ``args`` (a
    mapping with ``get``).

    Empty arguments mean "no filter" (the filter form sends every field).
    A bad value is a :class:`BadRequest` naming the argument and what it
    may be: a page of ``abc``, an unknown state, a ``per_page`` above
    :data:`MAX_PER_PAGE`.
    """
    sort = _choice(args, "sort", tuple(SORT_COLUMNS), DEFAULT_SORT)
    mine = (_text(args, "mine") or "0").lower() not in FALSE_WORDS
    return JobFilter(
        state=_choice(args, "state", sorted(JOB_STATES), None),
        owner=_text(args, "owner"),
        mine=mine,
        queue=_text(args, "queue"),
        jobtype=_text(args, "jobtype"),
        tag=_text(args, "tag"),
        title=_text(args, "title"),
        sort=sort,
        order=_choice(args, "order", ORDERS, SORT_COLUMNS[sort]),
        page=_whole(args, "page", 1, 1, MAX_INT),
        per_page=_whole(args, "per_page", DEFAULT_PER_PAGE, 1,
                        MAX_PER_PAGE),
    )


def filter_clauses(job_filter, user_id=None):
    """Return the WHERE clauses of ``job_filter``; ``user_id`` is the
    viewer's (for ``mine``).

    Names are looked up with ``IN (SELECT id ...)`` so that the jobs'
    indexes on ``user_id`` and ``jobqueue_id`` serve them; the title
    matches case-insensitively as a substring, LIKE wildcards taken
    literally.
    """
    where = []
    if job_filter.state:
        where.append(Job.state == job_filter.state)
    if job_filter.mine:
        where.append(Job.user_id == user_id)
    if job_filter.owner:
        where.append(Job.user_id.in_(
            select(User.id).where(User.name == job_filter.owner)))
    if job_filter.queue:
        where.append(Job.jobqueue_id.in_(
            select(JobQueue.id).where(JobQueue.name == job_filter.queue)))
    if job_filter.jobtype:
        where.append(Job.jobtype_id.in_(
            select(JobType.id).where(JobType.name == job_filter.jobtype)))
    if job_filter.tag:
        where.append(Job.id.in_(
            select(job_tags.c.job_id)
            .join(Tag, Tag.id == job_tags.c.tag_id)
            .where(Tag.name == job_filter.tag)))
    if job_filter.title:
        pattern = "%" + escape_like(job_filter.title.lower()) + "%"
        where.append(func.lower(Job.title).like(pattern, escape="\\"))
    return where


def order_by(job_filter):
    """Return the ORDER BY of ``job_filter``: its column, then the newest
    first among equals so that pages never overlap.

    Only columns of the job (and its owner's name): never an aggregate of
    its tasks. Ids grow with submission time, so "submitted" sorts by the
    primary key.
    """
    descending = job_filter.order == "desc"
    if job_filter.sort == "submitted":
        return [Job.id.desc() if descending else Job.id.asc()]
    if job_filter.sort == "title":
        keys = [func.lower(Job.title), Job.title]
    elif job_filter.sort == "owner":
        # Jobs whose owner was deleted last, either way.
        return [User.name.is_(None),
                User.name.desc() if descending else User.name.asc(),
                Job.id.desc()]
    elif job_filter.sort == "priority":
        keys = [Job.priority]
    else:
        keys = [case({str(state): rank for rank, state
                      in enumerate(STATE_ORDER)},
                     value=Job.state, else_=len(STATE_ORDER))]
    keys = [key.desc() if descending else key.asc() for key in keys]
    return keys + [Job.id.desc()]


def page_query(job_filter, where, offset):
    """Return the SELECT of one page of jobs, with the owner, job type,
    queue and tags the page shows loaded by the same few statements
    whatever the number of rows.

    The page's ids are picked first by a narrow subquery: sorting 10,000
    ids and sort keys is fast, sorting 10,000 whole rows with their job
    type and queue joined is not (15 times slower on SQLite).
    """
    keys = order_by(job_filter)
    ids = select(Job.id).where(*where)
    if job_filter.sort == "owner":
        ids = ids.outerjoin(User, User.id == Job.user_id)
    ids = (ids.order_by(*keys).limit(job_filter.per_page).offset(offset)
           .correlate(None))
    return (select(Job)
            .outerjoin(User, User.id == Job.user_id)
            .where(Job.id.in_(ids))
            .options(contains_eager(Job.user), joinedload(Job.jobtype),
                     joinedload(Job.jobqueue), selectinload(Job.tags))
            .order_by(*keys))


def count_query(where):
    """Return the COUNT of the jobs matching ``where``."""
    return select(func.count()).select_from(Job).where(*where)


def last_page(total, per_page):
    """Return the number of the last page (1 when nothing matches)."""
    return max(1, (total + per_page - 1) // per_page)


@dataclasses.dataclass(frozen=True)
class BulkRequest:
    """A bulk action on selected jobs."""

    action: str
    job_ids: tuple[int, ...]
    priority: int | None = None


def parse_bulk(form):
    """Read a :class:`BulkRequest` from a posted form (a mapping with
    ``get`` and ``getlist``): ``action``, ``job_ids`` (repeated) and, to
    set the priority, ``priority``.

    Raises :class:`BadRequest` for an unknown action, no selected job, an
    id that is not a number or a priority that is not a whole number.
    """
    action = (form.get("action") or "").strip()
    if action not in BULK_ACTIONS:
        raise BadRequest(f"unknown action {action!r}: choose one of "
                         f"{', '.join(BULK_ACTIONS)}")
    ids = []
    for raw in form.getlist("job_ids"):
        raw = raw.strip()
        if not raw.isascii() or not raw.isdigit() \
                or not 1 <= int(raw) <= MAX_INT:
            raise BadRequest(f"job_ids must be job ids, got {raw!r}")
        ids.append(int(raw))
    ids = tuple(dict.fromkeys(ids))
    if not ids:
        raise BadRequest("no jobs selected: tick the jobs to "
                         + ("change" if action != "delete" else "delete")
                         + " first")
    if len(ids) > MAX_BULK:
        raise BadRequest(f"select at most {MAX_BULK} jobs at once, got "
                         f"{len(ids)}")
    priority = None
    if action == "priority":
        raw = (form.get("priority") or "").strip()
        try:
            priority = int(raw)
        except ValueError:
            raise BadRequest(f"priority must be a whole number, got "
                             f"{raw!r}") from None
        if not -MAX_INT - 1 <= priority <= MAX_INT:
            raise BadRequest(f"priority must be from {-MAX_INT - 1} to "
                             f"{MAX_INT}, got {priority}")
    return BulkRequest(action=action, job_ids=ids, priority=priority)
