"""
Configuration: defaults, then config files, then ``PYFARM_*`` variables.

Each layer overrides the one before it:

1. the defaults a program passes in;
2. the system file (``/etc/pyfarm/pyfarm.toml``, on Windows
   ``%PROGRAMDATA%\\pyfarm\\pyfarm.toml``);
3. the user's file (``$XDG_CONFIG_HOME/pyfarm/pyfarm.toml``, by default
   ``~/.config/pyfarm/pyfarm.toml``);
4. the file named by ``PYFARM_CONFIG`` (it must exist);
5. environment variables: key ``database_url`` is ``PYFARM_DATABASE_URL``;
6. explicit overrides (command-line options), where not ``None``.

Files are TOML. Keys are flat; a table's keys are joined to the table's
name with ``_``, so ``[agent] cpus = 4`` is the key ``agent_cpus``.

Typed getters raise :class:`ConfigError`, naming the key, the variable
and where the bad value came from.
"""

import math
import os
import tomllib
from pathlib import Path

from pyfarm.core.enums import WINDOWS

ENV_PREFIX = "PYFARM_"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class ConfigError(ValueError):
    """A configuration value that is missing or cannot be used."""


def env_name(key):
    """Return the environment variable for ``key``."""
    return ENV_PREFIX + key.upper()


def system_config_path(environ=None):
    """Return the path of the system-wide config file."""
    environ = os.environ if environ is None else environ
    if WINDOWS:
        base = environ.get("PROGRAMDATA", "C:\\ProgramData")
        return Path(base) / "pyfarm" / "pyfarm.toml"
    return Path("/etc/pyfarm/pyfarm.toml")


def user_config_path(environ=None):
    """Return the path of the user's config file."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "pyfarm" / "pyfarm.toml"


def flatten(table, prefix=""):
    """Flatten nested TOML tables into ``table_key`` keys."""
    flat = {}
    for key, value in table.items():
        name = f"{prefix}_{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def read_file(path):
    """Read one TOML config file into a flat dict."""
    try:
        with open(path, "rb") as stream:
            return flatten(tomllib.load(stream))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None


class Config:
    """Layered configuration; see the module documentation."""

    def __init__(self, defaults=None, files=None, environ=None,
                 overrides=None):
        self.environ = dict(os.environ if environ is None else environ)
        self._values = {}
        self._origin = {}
        self._merge(defaults or {}, "default")
        if files is None:
            files = self.default_files()
        for path in files:
            path = Path(path)
            if path.is_file():
                self._merge(read_file(path), str(path))
        for key in list(self._values) + self._env_only_keys():
            name = env_name(key)
            if name in self.environ:
                self._values[key] = self.environ[name]
                self._origin[key] = f"environment variable {name}"
        self._merge(
            {k: v for k, v in (overrides or {}).items() if v is not None},
            "command line")

    def default_files(self):
        """Return the files read when none are given."""
        files = [system_config_path(self.environ),
                 user_config_path(self.environ)]
        explicit = self.environ.get(ENV_PREFIX + "CONFIG")
        if explicit:
            if not Path(explicit).is_file():
                raise ConfigError(
                    f"PYFARM_CONFIG names {explicit}, which is not a file")
            files.append(Path(explicit))
        return files

    def _env_only_keys(self):
        return [
            name[len(ENV_PREFIX):].lower() for name in self.environ
            if name.startswith(ENV_PREFIX) and name != ENV_PREFIX + "CONFIG"]

    def _merge(self, values, origin):
        for key, value in values.items():
            self._values[key] = value
            self._origin[key] = origin

    def __contains__(self, key):
        return self._values.get(key) is not None

    def origin(self, key):
        """Say where the value of ``key`` came from."""
        return self._origin.get(key, "nowhere")

    def _fail(self, key, expected, value):
        raise ConfigError(
            f"setting {key!r} ({env_name(key)}) must be {expected}, got "
            f"{value!r} from {self.origin(key)}")

    def get(self, key, default=None):
        """Return the raw value of ``key``, or ``default``."""
        value = self._values.get(key)
        return default if value is None else value

    def require(self, key):
        """Return the value of ``key`` or raise naming how to set it."""
        value = self.get(key)
        if value is None or value == "":
            raise ConfigError(
                f"setting {key!r} is required: set {env_name(key)} or "
                f"{key!r} in a config file")
        return value

    def get_str(self, key, default=None):
        """Return ``key`` as a string."""
        value = self.get(key, default)
        return None if value is None else str(value)

    def get_int(self, key, default=None, minimum=None):
        """Return ``key`` as an integer, at least ``minimum`` if given."""
        value = self.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool):
            self._fail(key, "a whole number", value)
        try:
            number = int(str(value).strip())
        except ValueError:
            self._fail(key, "a whole number", value)
        if minimum is not None and number < minimum:
            self._fail(key, f"a whole number of at least {minimum}", value)
        return number

    def get_float(self, key, default=None, minimum=None):
        """Return ``key`` as a float, at least ``minimum`` if given."""
        value = self.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool):
            self._fail(key, "a number", value)
        try:
            number = float(str(value).strip())
        except ValueError:
            self._fail(key, "a number", value)
        if not math.isfinite(number):
            self._fail(key, "a finite number", value)
        if minimum is not None and number < minimum:
            self._fail(key, f"a number of at least {minimum}", value)
        return number

    def get_bool(self, key, default=None):
        """Return ``key`` as a boolean (true/false, yes/no, on/off, 1/0)."""
        value = self.get(key, default)
        if value is None or isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        self._fail(key, "true or false", value)

    def get_list(self, key, default=None):
        """Return ``key`` as a list of strings (a TOML list or ``a,b``)."""
        value = self.get(key, default)
        if value is None:
            return []
        if isinstance(value, (list, tuple)):
            return [str(item).strip() for item in value if str(item).strip()]
        if isinstance(value, str):
            return [part.strip() for part in value.split(",")
                    if part.strip()]
        self._fail(key, "a list or a comma separated string", value)

    def get_path(self, key, default=None):
        """Return ``key`` as an absolute :class:`~pathlib.Path`.

        An empty value (``PYFARM_DATA_DIR=``) counts as unset rather than
        as the current directory.
        """
        value = self.get(key)
        if value is None or not str(value).strip():
            value = default
        if value is None:
            return None
        return Path(os.path.expanduser(str(value))).absolute()
