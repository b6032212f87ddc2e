"""
The ``blender`` job type: render frames of a .blend file in the background.

The command::

    blender -b SCENE [-S NAME] [-E ENGINE] [-o PATTERN] [-F FORMAT] [-t N]
            [--python-exit-code 1 --python-expr CODE] -s S -e E -j BY -a

Blender has no flag for the resolution percentage or the number of
samples, so those are set by a short Python expression run after the file
loads (``--python-exit-code`` makes a failing expression fail the run
instead of rendering with the scene's settings).

Output: ``Fra:12 ... | Sample 40/128`` (Cycles) or ``Rendering 5 / 64
samples`` (EEVEE) give a frame's progress; ``Saved: '/renders/x_0012.png'``,
``Append frame 12`` (movies) and ``skipping existing frame`` finish a
frame. ``Error: ...`` lines fail the run even when Blender exits 0 (as
older versions do after a missing file), and so does an exit 0 that never
saved some frame.
"""

import re

from pyfarm.agent.jobtypes import (
    IGNORE_ERRORS,
    JobType,
    Progress,
    clamp,
    integer,
    schema,
    string,
)

#: ``-F`` formats and the file extension Blender gives each.
FORMATS = {
    "PNG": ".png", "JPEG": ".jpg", "OPEN_EXR": ".exr",
    "OPEN_EXR_MULTILAYER": ".exr", "TIFF": ".tif", "BMP": ".bmp",
    "TARGA": ".tga", "TARGA_RAW": ".tga", "IRIS": ".rgb",
    "JPEG2000": ".jp2", "CINEON": ".cin", "DPX": ".dpx", "HDR": ".hdr",
    "WEBP": ".webp",
}

_FRAME = re.compile(r"\bFra:(-?\d+)\b")
_SAMPLE = re.compile(r"\bSample (\d+)/(\d+)")
_EEVEE = re.compile(r"\bRendering (\d+) / (\d+) samples")
_TILES = re.compile(r"\bRendered (\d+)/(\d+) Tiles")
_SAVED = re.compile(r"^Saved: '(.*)'(?:\s+Time:.*)?$")
_APPEND = re.compile(r"^Append frame (-?\d+)")
_SKIPPED = re.compile(r'^skipping existing frame "(.*)"')
_HASHES = re.compile(r"#+")


