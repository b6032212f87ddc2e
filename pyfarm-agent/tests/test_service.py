"""The agent's loop, driven by task.Clock, a fake master and fake processes.

Fixtures (``make_service``, ``master``, ``spawner``, ``clock``,
``make_assignment``) come from conftest.py. With the fake randomness
(0.5) and the default policy, retries wait 0.75, 1.5, 3, 6 ... seconds.
"""

import dataclasses
import json
import uuid

from twisted.internet import defer

from pyfarm.agent.jobtypes import FrameDone, Progress
from pyfarm.agent.jobtypes.command import CommandJobType
from pyfarm.agent.master import (
    Conflict,
    NotFound,
    OutdatedMaster,
    ServerError,
)
from pyfarm.agent.process import SpawnError
from pyfarm.agent.service import MAX_SYNC_RETRY
from pyfarm.agent.software import Discovery, Installation


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


def frame_jobtype(assignment, **options):
    return FrameJobType(assignment, **options)


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
        "jobtypes": [CommandJobType.describe()],
        "version": "0.1.0"}]
    assert str(uuid.UUID(service.agent_id)) == service.agent_id
    assert (settings.data_dir / "agent_id").read_text().strip() == \
        service.agent_id


def test_job_types_the_master_left_out_are_logged(make_service, master,
                                                  caplog):
    master.register_answer = dict(master.register_answer, rejected_jobtypes=[
        {"name": "studio", "error": "field 'jobtypes[1].parameters.type' "
                                    "is not a valid JSON Schema"}])
    service = make_service()
    service.startService()
    assert service.registered
    assert ("the master left out job type 'studio': field "
            "'jobtypes[1].parameters.type' is not a valid JSON Schema"
            in caplog.text)


def test_registers_the_software_it_found_and_its_job_types(
        make_service, master, settings):
    found = Discovery("maya", [
        Installation("maya", "/usr/autodesk/maya2024/bin/Render", "2024",
                     "install folder"),
        Installation("maya", "/opt/maya/bin/Render", None, "config")])
    seen = {}

    def find_software(agent_settings, environ, os_name):
        seen.update(settings=agent_settings, environ=environ, os=os_name)
        return {"maya": found}

    described = [{"name": "maya", "description": "Render Maya scenes.",
                  "parameters": {"type": "object"}, "software": "maya"}]
    service = make_service(find_software=find_software,
                           describe_jobtypes=lambda: described)
    service.startService()
    [info] = master.of("register")
    assert info["software"] == [{"software": "blender", "version": "4.0.2"},
                                {"software": "maya", "version": "2024"}]
    assert info["jobtypes"] == described
    assert seen == {"settings": settings, "environ": service.environ,
                    "os": "linux"}
    assert service.installed == {"maya": found}


def test_the_real_job_types_are_registered(make_service, master):
    service = make_service(describe_jobtypes=None)
    service.startService()
    [info] = master.of("register")
    assert [item["name"] for item in info["jobtypes"]] == [
        "blender", "command", "ffmpeg", "houdini", "maya", "nuke"]


def test_looking_for_software_may_fail_without_stopping_the_agent(
        make_service, master, caplog):
    def broken(*args):
        raise RuntimeError("a job type's bug")

    def broken_describe():
        raise RuntimeError("another bug")

    service = make_service(find_software=broken,
                           describe_jobtypes=broken_describe)
    service.startService()
    [info] = master.of("register")
    assert info["software"] == [{"software": "blender", "version": "4.0.2"}]
    assert info["jobtypes"] == []
    assert "looking for software failed" in caplog.text


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
    # The log's end, the frames' ends and a sync asking for more work go
    # in one request (the master drops the ended pairs from ``running``).
    last = master.of("batch")[-1]
    assert [(u["task"], u["state"]) for u in last["updates"]] == [
        (101, "done"), (102, "done")]
    assert last["logs"] and last["sync"]["running"] == [(101, 1), (102, 1)]
    syncs = master.names().count("sync")
    clock.advance(0)
    assert master.names().count("sync") == syncs  # not a second time


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


class WritingJobType(FrameJobType):
    """Frame N wrote /out/N.exr and /out/N_alpha.exr."""

    def outputs(self, frame):
        if frame == 2:
            raise RuntimeError("a bug listing outputs")
        return [f"/out/{frame}.exr", f"/out/{frame}_alpha.exr", 5,
                "x" * 5000]


