"""
Errors in the web UI: an HTML page that says what went wrong and what to
do, never a traceback. htmx requests get the message alone, which the
page shows as a notice.
"""

from flask import render_template
from flask_wtf.csrf import CSRFError

from pyfarm.master.ui.session import is_htmx

TITLES = {400: "Bad request", 401: "Log in first", 403: "Not allowed",
          404: "Not found", 405: "Method not allowed", 409: "Conflict",
          413: "Too large", 500: "Internal error"}

CSRF_MESSAGE = ("The form expired or did not come from this site. Reload "
                "the page and try again.")


def error_page(status, message, exception=None):
    """Return the response for an error in the UI."""
    if isinstance(exception, CSRFError):
        message = CSRF_MESSAGE
    headers = {}
    if exception is not None and status == 405:
        headers["Allow"] = ", ".join(exception.valid_methods or [])
    if is_htmx():
        return message, status, {**headers,
                                 "Content-Type": "text/plain; charset=utf-8"}
    title = TITLES.get(status, "Error")
    return (render_template("error.html", status=status, title=title,
                            message=message), status, headers)
