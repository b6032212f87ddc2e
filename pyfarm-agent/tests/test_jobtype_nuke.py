"""The nuke job type: argv, Nuke's frame lines, errors behind exit code 0,
finding Nuke15.0v4/Nuke15.0; the fake Nuke end to end."""

import pytest

from pyfarm.agent.jobtypes import FrameDone, JobTypeError
from pyfarm.agent.jobtypes.nuke import NukeJobType
from pyfarm.agent.process import ExitStatus
from pyfarm.agent.software import discover

NUKE = "/usr/local/Nuke15.0v4/Nuke15.0"

#: Nuke rendering frames 1-3 of two Write nodes.
RENDER = """\
Nuke 15.0v4, 64 bit, built Feb 21 2024.
Copyright (c) 2024 The Foundry Visionmongers Ltd.  All Rights Reserved.
Writing /comp/out/shot.0001.exr took 1.22 seconds
Writing /comp/out/shot_proxy.0001.jpg took 0.10 seconds
Frame 1 (1 of 3)
Writing /comp/out/shot.0002.exr took 1.08 seconds
Writing /comp/out/shot_proxy.0002.jpg took 0.09 seconds
Frame 2 (2 of 3)
Writing /comp/out/shot.0003.exr took 1.11 seconds
Writing /comp/out/shot_proxy.0003.jpg took 0.09 seconds
Frame 3 (3 of 3)
Total render time: 3.69 seconds
"""


def nuke(kit, data=None, frames=(1, 2, 3), by=1, **options):
    data = {"script": "/comp/shot.nk"} if data is None else data
    return NukeJobType(
        kit.assignment("nuke", data, frames=frames, by=by, **options),
        installed=kit.inventory("nuke", (NUKE, "15.0.4")), os_name="linux")


def test_argv_renders_every_write_node(kit):
    assert nuke(kit).argv() == [NUKE, "-x", "-F", "1-3x1", "/comp/shot.nk"]


def test_argv_with_a_write_node_a_step_and_an_interactive_license(kit):
    job = nuke(kit, {"script": "/comp/shot.nk", "write": "WriteFinal",
                     "interactive_license": True},
               frames=(1001, 1003, 1005), by=2)
    assert job.argv() == [NUKE, "-x", "-i", "-F", "1001-1005x2", "-X",
                          "WriteFinal", "/comp/shot.nk"]


def test_argv_needs_a_script(kit):
    with pytest.raises(JobTypeError, match="data.script"):
        nuke(kit, {"write": "Write1"}).argv()


def test_frames_and_files_from_the_output(kit):
    job = nuke(kit)
    assert kit.feed(job, RENDER) == [FrameDone(1), FrameDone(2),
                                     FrameDone(3)]
    assert job.outputs(2) == ["/comp/out/shot.0002.exr",
                              "/comp/out/shot_proxy.0002.jpg"]
    assert job.succeeded(ExitStatus(0), [])


@pytest.mark.parametrize("line, reason", [
    ("ERROR: Read1: /plates/plate.0001.exr: No such file or directory",
     "the output reports an error"),
    ("Write1: ERROR: Can't write /comp/out: permission denied",
     "the output reports an error"),
    ("[Foundry Licensing] No license available for nuke_r",
     "license failure"),
    ("FOUNDRY LICENSE ERROR: license checkout failed", "license failure"),
])
def test_errors_fail_even_with_exit_zero(kit, line, reason):
    job = nuke(kit, frames=(1,))
    kit.feed(job, line + "\nFrame 1 (1 of 1)")
    assert not job.succeeded(ExitStatus(0), [])
    assert job.error_message(ExitStatus(0), []).startswith(reason)


def test_excused_errors(kit):
    job = nuke(kit, {"script": "/c.nk", "ignore_errors": ["OCIO"]},
               frames=(1,))
    kit.feed(job, "ERROR: OCIO config has no role 'matte_paint'\n"
                  "Frame 1 (1 of 1)")
    assert job.succeeded(ExitStatus(0), [])


@pytest.mark.parametrize("path, version", [
    ("/usr/local/Nuke15.0v4/Nuke15.0", "15.0.4"),
    ("/Applications/Nuke14.1v2/Nuke14.1v2.app/Contents/MacOS/Nuke14.1",
     "14.1.2"),
    ("C:\\Program Files\\Nuke13.2v8\\Nuke13.2.exe", "13.2.8"),
    ("/opt/nuke/Nuke15.1", "15.1"),
    ("/usr/local/bin/nuke", None),
])
def test_version_from_the_install_folder(path, version):
    assert NukeJobType.version_from_path(path) == version


