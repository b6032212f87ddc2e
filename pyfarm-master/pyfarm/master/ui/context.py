"""
What every template may use: the navigation, time formatting and the
refresh interval of the header.
"""

from datetime import timezone

from flask import current_app
from flask_login import current_user

from pyfarm.core.enums import Role
from pyfarm.master.db import utcnow
from pyfarm.master.ui import ui

#: ``(endpoint, label, admins only)`` of the main navigation, in order.
NAVIGATION = (
    ("ui.jobs", "Jobs", False),
    ("ui.submit", "Submit", False),
    ("ui.agents", "Agents", False),
    ("ui.jobqueues", "Queues", False),
    ("ui.tags", "Tags", False),
    ("ui.software", "Software", False),
    ("ui.pathmaps", "Path maps", False),
    ("ui.users", "Users", True),
)


def has_view(endpoint):
    """Whether ``endpoint`` is served (a page family may be absent)."""
    return endpoint in current_app.view_functions


def nav_current(endpoint, current):
    """Whether the page ``current`` (an endpoint) belongs to the
    navigation item ``endpoint``: ``ui.job`` and ``ui.jobs_bulk`` to
    ``ui.jobs``, ``ui.agent`` to ``ui.agents``, ``ui.submit_form`` to
    ``ui.submit``."""
    if not current:
        return False
    single = endpoint[:-1] if endpoint.endswith("s") else endpoint
    return current in (endpoint, single) or current.startswith(
        (endpoint + "_", single + "_"))


def nav_items():
    """Return the ``(endpoint, label)`` pairs the current user sees."""
    admin = current_user.is_authenticated and current_user.role == Role.ADMIN
    return [(endpoint, label) for endpoint, label, admins in NAVIGATION
            if has_view(endpoint) and (admin or not admins)]


def _aware(moment):
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


def duration(seconds):
    """Format a number of seconds for people: ``45s``, ``3m 05s``,
    ``2h 07m``, ``3d 4h``."""
    if seconds is None:
        return ""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def elapsed(start, end=None, now=None):
    """Format the time from ``start`` to ``end`` (or now)."""
    if start is None:
        return ""
    end = _aware(end) or _aware(now) or utcnow()
    return duration((end - _aware(start)).total_seconds())


def ago(moment, now=None):
    """Format how long ago ``moment`` was: ``12s ago``."""
    if moment is None:
        return "never"
    return elapsed(moment, now=now) + " ago"


def iso(moment):
    """Format a moment as ISO 8601 in UTC (for ``<time datetime>``)."""
    moment = _aware(moment)
    return moment.astimezone(timezone.utc).isoformat() if moment else ""


def local(moment):
    """Format a moment as ``2025-01-31 14:05 UTC``."""
    moment = _aware(moment)
    if moment is None:
        return ""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@ui.app_context_processor
def template_globals():
    from pyfarm.master.ui.overview import REFRESH_SECONDS
    return {"has_view": has_view, "nav_items": nav_items,
            "nav_current": nav_current, "overview_refresh": REFRESH_SECONDS}


ui.add_app_template_filter(duration, "duration")
ui.add_app_template_filter(elapsed, "elapsed")
ui.add_app_template_filter(ago, "ago")
ui.add_app_template_filter(iso, "iso")
ui.add_app_template_filter(local, "local")


