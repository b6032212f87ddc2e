"""Placeholder: views are added by the module owner."""

from pyfarm.master.api import api  # noqa: F401
