"""The maya job type: Render's argv, Arnold and Maya Software output,
failures Maya hides behind exit code 0; the fake Render end to end."""

import pytest

from pyfarm.agent.jobtypes import FrameDone, JobTypeError, Progress
from pyfarm.agent.jobtypes.maya import MayaJobType
from pyfarm.agent.process import ExitStatus
from pyfarm.agent.software import discover

RENDER = "/usr/autodesk/maya2024/bin/Render"

#: Arnold in Maya's batch render: frames 1 and 2, with an AOV.
ARNOLD = """\
00:00:00   498MB         | log started Mon Apr  1 10:00:00 2024
00:00:00   498MB         | Arnold 7.2.4.1 [4f2ed9a4] linux x86_64
00:00:01   540MB         | rendering image at 1920 x 1080, 3 AA samples
00:00:01   540MB         |     0% done - 0 rays/pixel
00:00:03   541MB         |    45% done - 12 rays/pixel
00:00:05   541MB         |   100% done - 14 rays/pixel
00:00:05   541MB         | render done in 0:04.050
00:00:05   541MB         | [driver_exr] writing file `/img/shot.0001.exr'
00:00:05   541MB         | [driver_exr] writing file `/img/shot_N.0001.exr'
00:00:06   545MB         | rendering image at 1920 x 1080, 3 AA samples
00:00:06   545MB         |    50% done - 11 rays/pixel
00:00:08   545MB         | [driver_exr] writing file `/img/shot.0002.exr'
00:00:08   545MB         | [driver_exr] writing file `/img/shot_N.0002.exr'
00:00:08   400MB         | Arnold shutdown
"""

#: Maya Software.
SOFTWARE = """\
Starting Rendering /img/shot.0003.iff
[PROGRESS] Percentage of rendering done: 40 (/img/shot.0003.iff)
Percentage of rendering done: 100
Finished Rendering /img/shot.0003.iff.
"""


def maya(kit, data=None, frames=(1, 2), by=1, **options):
    data = {"scene": "/shows/a/shot.ma", "renderer": "arnold"} \
        if data is None else data
    return MayaJobType(
        kit.assignment("maya", data, frames=frames, by=by, **options),
        installed=kit.inventory("maya", (RENDER, "2024")), os_name="linux")


def test_argv_of_the_scene_alone_renders_with_the_scenes_renderer(kit):
    assert maya(kit, {"scene": "/a/shot.mb"}, frames=(1, 2, 3)).argv() == [
        RENDER, "-r", "file", "-s", "1", "-e", "3", "-b", "1", "/a/shot.mb"]


def test_argv_with_every_option(kit):
    job = maya(kit, {"scene": "/a/shot.ma", "renderer": "arnold",
                     "project": "/a", "output_dir": "/img",
                     "image_prefix": "<Scene>/<RenderLayer>",
                     "camera": "shotCam", "layer": "beauty"},
               frames=(101, 103, 105), by=2)
    assert job.argv() == [
        RENDER, "-r", "arnold", "-s", "101", "-e", "105", "-b", "2",
        "-rd", "/img", "-proj", "/a", "-im", "<Scene>/<RenderLayer>",
        "-cam", "shotCam", "-rl", "beauty", "/a/shot.ma"]


def test_argv_needs_a_scene(kit):
    with pytest.raises(JobTypeError, match="data.scene"):
        maya(kit, {"renderer": "sw"}).argv()


def test_maya_dialogs_are_turned_off_unless_the_job_says(kit):
    env = maya(kit, environ={"MAYA_DISABLE_CER": "0"}).environ()
    assert env["MAYA_DISABLE_CIP"] == "1"
    assert env["MAYA_DISABLE_CER"] == "0"


