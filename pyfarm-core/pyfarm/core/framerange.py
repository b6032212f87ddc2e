"""
Frame ranges: ``start``, ``end`` and ``by`` to the frames they name.

Frames are whole numbers (negative frames are allowed, as in Maya).
"""

#: The largest number of frames one job may have.
MAX_FRAMES = 1_000_000


class FrameRangeError(ValueError):
    """A frame range that cannot be expanded; the message says why."""


def validate(start, end, by=1, max_frames=MAX_FRAMES):
    """Check a frame range and return how many frames it names.

    Raises :class:`FrameRangeError` with a message naming the field.
    """
    for name, value in (("start", start), ("end", end), ("by", by)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise FrameRangeError(
                f"{name} must be a whole number, got {value!r}")
    if by < 1:
        raise FrameRangeError(f"by must be 1 or more, got {by}")
    if end < start:
        raise FrameRangeError(
            f"end ({end}) must not be less than start ({start})")
    count = (end - start) // by + 1
    if count > max_frames:
        raise FrameRangeError(
            f"the range {start}-{end} by {by} names {count} frames; "
            f"at most {max_frames} are allowed")
    return count


def expand(start, end, by=1):
    """Return the list of frames from ``start`` to ``end`` every ``by``."""
    validate(start, end, by)
    return list(range(start, end + 1, by))


def consecutive_runs(frames, by=1):
    """Split sorted ``frames`` into runs where each frame is ``by`` apart.

    >>> consecutive_runs([1, 2, 3, 7, 8], 1)
    [[1, 2, 3], [7, 8]]
    """
    runs = []
    for frame in frames:
        if runs and frame - runs[-1][-1] == by:
            runs[-1].append(frame)
        else:
            runs.append([frame])
    return runs


def compact(frames):
    """Describe ``frames`` briefly, e.g. ``"1-3,7,9-11"``.

    Order and repeats do not matter: ``[3, 1, 2, 2]`` is ``"1-3"``.
    """
    parts = []
    for run in consecutive_runs(sorted(set(frames))):
        if len(run) == 1:
            parts.append(str(run[0]))
        else:
            parts.append(f"{run[0]}-{run[-1]}")
    return ",".join(parts)
