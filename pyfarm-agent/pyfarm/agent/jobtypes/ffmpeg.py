"""
The ``ffmpeg`` job type: encode an image sequence into a movie.

Typically the child of a render job: its ``data.input`` is the parent's
output pattern. The job runs as one process for the whole sequence: the
master submits it as one task (``start`` = ``end``, or a batch covering
its frames); the frames encoded are the ones ``data`` names, not the
job's frame range. The command::

    ffmpeg -hide_banner -nostdin -y -framerate FPS -start_number START
           -i INPUT [-frames:v COUNT] -c:v CODEC [-crf CRF]
           [-pix_fmt FORMAT] OUTPUT

``INPUT`` is the pattern in ffmpeg's printf style: ``/out/shot_####.png``
becomes ``/out/shot_%04d.png`` (a pattern already written with ``%04d``
is kept). Progress is ffmpeg's ``frame=  48`` against the frame count
(``data.end``, or the files on disk when there is no ``end``). An exit 0
that encoded fewer frames than asked (ffmpeg stops at the first missing
file of a sequence) is a failure.
"""

import os
import re

from pyfarm.agent.jobtypes import (
    JobType,
    JobTypeError,
    Progress,
    clamp,
    integer,
    schema,
    string,
)

#: Pixel format given to codecs whose default would not play everywhere.
DEFAULT_PIXEL_FORMATS = {"libx264": "yuv420p", "libx265": "yuv420p",
                         "libvpx-vp9": "yuv420p", "libaom-av1": "yuv420p"}

#: The most files counted on disk to find the length of a sequence.
MAX_COUNT = 100_000

_PRINTF = re.compile(r"%0?\d*d")
_HASHES = re.compile(r"#+")
_FRAME = re.compile(r"\bframe=\s*(\d+)")


def printf_pattern(pattern):
    """Return ``pattern`` in ffmpeg's printf style, or None if it has no
    frame number (``####`` or ``%04d``)."""
    if _PRINTF.search(pattern):
        return pattern
    if not _HASHES.search(pattern):
        return None
    escaped = pattern.replace("%", "%%")
    return _HASHES.sub(lambda match: f"%0{len(match.group())}d", escaped)


class FfmpegJobType(JobType):
    """Encode an image sequence (another job's frames) into a movie."""

    name = "ffmpeg"
    software = "ffmpeg"
    parameters = schema({
        "input": string(
            "The image sequence: a path with the frame number written as "
            "#### (one # per digit) or printf-style %04d, such as "
            "/renders/shot_####.png."),
        "start": integer("The first frame number of the sequence."),
        "end": integer(
            "The last frame number to encode. Absent: up to the first "
            "missing file."),
        "output": string("The movie to write, such as "
                         "/renders/shot.mp4."),
        "codec": string("Video codec (ffmpeg's -c:v); default libx264.",
                        pattern="^[A-Za-z0-9_-]+$"),
        "fps": {"type": "number", "exclusiveMinimum": 0,
                "description": "Frames per second of the movie; default "
                               "24."},
        "crf": integer("Constant rate factor (quality; lower is better).",
                       minimum=0, maximum=63),
        "pixel_format": string(
            "Pixel format (ffmpeg's -pix_fmt); default yuv420p for "
            "libx264, libx265, libvpx-vp9 and libaom-av1, otherwise "
            "ffmpeg's choice.", pattern="^[A-Za-z0-9_]+$"),
    }, required=["input", "start", "output"])

    executables = {"linux": ["ffmpeg"], "mac": ["ffmpeg"],
                   "windows": ["ffmpeg"]}
    install_patterns = {
        "linux": ["/usr/local/bin/ffmpeg", "/opt/ffmpeg*/bin/ffmpeg",
                  "/opt/ffmpeg*/ffmpeg"],
        "mac": ["/opt/homebrew/bin/ffmpeg", "/usr/local/bin/ffmpeg",
                "/opt/local/bin/ffmpeg"],
        "windows": ["${ProgramFiles}\\ffmpeg*\\bin\\ffmpeg.exe",
                    "C:\\ffmpeg*\\bin\\ffmpeg.exe"],
    }
    version_args = ["-version"]
    version_output_pattern = r"ffmpeg version n?(\d+(?:\.\d+)+)"
    version_path_pattern = r"(?i)^ffmpeg-n?(\d+(?:\.\d+)+)"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.total = None
        self.encoded = 0

    def pattern(self):
        """Return ``data.input`` in ffmpeg's printf style."""
        pattern = printf_pattern(self.required("input"))
        if pattern is None:
            raise JobTypeError(
                f"job {self.job.get('id')} (ffmpeg): data.input must name "
                f"the frame number with #### or %04d, got "
                f"{self.field('input')!r}")
        return pattern

    def frame_count(self):
        """Return how many frames to encode, or None if unknown.

        ``end - start + 1``; without ``end``, the files on disk from
        ``start`` on, up to the first missing one.
        """
        start = self.required("start", int)
        end = self.integer("end")
        if end is not None:
            if end < start:
                raise JobTypeError(
                    f"job {self.job.get('id')} (ffmpeg): data.end ({end}) "
                    f"is before data.start ({start})")
            return end - start + 1
        pattern = self.pattern()
        count = 0
        while count < MAX_COUNT:
            try:
                path = pattern.replace("%%", "\0") % (start + count)
            except (TypeError, ValueError):
                return None
            if not os.path.exists(path.replace("\0", "%")):
                break
            count += 1
        return count or None

    def argv(self):
        """Return the ffmpeg command encoding the sequence."""
        pattern = self.pattern()
        start = self.required("start", int)
        self.total = self.frame_count()
        codec = self.field("codec", "libx264")
        argv = [self.executable(), "-hide_banner", "-nostdin", "-y",
                "-framerate", f"{self.field('fps', 24):g}",
                "-start_number", str(start), "-i", pattern]
        if self.field("end") is not None:
            argv += ["-frames:v", str(self.total)]
        argv += ["-c:v", codec]
        if self.field("crf") is not None:
            argv += ["-crf", str(self.integer("crf"))]
        pixel_format = self.field("pixel_format",
                                  DEFAULT_PIXEL_FORMATS.get(codec))
        if pixel_format:
            argv += ["-pix_fmt", pixel_format]
        argv.append(self.required("output"))
        return argv

    def parse_line(self, line):
        """Read ``frame=`` progress from a line of ffmpeg's output."""
        if self.check_errors(line):
            return []
        match = _FRAME.search(line)
        if match is None:
            return []
        self.encoded = int(match.group(1))
        if not self.total:
            return []
        return [Progress(clamp(self.encoded / self.total))]

    def succeeded(self, status, lines):
        """Exit 0, and every frame asked for encoded."""
        if not super().succeeded(status, lines):
            return False
        if self.field("end") is not None and self.total and \
                self.encoded < self.total:
            self.fail(f"ffmpeg encoded {self.encoded} of {self.total} "
                      f"frames: is a frame of {self.field('input')} "
                      f"missing?")
            return False
        return True

    def expected_outputs(self, frame):
        """Every task of the job names the movie."""
        output = self.field("output")
        return [output] if output else []
