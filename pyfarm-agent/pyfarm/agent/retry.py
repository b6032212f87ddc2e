"""
How long to wait before trying again: capped exponential backoff + jitter.

The delay is a pure function of the attempt number and of a random number
the caller passes in, so tests choose the randomness and the clock::

    >>> policy = RetryPolicy(base=1, cap=60, jitter=0.5)
    >>> policy.backoff(1), policy.backoff(3), policy.backoff(20)
    (1.0, 4.0, 60.0)
    >>> policy.delay(3, lambda: 0.0), policy.delay(3, lambda: 1.0)
    (2.0, 4.0)

Jitter spreads agents that lost the master at the same moment, so they do
not all come back in the same second when it returns.
"""

from dataclasses import dataclass


def backoff(attempt, base=1.0, cap=60.0, factor=2.0):
    """Return the delay before retry number ``attempt`` (from 1), no jitter.

    ``base * factor ** (attempt - 1)``, never more than ``cap``.
    """
    if isinstance(attempt, bool) or not isinstance(attempt, int) or \
            attempt < 1:
        raise ValueError(f"attempt must be a whole number from 1, "
                         f"got {attempt!r}")
    try:
        raw = base * factor ** (attempt - 1)
    except OverflowError:
        return float(cap)
    return float(min(cap, raw))


def jittered(delay, random_value, jitter=0.5):
    """Scale ``delay`` into ``[delay * (1 - jitter), delay]``.

    ``random_value`` lies in ``[0, 1)`` (``random.random()``); ``jitter`` is
    the share of the delay that is random (0: none, 1: "full jitter").
    """
    if not 0 <= jitter <= 1:
        raise ValueError(f"jitter must be between 0 and 1, got {jitter!r}")
    random_value = min(max(random_value, 0.0), 1.0)
    return delay * (1 - jitter + jitter * random_value)


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter (seconds)."""

    base: float = 1.0
    cap: float = 60.0
    factor: float = 2.0
    jitter: float = 0.5

    def backoff(self, attempt):
        """Return the delay before retry ``attempt`` without jitter."""
        return backoff(attempt, self.base, self.cap, self.factor)

    def delay(self, attempt, rand):
        """Return the delay before retry ``attempt`` (from 1).

        ``rand`` is a callable returning a float in ``[0, 1)``, such as
        ``random.Random().random``.
        """
        return jittered(self.backoff(attempt), rand(), self.jitter)
