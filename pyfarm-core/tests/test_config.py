"""Layered configuration: defaults, files, environment, command line."""

from pathlib import Path

import pytest

from pyfarm.core import config as config_module
from pyfarm.core.config import (
    Config,
    ConfigError,
    env_name,
    flatten,
    read_file,
    system_config_path,
    user_config_path,
)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def make(defaults=None, files=(), environ=None, overrides=None):
    return Config(defaults, files=list(files), environ=environ or {},
                  overrides=overrides)


def test_env_name():
    assert env_name("lost_timeout") == "PYFARM_LOST_TIMEOUT"


def test_flatten_joins_table_names():
    assert flatten({"a": 1, "agent": {"cpus": 4, "x": {"y": "z"}}}) == {
        "a": 1, "agent_cpus": 4, "agent_x_y": "z"}


def test_defaults_only():
    config = make({"port": 5000, "host": None})
    assert config.get("port") == 5000
    assert config.origin("port") == "default"
    assert "port" in config and "host" not in config
    assert config.get("host", "localhost") == "localhost"
    assert config.origin("missing") == "nowhere"


def test_layers_override_in_order(tmp_path):
    first = write(tmp_path / "a.toml", 'port = 1\nhost = "a"\nname = "a"\n')
    second = write(tmp_path / "b.toml", 'port = 2\nhost = "b"\n')
    config = make({"port": 0, "host": "d", "name": "d", "user": "d"},
                  files=[first, second, tmp_path / "missing.toml"],
                  environ={"PYFARM_HOST": "env", "PYFARM_USER": "env"},
                  overrides={"user": "cli", "name": None})
    assert config.get("port") == 2
    assert config.origin("port") == str(second)
    assert config.get("host") == "env"
    assert config.origin("host") == "environment variable PYFARM_HOST"
    assert config.get("name") == "a"
    assert config.get("user") == "cli"
    assert config.origin("user") == "command line"


def test_tables_in_files_become_prefixed_keys(tmp_path):
    path = write(tmp_path / "farm.toml", "[agent]\ncpus = 4\n")
    config = make(files=[path], environ={"PYFARM_AGENT_RAM": "512"})
    assert config.get_int("agent_cpus") == 4
    assert config.get_int("agent_ram") == 512


def test_environment_only_keys_are_seen_but_not_pyfarm_config(tmp_path):
    path = write(tmp_path / "c.toml", "")
    config = make(environ={"PYFARM_EXTRA": "x", "PYFARM_CONFIG": str(path),
                           "HOME": "/root"})
    assert config.get("extra") == "x"
    assert "config" not in config and "home" not in config


def test_pyfarm_config_names_a_file_read_last(tmp_path):
    path = write(tmp_path / "explicit.toml", "port = 7\n")
    config = Config({"port": 1}, environ={
        "PYFARM_CONFIG": str(path),
        "XDG_CONFIG_HOME": str(tmp_path / "none")})
    assert config.get("port") == 7
    assert config.origin("port") == str(path)


def test_pyfarm_config_must_exist(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="PYFARM_CONFIG names .*nope.toml"):
        Config({}, environ={"PYFARM_CONFIG": str(missing)})


def test_default_files(tmp_path, monkeypatch):
    monkeypatch.setattr(config_module, "WINDOWS", False)
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert Config({}, environ=environ).default_files() == [
        Path("/etc/pyfarm/pyfarm.toml"), tmp_path / "pyfarm" / "pyfarm.toml"]
    assert user_config_path(environ) == tmp_path / "pyfarm" / "pyfarm.toml"
    assert user_config_path({}) == (
        Path.home() / ".config" / "pyfarm" / "pyfarm.toml")


def test_system_config_path_on_windows(monkeypatch):
    monkeypatch.setattr(config_module, "WINDOWS", True)
    assert system_config_path({"PROGRAMDATA": "D:\\Data"}) == (
        Path("D:\\Data") / "pyfarm" / "pyfarm.toml")
    monkeypatch.setattr(config_module, "WINDOWS", False)
    assert system_config_path({}) == Path("/etc/pyfarm/pyfarm.toml")


