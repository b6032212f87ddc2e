"""States, operating systems, roles and the platform constants."""

import json

import pytest

from pyfarm.core import enums
from pyfarm.core.enums import (
    ACTIVE_TASK_STATES,
    FINAL_STATES,
    JOB_STATES,
    TASK_STATES,
    AgentState,
    OperatingSystem,
    Role,
    WorkState,
)


def test_states_are_their_strings():
    assert WorkState.QUEUED == "queued"
    assert str(WorkState.RUNNING) == "running"
    assert f"{AgentState.DISABLED}" == "disabled"
    assert json.dumps({"state": WorkState.DONE}) == '{"state": "done"}'
    assert WorkState("failed") is WorkState.FAILED
    with pytest.raises(ValueError):
        WorkState("lost")


def test_job_and_task_states():
    assert {str(s) for s in JOB_STATES} == {
        "queued", "running", "paused", "done", "failed"}
    assert {str(s) for s in TASK_STATES} == {
        "queued", "assigned", "running", "done", "failed"}
    assert ACTIVE_TASK_STATES == {"assigned", "running"}
    assert FINAL_STATES == {"done", "failed"}
    assert ACTIVE_TASK_STATES <= TASK_STATES
    assert FINAL_STATES <= TASK_STATES & JOB_STATES


def test_agent_states_and_roles():
    assert [s.value for s in AgentState] == [
        "online", "running", "offline", "disabled"]
    assert [r.value for r in Role] == ["admin", "user", "agent"]


@pytest.mark.parametrize("platform, expected", [
    ("linux", OperatingSystem.LINUX),
    ("linux2", OperatingSystem.LINUX),
    ("darwin", OperatingSystem.MAC),
    ("win32", OperatingSystem.WINDOWS),
    ("cygwin", OperatingSystem.WINDOWS),
    ("freebsd14", OperatingSystem.BSD),
    ("openbsd7", OperatingSystem.BSD),
    ("sunos5", OperatingSystem.OTHER),
    ("emscripten", OperatingSystem.OTHER),
])
def test_operating_system_of_a_platform(platform, expected):
    assert OperatingSystem.current(platform) is expected


def test_platform_constants_agree():
    assert enums.OS is OperatingSystem.current()
    flags = [enums.LINUX, enums.MAC, enums.WINDOWS, enums.BSD]
    assert sum(flags) == (0 if enums.OS is OperatingSystem.OTHER else 1)
    assert enums.POSIX is (not enums.WINDOWS)
    assert enums.LINUX is (enums.OS == "linux")
