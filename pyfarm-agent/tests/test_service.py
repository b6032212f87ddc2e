"""The agent's loop, driven by task.Clock, a fake master and fake processes.

Fixtures (``make_service``, ``master``, ``spawner``, ``clock``,
``make_assignment``) come from conftest.py. With the fake randomness
(0.5) and the default policy, retries wait 0.75, 1.5, 3, 6 ... seconds.
"""

import dataclasses
import json
import uuid

from pyfarm.agent.jobtypes import FrameDone, Progress
from pyfarm.agent.jobtypes.command import CommandJobType
from pyfarm.agent.master import Conflict, NotFound
from pyfarm.agent.process import SpawnError


def updates(master):
    """Return the task updates the master received, as tuples."""
    return [(u["task"], u["state"]) for u in master.of("update")]


def started(make_service, clock, master, assignments, **options):
    """Start a service whose first sync brings ``assignments``."""
    master.sync_answers.insert(0, {"assignments": assignments})
    service = make_service(**options)
    service.startService()
    clock.advance(0)
    return service


class FrameJobType(CommandJobType):
    """Reports "done N" and "progress X" lines; "crash" is a bug."""

    def parse_line(self, line):
        word, _, value = line.partition(" ")
        if word == "crash":
            raise RuntimeError("a bug in the parser")
        if word == "done":
            return [FrameDone(int(value))]
        if word == "progress":
            return [Progress(float(value))]
        return []


def frame_jobtype(assignment, environ):
    return FrameJobType(assignment, environ=environ)


# -- registration ---------------------------------------------------------


def test_registers_with_what_the_machine_is(make_service, master, settings):
    service = make_service()
    service.startService()
    assert master.of("register") == [{
        "id": service.agent_id, "hostname": "node1", "os": "linux",
        "os_version": "Test 1", "cpus": 4, "ram": 8192, "free_ram": 6000,
        "gpus": [{"name": "GPU", "ram": 8192}],
        "disks": [{"path": "/", "total": 1000, "free": 500}],
        "tags": ["fast"],
        "software": [{"software": "blender", "version": "4.0.2"}],
        "version": "0.1.0"}]
    assert str(uuid.UUID(service.agent_id)) == service.agent_id
    assert (settings.data_dir / "agent_id").read_text().strip() == \
        service.agent_id


def test_offers_the_cpus_and_ram_it_is_told(make_service, master, settings):
    service = make_service(agent_settings=dataclasses.replace(
        settings, cpus=2, ram=1024))
    service.startService()
    [info] = master.of("register")
    assert (info["cpus"], info["ram"]) == (2, 1024)


def test_keeps_its_id_across_restarts(make_service, master):
    first = make_service()
    first.startService()
    first.stopService()
    second = make_service()
    second.startService()
    ids = [info["id"] for info in master.of("register")]
    assert ids == [first.agent_id, first.agent_id]


def test_register_retries_with_backoff_until_the_master_answers(
        make_service, master, clock):
    master.down = True
    service = make_service()
    service.startService()
    assert master.names() == ["register"]
    clock.advance(0.74)
    assert master.names() == ["register"]
    clock.advance(0.01)  # 1 s * (0.5 + 0.5 * 0.5)
    assert master.names() == ["register"] * 2
    clock.advance(1.5)
    assert master.names() == ["register"] * 3
    master.down = False
    clock.advance(2.99)
    assert not service.registered
    clock.advance(0.01)
    assert service.registered
    clock.advance(0)
    assert master.names() == ["register"] * 4 + ["sync"]


def test_register_backoff_is_capped(make_service, master, clock):
    master.down = True
    make_service().startService()
    clock.pump([60] * 20)
    count = master.names().count("register")
    clock.advance(45)  # 60 s cap * 0.75
    assert master.names().count("register") == count + 1


# -- sync -----------------------------------------------------------------


def test_syncs_at_the_interval_the_master_gives(make_service, master,
                                                clock):
    master.register_answer = {"sync_interval": 2, "state": "online"}
    master.sync_answers = [{"sync_interval": 2}, {"sync_interval": 10}]
    make_service().startService()
    clock.advance(0)
    assert master.names().count("sync") == 1
    clock.advance(2)
    assert master.names().count("sync") == 2
    clock.advance(9.9)
    assert master.names().count("sync") == 2
    clock.advance(0.1)
    assert master.names().count("sync") == 3
    [first, *_] = master.of("sync")
    assert first["free_ram"] == 6000 and first["running"] == []


def test_sync_retries_with_backoff_while_the_master_is_away(
        make_service, master, clock):
    make_service().startService()
    clock.advance(0)
    master.down = True
    clock.advance(5)
    assert master.names().count("sync") == 2
    clock.advance(5)  # max(interval, backoff)
    assert master.names().count("sync") == 3
    master.down = False
    clock.advance(5)
    assert master.names().count("sync") == 4


