"""Job types: loading by entry point, the base class, the command job type.

Each renderer's job type has its own test module (``test_jobtype_*.py``).
"""

import re
import sys
import types
from importlib.metadata import EntryPoint

import pytest

from pyfarm.agent import jobtypes, software
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


class StudioMaya(JobType):
    """A studio's own Maya job type."""


def test_a_studio_package_replaces_the_built_in_of_its_name(monkeypatch):
    package = types.ModuleType("studio_farm")
    package.StudioMaya = StudioMaya
    monkeypatch.setitem(sys.modules, "studio_farm", package)
    studio = EntryPoint("maya", "studio_farm:StudioMaya", jobtypes.GROUP)
    other = EntryPoint("maya", "studio_farm:Zzz", jobtypes.GROUP)
    built_in = EntryPoint("maya", "pyfarm.agent.jobtypes.maya:MayaJobType",
                          jobtypes.GROUP)
    assert jobtypes.choose([built_in, other, studio]) is studio

    def entry_points(group, name):
        assert group == jobtypes.GROUP
        return [built_in, studio] if name == "maya" else []

    monkeypatch.setattr(jobtypes, "entry_points", entry_points)
    assert jobtypes.load("maya") is StudioMaya


def test_build_looks_a_job_type_up_once_per_cache(monkeypatch):
    # Reading every package's metadata for each assignment costs more
    # than a frame of a few milliseconds.
    looked_up = []
    real = jobtypes.entry_points

    def entry_points(**query):
        looked_up.append(query.get("name"))
        return real(**query)

    monkeypatch.setattr(jobtypes, "entry_points", entry_points)
    assignment = {"id": "a1", "job": {
        "id": 1, "jobtype": "command", "data": {"argv": ["true"]},
        "environ": {}, "by": 1}, "tasks": [{"id": 1, "frame": 1,
                                            "attempt": 1}]}
    classes = {}
    first = jobtypes.build(assignment, environ={}, classes=classes)
    second = jobtypes.build(assignment, environ={}, classes=classes)
    assert type(first) is type(second) is CommandJobType
    assert looked_up == ["command"]
    assert classes == {"command": CommandJobType}
    jobtypes.build(assignment, environ={})  # no cache: looked up again
    assert looked_up == ["command", "command"]


def test_unknown_job_type_names_what_is_installed():
    with pytest.raises(JobTypeError,
                       match=r"no job type 'renderman'.*blender, command"):
        jobtypes.load("renderman")


# -- what every job type declares ------------------------------------------

EXAMPLES = {
    "command": {"argv": ["echo", "{frame}"]},
    "blender": {"scene": "/shows/a/shot.blend"},
    "ffmpeg": {"input": "/out/shot_####.png", "start": 1,
               "output": "/out/shot.mp4"},
    "maya": {"scene": "/shows/a/shot.ma"},
    "houdini": {"hip": "/shows/a/fx.hip", "rop": "/out/mantra1"},
    "nuke": {"script": "/shows/a/comp.nk"},
}


def test_every_job_type_is_installed_and_described():
    described = {item["name"]: item for item in jobtypes.describe_installed()}
    assert sorted(described) == sorted(EXAMPLES)
    for name, item in described.items():
        assert set(item) == {"name", "description", "parameters",
                             "software"}
        assert item["description"] and "\n" not in item["description"]
        assert item["software"] == (None if name == "command" else name)
        assert item["parameters"]["type"] == "object"
        assert item["parameters"]["additionalProperties"] is False


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_parameters_are_a_json_schema_the_master_can_check_with(name):
    jsonschema = pytest.importorskip("jsonschema")
    schema = jobtypes.load(name).parameters
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(EXAMPLES[name])) == []
    unknown = dict(EXAMPLES[name], colour="red")
    [error] = validator.iter_errors(unknown)
    assert "'colour' was unexpected" in error.message
    for required in schema["required"]:
        missing = {k: v for k, v in EXAMPLES[name].items() if k != required}
        errors = list(validator.iter_errors(missing))
        assert [e.validator for e in errors] == ["required"]
        assert repr(required) in errors[0].message


