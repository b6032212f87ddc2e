"""Version numbers compared as numbers."""

import pytest

from pyfarm.core.versions import in_range, version_key


def test_numbers_compare_as_numbers():
    ordered = ["2.79", "2.80", "3.6", "3.6b", "3.6.1", "4", "9.5", "10.0",
               "2024", "2024.2"]
    assert sorted(reversed(ordered), key=version_key) == ordered


def test_trailing_zeros_do_not_matter():
    assert version_key("3.0") == version_key("3") == version_key("3.0.0")
    assert version_key("0") == version_key("0.0")
    assert version_key("3.0.1") > version_key("3")


def test_separators_and_case_do_not_matter():
    assert version_key("4.0.2") == version_key("4-0_2")
    assert version_key("3.6B") == version_key("3.6b")


def test_letters_sort_after_the_bare_number():
    assert version_key("3.6") < version_key("3.6b") < version_key("3.6.1")
    assert version_key("2024rc") < version_key("2024.1")


@pytest.mark.parametrize("bad", ["", "   ", None, 4])
def test_bad_versions_are_value_errors(bad):
    with pytest.raises(ValueError, match="version must"):
        version_key(bad)


def test_text_without_numbers_or_letters_has_the_empty_key():
    assert version_key("...") == version_key("-") == ()
    assert version_key("-") < version_key("0")
    assert version_key("0") == ((1, 0, ""),)


@pytest.mark.parametrize("version, minimum, maximum, inside", [
    ("4.0", None, None, True),
    ("4.0", "4.0", "4.0", True),
    ("4.0", "4", None, True),
    ("3.9", "4.0", None, False),
    ("10.0", "9.5", None, True),
    ("10.0", None, "9.5", False),
    ("2025.3", "2024", "2025", True),
    ("2026", "2024", "2025", False),
    ("2025", None, "2025.1", True),
    ("2025.2", None, "2025.1", False),
    ("2025.1.4", None, "2025.1", True),
    ("10", None, "1", False),
    ("0.5", None, "0", True),
    ("1.0", None, "0", False),
    ("3.6b", "3.6", "3.6", True),
])
def test_in_range(version, minimum, maximum, inside):
    assert in_range(version, minimum, maximum) is inside


def test_in_range_checks_every_version():
    with pytest.raises(ValueError):
        in_range("4.0", minimum="")
    with pytest.raises(ValueError):
        in_range("", maximum="4")
