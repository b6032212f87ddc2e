"""The blender job type: argv, Blender's output, success, outputs.

The output quoted here is Blender's own (3.4 and 4.x); test_real_renders.py
runs the real program.
"""

import pytest

from pyfarm.agent.jobtypes import FrameDone, JobTypeError, Progress
from pyfarm.agent.jobtypes.blender import BlenderJobType
from pyfarm.agent.process import ExitStatus
from pyfarm.agent.software import discover

BLENDER = "/opt/blender-4.1.1/blender"

#: Blender 3.4.1 rendering frames 1-2 with Cycles at 2 samples.
CYCLES = """\
Blender 3.4.1
Read blend: /shows/a/cube.blend
Fra:1 Mem:9.04M (Peak 10.83M) | Time:00:00.00 | Mem:0.00M, Peak:0.00M | \
Scene, ViewLayer | Synchronizing object | Cube
Fra:1 Mem:9.90M (Peak 10.83M) | Time:00:00.09 | Mem:0.76M, Peak:0.76M | \
Scene, ViewLayer | Sample 0/2
Fra:1 Mem:10.01M (Peak 10.83M) | Time:00:00.09 | Remaining:00:00.00 | \
Mem:0.86M, Peak:0.86M | Scene, ViewLayer | Sample 1/2
Fra:1 Mem:10.06M (Peak 10.83M) | Time:00:00.09 | Mem:0.86M, Peak:0.86M | \
Scene, ViewLayer | Sample 2/2
Fra:1 Mem:10.06M (Peak 10.83M) | Time:00:00.09 | Mem:0.86M, Peak:0.86M | \
Scene, ViewLayer | Finished
Saved: '/renders/cube_0001.png'
 Time: 00:00.35 (Saving: 00:00.25)

Fra:2 Mem:9.90M (Peak 10.83M) | Time:00:00.00 | Mem:0.76M, Peak:0.76M | \
Scene, ViewLayer | Sample 0/2
Fra:2 Mem:10.02M (Peak 10.83M) | Time:00:00.00 | Remaining:00:00.00 | \
Mem:0.86M, Peak:0.86M | Scene, ViewLayer | Sample 1/2
Saved: '/renders/cube_0002.png'
 Time: 00:00.00 (Saving: 00:00.00)

Blender quit
"""


def blender(kit, data=None, frames=(1, 2), by=1, **options):
    data = {"scene": "/shows/a/cube.blend"} if data is None else data
    return BlenderJobType(
        kit.assignment("blender", data, frames=frames, by=by, **options),
        installed=kit.inventory("blender", (BLENDER, "4.1.1")),
        os_name="linux")


# -- argv --------------------------------------------------------------------


def test_argv_of_the_scene_alone(kit):
    assert blender(kit, frames=(10, 11, 12)).argv() == [
        BLENDER, "-b", "/shows/a/cube.blend", "-s", "10", "-e", "12",
        "-j", "1", "-a"]


def test_argv_with_every_setting(kit):
    job = blender(kit, {
        "scene": "/shows/a/cube.blend", "scene_name": "Shot 010",
        "engine": "CYCLES", "output": "/renders/cube_####",
        "format": "OPEN_EXR", "threads": 8, "resolution_percentage": 50,
        "samples": 64}, frames=(10, 12, 14), by=2)
    argv = job.argv()
    assert argv[:15] == [
        BLENDER, "-b", "/shows/a/cube.blend", "-S", "Shot 010",
        "-E", "CYCLES", "-o", "/renders/cube_####", "-F", "OPEN_EXR",
        "-t", "8", "--python-exit-code", "1"]
    assert argv[15] == "--python-expr"
    assert argv[17:] == ["-s", "10", "-e", "14", "-j", "2", "-a"]
    code = argv[16]
    compile(code, "<python-expr>", "exec")
    assert "scene.render.resolution_percentage = 50" in code
    assert "scene.cycles.samples = 64" in code
    assert "scene.eevee.taa_render_samples = 64" in code


def test_no_python_without_percentage_or_samples(kit):
    assert "--python-expr" not in blender(kit, {
        "scene": "/a.blend", "engine": "BLENDER_EEVEE"}).argv()
    code = blender(kit, {"scene": "/a.blend", "samples": 4}).python_settings()
    assert "resolution_percentage" not in code


def test_paths_are_mapped_for_this_agent(kit):
    job = blender(kit, {"scene": "P:\\show\\010\\cube.blend",
                        "output": "P:\\show\\renders\\cube_####"},
                  pathmaps=[{"linux": "/mnt/show", "windows": "P:\\show",
                             "mac": None}])
    assert job.argv()[2:5] == ["/mnt/show/010/cube.blend", "-o",
                               "/mnt/show/renders/cube_####"]
    assert job.outputs(3) == ["/mnt/show/renders/cube_0003"]


