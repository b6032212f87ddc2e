"""Real renders: Blender renders two small frames, ffmpeg makes a movie.

These run the installed programs (Debian's ``blender`` and ``ffmpeg``)
through the job types' argv, parser and success decision, and skip, saying
why, where a program is missing. Each takes a few seconds.
"""

import shutil
import struct
import subprocess

import pytest

from pyfarm.agent.jobtypes import FrameDone, Progress
from pyfarm.agent.jobtypes.blender import BlenderJobType
from pyfarm.agent.jobtypes.ffmpeg import FfmpegJobType
from pyfarm.agent.process import ExitStatus

#: A Cycles scene: the default cube, 128 x 96, no denoising (Debian's
#: Blender has no OpenImageDenoise), frames 1-2.
MAKE_SCENE = """
import bpy
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 16
scene.cycles.use_denoising = False
scene.render.resolution_x = 128
scene.render.resolution_y = 96
scene.render.resolution_percentage = 100
scene.frame_start = 1
scene.frame_end = 2
bpy.ops.wm.save_as_mainfile(filepath={path!r})
"""


def program(name):
    """Return the path of ``name`` or skip the test saying it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed on this machine (the real "
                    f"render tests need Debian's {name} package)")
    return path


def png_size(path):
    """Return ``(width, height)`` of a PNG file."""
    with open(path, "rb") as stream:
        header = stream.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def run(jobtype, timeout=120):
    """Run the job type's argv; return ``(status, events, lines)``."""
    argv = jobtype.argv()
    result = subprocess.run(argv, capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL,
                            check=False, env=jobtype.environ())
    lines = (result.stdout + result.stderr).splitlines()
    events = []
    for line in lines:
        events += jobtype.parse_line(line) or []
    return ExitStatus(result.returncode), events, lines


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Render frames 1-2 of a fresh scene at 50%: ``(job type, status,
    events, lines, folder)``."""
    blender = program("blender")
    folder = tmp_path_factory.mktemp("blender")
    scene = folder / "cube.blend"
    subprocess.run([blender, "-b", "--factory-startup", "--python-expr",
                    MAKE_SCENE.format(path=str(scene))],
                   capture_output=True, text=True, timeout=120, check=True)
    assert scene.is_file()
    assignment = {
        "id": "real-1",
        "job": {"id": 1, "jobtype": "blender", "by": 1,
                "data": {"scene": str(scene),
                         "output": str(folder / "out" / "cube_####"),
                         "format": "PNG", "engine": "CYCLES",
                         "resolution_percentage": 50, "samples": 2}},
        "tasks": [{"id": 11, "frame": 1, "attempt": 1},
                  {"id": 12, "frame": 2, "attempt": 1}],
    }
    jobtype = BlenderJobType(assignment)
    status, events, lines = run(jobtype)
    return jobtype, status, events, lines, folder


def test_blender_renders_two_frames_at_the_asked_size(rendered):
    jobtype, status, events, lines, folder = rendered
    assert status.code == 0, "\n".join(lines[-20:])
    assert jobtype.succeeded(status, lines[-20:]), jobtype.error_message(
        status, lines[-20:])
    assert [e.frame for e in events if isinstance(e, FrameDone)] == [1, 2]
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and {e.frame for e in progress} == {1, 2}
    assert max(e.value for e in progress) == 1.0
    for frame in (1, 2):
        [path] = jobtype.outputs(frame)
        assert path == str(folder / "out" / f"cube_{frame:04d}.png")
        assert jobtype.expected_outputs(frame) == [path]
        assert png_size(path) == (64, 48), "50% of 128 x 96"
    assert any("pyfarm: render settings applied" in line for line in lines)


@pytest.fixture(scope="module")
def sequence(request, tmp_path_factory):
    """Return the folder of ``cube_0001.png`` and ``cube_0002.png`` (64 x
    48): Blender's frames, or ffmpeg's test pattern without Blender."""
    if shutil.which("blender"):
        return request.getfixturevalue("rendered")[4] / "out"
    ffmpeg = program("ffmpeg")
    folder = tmp_path_factory.mktemp("sequence")
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i",
                    "testsrc=size=64x48:rate=24", "-frames:v", "2",
                    "-start_number", "1", str(folder / "cube_%04d.png")],
                   capture_output=True, timeout=60, check=True)
    return folder


def test_ffmpeg_encodes_the_frames_into_a_movie(sequence, tmp_path):
    program("ffmpeg")
    ffprobe = program("ffprobe")
    movie = tmp_path / "cube.mp4"
    assignment = {"id": "real-3",
                  "job": {"id": 3, "jobtype": "ffmpeg", "by": 1,
                          "data": {"input": str(sequence / "cube_####.png"),
                                   "start": 1, "end": 2,
                                   "output": str(movie), "fps": 24,
                                   "crf": 30}},
                  "tasks": [{"id": 31, "frame": 1, "attempt": 1}]}
    jobtype = FfmpegJobType(assignment)
    status, events, lines = run(jobtype)
    assert jobtype.succeeded(status, lines[-20:]), jobtype.error_message(
        status, lines[-20:])
    assert events and events[-1] == Progress(1.0)
    assert jobtype.outputs(1) == [str(movie)]
    frames = subprocess.run(
        [ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames,width,height",
         "-of", "csv=p=0", str(movie)],
        capture_output=True, text=True, timeout=60, check=True)
    assert frames.stdout.strip() == "64,48,2"


def test_ffmpeg_fails_when_a_frame_is_missing(sequence, tmp_path):
    program("ffmpeg")
    assignment = {"id": "real-4",
                  "job": {"id": 4, "jobtype": "ffmpeg", "by": 1,
                          "data": {"input": str(sequence / "cube_%04d.png"),
                                   "start": 1, "end": 3,
                                   "output": str(tmp_path / "x.mp4")}},
                  "tasks": [{"id": 41, "frame": 1, "attempt": 1}]}
    jobtype = FfmpegJobType(assignment)
    status, events, lines = run(jobtype)
    assert status.code == 0, "ffmpeg stops quietly at the missing frame"
    assert not jobtype.succeeded(status, lines)
    assert "encoded 2 of 3 frames" in jobtype.error_message(status, lines)
