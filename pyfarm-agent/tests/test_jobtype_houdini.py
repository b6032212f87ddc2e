"""The houdini job type: hython with hrender.py, ALF_PROGRESS, HFS and the
install folders; the fake hython end to end."""

import json

import pytest

from pyfarm.agent.jobtypes import FrameDone, JobTypeError, Progress
from pyfarm.agent.jobtypes.houdini import HoudiniJobType
from pyfarm.agent.process import ExitStatus
from pyfarm.agent.software import discover

MAPS = [{"linux": "/mnt/show", "windows": "P:\\show",
         "mac": "/Volumes/show"}]


@pytest.fixture
def hfs(tmp_path, kit):
    """A fake Houdini install: hfs20.0.547/bin/{hython,hrender.py}."""
    folder = tmp_path / "hfs20.0.547"
    kit.install_fake("hython", folder / "bin" / "hython")
    kit.install_fake("hrender.py", folder / "bin" / "hrender.py")
    return folder


def houdini(kit, hfs, data=None, frames=(1, 2), by=1, **options):
    data = {"hip": "/shows/a/fx.hip", "rop": "/out/mantra1"} \
        if data is None else data
    return HoudiniJobType(
        kit.assignment("houdini", data, frames=frames, by=by, **options),
        installed=kit.inventory("houdini", (str(hfs / "bin" / "hython"),
                                            "20.0.547")),
        os_name="linux")


def test_argv_runs_the_hrender_beside_hython(kit, hfs):
    job = houdini(kit, hfs, frames=(10, 15, 20), by=5)
    assert job.argv() == [
        str(hfs / "bin" / "hython"), str(hfs / "bin" / "hrender.py"),
        "-e", "-f", "10", "20", "-i", "5", "-d", "/out/mantra1",
        "/shows/a/fx.hip"]


def test_argv_with_an_output(kit, hfs):
    argv = houdini(kit, hfs, {"hip": "/a/fx.hip", "rop": "karma1",
                              "output": "$HIP/render/$HIPNAME.$F4.exr"}
                   ).argv()
    assert argv[-5:] == ["-d", "karma1", "-o",
                         "$HIP/render/$HIPNAME.$F4.exr", "/a/fx.hip"]


def test_argv_needs_hrender_next_to_hython(kit, tmp_path):
    hython = kit.executable(tmp_path / "bin" / "hython", "pass\n")
    job = HoudiniJobType(
        kit.assignment("houdini", {"hip": "/a.hip", "rop": "r"}),
        installed=kit.inventory("houdini", (str(hython), "20.0.547")))
    with pytest.raises(JobTypeError, match="no hrender.py next to"):
        job.argv()


@pytest.mark.parametrize("data, missing", [
    ({"rop": "/out/mantra1"}, "hip"), ({"hip": "/a.hip"}, "rop")])
def test_argv_needs_a_hip_and_a_rop(kit, hfs, data, missing):
    with pytest.raises(JobTypeError, match=f"data.{missing}"):
        houdini(kit, hfs, data).argv()


def test_path_maps_reach_houdini_as_houdini_pathmap(kit, hfs):
    job = houdini(kit, hfs, {"hip": "P:\\show\\fx\\a.hip", "rop": "m"},
                  pathmaps=MAPS)
    assert job.argv()[-1] == "/mnt/show/fx/a.hip"
    assert json.loads(job.environ()["HOUDINI_PATHMAP"]) == {
        "P:/show": "/mnt/show", "/Volumes/show": "/mnt/show"}
    own = houdini(kit, hfs, pathmaps=MAPS,
                  environ={"HOUDINI_PATHMAP": '{"/a": "/b"}'})
    assert own.environ()["HOUDINI_PATHMAP"] == '{"/a": "/b"}'
    assert "HOUDINI_PATHMAP" not in houdini(kit, hfs).environ()


def test_alf_progress_of_each_frame(kit, hfs):
    job = houdini(kit, hfs, frames=(1, 2, 3))
    events = kit.feed(job, "ALF_PROGRESS 0%\nALF_PROGRESS 50%\n"
                           "ALF_PROGRESS 100%\nALF_PROGRESS 0%\n"
                           "ALF_PROGRESS 60%\nALF_PROGRESS 100%\n"
                           "ALF_PROGRESS 10%\n")
    assert events == [
        Progress(0.0, 1), Progress(0.5, 1), Progress(1.0, 1),
        FrameDone(1), Progress(0.0, 2), Progress(0.6, 2), Progress(1.0, 2),
        FrameDone(2), Progress(0.1, 3)]


def test_alf_progress_of_the_whole_range_ends_no_frame_early(kit, hfs):
    job = houdini(kit, hfs, frames=(1, 2))
    events = kit.feed(job, "ALF_PROGRESS 50%\nALF_PROGRESS 100%\n")
    assert events == [Progress(0.5, 1), Progress(1.0, 1)]
    assert job.succeeded(ExitStatus(0), [])


