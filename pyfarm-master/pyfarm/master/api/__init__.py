"""
The REST API blueprint, ``/api/v1/``.

Views are thin: parse the request, call a service, turn the result into
JSON with an explicit function from :mod:`pyfarm.master.api.serialize`.
"""

from flask import Blueprint, jsonify

from pyfarm.master import __version__

api = Blueprint("api", __name__, url_prefix="/api/v1")


@api.get("/")
def index():
    """Say what this is; the only route that needs no token."""
    return jsonify({"name": "pyfarm-master", "version": __version__,
                    "api": "v1"})


def _load_views():
    # Each module adds its routes to ``api`` when imported.
    import importlib

    for name in VIEW_MODULES:
        importlib.import_module(f"pyfarm.master.api.{name}")


#: Modules holding API views; each registers routes on ``api``.
VIEW_MODULES = ("jobs", "tasks", "agents", "agent_protocol", "catalog",
                "pathmaps")

_load_views()
