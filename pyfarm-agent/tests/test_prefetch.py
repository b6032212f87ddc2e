"""Prefetching the frames of a job whose frames end within moments."""

import dataclasses

import pytest

from pyfarm.agent import prefetch


def started(make_service, clock, master, assignments, **options):
    """Start a service whose first sync brings ``assignments``."""
    master.sync_answers.insert(0, {"assignments": assignments})
    service = make_service(**options)
    service.startService()
    clock.advance(0)
    return service


def last_sync(master):
    return [call["sync"] for call in master.of("batch")
            if call["sync"] is not None][-1]


@pytest.fixture
def limit(master):
    """A master that prefetches up to 8 assignments per agent."""
    master.register_answer = {**master.register_answer, "prefetch_limit": 8}
    return 8


def run_one(service, clock, spawner, seconds):
    """Let the newest process run ``seconds`` and end well."""
    clock.advance(seconds)
    spawner.processes[-1].exit(0)
    clock.advance(0)


def test_short_frames_ask_for_more_of_their_job(
        make_service, master, clock, spawner, make_assignment, limit):
    service = started(make_service, clock, master,
                      [make_assignment(job_id=7)])
    assert "prefetch" not in last_sync(master)  # nothing measured yet
    run_one(service, clock, spawner, 0.1)
    # Four cpus, 0.1 s a frame: half a second of work per slot would be
    # 20 frames, more than the master's limit of 8.
    assert last_sync(master)["prefetch"] == {"job": 7, "assignments": 8}


def test_what_waits_already_is_not_asked_again(
        make_service, master, clock, spawner, make_assignment, limit):
    service = started(make_service, clock, master, [
        make_assignment("a1", frames=(1,), first_task=101, cpus=4)])
    run_one(service, clock, spawner, 0.5)
    # 0.5 s a frame, one slot for a 4-cpu job: one frame's worth queued.
    assert last_sync(master)["prefetch"] == {"job": 7, "assignments": 1}
    master.sync_answers.append({"assignments": [
        make_assignment("a2", frames=(2,), first_task=102, cpus=4),
        make_assignment("a3", frames=(3,), first_task=103, cpus=4)]})
    service.sync_soon()
    clock.advance(0)
    # One runs, one waits: the wanted queue is full.
    assert len(spawner.processes) == 2
    assert service.prefetch_request() is None


def test_long_frames_are_never_prefetched(
        make_service, master, clock, spawner, make_assignment, limit):
    service = started(make_service, clock, master, [make_assignment()])
    run_one(service, clock, spawner, 1.5)
    assert "prefetch" not in last_sync(master)


def test_failed_frames_teach_nothing(
        make_service, master, clock, spawner, make_assignment, limit):
    service = started(make_service, clock, master, [make_assignment()])
    spawner.processes[-1].exit(1)
    clock.advance(0)
    assert service.prefetch_request() is None


def test_an_older_master_gets_no_prefetch(
        make_service, master, clock, spawner, make_assignment):
    # Its registration answer has no prefetch_limit: it would refuse the
    # field.
    service = started(make_service, clock, master, [make_assignment()])
    run_one(service, clock, spawner, 0.1)
    service.sync_soon()
    clock.advance(0)
    assert all("prefetch" not in call["sync"] for call in master.of("batch")
               if call["sync"] is not None)


def test_the_agent_setting_zero_turns_it_off(
        make_service, master, clock, spawner, make_assignment, limit,
        settings):
    service = started(make_service, clock, master, [make_assignment()],
                      agent_settings=dataclasses.replace(settings,
                                                         prefetch=0))
    run_one(service, clock, spawner, 0.1)
    assert "prefetch" not in last_sync(master)


def test_prefetched_assignments_start_as_slots_free(
        make_service, master, clock, spawner, make_assignment, limit):
    service = started(make_service, clock, master, [
        make_assignment(f"a{n}", frames=(n,), first_task=100 + n, cpus=2)
        for n in range(1, 6)])
    assert len(spawner.processes) == 2  # two fit in four cpus
    assert service.held() == {(100 + n, 1) for n in range(1, 6)}
    spawner.processes[0].exit(0)
    clock.advance(0)
    assert len(spawner.processes) == 3
    assert spawner.processes[2].argv == ["render", "-s", "3", "-e", "3"]