def test_reregisters_when_the_master_forgot_the_agent(
        make_service, master, clock, spawner, make_assignment):
    master.sync_answers.append(
        {"assignments": [make_assignment(frames=(1, 2))]})
    master.sync_answers.append(NotFound("no agent", 404))
    service = make_service()
    service.startService()
    clock.advance(0)
    [process] = spawner.processes
    clock.advance(5)
    assert master.names().count("register") == 2
    assert process.kills == [7.0]
    clock.advance(0)
    assert master.of("sync")[-1]["running"] == []
    assert updates(master) == [(101, "running"), (102, "running")]
    assert service.registered


# -- running assignments ----------------------------------------------------


def test_runs_an_assignment_and_reports_done(make_service, master, clock,
                                             spawner, make_assignment):
    started(make_service, clock, master, [make_assignment(frames=(1, 2))])
    [process] = spawner.processes
    assert process.argv == ["render", "-s", "1", "-e", "2"]
    assert process.environ["SHOT"] == "010"
    assert process.environ["PATH"] == "/usr/bin:/bin"
    assert process.environ["PYFARM_FRAME_START"] == "1"
    assert "PYFARM_AGENT_TOKEN" not in process.environ
    assert updates(master) == [(101, "running"), (102, "running")]

    clock.advance(5)
    assert master.of("sync")[-1]["running"] == [(101, 1), (102, 1)]
    assert len(master.of("log")) == 1  # the header, after a second
    process.output(b"rendering\nsaved\n")
    clock.advance(0.9)
    assert len(master.of("log")) == 1
    clock.advance(0.1)
    assert master.of("log")[-1] == {
        "assignment": "a1", "offset": 74, "data": "rendering\nsaved\n"}
    process.exit(0)
    assert updates(master)[2:] == [(101, "done"), (102, "done")]
    names = master.names()
    assert max(i for i, n in enumerate(names) if n == "log") < \
        names.index("update", 2 + names.index("update"))
    assert master.log_text("a1") == (
        "[pyfarm-agent] node1: assignment a1 (job 7, frames 1-2): "
        "render -s 1 -e 2\nrendering\nsaved\n"
        "[pyfarm-agent] exit code 0 after 6.0 s\n")
    syncs = master.names().count("sync")
    clock.advance(0)  # syncs right away once the frames are acknowledged
    assert master.names().count("sync") == syncs + 1
    assert master.of("sync")[-1]["running"] == []


def test_reports_failed_with_exit_code_and_last_lines(
        make_service, master, clock, spawner, make_assignment):
    started(make_service, clock, master, [make_assignment()])
    [process] = spawner.processes
    process.output(b"line 1\nError: no license\n")
    process.exit(3)
    [update] = [u for u in master.of("update") if u["state"] == "failed"]
    assert update == {
        "task": 101, "attempt": 1, "state": "failed",
        "error": "exit code 3; last lines of output:\nline 1\n"
                 "Error: no license"}


def test_reports_frames_as_the_job_type_sees_them_end(
        make_service, master, clock, spawner, make_assignment):
    started(make_service, clock, master, [make_assignment(frames=(1, 2))],
            build_jobtype=frame_jobtype)
    [process] = spawner.processes
    process.output(b"frame 1\ndone 1\n")
    assert updates(master)[2:] == [(101, "done")]
    assert "done 1\n" in master.log_text("a1")  # the log went first
    clock.advance(5)
    assert master.of("sync")[-1]["running"] == [(102, 1)]
    process.exit(0)
    assert updates(master)[2:] == [(101, "done"), (102, "done")]


def test_a_parser_bug_does_not_break_the_run(make_service, master, clock,
                                            spawner, make_assignment):
    started(make_service, clock, master, [make_assignment(frames=(1, 2))],
            build_jobtype=frame_jobtype)
    [process] = spawner.processes
    process.output(b"crash\nprogress nonsense\ndone 1\n")
    process.exit(0)
    assert updates(master)[2:] == [(101, "done"), (102, "done")]


def test_a_cancel_for_a_frame_already_reported_done_is_ignored(
        make_service, master, clock, spawner, make_assignment):
    # The done report crossed a sync that still listed the frame.
    master.sync_answers.append({"cancel": [{"task": 101, "attempt": 1}]})
    started(make_service, clock, master, [make_assignment(frames=(1, 2))],
            build_jobtype=frame_jobtype)
    [process] = spawner.processes
    process.output(b"done 1\n")
    clock.advance(5)
    assert process.kills == []
    process.exit(0)
    assert updates(master)[2:] == [(101, "done"), (102, "done")]


