"""
The ``command`` job type: run any program with the frame range filled in.

``data`` is ``{"argv": ["blender", "-b", "shot.blend", "-s", "{start}",
"-e", "{end}", "-a"]}``, optionally with ``"cwd"``. In every argument
``{start}``, ``{end}``, ``{by}`` and ``{frame}`` (the same as ``{start}``)
are replaced by the assignment's frames; other braces are left alone.
Exit code 0 means success.
"""

from pyfarm.agent.jobtypes import JobType, JobTypeError, schema, string


class CommandJobType(JobType):
    """Run any program once for the assignment's frames."""

    name = "command"
    parameters = schema({
        "argv": {
            "type": "array", "minItems": 1,
            "items": {"type": "string"},
            "description": "The program and its arguments; {start}, {end}, "
                           "{by} and {frame} are replaced by the "
                           "assignment's frames.",
        },
        "cwd": string("The folder to run in. Absent: the agent's."),
    }, required=["argv"])

    def fields(self):
        """Return the placeholders and what replaces them."""
        return {"start": self.start, "end": self.end, "by": self.by,
                "frame": self.start}

    def substitute(self, text):
        """Replace the ``{start}``-style placeholders in ``text``."""
        for key, value in self.fields().items():
            text = text.replace("{" + key + "}", str(value))
        return text

    def argv(self):
        """Return ``data["argv"]`` with the placeholders replaced."""
        argv = self.data.get("argv") if isinstance(self.data, dict) else None
        if not isinstance(argv, list) or not argv or not all(
                isinstance(arg, str) for arg in argv):
            raise JobTypeError(
                f"job {self.job.get('id')}: data.argv must be a non-empty "
                f"list of strings, got {argv!r}")
        return [self.substitute(arg) for arg in argv]