def test_describe_uses_the_entry_point_name_and_the_docstring():
    class Studio(JobType):
        """Run the studio's own tool.

        More words that do not belong in a one-line description.
        """

        parameters = {"type": "object"}

    assert Studio.describe("studio") == {
        "name": "studio", "description": "Run the studio's own tool.",
        "parameters": {"type": "object"}, "software": None}


def test_a_job_type_that_does_not_load_is_left_out(monkeypatch, caplog):
    real = jobtypes.load

    def load(name):
        if name == "nuke":
            raise JobTypeError("job type 'nuke' failed to load: boom")
        return real(name)

    monkeypatch.setattr(jobtypes, "load", load)
    assert "nuke" not in [item["name"]
                          for item in jobtypes.describe_installed()]
    assert "leaving out job type 'nuke'" in caplog.text


# -- path maps, data and environment -------------------------------------

MAPS = [{"linux": "/mnt/show", "windows": "P:\\show",
         "mac": "/Volumes/show"}]


def test_data_and_environ_are_mapped_for_the_agents_os(kit):
    task = kit.assignment(
        "command", {"argv": ["render", "P:\\show\\010\\a.ma",
                             "--out=P:\\show\\img"], "cwd": "P:\\show\\010",
                    "frames": 3},
        environ={"SHOT": "P:\\show\\010", "COUNT": 4}, pathmaps=MAPS)
    job = CommandJobType(task, environ={"PATH": "/bin"}, os_name="linux")
    assert job.argv() == ["render", "/mnt/show/010/a.ma",
                          "--out=/mnt/show/img"]
    assert job.cwd == "/mnt/show/010"
    assert job.data["frames"] == 3
    assert job.environ()["SHOT"] == "/mnt/show/010"
    assert job.environ()["COUNT"] == "4"
    on_mac = CommandJobType(task, environ={}, os_name="mac")
    assert on_mac.argv()[1] == "/Volumes/show/010/a.ma"
    on_windows = CommandJobType(task, environ={}, os_name="windows")
    assert on_windows.argv()[1] == "P:\\show\\010\\a.ma"
    assert task["job"]["data"]["argv"][1] == "P:\\show\\010\\a.ma"


def test_without_path_maps_nothing_changes(kit):
    task = kit.assignment("command", {"argv": ["x", "P:\\show\\a"]})
    assert CommandJobType(task, os_name="linux").argv() == [
        "x", "P:\\show\\a"]


# -- the base class's output bookkeeping -----------------------------------


class Strict(JobType):
    name = "strict"
    software = "strict"
    require_all_frames = True
    error_patterns = (r"^Error:",)
    license_patterns = (jobtypes.LICENSE_FAILURE,)

    def argv(self):
        return [self.executable()]


def test_frames_of_file_names(kit):
    job = Strict(kit.assignment("strict", {}, frames=(10, 11, 12)))
    assert job.frame_in_path("/out/shot010_v002.0011.exr") == 11
    assert job.frame_in_path("C:\\out\\shot_12.exr") == 12
    assert job.frame_in_path("/out/shot_0013.exr") is None
    assert job.frame_for("/out/none.exr") == 10
    assert job.frame_done(11) == [jobtypes.FrameDone(11)]
    assert job.frame_done(11) == [] and job.frame_done(99) == []
    assert job.pending() == [10, 12] and job.current_frame() == 10


def test_success_needs_exit_zero_no_error_and_every_frame(kit):
    job = Strict(kit.assignment("strict", {}, frames=(1, 2)))
    job.frame_done(1)
    assert not job.succeeded(ExitStatus(0), [])
    assert job.error_message(ExitStatus(0), ["last"]) == (
        "strict exited 0 but never finished frames 2 (exit code 0); last "
        "lines of output:\nlast")
    job.frame_done(2)
    assert job.succeeded(ExitStatus(0), [])
    assert not job.succeeded(ExitStatus(1), [])
    assert job.check_errors("Error: the disk is full")
    assert not job.succeeded(ExitStatus(0), [])
    assert job.error_message(ExitStatus(0), []) == (
        "the output reports an error: Error: the disk is full (exit code 0)")