def test_nul_characters_never_reach_the_error(make_service, master, clock,
                                              spawner, make_assignment):
    started(make_service, clock, master, [make_assignment()])
    spawner.processes[0].output(b"bad\x00byte\n")
    spawner.processes[0].exit(1)
    [failed] = [u for u in master.of("update") if u["state"] == "failed"]
    assert "\x00" not in failed["error"] and "bad\ufffdbyte" in failed["error"]


def test_frames_done_before_a_failure_stay_done(
        make_service, master, clock, spawner, make_assignment):
    started(make_service, clock, master, [make_assignment(frames=(1, 2))],
            build_jobtype=frame_jobtype)
    [process] = spawner.processes
    process.output(b"done 1\n")
    process.exit(1)
    assert updates(master)[2:] == [(101, "done"), (102, "failed")]


def test_progress_is_reported_at_most_every_five_seconds(
        make_service, master, clock, spawner, make_assignment):
    started(make_service, clock, master, [make_assignment()],
            build_jobtype=frame_jobtype)
    [process] = spawner.processes
    process.output(b"progress 0.5\nprogress 0.6\n")
    clock.advance(5)
    process.output(b"progress 0.7\nprogress 2\n")
    progress = [u.get("progress") for u in master.of("update")]
    assert progress == [None, 0.5, 0.7]


def test_unknown_job_type_fails_the_tasks(make_service, master, clock,
                                          spawner, make_assignment):
    started(make_service, clock, master,
            [make_assignment(jobtype="nope")])
    assert spawner.processes == []
    [update] = master.of("update")
    assert update["state"] == "failed"
    assert "no job type 'nope'" in update["error"]
    assert "cannot start" in master.log_text("a1")


def test_a_program_that_cannot_start_fails_the_tasks(
        make_service, master, clock, spawner, make_assignment):
    spawner.error = SpawnError("cannot run 'render': not found on PATH")
    started(make_service, clock, master, [make_assignment()])
    assert master.of("update") == [{
        "task": 101, "attempt": 1, "state": "failed",
        "error": "cannot run 'render': not found on PATH"}]


def test_runs_only_what_its_cpus_allow(make_service, master, clock, spawner,
                                       make_assignment):
    service = started(make_service, clock, master, [
        make_assignment("a1", frames=(1,), first_task=101, cpus=3),
        make_assignment("a2", frames=(2,), first_task=102, cpus=3)])
    assert len(spawner.processes) == 1
    assert service.held() == {(101, 1), (102, 1)}
    spawner.processes[0].exit(0)
    assert len(spawner.processes) == 2
    assert spawner.processes[1].argv == ["render", "-s", "2", "-e", "2"]


def test_runs_assignments_side_by_side_when_they_fit(
        make_service, master, clock, spawner, make_assignment):
    started(make_service, clock, master, [
        make_assignment("a1", frames=(1,), first_task=101, cpus=2),
        make_assignment("a2", frames=(2,), first_task=102, cpus=2)])
    assert len(spawner.processes) == 2


def test_an_assignment_sent_twice_runs_once(make_service, master, clock,
                                            spawner, make_assignment):
    master.sync_answers.append({"assignments": [make_assignment()]})
    started(make_service, clock, master, [make_assignment()])
    clock.advance(5)
    assert len(master.of("sync")) == 2
    assert len(spawner.processes) == 1


# -- fencing: 409, 404, cancel ------------------------------------------------


def test_409_on_an_update_kills_the_process_and_drops_the_task(
        make_service, master, clock, spawner, make_assignment):
    master.update_errors[(101, 1)] = Conflict("attempt is stale", 409)
    service = started(make_service, clock, master,
                      [make_assignment(frames=(1, 2))])
    [process] = spawner.processes
    assert process.kills == [7.0]
    assert updates(master) == [(101, "running")]  # 102 dropped as well
    assert service.held() == set()
    clock.advance(5)
    assert master.of("sync")[-1]["running"] == []
    assert "stopped (task 101 attempt 1: the master refused its update)" \
        in master.log_text("a1")


def test_404_on_an_update_kills_the_process(make_service, master, clock,
                                            spawner, make_assignment):
    master.update_errors[(101, 1)] = NotFound("no task 101", 404)
    started(make_service, clock, master, [make_assignment()])
    assert spawner.processes[0].kills == [7.0]


def test_cancel_from_sync_kills_the_process_tree(make_service, master,
                                                 clock, spawner,
                                                 make_assignment):
    master.sync_answers.append({"cancel": [{"task": 101, "attempt": 1}]})
    service = started(make_service, clock, master, [make_assignment()])
    [process] = spawner.processes
    process.dies_when_killed = False
    clock.advance(5)
    assert process.kills == [7.0]
    assert service.held() == set()
    process.exit(None, 15)
    assert updates(master) == [(101, "running")]
    clock.advance(5)
    assert master.of("sync")[-1]["running"] == []