class BlenderJobType(JobType):
    """Render frames of a Blender scene (.blend) in the background."""

    name = "blender"
    software = "blender"
    parameters = schema({
        "scene": string("The .blend file to render."),
        "output": string(
            "Output path pattern (Blender's -o): a run of '#' is the "
            "frame number padded to that many digits, as in "
            "/renders/shot_####; without '#' Blender adds 4 digits. "
            "Absent: the scene's own output path."),
        "format": {"enum": sorted(FORMATS),
                   "description": "Image format (Blender's -F). Absent: "
                                  "the scene's own format."},
        "engine": string(
            "Render engine (Blender's -E), such as CYCLES, BLENDER_EEVEE, "
            "BLENDER_EEVEE_NEXT or BLENDER_WORKBENCH. Absent: the "
            "scene's.", pattern="^[A-Za-z][A-Za-z0-9_]*$"),
        "scene_name": string(
            "The scene inside the file to render (Blender's -S). Absent: "
            "the file's active scene."),
        "resolution_percentage": integer(
            "Render at this percentage of the scene's resolution.",
            minimum=1, maximum=32767),
        "samples": integer(
            "Samples per pixel (Cycles samples, EEVEE render samples).",
            minimum=1),
        "threads": integer("CPU threads (Blender's -t); 0: all.",
                           minimum=0, maximum=1024),
        "ignore_errors": IGNORE_ERRORS,
    }, required=["scene"])

    executables = {"linux": ["blender"], "mac": ["blender", "Blender"],
                   "windows": ["blender"]}
    install_patterns = {
        "linux": ["/opt/blender*/blender", "/opt/blender/*/blender",
                  "/usr/local/blender*/blender", "/snap/bin/blender",
                  "${HOME}/blender*/blender"],
        "mac": ["/Applications/Blender*.app/Contents/MacOS/Blender",
                "${HOME}/Applications/Blender*.app/Contents/MacOS/Blender"],
        "windows": [
            "${ProgramFiles}\\Blender Foundation\\Blender*\\blender.exe"],
    }
    version_args = ["--version"]
    version_output_pattern = r"Blender (\d+\.\d+(?:\.\d+)?)"
    version_path_pattern = r"(?i)^blender[- _]?(\d+\.\d+(?:\.\d+)?)"

    error_patterns = (r"^Error: (?!Not freed memory blocks)",)
    require_all_frames = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frame_now = None

    def python_settings(self):
        """Return the Python setting what Blender has no flag for, or None."""
        lines = []
        percentage = self.integer("resolution_percentage")
        samples = self.integer("samples")
        if percentage is not None:
            lines.append(
                f"scene.render.resolution_percentage = {percentage}")
        if samples is not None:
            lines += [
                'if scene.render.engine == "CYCLES":',
                f"    scene.cycles.samples = {samples}",
                'elif scene.render.engine.startswith("BLENDER_EEVEE"):',
                f"    scene.eevee.taa_render_samples = {samples}",
            ]
        if not lines:
            return None
        return "\n".join(["import bpy", "scene = bpy.context.scene", *lines,
                          'print("pyfarm: render settings applied")'])

    def argv(self):
        """Return the Blender command for the assignment's frames."""
        argv = [self.executable(), "-b", self.required("scene")]
        for key, flag in (("scene_name", "-S"), ("engine", "-E"),
                          ("output", "-o"), ("format", "-F")):
            value = self.field(key)
            if value is not None:
                argv += [flag, str(value)]
        threads = self.integer("threads")
        if threads is not None:
            argv += ["-t", str(threads)]
        python = self.python_settings()
        if python is not None:
            argv += ["--python-exit-code", "1", "--python-expr", python]
        argv += ["-s", str(self.start), "-e", str(self.end),
                 "-j", str(self.by), "-a"]
        return argv

    def parse_line(self, line):
        """Read progress and finished frames from a line of Blender."""
        if self.check_errors(line):
            return []
        events = []
        match = _FRAME.search(line)
        if match and int(match.group(1)) in self.frames:
            self.frame_now = int(match.group(1))
        frame = self.frame_now
        if frame in self.done:
            frame = None
        match = _TILES.search(line) or _SAMPLE.search(line) or \
            _EEVEE.search(line)
        if match and int(match.group(2)) > 0:
            done, total = int(match.group(1)), int(match.group(2))
            events.append(Progress(clamp(done / total), frame))
        match = _SAVED.match(line.strip())
        if match:
            path = match.group(1)
            if frame is None:
                frame = self.frame_for(path)
            self.add_output(frame, path)
            events += self.frame_done(frame)
            self.frame_now = None
            return events
        match = _APPEND.match(line.strip())
        if match:
            frame = int(match.group(1))
            if self.field("output"):
                self.add_output(frame, self.field("output"))
            return events + self.frame_done(frame)
        match = _SKIPPED.match(line.strip())
        if match:
            path = match.group(1)
            frame = self.frame_for(path)
            self.add_output(frame, path)
            return events + self.frame_done(frame)
        return events

    def expected_outputs(self, frame):
        """Return the file ``data.output`` names for ``frame``.

        Blender's rule: each run of ``#`` becomes the frame padded to its
        length; without any, 4 digits are added; the format's extension is
        added (Blender's default "file extensions" setting). A path
        starting with ``//`` is relative to the scene's folder.
        """
        pattern = self.field("output")
        if not pattern:
            return []
        if pattern.startswith("//"):
            scene = self.field("scene", "")
            folder = re.split(r"[\\/][^\\/]*$", scene)[0] if re.search(
                r"[\\/]", scene) else "."
            pattern = folder + "/" + pattern[2:]
        if _HASHES.search(pattern):
            path = _HASHES.sub(
                lambda m: f"{frame:0{len(m.group())}d}", pattern)
        else:
            path = f"{pattern}{frame:04d}"
        extension = FORMATS.get(self.field("format"))
        if extension and not path.lower().endswith(extension):
            path += extension
        return [path]
