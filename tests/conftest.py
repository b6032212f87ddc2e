"""
End-to-end fixtures: a :class:`farmlib.Farm` per test module and backend.
"""

import pytest
from farmlib import running_farm


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def farm(request, tmp_path_factory):
    """A running master with two agents of one slot each."""
    yield from running_farm(request, tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def sqlite_farm(request, tmp_path_factory):
    """Like ``farm``, on SQLite only (for the slow real-render tests)."""
    yield from running_farm(request, tmp_path_factory, "sqlite")
