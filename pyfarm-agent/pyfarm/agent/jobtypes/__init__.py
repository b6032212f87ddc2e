"""
Job types: how to turn an assignment into a process and read its output.

A job type is a class deriving from :class:`JobType`, found by name in the
entry point group ``pyfarm.jobtypes``; a studio adds its own from its own
package::

    [project.entry-points."pyfarm.jobtypes"]
    maya = "studio.farm.maya:MayaJobType"

A studio's entry point takes precedence over the built-in job type of the
same name, so the example above replaces PyFarm's ``maya`` on the agents
that have the studio's package.

The agent builds one instance per assignment (one process) from the
assignment the master sent: ``{"id", "job": {...}, "tasks": [...]}``. The
job's ``data`` and ``environ`` come with the job's path maps applied for
this agent's operating system (:mod:`pyfarm.core.pathmap`).

A job type declares:

- ``parameters``: the JSON Schema of the job's ``data``, which the master
  checks at submission (the agent sends it at registration);
- ``software``: the program it runs (``"blender"``), found by
  :mod:`pyfarm.agent.software` from ``executables`` (names on the
  ``PATH``) and ``install_patterns`` (the vendor's install folders), with
  its version from ``version_args`` / ``version_output_pattern`` or
  ``version_path_pattern``;

and implements :meth:`JobType.argv`, :meth:`JobType.parse_line` (progress
and finished frames from the output), :meth:`JobType.succeeded` (exit
status *and* what the output said) and :meth:`JobType.outputs` (the files
a frame wrote).
"""

import os
import re
from dataclasses import dataclass
from importlib.metadata import entry_points

from pyfarm.agent import software as software_module
from pyfarm.core.enums import OperatingSystem
from pyfarm.core.framerange import compact
from pyfarm.core.logger import getLogger
from pyfarm.core.pathmap import PathMapper

logger = getLogger("agent.jobtypes")

#: The entry point group job types are found in.
GROUP = "pyfarm.jobtypes"

#: Variables of the agent's environment a job's process never sees.
SECRET_VARIABLES = software_module.SECRET_VARIABLES

#: How many of the last output lines a failure message quotes.
ERROR_LINES = 20

#: The longest failure message sent to the master, in characters.
MAX_ERROR = 4000

#: The most output files reported for one frame.
MAX_OUTPUTS = 256

#: The JSON Schema dialect of the ``parameters`` schemas.
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: Output that means a license could not be had (any renderer).
LICENSE_FAILURE = re.compile(
    r"(?i)(licen[cs]e was not obtained"
    r"|(could not|cannot|can't|unable to|failed to) (get|obtain|check ?out"
    r"|acquire|find) (a |any )?licen[cs]e"
    r"|no licen[cs]es? (could be found|found|available|were found)"
    r"|licen[cs]e (error|failure|check(out)? failed|not (available|found))"
    r"|flexlm error|rlm error|rendering with watermarks)")

#: The ``ignore_errors`` field every renderer's ``data`` may have.
IGNORE_ERRORS = {
    "type": "array",
    "items": {"type": "string", "minLength": 1},
    "description": "Error lines containing one of these texts do not fail "
                   "the frames (for known harmless errors of a scene).",
}


class JobTypeError(Exception):
    """A job type is missing or cannot run this job; the message says why."""


@dataclass(frozen=True)
class Progress:
    """Output said how far along a frame is (``value`` from 0 to 1).

    ``frame`` None means the first frame of the assignment not done yet.
    """

    value: float
    frame: int | None = None


@dataclass(frozen=True)
class FrameDone:
    """Output said ``frame`` is finished."""

    frame: int


def schema(properties, required=(), description=""):
    """Return a ``parameters`` JSON Schema: an object of ``properties``.

    Fields other than ``properties`` are refused, so that a typo in a
    submission is a 400 naming the field rather than a setting silently
    ignored.
    """
    document = {
        "$schema": SCHEMA_DIALECT,
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }
    if description:
        document["description"] = description
    return document


def string(description, **extra):
    """Return the schema of a non-empty string field."""
    return {"type": "string", "minLength": 1, "description": description,
            **extra}


def integer(description, minimum=None, maximum=None):
    """Return the schema of an integer field."""
    field = {"type": "integer", "description": description}
    if minimum is not None:
        field["minimum"] = minimum
    if maximum is not None:
        field["maximum"] = maximum
    return field