@pytest.mark.parametrize("seconds, threshold, slot_count, waiting, limit, "
                         "expected", [
                             (None, 1.0, 2, 0, 16, 0),   # never measured
                             (0.01, 0.0, 2, 0, 16, 0),   # turned off
                             (0.01, 1.0, 2, 0, 0, 0),    # master says no
                             (1.0, 1.0, 2, 0, 16, 0),    # not short
                             (0.01, 1.0, 2, 0, 16, 16),  # capped
                             (0.01, 1.0, 2, 10, 16, 6),  # some wait
                             (0.25, 1.0, 2, 0, 16, 4),   # 2 x 0.5 / 0.25
                             (0.9, 1.0, 1, 0, 16, 1),
                             (0.0, 1.0, 1, 0, 16, 16),   # instant frames
                         ])
def test_wanted(seconds, threshold, slot_count, waiting, limit, expected):
    assert prefetch.wanted(seconds, threshold, slot_count, waiting,
                           limit) == expected


def test_slots():
    assert prefetch.slots(4, 8192, 1, 0) == 4
    assert prefetch.slots(4, 8192, 2, 0) == 2
    assert prefetch.slots(4, 8192, 1, 3000) == 2
    assert prefetch.slots(2, 8192, 8, 0) == 1


def test_run_times_smooth_and_forget_old_jobs():
    times = prefetch.RunTimes(remembered=2)
    times.add(1, 1.0, cpus=2, ram=100)
    times.add(1, 0.0, cpus=2, ram=100)
    assert times.get(1) == pytest.approx((0.7, 2, 100))
    times.add(2, 0.5)
    assert times.latest() == 2
    times.add(3, 0.5)
    assert times.get(1) is None and times.latest() == 3
    times.add(2, 0.5)
    assert times.latest() == 2


def test_no_prefetch_while_another_job_runs(
        make_service, master, clock, spawner, make_assignment, limit):
    service = started(make_service, clock, master, [
        make_assignment("a1", frames=(1,), first_task=101, job_id=7),
        make_assignment("a2", frames=(1,), first_task=201, job_id=8)])
    spawner.processes[0].exit(0)  # job 7's frame ends at once
    clock.advance(0)
    # Job 8 still runs: job 7's frames would queue behind it.
    assert service.prefetch_request() is None
    clock.advance(2)
    spawner.processes[1].exit(0)
    clock.advance(0)
    assert service.prefetch_request() is None  # job 8 ran last, long
    master.sync_answers.append({"assignments": [
        make_assignment("a3", frames=(2,), first_task=102, job_id=7)]})
    service.sync_soon()
    clock.advance(0)
    spawner.processes[2].exit(0)
    clock.advance(0)
    assert service.prefetch_request() == {"job": 7, "assignments": 8}


def test_registering_with_an_older_master_stops_prefetching(
        make_service, master, clock, spawner, make_assignment, limit):
    service = started(make_service, clock, master, [make_assignment()])
    run_one(service, clock, spawner, 0.1)
    assert service.prefetch_request() is not None
    # The master was replaced by an older one, without prefetching.
    master.register_answer = {"sync_interval": 5, "state": "online"}
    service._registered(dict(master.register_answer, id=service.agent_id))
    assert service.prefetch_limit == 0
    assert service.prefetch_request() is None


def test_a_slow_master_makes_the_queue_longer():
    # 10 ms frames on two slots: half a second is 100 frames, but with
    # answers taking 0.4 s the slots would run dry: 2 x 0.4 s of work.
    assert prefetch.wanted(0.01, 1.0, 2, 0, 1000) == 100
    assert prefetch.wanted(0.01, 1.0, 2, 0, 1000, round_trip=0.1) == 100
    assert prefetch.wanted(0.01, 1.0, 2, 0, 1000, round_trip=0.4) == 160
    assert prefetch.wanted(0.01, 1.0, 2, 0, 64, round_trip=0.4) == 64


def test_the_outbox_measures_its_round_trip(
        make_service, master, clock, spawner, make_assignment, limit):
    service = started(make_service, clock, master, [make_assignment()])
    assert service.outbox.round_trip == 0.0  # the fake answers at once
