"""The ffmpeg job type: encoding another job's frames into a movie."""

import pytest

from pyfarm.agent.jobtypes import JobTypeError, Progress
from pyfarm.agent.jobtypes.ffmpeg import FfmpegJobType, printf_pattern
from pyfarm.agent.process import ExitStatus

FFMPEG = "/usr/bin/ffmpeg"

#: ffmpeg 5.1 encoding 48 frames (the stats line is redrawn with \r).
ENCODING = (
    "Input #0, image2, from '/out/shot_%04d.png':\n"
    "  Duration: 00:00:02.00, start: 0.000000, bitrate: N/A\n"
    "  Stream #0:0: Video: png, rgb24(pc), 1920x1080, 24 fps, 24 tbr\n"
    "Output #0, mp4, to '/out/shot.mp4':\n"
    "frame=   12 fps=0.0 q=29.0 size=       0kB time=00:00:00.37 "
    "bitrate=   1.0kbits/s speed=0.74x    \r"
    "frame=   36 fps= 35 q=29.0 size=     256kB time=00:00:01.37 "
    "bitrate=1530.2kbits/s speed=1.33x    \r"
    "frame=   48 fps= 37 q=-1.0 Lsize=     612kB time=00:00:01.91 "
    "bitrate=2623.7kbits/s speed=1.47x    \n"
    "video:610kB audio:0kB subtitle:0kB other streams:0kB global "
    "headers:0kB muxing overhead: 0.311198%\n")


def ffmpeg(kit, **data):
    data = {"input": "/out/shot_####.png", "start": 1, "end": 48,
            "output": "/out/shot.mp4", **data}
    data = {key: value for key, value in data.items() if value is not None}
    return FfmpegJobType(kit.assignment("ffmpeg", data, frames=(1,)),
                         installed=kit.inventory("ffmpeg", (FFMPEG, "5.1.9")),
                         os_name="linux")


def test_argv_encodes_the_sequence_with_sane_defaults(kit):
    assert ffmpeg(kit).argv() == [
        FFMPEG, "-hide_banner", "-nostdin", "-y", "-framerate", "24",
        "-start_number", "1", "-i", "/out/shot_%04d.png", "-frames:v",
        "48", "-c:v", "libx264", "-pix_fmt", "yuv420p", "/out/shot.mp4"]


def test_argv_with_codec_fps_and_crf(kit):
    argv = ffmpeg(kit, input="/out/shot.%03d.exr", start=1001, end=1100,
                  codec="prores_ks", fps=23.976, crf=18,
                  output="/out/shot.mov").argv()
    assert argv[4:] == [
        "-framerate", "23.976", "-start_number", "1001", "-i",
        "/out/shot.%03d.exr", "-frames:v", "100", "-c:v", "prores_ks",
        "-crf", "18", "/out/shot.mov"]
    assert "-pix_fmt" in ffmpeg(kit, pixel_format="yuv444p").argv()


@pytest.mark.parametrize("pattern, expected", [
    ("/out/shot_####.png", "/out/shot_%04d.png"),
    ("/out/shot.#.exr", "/out/shot.%01d.exr"),
    ("/out/100%/shot_##.png", "/out/100%%/shot_%02d.png"),
    ("/out/shot_%04d.png", "/out/shot_%04d.png"),
    ("/out/shot_%d.png", "/out/shot_%d.png"),
    ("/out/shot.png", None),
])
def test_printf_patterns(pattern, expected):
    assert printf_pattern(pattern) == expected


def test_an_input_without_a_frame_number_is_refused(kit):
    with pytest.raises(JobTypeError, match="data.input must name the frame"):
        ffmpeg(kit, input="/out/shot.png").argv()


def test_an_end_before_the_start_is_refused(kit):
    with pytest.raises(JobTypeError, match=r"data.end \(5\) is before"):
        ffmpeg(kit, start=10, end=5).argv()


def test_without_an_end_the_files_on_disk_are_counted(kit, tmp_path):
    for frame in (1, 2, 3, 5):
        (tmp_path / f"shot_{frame:04d}.png").write_bytes(b"")
    job = ffmpeg(kit, input=str(tmp_path / "shot_####.png"), end=None)
    argv = job.argv()
    assert "-frames:v" not in argv
    assert job.total == 3
    assert kit.feed(job, "frame=    3 fps=0.0 q=-1.0 Lsize=1kB") == [
        Progress(1.0)]
    assert job.succeeded(ExitStatus(0), [])
    nothing = ffmpeg(kit, input=str(tmp_path / "none_####.png"), end=None)
    nothing.argv()
    assert nothing.total is None
    assert kit.feed(nothing, "frame=    3 fps=0.0") == []


def test_progress_from_frame_counts(kit):
    job = ffmpeg(kit)
    job.argv()
    assert kit.feed(job, ENCODING.replace("\r", "\n")) == [
        Progress(0.25), Progress(0.75), Progress(1.0)]
    assert job.succeeded(ExitStatus(0), [])
    assert job.outputs(1) == ["/out/shot.mp4"]


def test_exit_zero_with_frames_missing_fails(kit):
    job = ffmpeg(kit)
    job.argv()
    kit.feed(job, "frame=   30 fps=0.0 q=-1.0 Lsize=  300kB")
    assert not job.succeeded(ExitStatus(0), [])
    assert job.error_message(ExitStatus(0), []).startswith(
        "ffmpeg encoded 30 of 48 frames: is a frame of /out/shot_####.png "
        "missing? (exit code 0)")


def test_an_error_exit_fails(kit):
    job = ffmpeg(kit)
    job.argv()
    lines = ["/out/shot_%04d.png: No such file or directory"]
    assert not job.succeeded(ExitStatus(1), lines)
    assert job.error_message(ExitStatus(1), lines).endswith(
        "No such file or directory")


@pytest.mark.parametrize("text, version", [
    ("ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026 the FFmpeg "
     "developers", "5.1.9"),
    ("ffmpeg version n6.1.1 Copyright (c) 2000-2023", "6.1.1"),
    ("ffmpeg version 7.0 Copyright (c) 2000-2024", "7.0"),
    ("ffmpeg version N-113521-g2f0a2b1ef3-static https://johnvansickle.com",
     None),
])
def test_version_from_ffmpeg_version(text, version):
    assert FfmpegJobType.version_from_output(text) == version


def test_version_from_a_static_build_folder():
    assert FfmpegJobType.version_from_path(
        "/opt/ffmpeg-6.1-amd64-static/ffmpeg") == "6.1"


def test_whole_floats_count_as_integers_as_in_json_schema(kit):
    argv = ffmpeg(kit, start=1.0, end=48.0, crf=20.0).argv()
    assert argv[argv.index("-start_number") + 1] == "1"
    assert argv[argv.index("-frames:v") + 1] == "48"
    assert argv[argv.index("-crf") + 1] == "20"
    with pytest.raises(JobTypeError, match="data.end must be a whole"):
        ffmpeg(kit, end=4.5).argv()
