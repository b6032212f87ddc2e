"""Frame ranges: validation, expansion, runs and compact text."""

import pytest

from pyfarm.core.framerange import (
    MAX_FRAMES,
    FrameRangeError,
    compact,
    consecutive_runs,
    expand,
    validate,
)


@pytest.mark.parametrize("start, end, by, frames", [
    (1, 5, 1, [1, 2, 3, 4, 5]),
    (1, 10, 3, [1, 4, 7, 10]),
    (1, 9, 3, [1, 4, 7]),
    (7, 7, 1, [7]),
    (-3, 2, 2, [-3, -1, 1]),
    (0, 0, 100, [0]),
])
def test_expand(start, end, by, frames):
    assert expand(start, end, by) == frames
    assert validate(start, end, by) == len(frames)


def test_by_defaults_to_one():
    assert expand(1, 3) == [1, 2, 3]


@pytest.mark.parametrize("start, end, by, match", [
    (5, 1, 1, r"end \(1\) must not be less than start \(5\)"),
    (1, 5, 0, "by must be 1 or more, got 0"),
    (1, 5, -1, "by must be 1 or more"),
    ("1", 5, 1, "start must be a whole number, got '1'"),
    (1, 5.0, 1, "end must be a whole number"),
    (True, 5, 1, "start must be a whole number, got True"),
    (1, 5, None, "by must be a whole number"),
])
def test_bad_ranges_name_the_field(start, end, by, match):
    with pytest.raises(FrameRangeError, match=match):
        validate(start, end, by)
    with pytest.raises(FrameRangeError):
        expand(start, end, by)


def test_frame_range_error_is_a_value_error():
    assert issubclass(FrameRangeError, ValueError)


def test_too_many_frames():
    assert validate(1, MAX_FRAMES) == MAX_FRAMES
    with pytest.raises(FrameRangeError, match="names 1000001 frames"):
        validate(1, MAX_FRAMES + 1)
    assert validate(1, 20, 2, max_frames=10) == 10
    with pytest.raises(FrameRangeError, match="at most 10"):
        validate(1, 11, max_frames=10)


def test_consecutive_runs():
    assert consecutive_runs([1, 2, 3, 7, 8], 1) == [[1, 2, 3], [7, 8]]
    assert consecutive_runs([1, 3, 5, 6, 8], 2) == [[1, 3, 5], [6, 8]]
    assert consecutive_runs([4]) == [[4]]
    assert consecutive_runs([]) == []


def test_compact():
    assert compact([1, 2, 3, 7, 9, 10, 11]) == "1-3,7,9-11"
    assert compact([11, 10, 9, 7, 3, 2, 1]) == "1-3,7,9-11"
    assert compact([3, 1, 2, 2]) == "1-3"
    assert compact([-2, -1, 0]) == "-2-0"
    assert compact([5]) == "5"
    assert compact([]) == ""
