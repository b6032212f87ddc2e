"""
The ``nuke`` job type: render a Nuke script's Write nodes.

The command::

    Nuke15.0 -x [-i] -F S-ExBY [-X WRITE] SCRIPT.nk

``-i`` renders with an interactive license instead of a render license.

Output read: ``Writing /comp/shot.0012.exr took 1.20 seconds`` names a
file; ``Frame 12 (3 of 10)`` means frame 12 is written. ``ERROR:`` lines
and license failures fail the run even when Nuke exits 0;
``data.ignore_errors`` excuses known harmless ones.

Nuke installs as ``Nuke15.0v4/Nuke15.0``: the version comes from the
install folder (``15.0.4``), else from the program's name (``15.0``).
"""

import re

from pyfarm.agent import software as software_module
from pyfarm.agent.jobtypes import (
    IGNORE_ERRORS,
    LICENSE_FAILURE,
    JobType,
    schema,
    string,
)

_WRITING = re.compile(r"^Writing (.+?) took [\d.]+ seconds?")
_FRAME = re.compile(r"^Frame (-?\d+) \((\d+) of (\d+)\)")


class NukeJobType(JobType):
    """Render the Write nodes of a Nuke script."""

    name = "nuke"
    software = "nuke"
    parameters = schema({
        "script": string("The Nuke script (.nk) to render."),
        "write": string("The Write node to render (Nuke's -X). Absent: "
                        "every Write node."),
        "interactive_license": {
            "type": "boolean",
            "description": "Render with an interactive license (Nuke's "
                           "-i) rather than a render license."},
        "ignore_errors": IGNORE_ERRORS,
    }, required=["script"])

    executables = {"linux": ["nuke", "Nuke"], "mac": ["nuke", "Nuke"],
                   "windows": ["nuke", "Nuke"]}
    install_patterns = {
        "linux": ["/usr/local/Nuke*/Nuke*", "/opt/Nuke*/Nuke*",
                  "/opt/foundry/Nuke*/Nuke*"],
        "mac": ["/Applications/Nuke*/Nuke*.app/Contents/MacOS/Nuke*"],
        "windows": ["${ProgramFiles}\\Nuke*\\Nuke*.exe"],
    }
    executable_pattern = r"^Nuke\d+\.\d+(\.exe)?$"
    version_path_pattern = r"(?i)^nuke(\d+)\.(\d+)v(\d+)"

    error_patterns = (r"(^|\s)ERROR:", r"^Error:")
    license_patterns = (LICENSE_FAILURE,)

    @classmethod
    def version_from_path(cls, path):
        """``Nuke15.0v4`` -> 15.0.4; else the program's ``Nuke15.0``."""
        return super().version_from_path(path) or \
            software_module.version_in_name(
                r"(?i)^nuke(\d+)\.(\d+)(?:\.exe)?$", path)

    def argv(self):
        """Return the Nuke command for the assignment's frames."""
        argv = [self.executable(), "-x"]
        if self.field("interactive_license", False) is True:
            argv.append("-i")
        argv += ["-F", f"{self.start}-{self.end}x{self.by}"]
        write = self.field("write")
        if write is not None:
            argv += ["-X", write]
        argv.append(self.required("script"))
        return argv

    def parse_line(self, line):
        """Read written files and finished frames."""
        if self.check_errors(line):
            return []
        text = line.strip()
        match = _WRITING.match(text)
        if match:
            path = match.group(1)
            self.add_output(self.frame_for(path), path)
            return []
        match = _FRAME.match(text)
        if match:
            return self.frame_done(int(match.group(1)))
        return []