def clamp(value):
    """Return ``value`` limited to 0..1."""
    return min(max(float(value), 0.0), 1.0)


_DIGITS = re.compile(r"\d+")


class JobType:
    """Base class of job types; subclasses implement :meth:`argv`."""

    #: The name jobs use for this job type (the entry point's name).
    name = None

    #: One line for people choosing a job type (else the docstring's).
    description = ""

    #: JSON Schema of the job's ``data``; the master validates with it.
    parameters = {"type": "object"}

    #: The program this job type runs (a software name), or None.
    software = None

    #: ``{os: [names]}`` of the program's executable on the ``PATH``.
    executables = {}

    #: ``{os: [glob patterns]}`` of the vendor's install folders;
    #: ``${NAME}`` is an environment variable (``${ProgramFiles}``).
    install_patterns = {}

    #: A regex the file name of an install folder match must match.
    executable_pattern = None

    #: Arguments that make the program print its version and exit, for
    #: programs that do so quickly and without a license; None: don't ask.
    version_args = None

    #: Regex whose first group is the version in that output.
    version_output_pattern = None

    #: Regex finding the version in a folder name of the install path;
    #: its groups are joined with dots.
    version_path_pattern = None

    #: Regexes of output lines that mean the work failed, whatever the
    #: exit code says (unless data's ``ignore_errors`` excuses the line).
    error_patterns = ()

    #: Regexes of output lines that mean no license could be had.
    license_patterns = ()

    #: Whether a run that never reported some frame done failed.
    require_all_frames = False

    def __init__(self, assignment, environ=None, installed=None,
                 os_name=None):
        self.assignment = assignment
        self.id = assignment["id"]
        self.job = assignment["job"]
        self.tasks = list(assignment["tasks"])
        self.frames = [task["frame"] for task in self.tasks]
        self.agent_environ = os.environ if environ is None else environ
        self.os_name = str(os_name or OperatingSystem.current())
        self.installed = installed
        self.mapper = PathMapper(self.job.get("pathmaps") or [],
                                 self.os_name)
        self.data = self.mapper.map_data(self.job.get("data") or {})
        # What the output told so far.
        self.done = set()
        self.failure = None
        self.output_files = {}
        self._installation = None

    # -- what the agent tells the master about job types ------------------

    @classmethod
    def describe(cls, name=None):
        """Return the registration's entry for this job type."""
        description = cls.description
        if not description and cls.__doc__:
            description = cls.__doc__.strip().split("\n\n")[0]
        return {
            "name": name or cls.name,
            "description": " ".join(description.split()),
            "parameters": cls.parameters,
            "software": cls.software,
        }

    # -- finding the program ---------------------------------------------

    @classmethod
    def version_from_output(cls, text):
        """Return the version the program printed, or None."""
        if cls.version_output_pattern is None:
            return None
        match = re.search(cls.version_output_pattern, text)
        return match.group(1) if match else None

    @classmethod
    def version_from_path(cls, path):
        """Return the version in the install folder's name, or None."""
        if cls.version_path_pattern is None:
            return None
        return software_module.version_in_name(cls.version_path_pattern,
                                               path)

    @classmethod
    def accepts(cls, path):
        """Whether an install folder match at ``path`` is the program."""
        if cls.executable_pattern is None:
            return True
        return re.search(cls.executable_pattern,
                         os.path.basename(path)) is not None

    def installation(self):
        """Return the :class:`~pyfarm.agent.software.Installation` to run.

        The agent's inventory (found at start) or, without one, a fresh
        look; the job's ``software_requirements`` choose the version.
        Raises :class:`JobTypeError` saying where the agent looked.
        """
        if self._installation is None:
            if self.software is None:
                raise JobTypeError(f"job type {self.name!r} names no "
                                   f"software to run")
            discovery = (self.installed or {}).get(self.software)
            if discovery is None:
                discovery = software_module.discover(
                    type(self), (), self.agent_environ, self.os_name)
            try:
                self._installation = software_module.choose(
                    discovery, self.job.get("software_requirements") or [])
            except software_module.SoftwareNotFound as error:
                raise JobTypeError(str(error)) from None
        return self._installation

    def executable(self):
        """Return the path of the program to run."""
        return self.installation().path

    # -- the job's fields ------------------------------------------------

    @property
    def start(self):
        """The first frame of this assignment."""
        return self.frames[0]

    @property
    def end(self):
        """The last frame of this assignment."""
        return self.frames[-1]

    @property
    def by(self):
        """The step between two frames."""
        return self.job.get("by") or 1

    @property
    def cwd(self):
        """The directory to run in (None: the agent's own)."""
        return self.data.get("cwd") if isinstance(self.data, dict) else None

    def field(self, key, default=None):
        """Return ``data[key]`` (path mapped), or ``default``."""
        if not isinstance(self.data, dict):
            return default
        value = self.data.get(key)
        return default if value is None else value

    def required(self, key, kind=str):
        """Return ``data[key]``; raise :class:`JobTypeError` if unusable.

        For ``kind=int``, a float without a fraction (JSON's ``24.0``,
        which JSON Schema counts as an integer) is returned as an int.
        """
        value = self.field(key)
        if kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if value is None or not isinstance(value, kind) or isinstance(
                value, bool) or value == "":
            what = {str: "a non-empty string", int: "a whole number"}.get(
                kind, kind.__name__)
            raise JobTypeError(
                f"job {self.job.get('id')} ({self.name}): data.{key} must be "
                f"{what}, got {value!r}")
        return value

    def integer(self, key):
        """Return ``data[key]`` as an int (None when absent)."""
        value = self.field(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or value != int(value):
            raise JobTypeError(
                f"job {self.job.get('id')} ({self.name}): data.{key} must "
                f"be a whole number, got {value!r}")
        return int(value)

    def argv(self):
        """Return the command to run as a list of strings."""
        raise NotImplementedError(f"{type(self).__name__} must define argv()")

    def environ(self):
        """Return the process's environment.

        The agent's environment (without its secrets), then the job's
        ``environ``, then ``PYFARM_*`` variables describing the work.
        """
        env = {key: value for key, value in self.agent_environ.items()
               if key not in SECRET_VARIABLES}
        environ = self.mapper.map_data(
            {str(key): str(value)
             for key, value in (self.job.get("environ") or {}).items()})
        env.update(environ)
        env.update({
            "PYFARM_JOB_ID": str(self.job.get("id", "")),
            "PYFARM_ASSIGNMENT_ID": str(self.id),
            "PYFARM_FRAME_START": str(self.start),
            "PYFARM_FRAME_END": str(self.end),
            "PYFARM_FRAME_BY": str(self.by),
            "PYFARM_FRAMES": " ".join(str(frame) for frame in self.frames),
        })
        return env

    # -- reading the output ------------------------------------------------

    def parse_line(self, line):
        """Return the events a line of output tells of.

        Events are :class:`Progress` and :class:`FrameDone`; the base class
        finds none.
        """
        return []

    def pending(self):
        """Return the frames not reported done yet, in order."""
        return [frame for frame in self.frames if frame not in self.done]

    def current_frame(self):
        """Return the frame being worked on (the first pending one)."""
        pending = self.pending()
        return pending[0] if pending else None

    def frame_done(self, frame):
        """Return ``[FrameDone(frame)]`` the first time, else ``[]``."""
        if frame is None or frame not in self.frames or frame in self.done:
            return []
        self.done.add(frame)
        return [FrameDone(frame)]

    def frame_in_path(self, path):
        """Return the frame of this assignment a file name is for.

        The last number in the file name that is one of the assignment's
        frames (``shot_v002.0012.exr`` -> 12); None if there is none.
        """
        name = re.split(r"[\\/]", path)[-1]
        for number in reversed(_DIGITS.findall(name)):
            if int(number) in self.frames:
                return int(number)
        return None

    def frame_for(self, path):
        """Return the frame a file is for: by its name, else the current."""
        frame = self.frame_in_path(path)
        return self.current_frame() if frame is None else frame

    def add_output(self, frame, path):
        """Remember that ``frame`` wrote ``path``."""
        if frame is None:
            return
        files = self.output_files.setdefault(frame, [])
        if path not in files and len(files) < MAX_OUTPUTS:
            files.append(path)

    def fail(self, reason):
        """Remember why the work failed (the first reason wins)."""
        if self.failure is None:
            self.failure = reason
            logger.info("assignment %s: %s", self.id, reason)

    def check_errors(self, line):
        """Note a license failure or error in ``line``; return if one."""
        text = line.strip()
        for pattern in self.license_patterns:
            if re.search(pattern, text):
                self.fail(f"license failure: {text}")
                return True
        for pattern in self.error_patterns:
            if re.search(pattern, text):
                excuses = self.field("ignore_errors", [])
                if any(excuse in text for excuse in excuses
                       if isinstance(excuse, str)):
                    return False
                self.fail(f"the output reports an error: {text}")
                return True
        return False

    # -- the end -----------------------------------------------------------

    def succeeded(self, status, lines):
        """Whether the process did its work.

        Exit code 0, no error or license failure in the output, and (for
        job types that report every frame) every frame reported done.
        ``status`` is a :class:`~pyfarm.agent.process.ExitStatus`,
        ``lines`` the last lines of output.
        """
        if status.code != 0 or self.failure is not None:
            return False
        return not (self.require_all_frames and self.pending())

    def error_message(self, status, lines):
        """Say why the work failed: the reason, how it ended, last lines."""
        reason = self.failure
        if reason is None and status.code == 0 and self.require_all_frames \
                and self.pending():
            reason = (f"{self.software or self.name} exited 0 but never "
                      f"finished frames {compact(self.pending())}")
        message = status.describe()
        if reason:
            message = f"{reason} ({message})"
        tail = list(lines)[-ERROR_LINES:]
        if tail:
            message += "; last lines of output:\n" + "\n".join(tail)
        if len(message) > MAX_ERROR:
            message = message[:200] + "\n...\n" + message[-(MAX_ERROR - 205):]
        return message

    def expected_outputs(self, frame):
        """Return the files ``frame`` should write, from the job's data."""
        return []

    def outputs(self, frame):
        """Return the files ``frame`` wrote: as the output said, else as
        the job's data says they are named."""
        found = self.output_files.get(frame)
        if found:
            return list(found)
        return list(self.expected_outputs(frame))[:MAX_OUTPUTS]


def available():
    """Return the names of the installed job types."""
    return sorted({point.name for point in entry_points(group=GROUP)})


#: Where the built-in job types live.
BUILTIN_MODULE = "pyfarm.agent.jobtypes."


def choose(points):
    """Return the entry point to use among several of one name.

    A studio's package wins over the built-in job type; among several
    studio packages, the first by ``module:Class`` (a stable choice).
    """
    return sorted(points, key=lambda point: (
        point.value.startswith(BUILTIN_MODULE), point.value))[0]


def load(name):
    """Return the job type class registered as ``name``."""
    points = entry_points(group=GROUP, name=name)
    if not points:
        names = ", ".join(available()) or "none"
        raise JobTypeError(
            f"this agent has no job type {name!r} (installed: {names})")
    point = choose(points)
    try:
        cls = point.load()
    except Exception as error:  # any import error of a third-party module
        logger.exception("cannot load job type %r from %s", name, point.value)
        raise JobTypeError(
            f"job type {name!r} ({point.value}) failed to load: "
            f"{error}") from None
    if not (isinstance(cls, type) and issubclass(cls, JobType)):
        raise JobTypeError(f"{point.value} is not a JobType class")
    return cls


def installed():
    """Return ``[(name, class)]`` of every job type that loads.

    One that does not load is logged and left out.
    """
    classes = []
    for name in available():
        try:
            classes.append((name, load(name)))
        except JobTypeError as error:
            logger.error("leaving out job type %r: %s", name, error)
    return classes


def describe_installed():
    """Return the registration's ``jobtypes`` list."""
    described = []
    for name, cls in installed():
        try:
            described.append(cls.describe(name))
        except Exception:  # a third-party job type's bug
            logger.exception("cannot describe job type %r", name)
    return described


def find_software(configured=(), environ=None, os_name=None):
    """Return the agent's software inventory for the installed job types.

    ``{software: Discovery}``; see :func:`pyfarm.agent.software.discover`.
    """
    return software_module.discover_all(
        [cls for _, cls in installed()], configured, environ,
        str(os_name or OperatingSystem.current()))


def build(assignment, environ=None, installed=None, os_name=None,
          classes=None):
    """Return the job type instance that runs ``assignment``.

    ``classes``, a dict, keeps the classes loaded by name: looking the
    entry points up reads every installed package's metadata, too slow to
    do for every assignment of frames that last milliseconds. The agent
    keeps one for its lifetime (the job types it registered at start).
    """
    name = assignment["job"]["jobtype"]
    if classes is None:
        cls = load(name)
    else:
        cls = classes.get(name)
        if cls is None:
            cls = classes[name] = load(name)
    return cls(assignment, environ=environ, installed=installed,
               os_name=os_name)
