"""
The web UI blueprint, ``/``.

For now a landing page pointing at the API; the artists' pages come with
the web UI work.
"""

from flask import Blueprint

ui = Blueprint("ui", __name__, template_folder="templates")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PyFarm</title></head>
<body><h1>PyFarm master</h1>
<p>The REST API is at <a href="/api/v1/">/api/v1/</a>.</p>
</body></html>
"""


@ui.get("/")
def home():
    """The landing page."""
    return PAGE
