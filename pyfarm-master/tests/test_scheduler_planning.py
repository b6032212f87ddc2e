"""The scheduler's pure planning rules (no database)."""

from datetime import datetime, timedelta, timezone

import pytest

from pyfarm.master.scheduler import planning
from pyfarm.master.scheduler.planning import AgentProfile, JobCandidate

NOW = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)


def test_free_capacity_subtracts_each_assignment():
    assert planning.free_capacity(8, 16000, [(2, 4000), (1, 0)]) == (5, 12000)
    assert planning.free_capacity(8, 16000, []) == (8, 16000)


def test_fits_needs_both_cpus_and_ram():
    job = JobCandidate(id=1, cpus=2, ram=1000)
    assert planning.fits((2, 1000), job)
    assert not planning.fits((1, 1000), job)
    assert not planning.fits((2, 999), job)


def test_take_uses_up_capacity():
    assert planning.take((4, 100), JobCandidate(id=1, cpus=3, ram=40)) == (
        1, 60)


@pytest.mark.parametrize("tags, requirements, expected", [
    ({1}, [(1, False)], True),
    (set(), [(1, False)], False),
    ({1}, [(1, True)], False),
    (set(), [(1, True)], True),
    ({1, 2}, [(1, False), (3, True)], True),
    ({1, 3}, [(1, False), (3, True)], False),
    (set(), [], True),
])
def test_tag_requirements_and_negation(tags, requirements, expected):
    assert planning.meets_tags(frozenset(tags), requirements) is expected


@pytest.mark.parametrize("software, requirements, expected", [
    ({1: ("4.0.2",)}, [(1, None, None)], True),
    ({}, [(1, None, None)], False),
    ({1: ("3.6",)}, [(1, "4.0", None)], False),
    ({1: ("3.6", "4.1")}, [(1, "4.0", None)], True),
    ({1: ("10.0",)}, [(1, "9.5", "10")], True),
    ({1: ("2025.3",)}, [(1, "2024", "2025")], True),
    ({1: ("2026",)}, [(1, "2024", "2025")], False),
    ({1: ("4.0",)}, [(1, None, None), (2, None, None)], False),
])
def test_software_requirements(software, requirements, expected):
    assert planning.meets_software(software, requirements) is expected


def test_the_job_types_program_is_required_in_any_version():
    assert planning.with_program([], None) == ()
    assert planning.with_program([(2, "1", None)], 7) == (
        (2, "1", None), (7, None, None))
    # An explicit range for the program is kept, not widened.
    assert planning.with_program([(7, "4.0", "4")], 7) == ((7, "4.0", "4"),)


def test_a_version_without_numbers_matches_no_range():
    # Such versions were accepted from agents once; they must not stop
    # the scheduler with a ValueError.
    software = {7: (" ", "-", "2.1")}
    assert planning.meets_software(software, [(7, "2", None)])
    assert not planning.meets_software({7: (" ",)}, [(7, "1", "3")])
    assert not planning.meets_software({7: ("",)}, [(7, None, None)])


def test_matches_checks_size_tags_and_software():
    agent = AgentProfile(id="a", cpus=4, ram=8000, tag_ids=frozenset({1}),
                         software={7: ("4.0",)})
    assert planning.matches(agent, JobCandidate(
        id=1, cpus=4, ram=8000, tag_requirements=((1, False),),
        software_requirements=((7, "3", "5"),)))
    assert not planning.matches(agent, JobCandidate(id=1, cpus=5))
    assert not planning.matches(agent, JobCandidate(id=1, ram=8001))
    assert not planning.matches(agent, JobCandidate(
        id=1, tag_requirements=((1, True),)))
    assert not planning.matches(agent, JobCandidate(
        id=1, software_requirements=((7, "4.1", None),)))


def test_blocklist_after_limit_until_forgiven():
    recent = NOW - timedelta(seconds=10)
    assert planning.is_blocklisted(3, recent, NOW, 3, 1800)
    assert not planning.is_blocklisted(2, recent, NOW, 3, 1800)
    old = NOW - timedelta(seconds=1801)
    assert not planning.is_blocklisted(5, old, NOW, 3, 1800)
    assert not planning.is_blocklisted(5, None, NOW, 3, 1800)


def test_below_maximum_agents():
    assert planning.below_maximum(None, 100)
    assert planning.below_maximum(2, 1)
    assert not planning.below_maximum(2, 2)


def test_order_priority_beats_queue_priority_beats_weight_beats_age():
    jobs = [
        JobCandidate(id=1),
        JobCandidate(id=2, weight=5),
        JobCandidate(id=3, queue_priority=1),
        JobCandidate(id=4, priority=1),
        JobCandidate(id=5, queue_priority=1, weight=9),
        JobCandidate(id=6, priority=1),
        JobCandidate(id=7, priority=-1, queue_priority=9, weight=9),
    ]
    assert [job.id for job in planning.order_jobs(jobs)] == [
        4, 6, 5, 3, 2, 1, 7]


def pairs(*frames):
    return [(100 + frame, frame) for frame in frames]


@pytest.mark.parametrize("frames, by, size, expected", [
    ((1, 2, 3, 4), 1, 3, (1, 2, 3)),
    ((1, 2, 5, 6), 1, 3, (1, 2)),
    ((4,), 1, 3, (4,)),
    ((1, 3, 5, 7), 2, 3, (1, 3, 5)),
    ((1, 3, 4), 2, 3, (1, 3)),
    ((1, 2, 3), 1, 1, (1,)),
    ((), 1, 3, ()),
])
def test_consecutive_batch(frames, by, size, expected):
    batch = planning.consecutive_batch(pairs(*frames), by, size)
    assert batch == pairs(*expected)
