"""
End-to-end fixtures: a :class:`farmlib.Farm` per test module and backend.
"""

import pytest
from farmlib import Farm, NoPostgres, postgres_database


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def farm(request, tmp_path_factory):
    """A running master with two agents of one slot each."""
    root = tmp_path_factory.mktemp(f"farm-{request.param}")
    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'pyfarm.sqlite'}"
    else:
        try:
            url, drop = postgres_database()
        except NoPostgres as error:
            pytest.skip(str(error))
    farm = Farm(root, url)
    failed_before = request.session.testsfailed
    try:
        farm.start_master()
        farm.start_agent("agent-a")
        farm.start_agent("agent-b")
        farm.wait_for_agents(2)
        yield farm
    finally:
        if request.session.testsfailed > failed_before:
            farm.dump_logs()
        farm.stop()
        if drop:
            drop()