def test_arnold_progress_and_frames(kit):
    job = maya(kit, frames=(1, 2))
    events = kit.feed(job, ARNOLD)
    assert events == [Progress(0.0), Progress(0.45), Progress(1.0),
                      FrameDone(1), Progress(0.5)]
    assert job.outputs(1) == ["/img/shot.0001.exr", "/img/shot_N.0001.exr"]
    assert job.outputs(2) == ["/img/shot.0002.exr", "/img/shot_N.0002.exr"]
    assert job.succeeded(ExitStatus(0), [])


def test_a_file_of_a_later_frame_finishes_the_earlier_ones(kit):
    job = maya(kit, frames=(1, 2, 3))
    assert kit.feed(job, "| [driver_exr] writing file `/img/a.0003.exr'") \
        == [FrameDone(1), FrameDone(2)]
    assert kit.feed(job, "| rendering image at 64 x 48, 3 AA samples") == \
        [FrameDone(3)]
    assert kit.feed(job, "| rendering image at 64 x 48, 3 AA samples") == []


def test_maya_software_progress_and_frames(kit):
    job = maya(kit, {"scene": "/a.ma", "renderer": "sw"}, frames=(3, 4))
    assert kit.feed(job, SOFTWARE) == [Progress(0.4), Progress(1.0),
                                       FrameDone(3)]
    assert job.outputs(3) == ["/img/shot.0003.iff"]


@pytest.mark.parametrize("line", [
    '// Error: Camera "shotCam" does not exist. //',
    "// Error: file: /a/shot.ma line 12: Cannot find procedure "
    '"studioSetup". //',
    'Error: Cannot load scene "/a/shot.ma". Please check the scene name.',
    "00:00:01   540MB ERROR   | [driver_exr] /img: cannot create file",
    "// Error: [mtoa] Failed batch render //",
    "[mtoa] Failed batch render",
    "Arnold render failed",
])
def test_errors_fail_even_with_exit_zero(kit, line):
    job = maya(kit, frames=(1,))
    kit.feed(job, line)
    assert not job.succeeded(ExitStatus(0), [])
    assert line.strip() in job.error_message(ExitStatus(0), [])


@pytest.mark.parametrize("line", [
    "Maya: License was not obtained",
    'FLEXlm error: -15,10. System Error: 111 "Connection refused"',
    "00:00:00   700MB WARNING | rendering with watermarks because of "
    "failed authorization:",
])
def test_license_failures_fail_even_with_exit_zero(kit, line):
    job = maya(kit, frames=(1,))
    kit.feed(job, line)
    assert not job.succeeded(ExitStatus(0), [])
    assert job.error_message(ExitStatus(0), []).startswith(
        "license failure: ")


def test_warnings_and_excused_errors_do_not_fail(kit):
    job = maya(kit, {"scene": "/a.ma", "ignore_errors": ["userSetup.mel"]},
               frames=(1,))
    kit.feed(job, "// Warning: file: /a/shot.ma line 5: Unrecognized node "
                  "type 'bokeh' //\n// Error: file: /home/r/userSetup.mel "
                  "line 3: syntax error //")
    assert job.succeeded(ExitStatus(0), [])


def test_maya_exit_codes_fail(kit):
    job = maya(kit, frames=(1,))
    assert not job.succeeded(ExitStatus(211), [])
    assert job.error_message(ExitStatus(211), []) == "exit code 211"


@pytest.mark.parametrize("path, version", [
    ("/usr/autodesk/maya2024/bin/Render", "2024"),
    ("/Applications/Autodesk/maya2025/Maya.app/Contents/bin/Render", "2025"),
    ("C:\\Program Files\\Autodesk\\Maya2023\\bin\\Render.exe", "2023"),
    ("/opt/maya/bin/Render", None),
])
def test_version_from_the_install_folder(path, version):
    assert MayaJobType.version_from_path(path) == version