def test_done_frames_report_the_files_they_wrote(make_service, master,
                                                  clock, spawner,
                                                  make_assignment):
    started(make_service, clock, master,
            [make_assignment(frames=(1, 2, 3))],
            build_jobtype=lambda assignment, **options: WritingJobType(
                assignment, **options))
    [process] = spawner.processes
    process.output(b"done 1\n")
    process.exit(0)
    done = [u for u in master.of("update") if u["state"] == "done"]
    assert done == [
        {"task": 101, "attempt": 1, "state": "done",
         "outputs": ["/out/1.exr", "/out/1_alpha.exr"]},
        {"task": 102, "attempt": 1, "state": "done"},
        {"task": 103, "attempt": 1, "state": "done",
         "outputs": ["/out/3.exr", "/out/3_alpha.exr"]}]


def test_failed_frames_report_no_outputs(make_service, master, clock,
                                         spawner, make_assignment):
    started(make_service, clock, master, [make_assignment(frames=(1,))],
            build_jobtype=lambda assignment, **options: WritingJobType(
                assignment, **options))
    spawner.processes[0].exit(1)
    [failed] = [u for u in master.of("update") if u["state"] == "failed"]
    assert "outputs" not in failed


def renderer_assignment(make_assignment, data, **job):
    assignment = make_assignment(frames=(1, 2))
    assignment["job"].update(jobtype="blender", data=data, **job)
    return assignment


def test_a_missing_renderer_fails_the_frames_saying_where_it_looked(
        make_service, master, clock, spawner, make_assignment):
    empty = Discovery("blender", [], ["PATH (/usr/bin:/bin) for blender",
                                      "/opt/blender*/blender"])
    started(make_service, clock, master, [renderer_assignment(
        make_assignment, {"scene": "/shows/a.blend"})],
        find_software=lambda *args: {"blender": empty})
    assert spawner.processes == []
    failed = [u for u in master.of("update") if u["state"] == "failed"]
    assert [u["task"] for u in failed] == [101, 102]
    assert failed[0]["error"] == (
        "blender not found on this agent (looked in: PATH (/usr/bin:/bin) "
        "for blender; /opt/blender*/blender)")


def test_a_renderer_runs_with_the_jobs_paths_mapped_and_its_version(
        make_service, master, clock, spawner, make_assignment):
    inventory = {"blender": Discovery("blender", [
        Installation("blender", "/usr/bin/blender", "3.4.1", "PATH"),
        Installation("blender", "/opt/blender-4.1/blender", "4.1.1",
                     "install folder")])}
    started(make_service, clock, master, [renderer_assignment(
        make_assignment, {"scene": "P:\\show\\a.blend",
                          "output": "P:\\show\\out\\a_####"},
        pathmaps=[{"linux": "/mnt/show", "windows": "P:\\show",
                   "mac": None}],
        software_requirements=[{"software": "blender",
                                "min_version": "4.0",
                                "max_version": None}])],
        find_software=lambda *args: inventory)
    [process] = spawner.processes
    assert process.argv == [
        "/opt/blender-4.1/blender", "-b", "/mnt/show/a.blend", "-o",
        "/mnt/show/out/a_####", "-s", "1", "-e", "2", "-j", "1", "-a"]
    process.output(b"Fra:1 Mem:1M | Sample 1/1\n"
                   b"Saved: '/mnt/show/out/a_0001.png'\n")
    process.output(b"Error: Render error (No space left on device)\n")
    process.exit(0)
    assert [(u["task"], u["state"], u.get("outputs"))
            for u in master.of("update") if u["state"] != "running"] == [
        (101, "done", ["/mnt/show/out/a_0001.png"]), (102, "failed", None)]
    assert master.of("update")[-1]["error"].startswith(
        "the output reports an error: Error: Render error (No space left "
        "on device) (exit code 0); last lines of output:")


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
    service = started(make_service, clock, master,
                      [make_assignment(frames=(1, 2))])
    [process] = spawner.processes
    master.down = True
    process.output(b"done\n")
    process.exit(0)
    saved = json.loads((settings.data_dir / "outbox.json").read_text())
    assert [(u["task"], u["state"]) for u in saved] == [
        (101, "done"), (102, "done")]
    clock.pump([0.75, 1.5, 3, 6])
    assert [(u["task"], u["state"]) for u in service.outbox.items] == [
        (101, "done"), (102, "done")]
    master.down = False
    clock.pump([12])
    assert updates(master)[:2] == [(101, "running"), (102, "running")]
    assert updates(master)[-2:] == [(101, "done"), (102, "done")]
    assert len(service.outbox) == 0
    assert "done\n" in master.log_text("a1")
    assert json.loads((settings.data_dir / "outbox.json").read_text()) == []


