"""
Logging for every PyFarm process.

``getLogger("master.api")`` returns the standard library logger
``pyfarm.master.api``. The first call installs one stream handler on the
``pyfarm`` logger with a readable format, at the level named by the
``PYFARM_LOGLEVEL`` environment variable (default ``info``).
"""

import logging
import os

ROOT_NAME = "pyfarm"
FORMAT = "%(asctime)s %(levelname)-7s %(name)s - %(message)s"
_configured = False


def level_from_env(environ=None):
    """Return the logging level named by ``PYFARM_LOGLEVEL``.

    An unknown name raises :class:`ValueError` naming the variable.
    """
    environ = os.environ if environ is None else environ
    name = environ.get("PYFARM_LOGLEVEL", "info").strip().upper()
    level = logging.getLevelName(name)
    if not isinstance(level, int):
        raise ValueError(
            f"PYFARM_LOGLEVEL must be one of debug, info, warning, error, "
            f"critical; got {name.lower()!r}")
    return level


def configure(level=None, stream=None):
    """Install the handler on the ``pyfarm`` logger (once)."""
    global _configured
    root = logging.getLogger(ROOT_NAME)
    root.setLevel(level_from_env() if level is None else level)
    if not _configured:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
        root.propagate = False
        _configured = True
    return root


def getLogger(name):  # noqa: N802 - mirrors logging.getLogger
    """Return the logger ``pyfarm.<name>``, configuring logging once."""
    if not _configured:
        configure()
    if name.startswith(ROOT_NAME + ".") or name == ROOT_NAME:
        return logging.getLogger(name)
    return logging.getLogger(f"{ROOT_NAME}.{name}")
