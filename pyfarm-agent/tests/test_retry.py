"""The retry policy: capped exponential backoff with jitter."""

import random

import pytest

from pyfarm.agent.retry import RetryPolicy, backoff, jittered


def test_backoff_doubles_from_the_base():
    assert [backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 16.0]


def test_backoff_is_capped():
    assert backoff(7, cap=60) == 60.0
    assert backoff(10_000, cap=60) == 60.0  # no overflow


def test_backoff_uses_base_and_factor():
    assert backoff(3, base=0.5, factor=3) == 4.5


@pytest.mark.parametrize("attempt", [0, -1, 1.5, True, "1"])
def test_backoff_wants_a_whole_attempt_from_one(attempt):
    with pytest.raises(ValueError, match="attempt"):
        backoff(attempt)


def test_jitter_scales_between_half_and_full_delay():
    assert jittered(8, 0.0) == 4.0
    assert jittered(8, 0.5) == 6.0
    assert jittered(8, 0.999) == pytest.approx(7.996)


def test_jitter_zero_and_full():
    assert jittered(8, 0.3, jitter=0) == 8.0
    assert jittered(8, 0.25, jitter=1) == 2.0


def test_jitter_must_be_a_share():
    with pytest.raises(ValueError, match="jitter"):
        jittered(1, 0.5, jitter=1.5)


def test_policy_delay_is_a_function_of_attempt_and_random_value():
    policy = RetryPolicy(base=1, cap=30, jitter=0.5)
    assert policy.delay(1, lambda: 0.5) == 0.75
    assert policy.delay(4, lambda: 0.0) == 4.0
    assert policy.delay(20, lambda: 1.0) == 30.0


def test_policy_spreads_agents_apart():
    policy = RetryPolicy()
    rand = random.Random(3).random
    delays = {policy.delay(5, rand) for _ in range(20)}
    assert len(delays) == 20
    assert all(8.0 <= delay <= 16.0 for delay in delays)
