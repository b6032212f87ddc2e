"""
Which renderers this agent has: where they are and which versions.

Each job type that needs a program names it (``JobType.software``) and
says how to find it: executable names on the ``PATH``, the folders its
vendor installs into on each operating system, and how to tell the
version. :func:`discover` looks, in this order:

1. the executables configured for the agent (``agent_executables``:
   ``blender=/opt/blender-4.2/blender`` or, with the version given,
   ``maya:2024.2=/usr/autodesk/maya2024/bin/Render``);
2. the ``PATH``;
3. the vendor's usual install folders (``/opt/hfs20.0.547/bin/hython``,
   ``/Applications/Blender.app/...``, ``C:\\Program Files\\...``).

A version is the configured one, else what the program prints when asked
(``blender --version``; only for programs that answer quickly and need
no license), else the one in the install folder's name (``maya2024``,
``hfs20.0.547``, ``Nuke15.0v4`` -> ``15.0.4``).

The agent reports every version it found at registration, and a job type
runs the first one found, or, when the job requires a version range, the
newest inside it (:func:`choose`).
"""

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from string import Template

from pyfarm.core.logger import getLogger
from pyfarm.core.versions import in_range, version_key

logger = getLogger("agent.software")

#: Seconds a program may take to print its version.
VERSION_TIMEOUT = 20

#: Defaults of the variables the install folder patterns use.
PATTERN_DEFAULTS = {
    "ProgramFiles": "C:\\Program Files",
    "ProgramW6432": "C:\\Program Files",
    "HOME": os.path.expanduser("~"),
}

#: Variables of the agent's environment the programs asked never see.
SECRET_VARIABLES = frozenset({"PYFARM_AGENT_TOKEN"})

#: Where each origin comes in the order of discovery.
ORIGINS = ("config", "PATH", "install folder")


class SoftwareNotFound(Exception):
    """No usable installation; the message says where the agent looked."""


@dataclass(frozen=True)
class Installation:
    """A program found on this agent.

    ``origin`` is one of :data:`ORIGINS`; ``version`` is None when it
    could not be told.
    """

    software: str
    path: str
    version: str | None
    origin: str


@dataclass
class Discovery:
    """Everything found for one program, in the order of preference."""

    software: str
    found: list = field(default_factory=list)
    looked_in: list = field(default_factory=list)

    def versions(self):
        """Return the distinct known versions, in the order found."""
        return list(dict.fromkeys(
            item.version for item in self.found if item.version))


def is_executable(path):
    """Whether ``path`` is a file this user may run."""
    return os.path.isfile(path) and os.access(path, os.X_OK)


def pattern_paths(pattern, environ):
    """Return the files matching the glob template ``pattern``.

    ``${NAME}`` is replaced from ``environ`` (or :data:`PATTERN_DEFAULTS`);
    a pattern naming a variable that is set nowhere matches nothing.
    """
    values = dict(PATTERN_DEFAULTS)
    values.update({key: value for key, value in environ.items() if value})
    try:
        expanded = Template(pattern).substitute(values)
    except (KeyError, ValueError):
        return []
    return sorted(glob.glob(expanded))


def _real(path):
    return os.path.normcase(os.path.realpath(path))


def version_of(spec, path, run=subprocess.run, environ=None):
    """Return the version of ``spec``'s program at ``path``, or None.

    Asks the program (``spec.version_args``) when the job type allows it,
    then reads the install folder's name (``spec.version_from_path``).
    """
    args = getattr(spec, "version_args", None)
    if args:
        env = None if environ is None else {
            key: value for key, value in environ.items()
            if key not in SECRET_VARIABLES}
        try:
            result = run([path, *args], capture_output=True, text=True,
                         errors="replace", timeout=VERSION_TIMEOUT,
                         stdin=subprocess.DEVNULL, check=False, env=env)
        except (OSError, subprocess.SubprocessError) as error:
            logger.warning("cannot ask %s for its version: %s", path, error)
        else:
            version = spec.version_from_output(
                (result.stdout or "") + "\n" + (result.stderr or ""))
            if version:
                return version
            logger.warning("%s %s printed no version we understand",
                           path, " ".join(args))
    return spec.version_from_path(os.path.realpath(path))


