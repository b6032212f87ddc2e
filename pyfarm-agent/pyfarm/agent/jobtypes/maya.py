"""
The ``maya`` job type: Maya's command-line renderer, ``Render``.

The command::

    Render -r RENDERER -s S -e E -b BY [-rd DIR] [-proj PROJECT]
           [-im PREFIX] [-cam CAMERA] [-rl LAYER] SCENE

``-r file`` (the default) renders with the renderer set in the scene.

Output read:

- Arnold: ``|    45% done - 12 rays/pixel`` gives the frame's progress;
  ``| [driver_exr] writing file `/images/shot.0012.exr'`` names a file.
  A file for a later frame, or the next ``rendering image at`` after
  files were written, means the frames before are done (Arnold writes
  every AOV of a frame before starting the next).
- Maya Software: ``Percentage of rendering done: 40`` gives progress;
  ``Finished Rendering /images/shot.0012.iff`` finishes that frame.
- Failures even with exit code 0: ``// Error:`` (or ``Error:``) lines,
  Arnold's ``ERROR |`` lines, ``[mtoa] Failed batch render``, ``Arnold
  render failed``, and license failures (``Maya: License was not
  obtained``, ``FLEXlm error``, Arnold's ``rendering with watermarks``).
  ``data.ignore_errors`` excuses known harmless error lines.
"""

import re

from pyfarm.agent.jobtypes import (
    IGNORE_ERRORS,
    LICENSE_FAILURE,
    JobType,
    Progress,
    clamp,
    schema,
    string,
)

#: Environment that keeps Maya from opening crash and feedback dialogs on
#: a render node (a job's own ``environ`` overrides it).
QUIET_MAYA = {
    "MAYA_DISABLE_CIP": "1",
    "MAYA_DISABLE_CER": "1",
    "MAYA_DISABLE_CLIC_IPM": "1",
    "MAYA_DEBUG_ENABLE_CRASH_REPORTING": "0",
}

_ARNOLD_PROGRESS = re.compile(r"\|\s*(\d+(?:\.\d+)?)% done\b")
_ARNOLD_FILE = re.compile(r"writing file `(.*)'")
_ARNOLD_START = re.compile(r"\|\s*rendering image at \d+ x \d+")
_SOFTWARE_PROGRESS = re.compile(
    r"Percentage of rendering done:\s*(\d+(?:\.\d+)?)")
_FINISHED = re.compile(r"Finished Rendering\s+(.*?)\.?\s*$")


class MayaJobType(JobType):
    """Render frames of a Maya scene with Maya's command-line renderer."""

    name = "maya"
    software = "maya"
    parameters = schema({
        "scene": string("The Maya scene (.ma or .mb) to render."),
        "renderer": string(
            "Renderer (Render's -r): arnold, sw (Maya Software), redshift, "
            "vray, renderman ... Default: file, the scene's own.",
            pattern="^[A-Za-z][A-Za-z0-9_]*$"),
        "project": string("The Maya project folder (-proj), for the "
                          "scene's relative paths."),
        "output_dir": string("The folder images are written to (-rd). "
                             "Absent: the project's images folder."),
        "image_prefix": string("The image file name prefix (-im). "
                               "Absent: the scene's."),
        "camera": string("The camera to render (-cam). Absent: the "
                         "scene's renderable cameras."),
        "layer": string("The render layer to render (-rl). Absent: the "
                        "scene's renderable layers."),
        "ignore_errors": IGNORE_ERRORS,
    }, required=["scene"])

    executables = {"linux": ["Render"], "mac": ["Render"],
                   "windows": ["Render"]}
    install_patterns = {
        "linux": ["/usr/autodesk/maya*/bin/Render",
                  "/opt/autodesk/maya*/bin/Render"],
        "mac": ["/Applications/Autodesk/maya*/Maya.app/Contents/bin/Render"],
        "windows": ["${ProgramFiles}\\Autodesk\\Maya*\\bin\\Render.exe"],
    }
    version_path_pattern = r"(?i)^maya(\d{4}(?:\.\d+)*)$"

    error_patterns = (
        r"^(//\s*)?Error:",
        r"\bERROR\s*\|",
        r"\[mtoa\] Failed (batch|sequence) render",
        r"(?i)\barnold render failed",
    )
    license_patterns = (LICENSE_FAILURE,)

    def argv(self):
        """Return the Render command for the assignment's frames."""
        argv = [self.executable(), "-r", self.field("renderer", "file"),
                "-s", str(self.start), "-e", str(self.end),
                "-b", str(self.by)]
        for key, flag in (("output_dir", "-rd"), ("project", "-proj"),
                          ("image_prefix", "-im"), ("camera", "-cam"),
                          ("layer", "-rl")):
            value = self.field(key)
            if value is not None:
                argv += [flag, str(value)]
        argv.append(self.required("scene"))
        return argv

    def environ(self):
        """The base environment, with Maya's dialogs turned off."""
        env = super().environ()
        job_environ = self.job.get("environ") or {}
        for key, value in QUIET_MAYA.items():
            if key not in job_environ:
                env[key] = value
        return env

    def parse_line(self, line):
        """Read progress, written files and finished frames."""
        if self.check_errors(line):
            return []
        if _ARNOLD_START.search(line):
            frame = self.current_frame()
            if frame is not None and self.output_files.get(frame):
                return self.frame_done(frame)  # its files are written
            return []
        match = _ARNOLD_PROGRESS.search(line)
        if match:
            return [Progress(clamp(float(match.group(1)) / 100))]
        match = _SOFTWARE_PROGRESS.search(line)
        if match:
            return [Progress(clamp(float(match.group(1)) / 100))]
        match = _ARNOLD_FILE.search(line)
        if match:
            path = match.group(1)
            frame = self.frame_for(path)
            events = []
            # Arnold writes all of a frame's files before the next frame:
            # a file of a later frame means the earlier ones are done.
            for earlier in self.pending():
                if frame is None or earlier >= frame:
                    break
                events += self.frame_done(earlier)
            self.add_output(frame, path)
            return events
        match = _FINISHED.search(line)
        if match:
            path = match.group(1).strip()
            frame = self.frame_for(path)
            self.add_output(frame, path)
            return self.frame_done(frame)
        return []
