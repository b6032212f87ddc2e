"""
Path mapping: one file seen from Linux, Windows and macOS.

A studio mounts its file server at a different place on each operating
system: ``P:\\show`` on Windows, ``/mnt/show`` on Linux, ``/Volumes/show``
on macOS. A *path map* names that folder on each of them::

    {"linux": "/mnt/show", "windows": "P:\\\\show", "mac": "/Volumes/show"}

(any of the three may be None: that system has no such folder).
:func:`map_path` rewrites the paths in a string for ``target_os``, so that
``P:\\show\\010\\shot.ma`` submitted from Windows runs on Linux as
``/mnt/show/010/shot.ma``; :func:`map_data` does it for every string in a
job's ``data`` or ``environ``.

The rules:

- A path starts at the beginning of the string or after a space, a quote,
  ``=``, ``,``, ``;``, ``:`` (a list of paths; not the colon of a Windows
  drive), or an opening bracket; so ``--out=P:\\show\\a.exr`` and
  ``/a:/mnt/show/b`` are mapped, ``/home/mnt/show`` is not.
- It must start with a map's folder *as a whole*: ``/mnt/show`` matches
  ``/mnt/show`` and ``/mnt/show/x`` but not ``/mnt/showroom``.
- Windows folders match without regard to case and to the kind of slash
  (``p:/SHOW`` is ``P:\\show``); Linux and macOS folders match exactly.
- The longest matching folder wins, whatever the order of the maps.
- The matched folder is replaced by the target's, and the separators of
  the rest of the path are converted (``\\`` to ``/`` or back). The rest
  ends at the end of the string, at a quote, ``;``, ``:``, ``|``, ``<``,
  ``>``, a tab or line break, at `` -`` (an option after the path) or
  where the next mapped path starts; so a path may contain spaces.
- Strings already written for the target system are left alone, and so is
  everything on a system that is not ``linux``, ``windows`` or ``mac``.
"""

#: The operating systems a path map has a folder for.
SYSTEMS = ("linux", "windows", "mac")

#: Characters after which a path may start.
BOUNDARY = frozenset(" \t\r\n\"'=,;:([{<>|")

#: Characters that end a path.
TERMINATOR = frozenset("\"'\r\n\t;:|<>")

#: Characters that may follow a mapped folder (besides a separator).
AFTER_PREFIX = TERMINATOR | frozenset(" ,)]}")


def _field(item, system):
    """Return ``item``'s folder for ``system`` (dicts or objects)."""
    if isinstance(item, dict):
        value = item.get(system)
    else:
        value = getattr(item, system, None)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"a path map's {system!r} folder must be a string "
                        f"or None, got {value!r}")
    value = value.strip()
    return value or None


def _strip(prefix, system):
    """Return ``prefix`` without trailing separators (may be empty)."""
    if system == "windows":
        return prefix.replace("/", "\\").rstrip("\\")
    return prefix.rstrip("/")


def _convert(text, system):
    """Write the separators of ``text`` the way ``system`` does."""
    if system == "windows":
        return text.replace("/", "\\")
    return text.replace("\\", "/")


class PathMapper:
    """Maps paths for ``target_os`` with a list of path maps.

    Build one to map many strings with the same maps; :func:`map_path` and
    :func:`map_data` build one for each call.
    """

    def __init__(self, maps, target_os):
        self.target_os = str(target_os)
        self.rules = []
        if self.target_os not in SYSTEMS:
            return
        for index, item in enumerate(maps or ()):
            target = _field(item, self.target_os)
            if target is None:
                continue
            for system in SYSTEMS:
                if system == self.target_os:
                    continue
                source = _field(item, system)
                if source is None:
                    continue
                prefix = _strip(source, system)
                if system == "windows" and not prefix:
                    continue  # "\" alone is no folder
                self.rules.append((len(prefix), index, system, prefix,
                                   target))
        # Longest first; among equals, the map listed first.
        self.rules.sort(key=lambda rule: (-rule[0], rule[1]))

    def _starts_path(self, text, index):
        """Whether a path may start at ``text[index]``."""
        if index == 0:
            return True
        before = text[index - 1]
        if before not in BOUNDARY:
            return False
        if before == ":" and index >= 2 and text[index - 2].isalpha() and (
                index == 2 or text[index - 3] in BOUNDARY):
            return False  # right after a drive ("C:"), inside one path
        return True

    def _match(self, text, index):
        """Return ``(end, rule)`` of the longest folder at ``index``."""
        for rule in self.rules:
            _, _, system, prefix, _ = rule
            end = index + len(prefix)
            if end > len(text):
                continue
            if system == "windows":
                candidate = text[index:end].replace("/", "\\")
                if candidate.lower() != prefix.lower():
                    continue
                separators = "\\/"
            else:
                if text[index:end] != prefix:
                    continue
                separators = "/"
            if not prefix:  # the root "/": a path must follow
                if end < len(text) and text[end] == "/":
                    return end, rule
                continue
            if end == len(text) or text[end] in separators or \
                    text[end] in AFTER_PREFIX:
                return end, rule
        return None

    def _find(self, text):
        """Return ``[(start, end_of_prefix, rule)]`` of the mapped paths."""
        found = []
        index = 0
        while index < len(text):
            if self._starts_path(text, index):
                match = self._match(text, index)
                if match is not None:
                    end, rule = match
                    found.append((index, end, rule))
                    index = max(end, index + 1)
                    continue
            index += 1
        return found

    def _rest_end(self, text, start, limit):
        """Return where the path whose rest begins at ``start`` ends."""
        for index in range(start, limit):
            char = text[index]
            if char in TERMINATOR:
                return index
            if char == " " and text.startswith("-", index + 1):
                return index
        return limit

    def map(self, value):
        """Return ``value`` with its paths mapped (non-strings unchanged)."""
        if not isinstance(value, str) or not self.rules or not value:
            return value
        found = self._find(value)
        if not found:
            return value
        pieces = []
        position = 0
        for number, (start, end, rule) in enumerate(found):
            limit = found[number + 1][0] if number + 1 < len(found) \
                else len(value)
            rest_end = self._rest_end(value, end, limit)
            target = rule[4]
            rest = _convert(value[end:rest_end], self.target_os)
            if rest:
                mapped = _strip(target, self.target_os) + rest
            else:
                mapped = _convert(target, self.target_os)
            pieces.append(value[position:start])
            pieces.append(mapped)
            position = rest_end
        pieces.append(value[position:])
        return "".join(pieces)

    def map_data(self, obj):
        """Return ``obj`` with every string in it mapped.

        Dicts (their values, not their keys), lists and tuples are walked
        recursively; other values are returned as they are.
        """
        if isinstance(obj, str):
            return self.map(obj)
        if isinstance(obj, dict):
            return {key: self.map_data(value) for key, value in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.map_data(item) for item in obj]
        return obj


def map_path(value, maps, target_os):
    """Return the string ``value`` with its paths mapped for ``target_os``.

    ``maps`` is a list of ``{"linux", "windows", "mac"}`` dicts (or
    objects with those attributes); ``target_os`` is ``"linux"``,
    ``"windows"`` or ``"mac"`` (an :class:`~pyfarm.core.enums.
    OperatingSystem` works too). See the module documentation for the
    rules.
    """
    return PathMapper(maps, target_os).map(value)


def map_data(obj, maps, target_os):
    """Return ``obj`` (a job's data or environ) with every string mapped.

    Dicts (values, not keys), lists and tuples are walked recursively;
    numbers, booleans and None are returned as they are.
    """
    return PathMapper(maps, target_os).map_data(obj)