def discover(spec, configured=(), environ=None, os_name="linux",
             run=subprocess.run):
    """Return the :class:`Discovery` of the program ``spec`` describes.

    ``spec`` is a job type class (``software``, ``executables``,
    ``install_patterns``, ``version_args``, ``version_from_output``,
    ``version_from_path``); ``configured`` the agent's
    ``(name, version or None, path)`` executables.
    """
    environ = os.environ if environ is None else environ
    name = spec.software
    discovery = Discovery(name)
    seen = set()

    def add(path, origin, version=None):
        key = _real(path)
        if key in seen:
            return
        seen.add(key)
        version = version or version_of(spec, path, run, environ)
        discovery.found.append(Installation(name, path, version, origin))

    mine = [(version, path) for software, version, path in configured
            if software == name]
    if mine:
        discovery.looked_in.append(
            "the agent_executables setting (" +
            ", ".join(path for _, path in mine) + ")")
    for version, path in mine:
        if is_executable(path):
            add(path, "config", version)
        else:
            logger.warning("agent_executables names %s for %s, which is "
                           "not an executable file", path, name)

    search = environ.get("PATH", os.defpath)
    names = spec.executables.get(os_name, ())
    if names:
        discovery.looked_in.append(f"PATH ({search}) for "
                                   f"{', '.join(names)}")
    for executable in names:
        found = shutil.which(executable, path=search)
        if found is not None:
            add(found, "PATH")

    patterns = spec.install_patterns.get(os_name, ())
    discovery.looked_in.extend(patterns)
    vendor = []
    for pattern in patterns:
        for path in pattern_paths(pattern, environ):
            if is_executable(path) and spec.accepts(path):
                vendor.append(path)
    # Among the install folders, the newest version first.
    start = len(discovery.found)
    for path in vendor:
        add(path, "install folder")
    discovery.found[start:] = sorted(
        discovery.found[start:], key=lambda item: _key(item.version),
        reverse=True)
    for item in discovery.found:
        logger.info("found %s %s at %s (%s)", name, item.version or
                    "(version unknown)", item.path, item.origin)
    return discovery


def _key(version):
    """Return a sort key of ``version``; unknown versions sort first."""
    try:
        return version_key(version) if version else ()
    except ValueError:
        return ()


def discover_all(specs, configured=(), environ=None, os_name="linux",
                 run=subprocess.run):
    """Return ``{software: Discovery}`` for the job type classes ``specs``.

    Classes without ``software`` need nothing; classes sharing a program
    share its discovery.
    """
    inventory = {}
    for spec in specs:
        name = getattr(spec, "software", None)
        if not name or name in inventory:
            continue
        try:
            inventory[name] = discover(spec, configured, environ, os_name,
                                       run)
        except Exception:  # a job type's bug must not stop the agent
            logger.exception("looking for %s failed", name)
    return inventory


def report(inventory, manual=()):
    """Return the registration's ``software`` list.

    ``manual`` are the ``(name, version)`` pairs of ``agent_software``;
    installations without a known version cannot be reported (the log
    says how to name their version).
    """
    reported = []
    for name, version in manual:
        reported.append({"software": name, "version": version})
    for name, discovery in sorted(inventory.items()):
        for item in discovery.found:
            if item.version is None:
                logger.warning(
                    "%s at %s: its version is unknown, so it is not "
                    "reported; name it in agent_executables as "
                    "%s:VERSION=%s", name, item.path, name, item.path)
                continue
            reported.append({"software": name, "version": item.version})
    unique = []
    for item in reported:
        if item not in unique:
            unique.append(item)
    return unique


def _fits(version, requirements):
    if version is None:
        return False
    try:
        return all(in_range(version, req.get("min_version"),
                            req.get("max_version"))
                   for req in requirements)
    except ValueError:
        return False


def describe_range(requirement):
    """Say ``blender 4.0 to 4.2`` for a requirement."""
    name = requirement.get("software")
    low, high = requirement.get("min_version"), requirement.get(
        "max_version")
    if low and high:
        return f"{name} {low} to {high}"
    if low:
        return f"{name} {low} or newer"
    if high:
        return f"{name} up to {high}"
    return f"{name} (any version)"


def choose(discovery, requirements=()):
    """Return the :class:`Installation` to run.

    Without a requirement naming this program, the first one found;
    otherwise the newest whose version fits every such requirement.
    Raises :class:`SoftwareNotFound` saying where the agent looked or
    which versions it has.
    """
    name = discovery.software
    if not discovery.found:
        places = "; ".join(discovery.looked_in) or "nowhere"
        raise SoftwareNotFound(
            f"{name} not found on this agent (looked in: {places})")
    mine = [req for req in requirements or ()
            if isinstance(req, dict) and req.get("software") == name]
    if not mine:
        return discovery.found[0]
    fitting = [item for item in discovery.found
               if _fits(item.version, mine)]
    if not fitting:
        have = ", ".join(f"{item.version or 'unknown version'} at "
                         f"{item.path}" for item in discovery.found)
        wanted = " and ".join(describe_range(req) for req in mine)
        raise SoftwareNotFound(
            f"this agent has no {name} version the job accepts "
            f"({wanted}); it has {have}")
    best = fitting[0]
    for item in fitting[1:]:
        if _key(item.version) > _key(best.version):
            best = item
    return best


def version_in_name(pattern, path):
    """Return the version ``pattern`` finds in a component of ``path``.

    Components are tried from the file towards the root; ``pattern`` is a
    regex whose groups joined with dots make the version (so
    ``Nuke(\\d+)\\.(\\d+)v(\\d+)`` turns ``Nuke15.0v4`` into ``15.0.4``).
    """
    parts = re.split(r"[\\/]+", path)
    for part in reversed(parts):
        match = re.search(pattern, part)
        if match:
            groups = [group for group in match.groups() if group]
            return ".".join(groups) if groups else match.group(0)
    return None
