"""Logging: the pyfarm logger, its level and its format."""

import io
import logging

import pytest

from pyfarm.core import logger as logger_module
from pyfarm.core.logger import configure, getLogger, level_from_env


def own_handlers(logger):
    """The handlers PyFarm installed (pytest adds capture handlers)."""
    return [h for h in logger.handlers if type(h) is logging.StreamHandler]


@pytest.fixture
def fresh_logging(monkeypatch):
    """Let a test configure logging from scratch, then put it back."""
    root = logging.getLogger("pyfarm")
    saved = (root.handlers[:], root.level, root.propagate)
    root.handlers = []
    monkeypatch.setattr(logger_module, "_configured", False)
    yield root
    root.handlers, root.level, root.propagate = saved


def test_names_are_under_pyfarm():
    assert getLogger("master.api").name == "pyfarm.master.api"
    assert getLogger("pyfarm.agent").name == "pyfarm.agent"
    assert getLogger("pyfarm").name == "pyfarm"
    assert getLogger("pyfarmer").name == "pyfarm.pyfarmer"


@pytest.mark.parametrize("value, level", [
    (None, logging.INFO), ("debug", logging.DEBUG),
    (" Warning ", logging.WARNING), ("ERROR", logging.ERROR),
    ("critical", logging.CRITICAL)])
def test_level_from_env(value, level):
    environ = {} if value is None else {"PYFARM_LOGLEVEL": value}
    assert level_from_env(environ) == level


def test_unknown_level_names_the_variable():
    with pytest.raises(ValueError, match="PYFARM_LOGLEVEL .* 'loud'"):
        level_from_env({"PYFARM_LOGLEVEL": "loud"})


def test_configure_installs_one_handler_with_the_format(fresh_logging):
    stream = io.StringIO()
    root = configure(logging.DEBUG, stream=stream)
    assert root is fresh_logging
    configure(logging.DEBUG, stream=io.StringIO())
    assert len(own_handlers(root)) == 1
    assert root.propagate is False
    getLogger("core.test").debug("hello %s", "farm")
    line = stream.getvalue()
    assert line.endswith("DEBUG   pyfarm.core.test - hello farm\n")
    assert line[:4].isdigit()


def test_configure_sets_the_level_each_time(fresh_logging):
    configure(logging.WARNING, stream=io.StringIO())
    assert fresh_logging.level == logging.WARNING
    configure(logging.ERROR)
    assert fresh_logging.level == logging.ERROR


def test_first_get_logger_configures_from_the_environment(
        fresh_logging, monkeypatch):
    monkeypatch.setenv("PYFARM_LOGLEVEL", "error")
    getLogger("core.test")
    assert fresh_logging.level == logging.ERROR
    assert len(own_handlers(fresh_logging)) == 1
    assert logger_module._configured is True
