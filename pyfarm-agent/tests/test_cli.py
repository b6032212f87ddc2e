"""The pyfarm-agent command: errors, status, and a real daemon."""

import json
import os
import socket
import subprocess
import sys

import psutil
import pytest

from pyfarm.agent.cli import main, running_pid
from pyfarm.core.enums import WINDOWS


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No PYFARM_* settings and no config files from this machine."""
    for name in list(os.environ):
        if name.startswith("PYFARM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def test_start_without_a_master_names_the_setting(capsys):
    assert main(["start", "--token", "t"]) == 1
    error = capsys.readouterr().err
    assert "'master_url'" in error and "--master" in error
    assert "PYFARM_MASTER_URL" in error


def test_start_without_a_token_names_the_setting(capsys):
    assert main(["start", "--master", "http://m:5000"]) == 1
    error = capsys.readouterr().err
    assert "'agent_token'" in error and "--token" in error
    assert "PYFARM_AGENT_TOKEN" in error


def test_start_with_a_bad_url_says_what_to_write(capsys):
    assert main(["start", "--master", "m:5000", "--token", "t"]) == 1
    assert "http://" in capsys.readouterr().err


def test_a_data_dir_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["start", "--master", "http://m", "--token", "t",
                 "--data-dir", str(tmp_path / "file")]) == 1
    assert "cannot use" in capsys.readouterr().err


def test_status_when_not_running(tmp_path, capsys):
    assert main(["status", "--data-dir", str(tmp_path)]) == 3
    out = capsys.readouterr().out
    assert "not running" in out and "id: none yet" in out


def test_status_shows_the_id_with_a_stale_pid_file(tmp_path, capsys):
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    (tmp_path / "agent.pid").write_text(f"{process.pid}\n")
    (tmp_path / "status.json").write_text(json.dumps(
        {"id": "abc", "master": "http://m:5000"}))
    assert main(["status", "--data-dir", str(tmp_path)]) == 3
    out = capsys.readouterr().out
    assert "id: abc" in out and "master: http://m:5000" in out


@pytest.fixture
def program():
    """Start a program with the given arguments; return its pid."""
    started = []

    def start(*args):
        process = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.read()", *args],
            stdin=subprocess.PIPE)
        started.append(process)
        return process.pid

    yield start
    for process in started:
        process.stdin.close()  # it reads to the end of its input and ends
        process.wait(timeout=30)


def test_a_pid_reused_by_the_master_is_not_the_agent(tmp_path, program):
    # The agent died and left its pid file; the master, on the same host,
    # got the pid: "stop" must not send it SIGTERM.
    (tmp_path / "agent.pid").write_text(f"{program('pyfarm-master')}\n")
    assert running_pid(tmp_path / "agent.pid") is None
    (tmp_path / "agent.pid").write_text("garbage")
    assert running_pid(tmp_path / "agent.pid") is None


@pytest.mark.parametrize("command", [("pyfarm-agent", "start"),
                                     ("-m", "pyfarm.agent.cli", "start")])
def test_a_running_agent_is_recognised(tmp_path, program, command):
    pid = program(*command)
    (tmp_path / "agent.pid").write_text(f"{pid}\n")
    assert running_pid(tmp_path / "agent.pid") == pid


def test_the_pid_file_is_removed_however_the_agent_was_started(
        tmp_path, monkeypatch):
    # A studio's own launcher script: no "pyfarm" in the command line.
    monkeypatch.setattr(psutil.Process, "cmdline",
                        lambda self: ["python", "/studio/bin/render-node"])
    seen = []
    monkeypatch.setattr(
        "pyfarm.agent.cli.run", lambda settings, on_started: seen.append(
            (tmp_path / "agent.pid").read_text()))
    assert main(["start", "--no-daemon", "--master", "http://m:5000",
                 "--token", "t", "--data-dir", str(tmp_path)]) == 0
    assert seen == [f"{os.getpid()}\n"]
    assert not (tmp_path / "agent.pid").exists()


def test_stop_when_the_agent_ends_meanwhile(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("pyfarm.agent.cli.running_pid", lambda path: 4242)

    def kill(pid, sig):
        raise ProcessLookupError(pid)

    monkeypatch.setattr("pyfarm.agent.cli.os.kill", kill)
    assert main(["stop", "--data-dir", str(tmp_path)]) == 0
    assert "not running" in capsys.readouterr().out


def test_stop_when_not_running(tmp_path, capsys):
    assert main(["stop", "--data-dir", str(tmp_path)]) == 0
    assert "not running" in capsys.readouterr().out


def agent_command(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "pyfarm.agent.cli", *args],
        capture_output=True, text=True, timeout=60, env=env, check=False)


@pytest.mark.skipif(WINDOWS, reason="daemons are POSIX")
def test_daemon_starts_reports_status_and_stops(tmp_path):
    with socket.socket() as probe:  # a master that is not there
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    data = tmp_path / "agent"
    env = dict(os.environ)
    started = agent_command("start", "--master", url, "--token", "t",
                            "--data-dir", str(data), env=env)
    assert started.returncode == 0, started.stderr
    pid = int((data / "agent.pid").read_text())
    try:
        assert f"started (pid {pid})" in started.stdout
        assert psutil.pid_exists(pid) and pid != os.getpid()

        again = agent_command("start", "--master", url, "--token", "t",
                              "--data-dir", str(data), env=env)
        assert again.returncode == 1
        assert "already runs" in again.stderr

        status = agent_command("status", "--data-dir", str(data), env=env)
        assert status.returncode == 0
        agent_id = (data / "agent_id").read_text().strip()
        assert f"running (pid {pid})" in status.stdout
        assert f"id: {agent_id}" in status.stdout
        assert f"master: {url}" in status.stdout

        stopped = agent_command("stop", "--data-dir", str(data), env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert not psutil.pid_exists(pid) or \
            psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert not (data / "agent.pid").exists()
        assert "starting" in (data / "agent.log").read_text()
    finally:  # never leave the daemon behind, even when an assert failed
        try:
            daemon = psutil.Process(pid)
            if "pyfarm.agent.cli" in " ".join(daemon.cmdline()):
                daemon.kill()
        except psutil.Error:
            pass