def test_render_is_found_in_the_autodesk_folders(kit, tmp_path,
                                                 monkeypatch):
    for version in ("2023", "2025"):
        kit.install_fake("Render", tmp_path / "autodesk" /
                         f"maya{version}" / "bin" / "Render")
    monkeypatch.setattr(MayaJobType, "install_patterns", {
        "linux": [str(tmp_path / "autodesk" / "maya*" / "bin" / "Render")]})
    found = discover(MayaJobType, (), {"PATH": str(tmp_path / "none")},
                     "linux")
    assert [item.version for item in found.found] == ["2025", "2023"]
    job = MayaJobType(
        kit.assignment("maya", {"scene": "/a.ma"}, requirements=[
            {"software": "maya", "min_version": "2022",
             "max_version": "2024"}]),
        installed={"maya": found})
    assert job.argv()[0].endswith("maya2023/bin/Render")


def test_no_render_on_this_agent(kit, tmp_path, monkeypatch):
    monkeypatch.setattr(MayaJobType, "install_patterns", {
        "linux": ["/usr/autodesk/maya*/bin/Render"]})
    job = MayaJobType(kit.assignment("maya", {"scene": "/a.ma"}),
                      environ={"PATH": str(tmp_path)}, os_name="linux")
    with pytest.raises(JobTypeError, match=(
            r"^maya not found on this agent \(looked in: PATH \(.*\) for "
            r"Render; /usr/autodesk/maya\*/bin/Render\)$")):
        job.argv()


# -- the fake Render, end to end -------------------------------------------


@pytest.fixture
def scene(tmp_path):
    path = tmp_path / "scenes" / "shot.ma"
    path.parent.mkdir()
    path.write_text("//Maya ASCII 2024 scene\n")
    return path


def fake_maya(kit, tmp_path, scene, renderer="arnold", frames=(1, 2, 3)):
    render = kit.install_fake("Render", tmp_path / "maya2024/bin/Render")
    return MayaJobType(
        kit.assignment("maya", {"scene": str(scene), "renderer": renderer,
                                "output_dir": str(tmp_path / "images"),
                                "project": str(tmp_path)}, frames=frames),
        installed=kit.inventory("maya", (str(render), "2024")))


@pytest.mark.parametrize("renderer, extension", [("arnold", "exr"),
                                                 ("sw", "iff")])
def test_the_fake_render_renders(kit, tmp_path, scene, renderer, extension):
    job = fake_maya(kit, tmp_path, scene, renderer)
    result = kit.run_fake(job.argv())
    events = kit.feed(job, result.stdout + result.stderr)
    done = [event.frame for event in events if isinstance(event, FrameDone)]
    assert done == ([1, 2] if renderer == "arnold" else [1, 2, 3])
    assert job.succeeded(ExitStatus(result.returncode), [])
    for frame in (1, 2, 3):
        [path] = job.outputs(frame)
        assert path == str(tmp_path / "images" / f"shot.{frame:04d}."
                                                  f"{extension}")
        assert (tmp_path / "images" / f"shot.{frame:04d}.{extension}") \
            .is_file()


@pytest.mark.parametrize("mode, reason", [
    ("error", "the output reports an error: // Error: Camera"),
    ("license", "license failure: Maya: License was not obtained"),
    ("renderer-failed", "the output reports an error: 00:00:01   541MB "
                        "ERROR"),
    ("crash", "exit code 211"),
])
def test_the_fake_render_fails_like_maya(kit, tmp_path, scene, mode,
                                         reason):
    job = fake_maya(kit, tmp_path, scene)
    result = kit.run_fake(job.argv(), mode=mode)
    kit.feed(job, result.stdout + result.stderr)
    status = ExitStatus(result.returncode)
    assert not job.succeeded(status, [])
    assert job.error_message(status, []).startswith(reason)


def test_the_fake_render_checks_its_command_line(kit, tmp_path, scene):
    render = kit.install_fake("Render", tmp_path / "Render")
    result = kit.run_fake([render, "-r", "arnold", "-x", "1", scene])
    assert result.returncode == 206
    assert "Usage: Render [options] filename" in result.stdout
    missing = kit.run_fake([render, "-r", "sw", tmp_path / "none.ma"])
    assert missing.returncode == 211
    assert "Cannot load scene" in missing.stdout
