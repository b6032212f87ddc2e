"""Processes: line splitting, exit status, killing a whole tree.

Real processes run on a real reactor inside a helper script
(``process_helper.py``), one fresh Python per scenario, since a reactor
runs once per process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from twisted.internet import task

from pyfarm.agent.process import (
    ExitStatus,
    LineSplitter,
    SpawnError,
    find_executable,
    kill_tree,
    spawn,
)
from pyfarm.core.enums import WINDOWS

HELPER = Path(__file__).with_name("process_helper.py")
posix_only = pytest.mark.skipif(WINDOWS, reason="uses sh")


def helper(*args, timeout=60, env=None):
    result = subprocess.run(
        [sys.executable, str(HELPER), *args], capture_output=True,
        text=True, timeout=timeout, check=False, env=env)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, result.stderr
    report = json.loads(lines[-1])
    assert "error" not in report, result.stderr
    return report


def gone(pid):
    """Whether ``pid`` is dead (a zombie waiting for init counts)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def split(*chunks):
    lines = []
    splitter = LineSplitter(lines.append, max_line=16)
    for chunk in chunks:
        splitter.feed(chunk)
    splitter.flush()
    return lines


def test_lines_end_with_newline_crlf_or_cr():
    assert split(b"a\nb\r\nc\rd") == ["a", "b", "c", "d"]


def test_crlf_split_across_chunks_is_one_line_end():
    assert split(b"a\r", b"\nb\n") == ["a", "b"]


def test_partial_lines_wait_for_their_end():
    assert split(b"hel", b"lo\nwor", b"ld") == ["hello", "world"]


def test_overlong_lines_come_in_pieces():
    assert split(b"x" * 40 + b"\n") == ["x" * 16, "x" * 16, "x" * 8]


def test_lines_are_decoded_with_replacement():
    assert split("é\n".encode(), b"\xff\n") == ["é", "\ufffd"]


def test_exit_status_describes_itself():
    assert ExitStatus(0).success
    assert ExitStatus(2).describe() == "exit code 2"
    assert ExitStatus(None, 9).describe() == "killed by signal 9"
    assert not ExitStatus(None, 9).success


def test_find_executable_names_the_missing_program():
    with pytest.raises(SpawnError, match="'no-such-renderer'.*PATH"):
        find_executable("no-such-renderer", {"PATH": "/nonexistent"})
    with pytest.raises(SpawnError, match="no such executable"):
        find_executable("/nonexistent/render", {})


def test_find_executable_takes_a_relative_path_from_the_cwd(tmp_path):
    program = tmp_path / "bin" / "render"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    assert find_executable("bin/render", {}, str(tmp_path)) == str(program)
    assert find_executable("render", {"PATH": str(program.parent)}) == \
        str(program)


def test_spawn_refuses_a_missing_directory():
    with pytest.raises(SpawnError, match="no such directory"):
        spawn(task.Clock(), [sys.executable], {}, "/nonexistent/dir",
              lambda data: None, lambda line: None)


def test_kill_tree_of_a_finished_process_does_nothing():
    fired = []
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    kill_tree(task.Clock(), process.pid, 1).addCallback(fired.append)
    assert fired == [[]]


@posix_only
def test_streams_stdout_and_stderr_and_reports_the_exit_code():
    report = helper("run", json.dumps(
        ["sh", "-c", "echo out; echo err >&2; printf last; exit 3"]))
    assert report["status"] == [3, None]
    assert sorted(report["lines"]) == ["err", "last", "out"]
    for piece in ("out\n", "err\n", "last"):
        assert piece in report["data"]


@posix_only
def test_a_child_left_holding_the_output_does_not_hold_the_task():
    report = helper("run", json.dumps(["sh", "-c", "sleep 30 & echo $!"]),
                    "0.3")
    orphan = psutil.Process(int(report["lines"][0]))
    try:
        assert report["status"] == [0, None]
    finally:
        if "sleep" in orphan.name():
            orphan.kill()


@posix_only
def test_kill_tree_terminates_the_process_and_its_children():
    report = helper("kill", "10", "sleep 60 & echo $!; wait")
    assert report["status"][1] == 15  # SIGTERM ended the shell
    assert report["sigkilled"] == []
    assert gone(report["pid"]) and gone(report["child"])


@posix_only
def test_kill_tree_uses_sigkill_after_the_grace_period():
    # Both ignore SIGTERM (an ignored signal stays ignored across exec).
    report = helper("kill", "0.5", "trap '' TERM; sleep 60 & echo $!; wait")
    assert report["status"][1] == 9
    assert report["sigkilled"] == sorted([report["pid"], report["child"]])
    assert gone(report["pid"]) and gone(report["child"])


@posix_only
def test_the_service_runs_a_real_command_end_to_end(tmp_path):
    report = helper("service", json.dumps(
        ["sh", "-c", 'echo "frames {start}-{end} of $SHOT"; '
                     'echo "token:$PYFARM_AGENT_TOKEN" >&2']), str(tmp_path),
        env={**os.environ, "PYFARM_AGENT_TOKEN": "s3cret"})
    updates = [args for name, args in report["calls"] if name == "update"]
    # A "running" report still waiting when the process ends is left
    # out: the final state implies it.
    assert [(u["task"], u["state"]) for u in updates
            if u["state"] != "running"] == [(11, "done"), (12, "done")]
    log = report["logs"]["a1"]
    assert "frames 3-4 of 010\n" in log
    assert "exit code 0" in log
    assert "token:\n" in log and "s3cret" not in log
    names = [name for name, _ in report["calls"]]
    last_log = max(i for i, name in enumerate(names) if name == "log")
    first_done = next(i for i, (name, args) in enumerate(report["calls"])
                      if name == "update" and args["state"] == "done")
    assert last_log < first_done


class FakeTreeProcess:
    """A psutil.Process stand-in that ignores SIGTERM."""

    def __init__(self, pid):
        self.pid = pid


def test_kill_tree_reads_the_process_table_once_a_second(monkeypatch):
    # Finding the children reads every process of the machine; doing it
    # every 0.1 s would hold the reactor on a busy node.
    scans, checks = [], []
    tree = [FakeTreeProcess(10), FakeTreeProcess(11)]

    def process_tree(pid):
        scans.append(clock.seconds())
        return tree

    def alive(process):
        checks.append(clock.seconds())
        return True

    monkeypatch.setattr("pyfarm.agent.process.process_tree", process_tree)
    monkeypatch.setattr("pyfarm.agent.process.alive", alive)
    monkeypatch.setattr("pyfarm.agent.process._signal",
                        lambda processes, how: None)
    clock = task.Clock()
    killed = []
    kill_tree(clock, 10, 10).addCallback(killed.append)
    clock.pump([0.1] * 101)
    assert killed == [[10, 11]]
    assert len(checks) >= 2 * 100  # both processes, every poll
    assert len(scans) <= 12  # the first read, once a second, the deadline
