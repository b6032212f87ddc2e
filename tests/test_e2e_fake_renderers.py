"""
Maya, Houdini and Nuke through real agents, with fake executables that
print what the real programs print (they cannot be installed here).

The agents are told where the programs are (``agent_executables``), find
their versions from the install folders' names, report them, and only
get jobs whose software requirements they meet.
"""

import shutil
import sys
import time
from pathlib import Path

import pytest
from farmlib import running_farm

pytestmark = pytest.mark.e2e

FAKES = Path(__file__).resolve().parent.parent / "pyfarm-agent" / "tests" \
    / "fakes"

NUKE_SCRIPT = """Root {
 first_frame 1
 last_frame 4
}
Write {
 file OUT/comp.####.exr
 file_type exr
 name WriteFinal
}
"""


def install_fake(name, path):
    """Copy a fake program to ``path``, run by this Python."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (FAKES / name).read_text(encoding="utf-8")
    if text.startswith("#!"):
        text = f"#!{sys.executable}\n" + text.split("\n", 1)[1]
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def installs(tmp_path_factory):
    """Fake Maya 2024, Houdini 20.0.547 and Nuke 15.0v4 installs."""
    root = tmp_path_factory.mktemp("vendors")
    render = install_fake("Render", root / "maya2024" / "bin" / "Render")
    hython = install_fake("hython", root / "hfs20.0.547" / "bin" / "hython")
    install_fake("hrender.py", root / "hfs20.0.547" / "bin" / "hrender.py")
    nuke = install_fake("Nuke", root / "Nuke15.0v4" / "Nuke15.0")
    return {"maya": render, "houdini": hython, "nuke": nuke}


@pytest.fixture(scope="module")
def vendor_farm(request, tmp_path_factory, installs):
    """A farm whose two agents have the fake programs."""
    executables = ",".join(f"{name}={path}"
                           for name, path in installs.items())
    yield from running_farm(
        request, tmp_path_factory, "sqlite",
        agent_env={"PYFARM_AGENT_EXECUTABLES": executables})


def test_agents_report_the_versions_they_found(vendor_farm):
    for agent in vendor_farm.agents():
        found = {s["software"]: s["version"] for s in agent["software"]}
        assert found["maya"] == "2024"
        assert found["houdini"] == "20.0.547"
        assert found["nuke"] == "15.0.4"


def test_maya_arnold_render(vendor_farm, tmp_path):
    scene = tmp_path / "shot.ma"
    scene.write_text("//Maya ASCII 2024 scene\n")
    job = vendor_farm.client.submit_job(
        title="maya", jobtype="maya", start=1, end=4, batch=2,
        software_requirements=[{"software": "maya", "min_version": "2024",
                                "max_version": "2025"}],
        data={"scene": str(scene), "renderer": "arnold",
              "project": str(tmp_path), "output_dir": str(tmp_path / "img")})
    check_done(vendor_farm.client, job, 4)


def test_houdini_rop_render(vendor_farm, tmp_path):
    hip = tmp_path / "fx.hip"
    hip.write_text("fake hip")
    job = vendor_farm.client.submit_job(
        title="houdini", jobtype="houdini", start=1, end=4, batch=2,
        software_requirements=[{"software": "houdini",
                                "min_version": "19.5"}],
        data={"hip": str(hip), "rop": "/out/mantra1",
              "output": "$HIP/render/$HIPNAME.$OS.$F4.exr"})
    check_done(vendor_farm.client, job, 4)
    assert (tmp_path / "render" / "fx.mantra1.0004.exr").is_file()


def test_nuke_write_render(vendor_farm, tmp_path):
    script = tmp_path / "comp.nk"
    script.write_text(NUKE_SCRIPT.replace("OUT", str(tmp_path / "out")))
    job = vendor_farm.client.submit_job(
        title="nuke", jobtype="nuke", start=1, end=4, batch=4,
        data={"script": str(script), "write": "WriteFinal"})
    tasks = check_done(vendor_farm.client, job, 4)
    for task in tasks:
        assert task["outputs"] == [
            str(tmp_path / "out" / f"comp.{task['frame']:04d}.exr")]


def test_license_failure_with_exit_zero_fails_the_frame(vendor_farm,
                                                        tmp_path):
    script = tmp_path / "comp.nk"
    script.write_text(NUKE_SCRIPT.replace("OUT", str(tmp_path / "out")))
    client = vendor_farm.client
    job = client.submit_job(
        title="nuke without licence", jobtype="nuke", start=1, end=1,
        requeue=0, environ={"PYFARM_FAKE_MODE": "license"},
        data={"script": str(script)})
    failed = client.wait_for_job(job["id"], timeout=60, poll=0.3)
    assert failed["state"] == "failed"
    (task,) = client.tasks(job["id"])
    assert "license" in task["last_error"].lower()


def test_software_out_of_range_is_never_assigned(vendor_farm, tmp_path):
    scene = tmp_path / "old.ma"
    scene.write_text("//Maya ASCII 2020 scene\n")
    client = vendor_farm.client
    job = client.submit_job(
        title="maya 2020 only", jobtype="maya", start=1, end=1,
        software_requirements=[{"software": "maya", "max_version": "2020"}],
        data={"scene": str(scene)})
    # Give the scheduler several passes: nobody has Maya 2020.
    time.sleep(3)
    (task,) = client.tasks(job["id"])
    assert task["state"] == "queued" and task["attempt"] == 0
    client.delete_job(job["id"])


def check_done(client, job, frames):
    """Wait for ``job``; check every frame is done with progress 1."""
    done = client.wait_for_job(job["id"], timeout=120, poll=0.3)
    assert done["state"] == "done", done
    tasks = client.tasks(job["id"])
    assert len(tasks) == frames
    assert {t["state"] for t in tasks} == {"done"}
    assert all(t["progress"] == 1.0 for t in tasks)
    return tasks


def test_fakes_are_not_on_the_path():
    # The agents find the programs only through agent_executables.
    assert shutil.which("Render") is None and shutil.which("hython") is None
