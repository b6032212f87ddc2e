"""
The application factory: ``create_app(config=None)``.

No application object exists at import time; gunicorn serves
``pyfarm.master.app:create_app()``.
"""

import secrets

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, IntegerConverter

from pyfarm.core.logger import getLogger
from pyfarm.master import models  # noqa: F401 - registers the tables
from pyfarm.master.db import configure_sqlite, db, is_sqlite
from pyfarm.master.errors import ApiError
from pyfarm.master.logstore import FileLogStore
from pyfarm.master.schema import check_schema
from pyfarm.master.settings import Settings, load_settings
from pyfarm.master.validation import MAX_INT

logger = getLogger("master.app")


def create_app(config=None):
    """Create the master's Flask application.

    ``config`` is a :class:`~pyfarm.master.settings.Settings`, or a dict of
    setting overrides (``{"database_url": ...}``) applied over the config
    files and ``PYFARM_*`` variables, or ``None``.
    """
    settings = config if isinstance(config, Settings) else load_settings(
        overrides=config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(settings.database_url),
        SECRET_KEY=settings.secret_key or secret_key(settings),
        MAX_CONTENT_LENGTH=settings.max_request_size,
        JSON_SORT_KEYS=False,
        PYFARM=settings,
    )
    app.json.sort_keys = False
    app.extensions["pyfarm.logstore"] = FileLogStore(settings.log_dir)
    db.init_app(app)
    register_converters(app)
    with app.app_context():
        if is_sqlite(settings.database_url):
            configure_sqlite(db.engine)
        if settings.check_schema:
            check_schema(db.engine)
    register_blueprints(app)
    register_error_handlers(app)
    return app


def engine_options(url):
    """Return engine options suited to the database at ``url``."""
    if is_sqlite(url):
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}


def secret_key(settings):
    """Return the secret key kept in the data directory, made once."""
    path = settings.data_dir / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


class IdConverter(IntegerConverter):
    """``<int:...>`` in URLs: an id or attempt number, which fits an SQL
    INTEGER; a larger number matches no route (404) instead of failing in
    the database."""

    def __init__(self, url_map, *args, **options):
        options.setdefault("max", MAX_INT)
        super().__init__(url_map, *args, **options)


class NameConverter(BaseConverter):
    """``<name>`` in URLs: one path segment without control characters,
    which no name or id holds (and PostgreSQL cannot compare NUL)."""

    regex = r"[^/\x00-\x1f\x7f]+"
    part_isolating = True


def register_converters(app):
    """Make ``int`` and the default URL converter refuse what no stored
    object can be named, so that it is a 404 and never a database error."""
    app.url_map.converters.update(
        int=IdConverter, default=NameConverter, string=NameConverter)


def register_blueprints(app):
    """Attach the API and the web UI."""
    from pyfarm.master.api import api
    from pyfarm.master.ui import init_ui

    app.register_blueprint(api)
    init_ui(app)


def wants_json():
    """Whether the current request is an API request."""
    return request.path.startswith("/api/")


def register_error_handlers(app):
    """Answer errors as JSON under ``/api/`` and as HTML elsewhere."""

    from pyfarm.master.ui.errors import error_page

    @app.errorhandler(ApiError)
    def on_api_error(error):
        db.session.rollback()
        if not wants_json():
            return error_page(error.status, error.message)
        return jsonify(error.to_dict()), error.status, error.headers

    @app.errorhandler(HTTPException)
    def on_http_error(error):
        if not wants_json():
            return error_page(error.code, error.description or error.name,
                              error)
        message = error.description or error.name
        if error.code == 405:
            message = (f"method {request.method} is not allowed on "
                       f"{request.path}; allowed: "
                       f"{', '.join(error.valid_methods or [])}")
        elif error.code == 404:
            message = f"no such API endpoint: {request.path}"
        elif error.code == 413:
            message = "the request body is too large"
        return jsonify({"error": message}), error.code

    @app.errorhandler(Exception)
    def on_unexpected(error):
        # Last resort: log the traceback for the admin, never show it.
        logger.exception("unhandled error on %s %s", request.method,
                         request.path)
        db.session.rollback()
        if wants_json():
            return jsonify({"error": "internal error; the master's log "
                                     "has the details"}), 500
        return error_page(500, "Internal error; the master's log has the "
                               "details.")
