"""
Software version numbers compared as numbers, not strings.

``"10.0"`` is newer than ``"9.5"``; ``"2024.2"`` is newer than ``"2024"``;
letters after a number (``"3.6b"``) sort after the bare number.
"""

import re

_PART = re.compile(r"(\d+)|([A-Za-z]+)")


def version_key(version):
    """Return a sortable key for the version string ``version``."""
    if not isinstance(version, str) or not version.strip():
        raise ValueError(f"a version must be a non-empty string, "
                         f"got {version!r}")
    key = []
    for number, word in _PART.findall(version):
        key.append((1, int(number), "") if number else (0, 0, word.lower()))
    # Trailing zero parts do not change a version: 3.0 == 3. One part is
    # kept so that "0" is not the empty key, which would be a prefix of
    # every version and so a maximum that admits everything. The key is
    # empty only for text without numbers or letters (such as "-").
    while len(key) > 1 and key[-1] == (1, 0, ""):
        key.pop()
    return tuple(key)


def in_range(version, minimum=None, maximum=None):
    """Whether ``version`` lies within ``minimum`` and ``maximum``.

    Both bounds are inclusive; a maximum of ``"2025"`` admits ``"2025.3"``
    since a studio writing ``maya 2024..2025`` means every 2025 release.
    """
    key = version_key(version)
    if minimum is not None and key < version_key(minimum):
        return False
    if maximum is not None:
        top = version_key(maximum)
        if key > top and key[:len(top)] != top:
            return False
    return True
