"""
The web UI, served at ``/`` by the ``ui`` blueprint.

Plain server-rendered Jinja pages; htmx (vendored in ``static/``) refreshes
parts of a page and sends actions without a bundler or a build step.
People log in with a name and password (Flask-Login keeps the session);
every form and every htmx request carries a CSRF token (Flask-WTF). The
API under ``/api/`` takes bearer tokens only, so it needs no CSRF token.

Each page family lives in its own module, which registers its views on
:data:`ui` when this package is imported.
"""

import importlib

from flask import Blueprint

ui = Blueprint("ui", __name__, template_folder="templates",
               static_folder="static", static_url_path="/ui/static")

#: The modules holding the views; importing one registers its views on
#: :data:`ui`, which must happen before any application registers it.
VIEW_MODULES = ("context", "login", "overview", "jobs", "job", "submit",
                "agents", "catalog", "users")


def _import_views():
    for name in VIEW_MODULES:
        importlib.import_module(f"pyfarm.master.ui.{name}")


#: What the master compresses for browsers that accept it: the pages and
#: their fragments (a big job's frame grid is hundreds of kilobytes of
#: HTML every few seconds). The API's JSON is left alone; static files
#: are sent as they are and cached by the browser.
COMPRESSED_TYPES = ["text/html"]


def init_ui(app):
    """Attach login, CSRF protection, compression and the views to
    ``app``."""
    from flask_compress import Compress

    from pyfarm.master.ui import session

    session.init_app(app)
    app.config.setdefault("COMPRESS_MIMETYPES", COMPRESSED_TYPES)
    app.config.setdefault("COMPRESS_ALGORITHM", ["br", "gzip"])
    Compress(app)
    app.register_blueprint(ui)


_import_views()