def test_a_missing_scene_is_a_job_type_error(kit):
    with pytest.raises(JobTypeError, match="data.scene must be a non-empty"):
        blender(kit, {}).argv()


def test_the_newest_blender_in_the_required_range_runs(kit):
    job = BlenderJobType(
        kit.assignment("blender", {"scene": "/a.blend"}, requirements=[
            {"software": "blender", "min_version": "3.6",
             "max_version": "4.1.99"}]),
        installed=kit.inventory("blender", ("/usr/bin/blender", "3.4.1"),
                                ("/opt/b36/blender", "3.6.8"),
                                ("/opt/b41/blender", "4.1.1"),
                                ("/opt/b42/blender", "4.2.0")))
    assert job.argv()[0] == "/opt/b41/blender"


# -- output ------------------------------------------------------------------


def test_cycles_progress_and_saved_frames(kit):
    job = blender(kit)
    events = kit.feed(job, CYCLES)
    assert events == [
        Progress(0.0, 1), Progress(0.5, 1), Progress(1.0, 1), FrameDone(1),
        Progress(0.0, 2), Progress(0.5, 2), FrameDone(2)]
    assert job.outputs(1) == ["/renders/cube_0001.png"]
    assert job.succeeded(ExitStatus(0), [])


def test_eevee_and_tile_progress(kit):
    job = blender(kit, frames=(5, 6))
    assert kit.feed(job, "Fra:5 Mem:58.50M (Peak 71.02M) | Time:00:00.93 | "
                         "Rendering 16 / 64 samples") == [Progress(0.25, 5)]
    assert kit.feed(job, "Fra:6 Mem:35.27M (Peak 36.74M) | Time:00:02.01 | "
                         "Remaining:00:10.71 | Mem:3.55M, Peak:4.00M | "
                         "Scene, View Layer | Rendered 3/16 Tiles, Sample "
                         "128/128") == [Progress(3 / 16, 6)]


def test_frames_saved_without_fra_lines_are_known_by_their_name(kit):
    # Workbench prints no "Fra:" lines; a path may hold other numbers.
    job = blender(kit, frames=(1, 2, 3))
    events = kit.feed(job, "Saved: '/renders/shot010_0002.png'\n"
                           " Time: 00:02.50 (Saving: 00:00.17)\n"
                           "Saved: '/renders/no_number.png'\n")
    assert events == [FrameDone(2), FrameDone(1)]


def test_older_blender_prints_the_time_on_the_saved_line(kit):
    job = blender(kit, frames=(7,))
    assert kit.feed(job, "Fra:7 Mem:1.2M | Sample 4/4\nSaved: "
                         "'/r/a_0007.exr' Time: 00:01.23 (Saving: "
                         "00:00.01)") == [Progress(1.0, 7), FrameDone(7)]
    assert job.outputs(7) == ["/r/a_0007.exr"]


def test_movies_and_skipped_frames(kit):
    job = blender(kit, {"scene": "/a.blend", "output": "/r/shot.mp4"},
                  frames=(1, 2, 3))
    events = kit.feed(job, "Append frame 1\n Time: 00:00.10\n"
                           'skipping existing frame "/r/x_0002.png"\n'
                           "Append frame 3 Time: 00:00.10")
    assert events == [FrameDone(1), FrameDone(2), FrameDone(3)]
    assert job.outputs(1) == ["/r/shot.mp4"]
    assert job.outputs(2) == ["/r/x_0002.png"]


@pytest.mark.parametrize("line", [
    "Error: Cannot read file '/shows/a/none.blend': No such file or "
    "directory",
    "Error: Render error (Invalid argument) cannot save: '/proc/x_0001.png'",
    "Error: Python: Traceback (most recent call last):",
])
def test_error_lines_fail_even_with_exit_zero(kit, line):
    job = blender(kit, frames=(1,))
    kit.feed(job, line + "\nSaved: '/r/a_0001.png'")
    assert not job.succeeded(ExitStatus(0), [])
    assert job.error_message(ExitStatus(0), []).startswith(
        f"the output reports an error: {line} (exit code 0)")


def test_harmless_error_lines(kit):
    job = blender(kit, {"scene": "/a.blend",
                        "ignore_errors": ["Add-on not loaded"]},
                  frames=(1,))
    kit.feed(job, "Error: Not freed memory blocks: 2, total unfreed memory "
                  "0.000488 MB\nError: Add-on not loaded: studio_tools\n"
                  "Warning: Unable to open 'missing.png'\n"
                  "Saved: '/r/a_0001.png'")
    assert job.succeeded(ExitStatus(0), [])