def test_a_successful_sync_sends_waiting_updates_at_once(
        make_service, master, clock, spawner, make_assignment):
    service = started(make_service, clock, master, [make_assignment()])
    master.down = True
    spawner.processes[0].exit(0)
    clock.pump([1] * 60)  # the log and outbox back off to long waits
    assert service.outbox.failures > 4  # the done goes with the log
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


# -- errors that must not stop the agent -------------------------------------


def test_a_status_file_that_cannot_be_written_does_not_stop_syncing(
        make_service, master, clock, settings):
    # A full disk: registering again (after a 404) cannot record its time.
    service = make_service()
    service.startService()
    clock.advance(0)
    (settings.data_dir / "status.json.tmp").mkdir()
    master.sync_answers.append(NotFound("no agent", 404))
    clock.advance(5)
    assert master.names()[-3:] == ["sync", "register", "sync"]
    syncs = master.names().count("sync")
    clock.pump([5] * 3)
    assert service.registered
    assert master.names().count("sync") == syncs + 3


class FlakySysinfo:
    """A machine whose free memory cannot be read once."""

    def __init__(self, fail_on):
        self.calls = 0
        self.fail_on = fail_on

    def collect(self):
        return {"hostname": "node1", "os": "linux", "os_version": "Test 1",
                "cpus": 4, "ram": 8192, "free_ram": 6000}

    def free_ram(self):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("cannot read /proc/meminfo")
        return 6000


def test_an_error_reading_free_memory_does_not_stop_syncing(
        make_service, master, clock):
    service = make_service(sysinfo=FlakySysinfo(fail_on=3))
    service.startService()  # free_ram call 1: register
    clock.advance(0)  # call 2: first sync
    clock.advance(5)  # call 3 fails: the sync goes without it
    clock.pump([5] * 3)
    assert [sync["free_ram"] for sync in master.of("sync")] == [
        6000, None, 6000, 6000, 6000]


def test_an_error_reading_free_memory_does_not_stop_registering(
        make_service, master, clock):
    service = make_service(sysinfo=FlakySysinfo(fail_on=1))
    service.startService()
    clock.advance(0)
    assert service.registered
    assert master.of("register")[0]["free_ram"] == 0


class NumbersInArgv(CommandJobType):
    """A job type of a studio that returns numbers in its argv."""

    def argv(self):
        return ["render", "-s", self.start, "-e", self.end]


def test_a_job_type_may_return_numbers_in_its_argv(
        make_service, master, clock, spawner, make_assignment):
    service = started(
        make_service, clock, master, [make_assignment(frames=(3, 4))],
        build_jobtype=lambda assignment, **options: NumbersInArgv(
            assignment, **options))
    [process] = spawner.processes
    assert process.argv == ["render", "-s", "3", "-e", "4"]
    process.exit(0)
    assert "render -s 3 -e 4\n" in master.log_text("a1")
    assert updates(master)[2:] == [(101, "done"), (102, "done")]
    assert service.held() == set()


class StringArgv(CommandJobType):
    """A job type that returns a command line instead of a list."""

    def argv(self):
        return "render -s 1"


def test_a_job_type_whose_argv_is_not_a_list_fails_its_tasks(
        make_service, master, clock, spawner, make_assignment):
    started(make_service, clock, master, [make_assignment()],
            build_jobtype=lambda assignment, **options: StringArgv(
                assignment, **options))
    assert spawner.processes == []
    [update] = master.of("update")
    assert update["state"] == "failed"
    assert "argv() must return a list" in update["error"]


class LongError(CommandJobType):
    """A job type whose failure message is far too long for the master."""

    def error_message(self, status, lines):
        return "E" * 100 + "x" * 100_000 + "the cause"


def test_a_long_error_is_cut_to_what_the_master_takes(
        make_service, master, clock, spawner, make_assignment):
    started(make_service, clock, master, [make_assignment()],
            build_jobtype=lambda assignment, **options: LongError(
                assignment, **options))
    spawner.processes[0].exit(1)
    [failed] = [u for u in master.of("update") if u["state"] == "failed"]
    assert len(failed["error"]) == 4000
    assert failed["error"].startswith("E" * 100)
    assert failed["error"].endswith("the cause")