@pytest.mark.parametrize("name, accepted", [
    ("Nuke15.0", True), ("Nuke15.0.exe", True), ("Nuke15.0.sh", False),
    ("NukeStudio", False), ("Nuke15.0v4", False)])
def test_only_the_nuke_program_of_an_install_folder(name, accepted):
    assert NukeJobType.accepts(f"/usr/local/Nuke15.0v4/{name}") is accepted


def test_nuke_is_found_in_its_install_folders(kit, tmp_path, monkeypatch):
    for folder, program in (("Nuke14.0v5", "Nuke14.0"),
                            ("Nuke15.0v4", "Nuke15.0")):
        kit.install_fake("Nuke", tmp_path / folder / program)
        kit.executable(tmp_path / folder / "libnuke.so", "")
    monkeypatch.setattr(NukeJobType, "install_patterns", {
        "linux": [str(tmp_path / "Nuke*" / "Nuke*")]})
    found = discover(NukeJobType, (), {"PATH": str(tmp_path / "none")},
                     "linux")
    assert [(item.version, item.path.split("/")[-1])
            for item in found.found] == [("15.0.4", "Nuke15.0"),
                                         ("14.0.5", "Nuke14.0")]


# -- the fake Nuke, end to end ---------------------------------------------

SCRIPT = """\
Root {
 first_frame 1
 last_frame 100
}
Read {
 file /plates/plate.####.exr
 name Read1
}
Write {
 file {out}/comp.####.exr
 file_type exr
 name WriteFinal
}
Write {
 file {out}/proxy.%04d.jpg
 name WriteProxy
}
"""


def fake_nuke(kit, tmp_path, data=None, frames=(1, 2, 3)):
    script = tmp_path / "comp.nk"
    script.write_text(SCRIPT.replace("{out}", str(tmp_path / "out")))
    program = kit.install_fake("Nuke", tmp_path / "Nuke15.0v4" / "Nuke15.0")
    return NukeJobType(
        kit.assignment("nuke", {"script": str(script), **(data or {})},
                       frames=frames),
        installed=kit.inventory("nuke", (str(program), "15.0.4")))


def test_the_fake_nuke_renders_one_write_node(kit, tmp_path):
    job = fake_nuke(kit, tmp_path, {"write": "WriteFinal"})
    result = kit.run_fake(job.argv())
    events = kit.feed(job, result.stdout + result.stderr)
    assert events == [FrameDone(1), FrameDone(2), FrameDone(3)]
    assert job.succeeded(ExitStatus(result.returncode), [])
    assert job.outputs(2) == [str(tmp_path / "out" / "comp.0002.exr")]
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "comp.0001.exr", "comp.0002.exr", "comp.0003.exr"]


def test_the_fake_nuke_renders_every_write_node(kit, tmp_path):
    job = fake_nuke(kit, tmp_path, frames=(5,))
    result = kit.run_fake(job.argv())
    kit.feed(job, result.stdout)
    assert job.outputs(5) == [str(tmp_path / "out" / "comp.0005.exr"),
                              str(tmp_path / "out" / "proxy.0005.jpg")]


@pytest.mark.parametrize("mode, reason", [
    ("error", "the output reports an error: ERROR: Read1"),
    ("license", "license failure: [Foundry Licensing] No license"),
    ("crash", "exit code 139"),
])
def test_the_fake_nuke_fails_like_nuke(kit, tmp_path, mode, reason):
    job = fake_nuke(kit, tmp_path)
    result = kit.run_fake(job.argv(), mode=mode)
    kit.feed(job, result.stdout + result.stderr)
    status = ExitStatus(result.returncode)
    assert not job.succeeded(status, [])
    assert job.error_message(status, []).startswith(reason)


def test_the_fake_nuke_checks_its_command_line(kit, tmp_path):
    job = fake_nuke(kit, tmp_path, {"write": "WriteNothing"})
    result = kit.run_fake(job.argv())
    assert result.returncode == 1
    assert "ERROR: WriteNothing is not a Write node" in result.stdout
    bad = kit.run_fake([job.argv()[0], "-x", "-F", "5-1", tmp_path /
                        "comp.nk"])
    assert bad.returncode == 1 and "bad frame range" in bad.stderr