def test_exit_zero_without_every_frame_saved_fails(kit):
    job = blender(kit, frames=(1, 2, 3))
    kit.feed(job, "Fra:1 | Sample 1/1\nSaved: '/r/a_0001.png'\n"
                  "Blender quit")
    assert not job.succeeded(ExitStatus(0), [])
    assert job.error_message(ExitStatus(0), []) == (
        "blender exited 0 but never finished frames 2-3 (exit code 0)")


def test_a_crash_fails(kit):
    job = blender(kit, frames=(1,))
    kit.feed(job, "Saved: '/r/a_0001.png'")
    assert not job.succeeded(ExitStatus(None, 11), ["Segmentation fault"])
    assert job.error_message(ExitStatus(None, 11), ["Segmentation fault"]) \
        == "killed by signal 11; last lines of output:\nSegmentation fault"


@pytest.mark.parametrize("data, frame, expected", [
    ({"output": "/r/cube_####", "format": "PNG"}, 7, "/r/cube_0007.png"),
    ({"output": "/r/cube_##_v#", "format": "JPEG"}, 7, "/r/cube_07_v7.jpg"),
    ({"output": "/r/cube_", "format": "OPEN_EXR"}, 12, "/r/cube_0012.exr"),
    ({"output": "/r/cube_####.png", "format": "PNG"}, 3, "/r/cube_0003.png"),
    ({"output": "/r/cube_####"}, 3, "/r/cube_0003"),
    ({"output": "//render/c_###", "format": "TIFF"}, 3,
     "/shows/a/render/c_003.tif"),
    ({}, 3, None),
])
def test_expected_outputs(kit, data, frame, expected):
    job = blender(kit, {"scene": "/shows/a/cube.blend", **data},
                  frames=(frame,))
    assert job.expected_outputs(frame) == ([expected] if expected else [])
    assert job.outputs(frame) == job.expected_outputs(frame)


# -- finding Blender -----------------------------------------------------


@pytest.mark.parametrize("text, version", [
    ("Blender 3.4.1\n", "3.4.1"),
    ("Blender 4.2.3 LTS\n\tbuild date: 2024-10-15\n", "4.2.3"),
    ("Blender 2.93\n", "2.93"),
    ("Read prefs: ~/.config/blender/4.1/config/userpref.blend\n"
     "Blender 4.1.1 (hash e1743a0317bc built 2024-04-15)\n", "4.1.1"),
    ("something else\n", None),
])
def test_version_from_blender_version(text, version):
    assert BlenderJobType.version_from_output(text) == version


@pytest.mark.parametrize("path, version", [
    ("/opt/blender-4.1.1-linux-x64/blender", "4.1.1"),
    ("C:\\Program Files\\Blender Foundation\\Blender 4.1\\blender.exe",
     "4.1"),
    ("/usr/bin/blender", None),
])
def test_version_from_the_install_folder(path, version):
    assert BlenderJobType.version_from_path(path) == version


def test_install_folders_of_each_system():
    patterns = BlenderJobType.install_patterns
    assert "/opt/blender*/blender" in patterns["linux"]
    assert patterns["mac"][0] == \
        "/Applications/Blender*.app/Contents/MacOS/Blender"
    assert patterns["windows"] == [
        "${ProgramFiles}\\Blender Foundation\\Blender*\\blender.exe"]


def test_discovery_order_for_blender(kit, tmp_path, monkeypatch):
    answer = 'print("Blender {}")\n'
    configured = kit.executable(tmp_path / "etc" / "blender",
                                answer.format("3.6.0"))
    kit.executable(tmp_path / "bin" / "blender", answer.format("4.0.0"))
    kit.executable(tmp_path / "opt" / "blender-4.2.0" / "blender",
                   answer.format("4.2.0"))
    monkeypatch.setattr(BlenderJobType, "install_patterns", {
        "linux": [str(tmp_path / "opt" / "blender*" / "blender")]})
    found = discover(BlenderJobType, [("blender", None, str(configured))],
                     {"PATH": str(tmp_path / "bin")}, "linux")
    assert [(item.origin, item.version) for item in found.found] == [
        ("config", "3.6.0"), ("PATH", "4.0.0"), ("install folder", "4.2.0")]


def test_numbers_reach_the_python_expression_as_numbers_only(kit):
    code = blender(kit, {"scene": "/a.blend", "samples": 32.0,
                         "resolution_percentage": 25}).python_settings()
    assert "scene.cycles.samples = 32\n" in code
    with pytest.raises(JobTypeError, match="data.samples must be a whole"):
        blender(kit, {"scene": "/a.blend", "samples": "8; import os"}).argv()