def test_progress_that_is_not_a_number_is_not_reported(
        make_service, master, clock, spawner, make_assignment):
    started(make_service, clock, master, [make_assignment()],
            build_jobtype=frame_jobtype)
    spawner.processes[0].output(b"progress nan\n")
    clock.advance(5)
    spawner.processes[0].output(b"progress 0.5\n")
    assert [u.get("progress") for u in master.of("update")] == [None, 0.5]


# -- pacing -------------------------------------------------------------------


def test_work_that_fails_at_once_is_asked_for_at_the_masters_pace(
        make_service, master, clock, spawner, make_assignment):
    # A node without the renderer: every assignment fails at once.
    spawner.error = SpawnError("cannot run 'render': not found on PATH")
    master.sync_answers.extend(
        {"assignments": [make_assignment(f"a{n}", first_task=100 * n)]}
        for n in range(1, 20))
    make_service().startService()
    clock.pump([0] * 10)
    assert len(master.of("sync")) == 1
    assert len(master.of("update")) == 1
    clock.advance(5)
    assert len(master.of("sync")) == 2
    assert len(master.of("update")) == 2


def test_done_work_is_followed_by_a_sync_at_once(
        make_service, master, clock, spawner, make_assignment):
    started(make_service, clock, master, [make_assignment()])
    syncs = len(master.of("sync"))
    spawner.processes[0].exit(0)
    assert len(master.of("sync")) == syncs + 1
    last = master.of("batch")[-1]
    assert [(u["task"], u["state"]) for u in last["updates"]] == [
        (101, "done")]
    assert last["sync"] is not None  # in the same request as the done


def test_an_old_master_is_not_taken_for_one_that_forgot_the_agent(
        make_service, master, clock, spawner, make_assignment):
    """A master without ``/updates`` answers 404: keep everything, kill
    nothing, do not register again; deliver once it is upgraded."""
    service = started(make_service, clock, master,
                      [make_assignment(frames=(1,)),
                       make_assignment("a2", frames=(2,), first_task=102)])
    first, second = spawner.processes
    batch = master.batch
    old = [True]

    def old_master(agent_id, logs, updates, sync=None):
        if old[0]:
            master.calls.append(("old", {}))
            return defer.fail(OutdatedMaster(
                "POST /updates: 404 no such API endpoint", 404))
        return batch(agent_id, logs, updates, sync)

    master.batch = old_master
    first.exit(0)
    clock.pump([1] * 120)
    assert len(master.of("old")) > 5
    assert second.kills == [] and first.kills == []
    assert master.names().count("register") == 1 and service.registered
    assert (101, 1) in service.outbox.final_pairs()
    old[0] = False
    clock.pump([1] * 60)
    assert (101, "done") in updates(master)
    assert service.outbox.final_pairs() == set()
    assert "a1" in master.logs


def test_the_heartbeat_goes_while_the_updates_keep_failing(
        make_service, master, clock, spawner, make_assignment):
    """A request with updates fails (a master bug, say); the syncs still
    go at least every MAX_SYNC_RETRY seconds, without those updates."""
    started(make_service, clock, master, [make_assignment(frames=(1,))])
    batch = master.batch
    synced = []

    def failing(agent_id, logs, updates, sync=None):
        if updates:
            return defer.fail(ServerError("internal", 500))
        if sync is not None:
            synced.append(clock.seconds())
        return batch(agent_id, logs, updates, sync)

    master.batch = failing
    spawner.processes[0].exit(0)
    clock.pump([1] * 600)
    gaps = [b - a for a, b in zip(synced, synced[1:], strict=False)]
    assert len(synced) > 20 and max(gaps) <= MAX_SYNC_RETRY


def test_job_types_are_looked_up_once_per_agent(
        make_service, master, clock, spawner, make_assignment, monkeypatch):
    from pyfarm.agent import jobtypes

    looked_up = []
    real = jobtypes.entry_points

    def entry_points(**query):
        looked_up.append(query.get("name"))
        return real(**query)

    monkeypatch.setattr(jobtypes, "entry_points", entry_points)
    started(make_service, clock, master, [
        make_assignment("a1", frames=(1,), first_task=101),
        make_assignment("a2", frames=(2,), first_task=102)])
    assert len(spawner.processes) == 2
    assert looked_up == ["command"]
