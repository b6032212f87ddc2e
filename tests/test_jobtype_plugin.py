"""
A studio's own job type, shipped as a package of its own, through the
``pyfarm.jobtypes`` entry point: the example in
``examples/pyfarm-jobtype-example``.

The package is "installed" into a temporary folder the way ``pip install
--target`` lays it out (the package and a ``.dist-info`` folder whose
``entry_points.txt`` is made from the example's ``pyproject.toml``), so
nothing is installed into the environment running the tests. The agent's
loader must find it there; then a real agent, with that folder on its
``PYTHONPATH``, reports it to a real master and runs a job of it.
"""

import os
import platform
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from farmlib import running_farm
from jsonschema import Draft202012Validator

from pyfarm.agent import jobtypes
from pyfarm.agent.jobtypes import FrameDone, JobType, JobTypeError, Progress
from pyfarm.agent.process import ExitStatus
from pyfarm.agent.software import Discovery, Installation
from pyfarm.core.client import ApiError
from pyfarm.master.services.catalog import check_json_schema

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" \
    / "pyfarm-jobtype-example"
SCRIPT = EXAMPLE / "render_frames.py"
PACKAGE = "pyfarm_example_jobtype"


def install(target, project=None, package=PACKAGE, source=EXAMPLE):
    """Lay out a package in ``target`` as ``pip install --target`` does.

    ``project`` is the ``[project]`` table (default: the example's).
    Returns ``target``.
    """
    if project is None:
        project = tomllib.loads(
            (EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))[
                "project"]
    name, version = project["name"], project["version"]
    info = target / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        encoding="utf-8")
    lines = []
    for group, points in project.get("entry-points", {}).items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n",
                                           encoding="utf-8")
    if package is not None:
        shutil.copytree(source / package, target / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The example installed in a folder on ``sys.path``; its class."""
    monkeypatch.syspath_prepend(str(install(tmp_path / "site")))
    monkeypatch.delitem(sys.modules, PACKAGE, raising=False)
    yield jobtypes.load("python")
    sys.modules.pop(PACKAGE, None)


def assignment(data, frames=(11, 12), requirements=()):
    """Return an assignment of a ``python`` job, as the master sends it."""
    return {
        "id": "a-7",
        "job": {"id": 7, "title": "slates", "jobtype": "python",
                "jobtype_version": 1, "data": data, "environ": {},
                "by": 1, "cpus": 1, "ram": 0,
                "software_requirements": list(requirements)},
        "tasks": [{"id": 70 + index, "frame": frame, "attempt": 1}
                  for index, frame in enumerate(frames)],
    }


def inventory(*versions):
    """Return an agent inventory of this Python under ``versions``."""
    found = [Installation("python", sys.executable, version, "config")
             for version in versions]
    return {"python": Discovery("python", found=found)}


def test_the_entry_point_is_found_and_loaded(plugin):
    assert "python" in jobtypes.available()
    assert "command" in jobtypes.available()  # the built-in ones stay
    assert issubclass(plugin, JobType)
    assert plugin.__module__ == PACKAGE
    assert plugin.__name__ == "PythonJobType"
    assert ("python", plugin) in jobtypes.installed()


def test_it_describes_its_schema_for_the_registration(plugin):
    (described,) = [item for item in jobtypes.describe_installed()
                    if item["name"] == "python"]
    assert described == {
        "name": "python",
        "description": "Run a Python script for the frames of an "
                       "assignment.",
        "parameters": plugin.parameters,
        "software": "python",
    }
    check_json_schema(described["parameters"])  # as the master does
    validator = Draft202012Validator(described["parameters"])
    assert validator.is_valid({"script": "/x.py", "args": ["-v"]})
    assert not validator.is_valid({"args": []})  # no script
    assert not validator.is_valid({"script": "/x.py", "frames": 3})


def test_it_builds_the_command_for_an_assignment(plugin):
    job = jobtypes.build(
        assignment({"script": "/pipeline/slate.py",
                    "args": ["--output", "/renders/slate.####.ppm"]},
                   frames=(11, 12, 13)),
        installed=inventory("3.11.7"), os_name="linux")
    assert isinstance(job, plugin)
    assert job.argv() == [
        sys.executable, "-u", "/pipeline/slate.py",
        "--output", "/renders/slate.####.ppm",
        "--frame", "11", "--frame", "12", "--frame", "13"]


def test_software_requirements_choose_the_version(plugin):
    def chosen(requirements):
        job = plugin(assignment({"script": "/x.py"},
                                requirements=requirements),
                     installed=inventory("3.10.12", "3.12.4", "3.11.7"))
        return job.installation().version

    assert chosen([]) == "3.10.12"  # no range: the first one found
    assert chosen([{"software": "python", "min_version": "3.11",
                    "max_version": "3.11"}]) == "3.11.7"
    assert chosen([{"software": "python", "min_version": "3.11",
                    "max_version": None}]) == "3.12.4"
    with pytest.raises(JobTypeError, match="no python version"):
        chosen([{"software": "python", "min_version": "4.0",
                 "max_version": None}])


def test_a_real_run_reports_progress_frames_and_files(plugin, tmp_path):
    pattern = str(tmp_path / "out" / "slate.####.ppm")
    job = plugin(assignment({"script": str(SCRIPT),
                             "args": ["--output", pattern]}),
                 installed=inventory(platform.python_version()))
    result = subprocess.run(
        job.argv(), env=job.environ(), cwd=job.cwd, capture_output=True,
        text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    events = [event for line in lines for event in job.parse_line(line)]
    assert [e.frame for e in events if isinstance(e, FrameDone)] == [11, 12]
    assert [e.value for e in events if isinstance(e, Progress)] == \
        [0.25, 0.5, 0.75, 1.0] * 2
    assert job.succeeded(ExitStatus(0), lines)
    for frame in (11, 12):
        path = str(tmp_path / "out" / f"slate.{frame:04d}.ppm")
        assert job.outputs(frame) == [path]
        assert Path(path).read_bytes().startswith(b"P6 64 36 255\n")


def test_an_error_line_fails_even_with_exit_code_zero(plugin):
    job = plugin(assignment({"script": "/x.py"}), installed=inventory("3"))
    assert job.parse_line("ERROR:root:cannot read /shots/010/plate") == []
    assert not job.succeeded(ExitStatus(0), [])
    assert "cannot read" in job.error_message(ExitStatus(0), [])

    excused = plugin(assignment({"script": "/x.py",
                                 "ignore_errors": ["/shots/010/plate"]}),
                     installed=inventory("3"))
    excused.parse_line("ERROR:root:cannot read /shots/010/plate")
    assert excused.succeeded(ExitStatus(0), [])
    assert not excused.succeeded(ExitStatus(1), [])


def test_a_broken_plugin_is_left_out(tmp_path, monkeypatch, caplog):
    broken = tmp_path / "broken"
    (broken / "studio_broken").mkdir(parents=True)
    (broken / "studio_broken" / "__init__.py").write_text(
        "import a_module_nobody_installed\n", encoding="utf-8")
    install(broken, {"name": "studio-broken", "version": "1.0",
                     "entry-points": {"pyfarm.jobtypes": {
                         "slate": "studio_broken:SlateJobType"}}},
            package=None)
    monkeypatch.syspath_prepend(str(broken))
    monkeypatch.syspath_prepend(str(install(tmp_path / "site")))
    monkeypatch.delitem(sys.modules, PACKAGE, raising=False)
    try:
        assert "slate" in jobtypes.available()
        names = [name for name, _ in jobtypes.installed()]
        assert "slate" not in names and "python" in names
        assert "leaving out job type 'slate'" in caplog.text
        with pytest.raises(JobTypeError, match="failed to load"):
            jobtypes.load("slate")
    finally:
        sys.modules.pop(PACKAGE, None)
        sys.modules.pop("studio_broken", None)


# -- a real master and agent ---------------------------------------------

@pytest.fixture(scope="module")
def plugin_farm(request, tmp_path_factory):
    """A farm whose one agent has the example on its ``PYTHONPATH`` and is
    told to run this Python for ``python`` jobs."""
    site = install(tmp_path_factory.mktemp("plugin") / "site")
    path = os.pathsep.join(
        item for item in (str(site), os.environ.get("PYTHONPATH")) if item)
    yield from running_farm(
        request, tmp_path_factory, "sqlite", agents=1,
        agent_env={"PYTHONPATH": path,
                   "PYFARM_AGENT_EXECUTABLES": f"python={sys.executable}"})


@pytest.mark.e2e
def test_the_agent_reports_the_job_type_and_its_program(plugin_farm):
    client = plugin_farm.client
    jobtype = client.request("GET", "/jobtypes/python").json()
    assert jobtype["software"] == "python"
    assert jobtype["parameters"]["required"] == ["script"]
    assert set(jobtype["parameters"]["properties"]) == {
        "script", "args", "cwd", "ignore_errors"}
    (agent,) = plugin_farm.agents()
    versions = {item["version"] for item in agent["software"]
                if item["software"] == "python"}
    assert platform.python_version() in versions


@pytest.mark.e2e
def test_the_master_checks_data_against_the_reported_schema(plugin_farm):
    with pytest.raises(ApiError) as raised:
        plugin_farm.client.submit_job(
            title="typo", jobtype="python", start=1, end=1,
            data={"script": str(SCRIPT), "arguments": []})
    assert raised.value.status == 400
    assert "data.arguments" in raised.value.message


@pytest.mark.e2e
def test_a_job_of_the_example_renders_on_a_real_agent(plugin_farm,
                                                      tmp_path):
    client = plugin_farm.client
    pattern = str(tmp_path / "out" / "slate.####.ppm")
    job = client.submit_job(
        title="slates", jobtype="python", start=1, end=4, batch=2,
        software_requirements=[{"software": "python", "min_version": "3.11",
                                "max_version": None}],
        data={"script": str(SCRIPT), "args": ["--output", pattern,
                                              "--size", "32x18"]})
    done = client.wait_for_job(job["id"], timeout=60, poll=0.3)
    assert done["state"] == "done", done
    tasks = client.tasks(job["id"])
    assert sorted(task["frame"] for task in tasks) == [1, 2, 3, 4]
    for task in tasks:
        path = tmp_path / "out" / f"slate.{task['frame']:04d}.ppm"
        assert task["state"] == "done" and task["progress"] == 1.0
        assert task["outputs"] == [str(path)]
        assert path.read_bytes().startswith(b"P6 32 18 255\n")