def test_the_first_failure_is_the_reason(kit):
    job = Strict(kit.assignment("strict", {}))
    assert job.check_errors("  FLEXlm error: -15,10. System Error: 111  ")
    assert job.check_errors("Error: later")
    assert job.failure == ("license failure: FLEXlm error: -15,10. System "
                           "Error: 111")


def test_ignore_errors_excuses_known_lines_but_not_licenses(kit):
    job = Strict(kit.assignment(
        "strict", {"ignore_errors": ["userSetup.py", "not freed"]}))
    assert not job.check_errors("Error: in userSetup.py line 3")
    assert job.failure is None
    assert job.check_errors("Error: could not get a license (not freed)")
    assert job.failure.startswith("license failure")


@pytest.mark.parametrize("line", [
    "Maya: License was not obtained",
    'FLEXlm error: -15,10. System Error: 111 "Connection refused"',
    "No licenses could be found to run this application.",
    "License error: No license found",
    "[Foundry Licensing] No license available for nuke_r",
    "Error: Could not obtain a license for mtoa",
    "00:00:00   700MB WARNING | rendering with watermarks because of "
    "failed authorization:",
])
def test_license_failures(line):
    assert jobtypes.LICENSE_FAILURE.search(line)


@pytest.mark.parametrize("line", [
    "License server: 27000@license1", "Checking out a license for nuke_r",
    "00:00:00 | [clm] license found: arnold (1 of 10)",
])
def test_lines_about_licenses_that_are_not_failures(line):
    assert not jobtypes.LICENSE_FAILURE.search(line)


def test_outputs_from_the_output_else_from_the_data(kit):
    class Named(Strict):
        def expected_outputs(self, frame):
            return [f"/out/{frame}.exr"]

    job = Named(kit.assignment("strict", {}, frames=(1, 2)))
    job.add_output(1, "/out/a.0001.exr")
    job.add_output(1, "/out/a.0001.exr")
    job.add_output(None, "/out/lost.exr")
    assert job.outputs(1) == ["/out/a.0001.exr"]
    assert job.outputs(2) == ["/out/2.exr"]
    assert Strict(kit.assignment("strict", {})).outputs(1) == []


# -- choosing the program ----------------------------------------------------


def test_the_program_comes_from_the_agents_inventory(kit):
    job = Strict(kit.assignment(
        "strict", {}, requirements=[
            {"software": "strict", "min_version": "2", "max_version": "3"},
            {"software": "other", "min_version": "9", "max_version": None}]),
        installed=kit.inventory("strict", ("/a/strict", "1.5"),
                                ("/b/strict", "2.5"), ("/c/strict", "3.9"),
                                ("/d/strict", "4.0")))
    assert job.argv() == ["/c/strict"]
    assert job.installation().version == "3.9"


def test_a_missing_program_fails_saying_where_the_agent_looked(kit,
                                                                tmp_path):
    job = Strict(kit.assignment("strict", {}), installed={"strict": (
        software.Discovery("strict", [], ["PATH (/usr/bin)",
                                          "/opt/strict*/strict"]))})
    with pytest.raises(JobTypeError, match=re.escape(
            "strict not found on this agent (looked in: PATH (/usr/bin); "
            "/opt/strict*/strict)")):
        job.argv()


def test_without_an_inventory_the_job_type_looks_itself(kit, tmp_path):
    program = kit.executable(tmp_path / "strict", "pass\n")

    class Found(Strict):
        executables = {"linux": ["strict"]}

    job = Found(kit.assignment("strict", {}), os_name="linux",
                environ={"PATH": str(tmp_path)})
    assert job.argv() == [str(program)]


def test_build_passes_the_inventory_and_the_os(kit):
    built = jobtypes.build(
        kit.assignment("blender", {"scene": "P:\\show\\a.blend"},
                       pathmaps=MAPS),
        environ={}, os_name="mac",
        installed=kit.inventory("blender", ("/Applications/b", "4.1")))
    assert built.argv()[:3] == ["/Applications/b", "-b",
                                "/Volumes/show/a.blend"]