def test_bad_toml_names_the_file(tmp_path):
    path = write(tmp_path / "bad.toml", "port = = 1\n")
    with pytest.raises(ConfigError, match="bad.toml is not valid TOML"):
        make(files=[path])


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        read_file(tmp_path)


def test_get_int():
    config = make({"a": 3, "b": " 12 ", "c": "twelve", "d": True,
                   "e": "0", "f": 2.5})
    assert config.get_int("a") == 3
    assert config.get_int("b") == 12
    assert config.get_int("missing") is None
    assert config.get_int("missing", 5) == 5
    for key in ("c", "d", "f"):
        with pytest.raises(ConfigError, match="must be a whole number"):
            config.get_int(key)
    with pytest.raises(ConfigError, match="at least 1"):
        config.get_int("e", minimum=1)


def test_errors_name_the_key_the_variable_and_the_origin():
    config = make({"lost_timeout": 60},
                  environ={"PYFARM_LOST_TIMEOUT": "soon"})
    with pytest.raises(ConfigError) as error:
        config.get_float("lost_timeout")
    message = str(error.value)
    assert "'lost_timeout'" in message
    assert "PYFARM_LOST_TIMEOUT" in message
    assert "'soon'" in message
    assert "from environment variable PYFARM_LOST_TIMEOUT" in message


def test_get_float():
    config = make({"a": "1.5", "b": 2, "c": "x", "d": False, "e": "0.01"})
    assert config.get_float("a") == 1.5
    assert config.get_float("b") == 2.0
    assert config.get_float("missing") is None
    for key in ("c", "d"):
        with pytest.raises(ConfigError, match="must be a number"):
            config.get_float(key)
    with pytest.raises(ConfigError, match="at least 0.1"):
        config.get_float("e", minimum=0.1)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_get_float_refuses_non_finite_numbers(value):
    config = make(environ={"PYFARM_TIMEOUT": value})
    with pytest.raises(ConfigError, match="a finite number"):
        config.get_float("timeout", minimum=1)


@pytest.mark.parametrize("value, expected", [
    ("1", True), ("true", True), ("Yes", True), (" on ", True),
    ("0", False), ("FALSE", False), ("no", False), ("off", False),
    (True, True), (False, False)])
def test_get_bool(value, expected):
    assert make({"flag": value}).get_bool("flag") is expected


def test_get_bool_refuses_other_words():
    with pytest.raises(ConfigError, match="true or false"):
        make({"flag": "maybe"}).get_bool("flag")
    assert make().get_bool("flag") is None
    assert make().get_bool("flag", True) is True


def test_get_list(tmp_path):
    path = write(tmp_path / "c.toml", 'tags = ["gpu", " linux ", ""]\n')
    config = make({"n": 5}, files=[path],
                  environ={"PYFARM_MORE": "a, b,,c "})
    assert config.get_list("tags") == ["gpu", "linux"]
    assert config.get_list("more") == ["a", "b", "c"]
    assert config.get_list("missing") == []
    with pytest.raises(ConfigError, match="a list or a comma"):
        config.get_list("n")


def test_get_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = make({"rel": "data", "home": "~/farm", "abs": "/srv/farm"})
    assert config.get_path("rel") == tmp_path / "data"
    assert config.get_path("home") == tmp_path / "home" / "farm"
    assert config.get_path("abs") == Path("/srv/farm")
    assert config.get_path("missing") is None
    assert config.get_path("missing", "x") == tmp_path / "x"


def test_get_path_treats_an_empty_value_as_unset():
    config = make(environ={"PYFARM_DATA_DIR": ""})
    assert config.get_path("data_dir") is None
    assert config.get_path("data_dir", "/srv") == Path("/srv")


def test_get_str_and_require():
    config = make({"a": 5, "empty": ""})
    assert config.get_str("a") == "5"
    assert config.get_str("missing") is None
    assert config.require("a") == 5
    for key in ("missing", "empty"):
        with pytest.raises(ConfigError) as error:
            config.require(key)
        assert env_name(key) in str(error.value)
        assert "required" in str(error.value)
