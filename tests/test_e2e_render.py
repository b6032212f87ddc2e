"""
Real renders through a real farm: Blender renders a shot's frames on two
agents, then an ffmpeg job (a child of the render) makes the movie.
"""

import json
import shutil
import struct
import subprocess
import time

import pytest

pytestmark = pytest.mark.e2e

FRAMES = 12
WIDTH, HEIGHT = 64, 48

#: A small Cycles scene (the default cube), quick on a CPU.
MAKE_SCENE = f"""
import bpy
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 4
scene.cycles.use_adaptive_sampling = False
scene.cycles.use_denoising = False
scene.render.resolution_x = {WIDTH * 2}
scene.render.resolution_y = {HEIGHT * 2}
scene.frame_start = 1
scene.frame_end = {FRAMES}
bpy.ops.wm.save_as_mainfile(filepath=SCENE_PATH)
"""


def program(name):
    """Return the path of ``name`` or skip saying it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (the real-render tests need "
                    f"Debian's {name} package; .ci/run installs it)")
    return path


def png_size(path):
    """Return ``(width, height)`` of a PNG file."""
    with open(path, "rb") as stream:
        header = stream.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A .blend file made with Blender's own Python."""
    blender = program("blender")
    path = tmp_path_factory.mktemp("scene") / "cube.blend"
    subprocess.run(
        [blender, "-b", "--factory-startup", "--python-expr",
         f"SCENE_PATH = {str(path)!r}\n" + MAKE_SCENE],
        capture_output=True, text=True, timeout=180, check=True)
    return path


def wait_for_render(client, job_id, timeout=600):
    """Poll until the job ends; return whether some batch was seen with a
    frame done while another of its frames was still running."""
    deadline = time.monotonic() + timeout
    seen = False
    while time.monotonic() < deadline:
        tasks = sorted(client.tasks(job_id), key=lambda t: t["frame"])
        for first in range(0, len(tasks), 3):
            states = {t["state"] for t in tasks[first:first + 3]}
            seen = seen or {"done", "running"} <= states
        if client.job(job_id)["state"] in ("done", "failed"):
            return seen
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end in {timeout}s")


def test_blender_render_then_ffmpeg_movie(sqlite_farm, scene, tmp_path):
    ffprobe = program("ffprobe")
    program("ffmpeg")
    client = sqlite_farm.client
    out = tmp_path / "renders"
    render = client.submit_job(
        title="cube render", jobtype="blender", start=1, end=FRAMES,
        batch=3,
        data={"scene": str(scene), "output": str(out / "cube_####"),
              "format": "PNG", "engine": "CYCLES",
              "resolution_percentage": 50, "samples": 1024, "threads": 1})
    movie = tmp_path / "cube.mp4"
    encode = client.submit_job(
        title="cube movie", jobtype="ffmpeg", start=1, end=1,
        parents=[render["id"]],
        data={"input": str(out / "cube_####.png"), "start": 1,
              "end": FRAMES, "output": str(movie), "fps": 24})
    assert client.job(encode["id"])["waiting_for"] == [render["id"]]

    # Watch the frames while they render: a frame is marked done as soon
    # as Blender saved it, while the other frames of its batch (the same
    # process) are still rendering.
    seen_done_beside_running = wait_for_render(client, render["id"])
    rendered = client.job(render["id"])
    assert rendered["state"] == "done", rendered
    assert seen_done_beside_running
    tasks = sorted(client.tasks(render["id"]), key=lambda t: t["frame"])
    assert [t["frame"] for t in tasks] == list(range(1, FRAMES + 1))
    for task in tasks:
        path = out / f"cube_{task['frame']:04d}.png"
        assert path.is_file(), path
        assert png_size(path) == (WIDTH, HEIGHT)
        assert task["outputs"] == [str(path)]
    for first in range(0, FRAMES, 3):
        finished = [t["finished_at"] for t in tasks[first:first + 3]]
        assert finished == sorted(finished)
    agents = {t["agent"] for t in tasks}
    assert len(agents) == 2, "both agents rendered"

    encoded = client.wait_for_job(encode["id"], timeout=300, poll=0.5)
    assert encoded["state"] == "done", encoded
    assert encoded["started_at"] >= rendered["finished_at"]
    probe = subprocess.run(
        [ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames,width,height",
         "-of", "json", str(movie)],
        capture_output=True, text=True, timeout=60, check=True)
    (stream,) = json.loads(probe.stdout)["streams"]
    assert int(stream["nb_read_frames"]) == FRAMES
    assert (stream["width"], stream["height"]) == (WIDTH, HEIGHT)