def test_cancel_of_another_attempt_leaves_the_process_alone(
        make_service, master, clock, spawner, make_assignment):
    master.sync_answers.append({"cancel": [{"task": 101, "attempt": 0}]})
    started(make_service, clock, master, [make_assignment()])
    clock.advance(5)
    assert spawner.processes[0].kills == []


def test_cancel_drops_an_assignment_waiting_for_capacity(
        make_service, master, clock, spawner, make_assignment):
    master.sync_answers.append({"cancel": [{"task": 102, "attempt": 1}]})
    service = started(make_service, clock, master, [
        make_assignment("a1", frames=(1,), first_task=101, cpus=4),
        make_assignment("a2", frames=(2,), first_task=102, cpus=4)])
    clock.advance(5)
    assert service.held() == {(101, 1)}
    spawner.processes[0].exit(0)
    assert len(spawner.processes) == 1


# -- the master away ------------------------------------------------------


def test_updates_wait_for_the_master_and_keep_their_order(
        make_service, master, clock, spawner, make_assignment, settings):
    started(make_service, clock, master, [make_assignment(frames=(1, 2))])
    [process] = spawner.processes
    master.down = True
    process.output(b"done\n")
    process.exit(0)
    saved = json.loads((settings.data_dir / "outbox.json").read_text())
    assert [(u["task"], u["state"]) for u in saved] == [
        (101, "done"), (102, "done")]
    clock.pump([0.75, 1.5, 3, 6])
    assert updates(master) == [(101, "running"), (102, "running")]
    master.down = False
    clock.pump([12])
    assert updates(master) == [(101, "running"), (102, "running"),
                               (101, "done"), (102, "done")]
    assert "done\n" in master.log_text("a1")
    assert json.loads((settings.data_dir / "outbox.json").read_text()) == []


def test_a_successful_sync_sends_waiting_updates_at_once(
        make_service, master, clock, spawner, make_assignment):
    service = started(make_service, clock, master, [make_assignment()])
    master.down = True
    spawner.processes[0].exit(0)
    clock.pump([1] * 60)  # the log and outbox back off to long waits
    assert service.outbox.failures == 0  # the done waits for the log
    assert service.logs["a1"].failures > 4
    master.down = False
    syncs = master.names().count("sync")
    clock.pump([1] * 15)  # within the sync retry cap
    assert master.names().count("sync") > syncs
    assert updates(master)[-1] == (101, "done")


def test_sync_retries_at_least_every_fifteen_seconds(make_service, master,
                                                     clock):
    make_service().startService()
    clock.advance(0)
    master.down = True
    clock.pump([1] * 300)
    times = []
    count = master.names().count("sync")
    for second in range(60):
        clock.advance(1)
        if master.names().count("sync") > count:
            count = master.names().count("sync")
            times.append(second)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps and max(gaps) <= 15


def test_final_states_survive_an_agent_restart(
        make_service, master, clock, spawner, make_assignment):
    first = started(make_service, clock, master, [make_assignment()])
    master.down = True
    spawner.processes[0].exit(0)
    first.stopService()
    master.down = False
    master.calls.clear()
    second = make_service()
    second.startService()
    assert master.names()[:2] == ["update", "register"]
    assert master.of("update") == [
        {"task": 101, "attempt": 1, "state": "done"}]
    assert second.agent_id == first.agent_id


def test_restart_registers_only_after_the_old_updates_are_delivered(
        make_service, master, clock, spawner, make_assignment):
    first = started(make_service, clock, master, [make_assignment()])
    master.down = True
    spawner.processes[0].exit(0)
    first.stopService()
    master.calls.clear()
    make_service().startService()
    assert master.names() == ["update"]
    master.down = False
    clock.advance(0.75)
    assert master.names()[:3] == ["update", "update", "register"]


# -- stopping ---------------------------------------------------------------


def test_stopping_kills_processes_without_reporting_them(
        make_service, master, clock, spawner, make_assignment):
    service = started(make_service, clock, master, [make_assignment()])
    result = []
    service.stopService().addCallback(result.append)
    assert spawner.processes[0].kills == [7.0]
    assert len(result) == 1  # stopped
    assert updates(master) == [(101, "running")]
    syncs = master.names().count("sync")
    clock.advance(60)
    assert master.names().count("sync") == syncs


def test_writes_its_status_for_the_status_command(make_service, settings):
    service = make_service()
    service.startService()
    status = json.loads((settings.data_dir / "status.json").read_text())
    assert status["id"] == service.agent_id
    assert status["master"] == "http://master:5000"
    assert status["registered_at"] == "2024-05-01T12:00:00+00:00"
