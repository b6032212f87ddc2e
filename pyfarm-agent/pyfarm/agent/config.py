"""
The agent's settings, read once from :class:`pyfarm.core.config.Config`.

Every setting is a key of the config files and a ``PYFARM_*`` variable;
command-line options override both:

=================  =======================  ===============  =============
key                variable                 option           default
=================  =======================  ===============  =============
master_url         PYFARM_MASTER_URL        ``--master``     (required)
agent_token        PYFARM_AGENT_TOKEN       ``--token``      (required)
agent_cpus         PYFARM_AGENT_CPUS        ``--cpus``       all CPUs
agent_ram          PYFARM_AGENT_RAM         ``--ram``        all RAM (MB)
agent_tags         PYFARM_AGENT_TAGS        ``--tags a,b``   none
agent_software     PYFARM_AGENT_SOFTWARE                     none
agent_executables  PYFARM_AGENT_EXECUTABLES                  none
agent_data_dir     PYFARM_AGENT_DATA_DIR    ``--data-dir``   see below
agent_kill_grace   PYFARM_AGENT_KILL_GRACE                   10 (seconds)
agent_prefetch     PYFARM_AGENT_PREFETCH                     1 (seconds)
=================  =======================  ===============  =============

``agent_software`` lists what the node can run as ``name=version``
(``blender=4.0.2,maya=2024``), on top of what the agent finds itself.
``agent_executables`` names programs the job types should use, looked at
before the ``PATH`` and the vendors' install folders, as ``name=path``
or, to give the version instead of letting the agent find it,
``name:version=path`` (``blender=/opt/blender-4.2/blender,
maya:2024.2=/usr/autodesk/maya2024/bin/Render``); a name may appear more
than once. The data directory defaults to ``$XDG_DATA_HOME/pyfarm/agent``
(``~/.local/share/pyfarm/agent``). ``agent_prefetch``: frames of a job
that end within that many seconds are prefetched (the agent queues a few
more assignments of the job than it runs at once, within the master's
``prefetch_limit``); 0 never prefetches.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from pyfarm.core.config import Config, ConfigError, env_name

DEFAULTS = {
    "master_url": None,
    "agent_token": None,
    "agent_cpus": None,
    "agent_ram": None,
    "agent_tags": None,
    "agent_software": None,
    "agent_executables": None,
    "agent_data_dir": None,
    "agent_kill_grace": 10,
    "agent_prefetch": 1.0,
}

#: The command-line option that sets a key, for error messages.
OPTIONS = {
    "master_url": "--master",
    "agent_token": "--token",
    "agent_cpus": "--cpus",
    "agent_ram": "--ram",
    "agent_tags": "--tags",
    "agent_data_dir": "--data-dir",
}


def default_data_dir(environ=None):
    """Return the default data directory of the agent."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "pyfarm" / "agent"


@dataclass(frozen=True)
class AgentSettings:
    """Typed agent settings; build with :func:`load_settings`."""

    master_url: str | None
    token: str | None
    cpus: int | None
    ram: int | None
    tags: tuple = ()
    software: tuple = ()
    executables: tuple = ()
    data_dir: Path = Path(".")
    kill_grace: float = 10.0
    prefetch: float = 1.0

    @property
    def pid_file(self):
        """The file holding the pid of the running agent."""
        return self.data_dir / "agent.pid"

    @property
    def log_file(self):
        """The agent's log file when it runs as a daemon."""
        return self.data_dir / "agent.log"


def _required(config, key):
    value = config.get_str(key)
    if value is None or not value.strip():
        option = OPTIONS.get(key)
        how = f"pass {option}, " if option else ""
        raise ConfigError(
            f"setting {key!r} is required: {how}set {env_name(key)} or "
            f"{key!r} in a config file")
    return value.strip()


def parse_master_url(value):
    """Check the master's URL and return it without a trailing ``/``."""
    if not value.startswith(("http://", "https://")) or \
            len(value.split("://", 1)[1].strip("/")) == 0:
        raise ConfigError(
            f"setting 'master_url' ({env_name('master_url')}) must be an "
            f"http:// or https:// URL such as http://master:5000, got "
            f"{value!r}")
    return value.rstrip("/")


def parse_software(items):
    """Turn ``["blender=4.0.2"]`` into ``(("blender", "4.0.2"),)``."""
    software = []
    for item in items:
        name, sep, version = item.partition("=")
        if not sep or not name.strip() or not version.strip():
            raise ConfigError(
                f"setting 'agent_software' ({env_name('agent_software')}) "
                f"takes name=version items such as blender=4.0.2, got "
                f"{item!r}")
        software.append((name.strip(), version.strip()))
    return tuple(software)


def parse_executables(items):
    """Turn ``["maya:2024=/usr/.../Render"]`` into ``(("maya", "2024",
    "/usr/.../Render"),)``; the version is None when not given."""
    executables = []
    for item in items:
        name, sep, path = item.partition("=")
        name, _, version = name.partition(":")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(
                f"setting 'agent_executables' "
                f"({env_name('agent_executables')}) takes name=path or "
                f"name:version=path items such as "
                f"blender=/opt/blender-4.2/blender, got {item!r}")
        executables.append((name.strip(), version.strip() or None,
                            os.path.expanduser(path.strip())))
    return tuple(executables)


def load_settings(overrides=None, environ=None, files=None, require=True):
    """Read :class:`AgentSettings` from defaults, files, env, ``overrides``.

    ``overrides`` uses the config keys (``{"master_url": ...}``); ``None``
    values are ignored. With ``require`` the master URL and the token must
    be set. Raises :class:`~pyfarm.core.config.ConfigError` naming the
    setting.
    """
    config = Config(DEFAULTS, files=files, environ=environ,
                    overrides=overrides)
    if require:
        master_url = parse_master_url(_required(config, "master_url"))
        token = _required(config, "agent_token")
    else:
        master_url = config.get_str("master_url")
        master_url = parse_master_url(master_url) if master_url else None
        token = config.get_str("agent_token")
    data_dir = config.get_path("agent_data_dir") or default_data_dir(
        config.environ)
    return AgentSettings(
        master_url=master_url,
        token=token,
        cpus=config.get_int("agent_cpus", minimum=1),
        ram=config.get_int("agent_ram", minimum=1),
        tags=tuple(config.get_list("agent_tags")),
        software=parse_software(config.get_list("agent_software")),
        executables=parse_executables(config.get_list("agent_executables")),
        data_dir=data_dir,
        kill_grace=config.get_float("agent_kill_grace", minimum=0),
        prefetch=config.get_float("agent_prefetch", minimum=0),
    )
