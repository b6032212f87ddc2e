"""Agent settings: config files, PYFARM_* variables, command-line options."""

from pathlib import Path

import pytest

from pyfarm.agent.config import load_settings
from pyfarm.core.config import ConfigError

REQUIRED = {"PYFARM_MASTER_URL": "http://master:5000/",
            "PYFARM_AGENT_TOKEN": "abc"}


def load(environ=None, overrides=None, files=(), require=True):
    return load_settings(overrides, environ=environ or {}, files=list(files),
                         require=require)


def test_reads_the_environment():
    settings = load(dict(REQUIRED, PYFARM_AGENT_CPUS="8",
                         PYFARM_AGENT_RAM="16000",
                         PYFARM_AGENT_TAGS="gpu, fast",
                         PYFARM_AGENT_SOFTWARE="blender=4.0.2,maya=2024",
                         PYFARM_AGENT_DATA_DIR="/srv/agent"))
    assert settings.master_url == "http://master:5000"
    assert settings.token == "abc"
    assert (settings.cpus, settings.ram) == (8, 16000)
    assert settings.tags == ("gpu", "fast")
    assert settings.software == (("blender", "4.0.2"), ("maya", "2024"))
    assert settings.data_dir == Path("/srv/agent")
    assert settings.pid_file == Path("/srv/agent/agent.pid")
    assert settings.log_file == Path("/srv/agent/agent.log")
    assert settings.kill_grace == 10


def test_options_override_the_environment():
    settings = load(REQUIRED, {"master_url": "https://other",
                               "agent_cpus": 2, "agent_tags": "a,b",
                               "agent_token": None})
    assert settings.master_url == "https://other"
    assert settings.cpus == 2
    assert settings.tags == ("a", "b")
    assert settings.token == "abc"


def test_reads_a_config_file(tmp_path):
    path = tmp_path / "pyfarm.toml"
    path.write_text('master_url = "http://m:5000"\n[agent]\ntoken = "t"\n'
                    'cpus = 3\ntags = ["x"]\n')
    settings = load(files=[path])
    assert (settings.master_url, settings.token, settings.cpus,
            settings.tags) == ("http://m:5000", "t", 3, ("x",))


def test_default_data_dir_follows_xdg():
    settings = load(dict(REQUIRED, XDG_DATA_HOME="/data"))
    assert settings.data_dir == Path("/data/pyfarm/agent")


@pytest.mark.parametrize("missing, names", [
    ("PYFARM_MASTER_URL", ["'master_url'", "PYFARM_MASTER_URL", "--master"]),
    ("PYFARM_AGENT_TOKEN", ["'agent_token'", "PYFARM_AGENT_TOKEN",
                            "--token"]),
])
def test_missing_master_or_token_names_the_setting(missing, names):
    environ = {k: v for k, v in REQUIRED.items() if k != missing}
    with pytest.raises(ConfigError) as raised:
        load(environ)
    for name in names:
        assert name in str(raised.value)


def test_not_required_for_stop_and_status():
    settings = load({}, require=False)
    assert settings.master_url is None and settings.token is None


@pytest.mark.parametrize("variable, value, words", [
    ("PYFARM_MASTER_URL", "master:5000", ["master_url", "http://"]),
    ("PYFARM_AGENT_CPUS", "many", ["agent_cpus", "whole number"]),
    ("PYFARM_AGENT_CPUS", "0", ["agent_cpus", "at least 1"]),
    ("PYFARM_AGENT_SOFTWARE", "blender", ["agent_software", "name=version"]),
    ("PYFARM_AGENT_EXECUTABLES", "/opt/blender/blender",
     ["agent_executables", "name=path"]),
    ("PYFARM_AGENT_EXECUTABLES", "maya:2024=", ["agent_executables"]),
])
def test_bad_values_name_the_setting(variable, value, words):
    with pytest.raises(ConfigError) as raised:
        load(dict(REQUIRED, **{variable: value}))
    for word in words:
        assert word in str(raised.value)


def test_executables_with_and_without_a_version(tmp_path):
    settings = load(dict(REQUIRED, PYFARM_AGENT_EXECUTABLES=(
        "blender=/opt/blender-4.2/blender, maya:2024.2=/usr/autodesk/"
        "maya2024/bin/Render,blender=~/b/blender")))
    assert settings.executables == (
        ("blender", None, "/opt/blender-4.2/blender"),
        ("maya", "2024.2", "/usr/autodesk/maya2024/bin/Render"),
        ("blender", None, str(Path("~/b/blender").expanduser())))
    path = tmp_path / "pyfarm.toml"
    path.write_text('[agent]\nexecutables = ["nuke:15.0.4=C:\\\\Nuke'
                    '15.0v4\\\\Nuke15.0.exe"]\n')
    assert load(REQUIRED, files=[path]).executables == (
        ("nuke", "15.0.4", "C:\\Nuke15.0v4\\Nuke15.0.exe"),)
    assert load(REQUIRED).executables == ()
