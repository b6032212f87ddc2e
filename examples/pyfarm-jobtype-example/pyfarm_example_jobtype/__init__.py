"""
An example of a studio's own job type: ``python`` runs a Python script.

The command, for an assignment of frames 11 to 13::

    python3 -u SCRIPT [ARGS...] --frame 11 --frame 12 --frame 13

The script may print these lines (any other output is only logged):

- ``pyfarm: progress 40%``: how far along the frame being worked on is;
- ``pyfarm: wrote /renders/shot.0012.png``: a file the frame wrote (the
  frame is the number in the file name, else the frame being worked on);
- ``pyfarm: frame 12 done``: frame 12 is finished (frames the script
  never mentions are done when it exits with code 0).

Lines starting with ``ERROR:`` or ``CRITICAL:`` (what Python's
``logging`` prints by default) fail the frames even when the script
exits 0, unless one of ``data.ignore_errors`` is part of the line.
"""

import re

from pyfarm.agent.jobtypes import (
    IGNORE_ERRORS,
    JobType,
    JobTypeError,
    Progress,
    clamp,
    schema,
    string,
)

_PROGRESS = re.compile(r"^pyfarm: progress (\d+(?:\.\d+)?)%$")
_WROTE = re.compile(r"^pyfarm: wrote (.+)$")
_DONE = re.compile(r"^pyfarm: frame (-?\d+) done$")


class PythonJobType(JobType):
    """Run a Python script for the frames of an assignment."""

    name = "python"

    # The JSON Schema of the job's ``data``: the master checks every
    # submission against it, and the agent reports it when it registers.
    parameters = schema({
        "script": string("The Python script to run."),
        "args": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Arguments given to the script before the "
                           "--frame arguments.",
        },
        "cwd": string("The folder to run in. Absent: the agent's."),
        "ignore_errors": IGNORE_ERRORS,
    }, required=["script"])

    # The program it runs: jobs of this type go only to agents that
    # reported a version of "python".
    software = "python"
    executables = {"linux": ["python3"], "mac": ["python3"],
                   "windows": ["python"]}
    install_patterns = {
        "linux": ["/usr/bin/python3.*", "/usr/local/bin/python3.*"],
        "mac": ["/Library/Frameworks/Python.framework/Versions/3.*/bin"
                "/python3"],
        "windows": ["${LOCALAPPDATA}\\Programs\\Python\\Python3*"
                    "\\python.exe"],
    }
    # Leaves out python3.12-config and the like in the install folders.
    executable_pattern = r"^python(3(\.\d+)?)?(\.exe)?$"
    version_args = ["--version"]
    version_output_pattern = r"Python (\d+\.\d+\.\d+)"

    error_patterns = (r"^(ERROR|CRITICAL):",)

    def argv(self):
        """Return the command running the script for this assignment."""
        args = self.field("args", [])
        if not isinstance(args, list) or not all(
                isinstance(arg, str) for arg in args):
            raise JobTypeError(
                f"job {self.job.get('id')} (python): data.args must be a "
                f"list of strings, got {args!r}")
        argv = [self.executable(), "-u", self.required("script"), *args]
        for frame in self.frames:
            argv += ["--frame", str(frame)]
        return argv

    def parse_line(self, line):
        """Read progress, written files and finished frames."""
        if self.check_errors(line):
            return []
        text = line.strip()
        match = _PROGRESS.match(text)
        if match:
            return [Progress(clamp(float(match.group(1)) / 100))]
        match = _WROTE.match(text)
        if match:
            path = match.group(1)
            self.add_output(self.frame_for(path), path)
            return []
        match = _DONE.match(text)
        if match:
            return self.frame_done(int(match.group(1)))
        return []