@pytest.mark.parametrize("line, reason", [
    ("Error:       Unable to open file: /render/fx.0001.exr",
     "the output reports an error"),
    ("No licenses could be found to run this application.",
     "license failure"),
    ("License error: No license found", "license failure"),
])
def test_errors_fail_even_with_exit_zero(kit, hfs, line, reason):
    job = houdini(kit, hfs)
    kit.feed(job, "ALF_PROGRESS 100%\n" + line)
    assert not job.succeeded(ExitStatus(0), [])
    assert job.error_message(ExitStatus(0), []).startswith(reason)


@pytest.mark.parametrize("output, frame, expected", [
    ("$HIP/render/$HIPNAME.$F4.exr", 7, "/shows/a/render/fx.0007.exr"),
    ("/r/${OS}_${F3}.exr", 12, "/r/mantra1_012.exr"),
    ("/r/fx.$F.exr", 12, "/r/fx.12.exr"),
    ("/r/$JOB/fx.$F4.exr", 12, None),
    (None, 1, None),
])
def test_expected_outputs(kit, hfs, output, frame, expected):
    data = {"hip": "/shows/a/fx.hip", "rop": "/out/mantra1"}
    if output:
        data["output"] = output
    job = houdini(kit, hfs, data, frames=(frame,))
    assert job.outputs(frame) == ([expected] if expected else [])


@pytest.mark.parametrize("path, version", [
    ("/opt/hfs20.0.547/bin/hython", "20.0.547"),
    ("/Applications/Houdini/Houdini20.5.278/Frameworks/Houdini.framework/"
     "Versions/20.5/Resources/bin/hython", "20.5.278"),
    ("C:\\Program Files\\Side Effects Software\\Houdini 19.5.805\\bin\\"
     "hython.exe", "19.5.805"),
    ("/usr/local/bin/hython", None),
])
def test_version_from_the_install_folder(path, version):
    assert HoudiniJobType.version_from_path(path) == version


def test_hython_is_found_through_hfs_and_the_sidefx_folders(
        kit, tmp_path, hfs, monkeypatch):
    other = tmp_path / "opt" / "hfs19.5.805"
    kit.install_fake("hython", other / "bin" / "hython")
    patterns = list(HoudiniJobType.install_patterns["linux"])
    assert patterns[0] == "${HFS}/bin/hython"
    patterns[1:] = [str(tmp_path / "opt" / "hfs*" / "bin" / "hython")]
    monkeypatch.setattr(HoudiniJobType, "install_patterns",
                        {"linux": patterns})
    found = discover(HoudiniJobType, (), {"PATH": str(tmp_path / "none"),
                                          "HFS": str(hfs)}, "linux")
    assert [(item.version, item.origin) for item in found.found] == [
        ("20.0.547", "install folder"), ("19.5.805", "install folder")]
    without_hfs = discover(HoudiniJobType, (), {"PATH": ""}, "linux")
    assert [item.version for item in without_hfs.found] == ["19.5.805"]


# -- the fake hython, end to end -------------------------------------------


def fake_houdini(kit, hfs, tmp_path, frames=(1, 2, 3)):
    hip = tmp_path / "fx.hip"
    hip.write_text("fake hip")
    return houdini(kit, hfs, {
        "hip": str(hip), "rop": "/out/mantra1",
        "output": "$HIP/render/$HIPNAME.$OS.$F4.exr"}, frames=frames)


def test_the_fake_hython_renders(kit, hfs, tmp_path):
    job = fake_houdini(kit, hfs, tmp_path)
    result = kit.run_fake(job.argv())
    events = kit.feed(job, result.stdout + result.stderr)
    assert [e.frame for e in events if isinstance(e, FrameDone)] == [1, 2]
    assert [e.value for e in events if isinstance(e, Progress)][:6] == [
        0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert job.succeeded(ExitStatus(result.returncode), [])
    for frame in (1, 2, 3):
        [path] = job.outputs(frame)
        assert path == str(tmp_path / "render" /
                           f"fx.mantra1.{frame:04d}.exr")
        assert (tmp_path / "render" / f"fx.mantra1.{frame:04d}.exr") \
            .is_file()


@pytest.mark.parametrize("mode, reason", [
    ("error", "the output reports an error: Error:"),
    ("license", "license failure: No licenses could be found"),
    ("crash", "exit code 1"),
])
def test_the_fake_hython_fails_like_houdini(kit, hfs, tmp_path, mode,
                                            reason):
    job = fake_houdini(kit, hfs, tmp_path)
    result = kit.run_fake(job.argv(), mode=mode)
    kit.feed(job, result.stdout + result.stderr)
    status = ExitStatus(result.returncode)
    assert not job.succeeded(status, [])
    assert job.error_message(status, []).startswith(reason)


def test_the_fake_hython_checks_its_command_line(kit, hfs, tmp_path):
    hython = hfs / "bin" / "hython"
    result = kit.run_fake([hython, hfs / "bin" / "hrender.py", "-e",
                           "-d", "/out/m", tmp_path / "fx.hip"])
    assert result.returncode == 2
    assert "-e needs a frame range" in result.stderr
    assert "Usage: hrender.py" in result.stderr
