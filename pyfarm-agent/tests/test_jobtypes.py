"""Job types: loading by entry point, the command job type."""

import pytest

from pyfarm.agent import jobtypes
from pyfarm.agent.jobtypes import JobType, JobTypeError
from pyfarm.agent.jobtypes.command import CommandJobType
from pyfarm.agent.process import ExitStatus


def assignment(argv, frames=(11, 12, 13), by=1, data=None, environ=None):
    return {
        "id": "a-1",
        "job": {"id": 5, "title": "t", "jobtype": "command",
                "jobtype_version": 1, "data": data or {"argv": argv},
                "environ": environ or {}, "cpus": 1, "ram": 0, "by": by},
        "tasks": [{"id": 100 + i, "frame": f, "attempt": 1}
                  for i, f in enumerate(frames)],
    }


def test_command_substitutes_the_frame_range():
    job = CommandJobType(assignment(
        ["render", "-s", "{start}", "-e", "{end}", "-b", "{by}",
         "out.{frame}.exr", "--range={start}-{end}"], frames=(10, 12, 14),
        by=2))
    assert job.argv() == ["render", "-s", "10", "-e", "14", "-b", "2",
                          "out.10.exr", "--range=10-14"]


def test_command_leaves_other_braces_alone():
    job = CommandJobType(assignment(
        ["sh", "-c", 'echo {"a": {frame}} ${HOME} {}', "{unknown}"]))
    assert job.argv() == ["sh", "-c", 'echo {"a": 11} ${HOME} {}',
                          "{unknown}"]


@pytest.mark.parametrize("data", [{}, {"argv": []}, {"argv": "echo"},
                                  {"argv": ["echo", 1]}])
def test_command_needs_a_list_of_strings(data):
    job = CommandJobType(assignment(None, data=data))
    with pytest.raises(JobTypeError, match="data.argv"):
        job.argv()


def test_environ_adds_the_job_environ_to_the_agents_without_secrets():
    job = CommandJobType(
        assignment(["x"], environ={"SHOT": "010", "PATH": "/opt/bin"}),
        environ={"PATH": "/bin", "HOME": "/home/r",
                 "PYFARM_AGENT_TOKEN": "secret"})
    env = job.environ()
    assert env["SHOT"] == "010"
    assert env["PATH"] == "/opt/bin"
    assert env["HOME"] == "/home/r"
    assert "PYFARM_AGENT_TOKEN" not in env
    assert env["PYFARM_FRAME_START"] == "11"
    assert env["PYFARM_FRAME_END"] == "13"
    assert env["PYFARM_FRAMES"] == "11 12 13"
    assert env["PYFARM_JOB_ID"] == "5"
    assert env["PYFARM_ASSIGNMENT_ID"] == "a-1"


def test_cwd_comes_from_data():
    data = {"argv": ["x"], "cwd": "/shots/010"}
    assert CommandJobType(assignment(None, data=data)).cwd == "/shots/010"
    assert CommandJobType(assignment(["x"])).cwd is None


def test_success_is_exit_code_zero():
    job = CommandJobType(assignment(["x"]))
    assert job.succeeded(ExitStatus(0), [])
    assert not job.succeeded(ExitStatus(1), [])
    assert not job.succeeded(ExitStatus(None, 9), [])


def test_error_message_quotes_the_last_lines():
    job = CommandJobType(assignment(["x"]))
    lines = [f"line {n}" for n in range(30)]
    message = job.error_message(ExitStatus(None, 9), lines)
    assert message.startswith("killed by signal 9; last lines of output:\n"
                              "line 10\n")
    assert message.endswith("line 29")
    long = job.error_message(ExitStatus(2), ["x" * 10_000])
    assert len(long) <= jobtypes.MAX_ERROR
    assert long.startswith("exit code 2")


def test_base_class_finds_no_events_and_needs_argv():
    job = JobType(assignment(["x"]))
    assert job.parse_line("50%") == []
    with pytest.raises(NotImplementedError):
        job.argv()


def test_loads_job_types_by_entry_point():
    assert "command" in jobtypes.available()
    assert jobtypes.load("command") is CommandJobType
    built = jobtypes.build(assignment(["x"]), environ={})
    assert isinstance(built, CommandJobType)


def test_unknown_job_type_names_what_is_installed():
    with pytest.raises(JobTypeError, match=r"no job type 'maya'.*command"):
        jobtypes.load("maya")
