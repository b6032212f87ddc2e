"""
The ``houdini`` job type: render a ROP of a .hip file with ``hrender.py``.

The command (``hrender.py`` is the one next to the ``hython`` chosen, that
is ``$HFS/bin/hrender.py``)::

    hython $HFS/bin/hrender.py -e -f S E -i BY -d ROP [-o OUTPUT] FILE.hip

Progress comes from ``ALF_PROGRESS 45%`` lines (the ROP's "Alfred-style
progress" option, ``vm_alfprogress`` on Mantra). Renderers print them
from 0 to 100% for each frame; when the value drops after reaching 100%
the next frame started, so the one before is done. The other frames are
done when ``hython`` exits 0 without an ``Error:`` line or a license
failure.

The job's path maps are also given to Houdini as ``HOUDINI_PATHMAP``, so
that the paths *inside* the .hip file are mapped too (unless the job's or
the agent's environment already sets it).
"""

import json
import os
import re

from pyfarm.agent.jobtypes import (
    IGNORE_ERRORS,
    LICENSE_FAILURE,
    JobType,
    JobTypeError,
    Progress,
    clamp,
    schema,
    string,
)
from pyfarm.core.pathmap import SYSTEMS

_ALF = re.compile(r"ALF_PROGRESS\s+(\d+(?:\.\d+)?)%")
_FRAME_VARIABLE = re.compile(r"\$\{F(\d?)\}|\$F(\d?)(?![A-Za-z0-9_])")


class HoudiniJobType(JobType):
    """Render a ROP of a Houdini scene (.hip) with hython and hrender.py."""

    name = "houdini"
    software = "houdini"
    parameters = schema({
        "hip": string("The Houdini scene (.hip, .hiplc or .hipnc)."),
        "rop": string("The ROP to render (hrender's -d), such as "
                      "/out/mantra1 or mantra1."),
        "output": string(
            "Output file name (hrender's -o), overriding the ROP's, with "
            "Houdini variables such as $HIP/render/shot.$F4.exr. Absent: "
            "the ROP's own."),
        "ignore_errors": IGNORE_ERRORS,
    }, required=["hip", "rop"])

    executables = {"linux": ["hython"], "mac": ["hython"],
                   "windows": ["hython"]}
    install_patterns = {
        "linux": ["${HFS}/bin/hython", "/opt/hfs*/bin/hython",
                  "/opt/sidefx/hfs*/bin/hython"],
        "mac": ["${HFS}/bin/hython",
                "/Applications/Houdini/Houdini*/Frameworks/Houdini.framework"
                "/Versions/*/Resources/bin/hython"],
        "windows": ["${HFS}\\bin\\hython.exe",
                    "${ProgramFiles}\\Side Effects Software\\Houdini*\\bin"
                    "\\hython.exe"],
    }
    version_path_pattern = r"(?i)^(?:hfs|houdini)\s*(\d+\.\d+\.\d+)"

    error_patterns = (r"^Error:",)
    license_patterns = (LICENSE_FAILURE,)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_alf = None

    def hrender(self):
        """Return the ``hrender.py`` beside the chosen ``hython``."""
        hython = self.executable()
        script = os.path.join(os.path.dirname(hython), "hrender.py")
        if not os.path.isfile(script):
            raise JobTypeError(
                f"houdini: no hrender.py next to {hython} (looked for "
                f"{script})")
        return script

    def argv(self):
        """Return the hython command for the assignment's frames."""
        argv = [self.executable(), self.hrender(), "-e",
                "-f", str(self.start), str(self.end), "-i", str(self.by),
                "-d", self.required("rop")]
        output = self.field("output")
        if output is not None:
            argv += ["-o", output]
        argv.append(self.required("hip"))
        return argv

    def houdini_pathmap(self):
        """Return ``HOUDINI_PATHMAP`` for the job's path maps, or None."""
        pairs = {}
        for item in self.job.get("pathmaps") or []:
            if not isinstance(item, dict):
                continue
            target = item.get(self.os_name)
            if not target:
                continue
            for system in SYSTEMS:
                source = item.get(system)
                if system != self.os_name and source:
                    pairs[source.replace("\\", "/")] = target.replace(
                        "\\", "/")
        return json.dumps(pairs) if pairs else None

    def environ(self):
        """The base environment, with ``HOUDINI_PATHMAP`` from path maps."""
        env = super().environ()
        pathmap = self.houdini_pathmap()
        if pathmap is not None and "HOUDINI_PATHMAP" not in env:
            env["HOUDINI_PATHMAP"] = pathmap
        return env

    def parse_line(self, line):
        """Read ``ALF_PROGRESS`` lines; a drop after 100% ends a frame."""
        if self.check_errors(line):
            return []
        match = _ALF.search(line)
        if match is None:
            return []
        value = float(match.group(1))
        events = []
        if self.last_alf is not None and self.last_alf >= 100 and \
                value < self.last_alf:
            events += self.frame_done(self.current_frame())
        self.last_alf = value
        frame = self.current_frame()
        if frame is not None:
            events.append(Progress(clamp(value / 100), frame))
        return events

    def expected_outputs(self, frame):
        """Return ``data.output`` for ``frame``, if its variables are
        known ($F, $F4, ${F4}, $HIP, $HIPNAME, $OS)."""
        output = self.field("output")
        if not output:
            return []
        hip = self.field("hip", "")
        values = {
            "HIP": re.split(r"[\\/][^\\/]*$", hip)[0],
            "HIPNAME": re.sub(r"\.hip(lc|nc)?$", "",
                              re.split(r"[\\/]", hip)[-1]),
            "OS": self.field("rop", "").rstrip("/").split("/")[-1],
        }

        def frame_number(match):
            width = match.group(1) or match.group(2)
            return f"{frame:0{int(width)}d}" if width else str(frame)

        path = _FRAME_VARIABLE.sub(frame_number, output)
        for key in sorted(values, key=len, reverse=True):
            path = re.sub(r"\$\{" + key + r"\}|\$" + key +
                          r"(?![A-Za-z0-9_])", lambda _, v=values[key]: v,
                          path)
        return [] if "$" in path else [path]
