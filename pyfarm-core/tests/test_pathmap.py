"""Path mapping between Linux, Windows and macOS folders."""

from types import SimpleNamespace

import pytest

from pyfarm.core.enums import OperatingSystem
from pyfarm.core.pathmap import PathMapper, map_data, map_path

SHOW = {"linux": "/mnt/show", "windows": "P:\\show", "mac": "/Volumes/show"}
MAPS = [SHOW]


# -- the three directions (and back) ---------------------------------------


@pytest.mark.parametrize("value, target, expected", [
    ("P:\\show\\010\\shot.ma", "linux", "/mnt/show/010/shot.ma"),
    ("P:\\show\\010\\shot.ma", "mac", "/Volumes/show/010/shot.ma"),
    ("/mnt/show/010/shot.ma", "windows", "P:\\show\\010\\shot.ma"),
    ("/mnt/show/010/shot.ma", "mac", "/Volumes/show/010/shot.ma"),
    ("/Volumes/show/010/shot.ma", "linux", "/mnt/show/010/shot.ma"),
    ("/Volumes/show/010/shot.ma", "windows", "P:\\show\\010\\shot.ma"),
])
def test_maps_every_direction(value, target, expected):
    assert map_path(value, MAPS, target) == expected


@pytest.mark.parametrize("value", ["P:\\show\\a\\b.exr", "/mnt/show/a/b.exr",
                                   "/Volumes/show/a/b.exr"])
def test_a_path_makes_the_round_trip(value):
    there = map_path(value, MAPS, "linux")
    assert map_path(map_path(there, MAPS, "windows"), MAPS, "linux") == there


def test_the_folder_itself_maps_to_the_target_folder():
    assert map_path("P:\\show", MAPS, "linux") == "/mnt/show"
    assert map_path("P:\\show\\", MAPS, "linux") == "/mnt/show/"
    assert map_path("/mnt/show", MAPS, "windows") == "P:\\show"


def test_strings_for_the_target_are_left_alone():
    assert map_path("/mnt/show/x", MAPS, "linux") == "/mnt/show/x"
    assert map_path("P:\\show\\x", MAPS, "windows") == "P:\\show\\x"


def test_accepts_the_os_enum_and_objects_with_attributes():
    maps = [SimpleNamespace(linux="/mnt/show", windows="P:\\show", mac=None)]
    assert map_path("P:\\show\\x", maps, OperatingSystem.LINUX) == \
        "/mnt/show/x"


# -- matching ----------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "p:\\SHOW\\x.ma", "P:/show/x.ma", "p:/Show\\x.ma"])
def test_windows_folders_match_without_case_or_slash_kind(value):
    assert map_path(value, MAPS, "linux") == "/mnt/show/x.ma"


def test_posix_folders_match_case_and_all():
    assert map_path("/MNT/show/x", MAPS, "windows") == "/MNT/show/x"
    assert map_path("/Volumes/Show/x", MAPS, "linux") == "/Volumes/Show/x"


def test_the_rest_keeps_its_case():
    assert map_path("p:\\SHOW\\Shot_010\\A.ma", MAPS, "linux") == \
        "/mnt/show/Shot_010/A.ma"


@pytest.mark.parametrize("value", [
    "/mnt/showroom/x", "/home/mnt/show/x", "P:\\showroom\\x", "XP:\\show",
    "relative/mnt/show", "http://host/mnt/show/x"])
def test_only_whole_folders_at_the_start_of_a_path(value):
    assert map_path(value, MAPS, "windows" if "\\" not in value
                    else "linux") == value


def test_the_longest_folder_wins_whatever_the_order():
    maps = [SHOW, {"linux": "/mnt/textures", "windows": "P:\\show\\tex",
                   "mac": None}]
    assert map_path("P:\\show\\tex\\wood.tx", maps, "linux") == \
        "/mnt/textures/wood.tx"
    assert map_path("P:\\show\\texture.tx", maps, "linux") == \
        "/mnt/show/texture.tx"
    assert map_path("P:\\show\\tex\\wood.tx", list(reversed(maps)),
                    "linux") == "/mnt/textures/wood.tx"
    assert map_path("/mnt/textures/wood.tx", maps, "windows") == \
        "P:\\show\\tex\\wood.tx"


def test_unc_paths_and_drive_roots():
    maps = [{"linux": "/mnt/render", "windows": "\\\\filer\\render",
             "mac": None},
            {"linux": "/mnt/z", "windows": "Z:\\", "mac": None}]
    assert map_path("\\\\filer\\render\\a.exr", maps, "linux") == \
        "/mnt/render/a.exr"
    assert map_path("//FILER/render/a.exr", maps, "linux") == \
        "/mnt/render/a.exr"
    assert map_path("/mnt/render/a.exr", maps, "windows") == \
        "\\\\filer\\render\\a.exr"
    assert map_path("Z:\\a\\b", maps, "linux") == "/mnt/z/a/b"
    assert map_path("/mnt/z/a/b", maps, "windows") == "Z:\\a\\b"
    assert map_path("/mnt/z", maps, "windows") == "Z:\\"


def test_a_posix_root_maps_to_a_drive():
    maps = [{"linux": "/", "windows": "Y:\\", "mac": None}]
    assert map_path("/home/a.exr", maps, "windows") == "Y:\\home\\a.exr"
    assert map_path("Y:\\home\\a.exr", maps, "linux") == "/home/a.exr"
    assert map_path("plain words", maps, "windows") == "plain words"


# -- paths inside longer strings ---------------------------------------------


def test_paths_after_options_and_between_words():
    assert map_path("--scene=P:\\show\\a.ma -o P:\\show\\out\\img.exr",
                    MAPS, "linux") == \
        "--scene=/mnt/show/a.ma -o /mnt/show/out/img.exr"
    assert map_path("cp /mnt/show/a /mnt/show/b", MAPS, "windows") == \
        "cp P:\\show\\a P:\\show\\b"


def test_paths_may_hold_spaces():
    assert map_path("P:\\show\\my shot\\a b.ma", MAPS, "linux") == \
        "/mnt/show/my shot/a b.ma"


def test_quotes_end_a_path():
    assert map_path('render "P:\\show\\a.ma" \\n', MAPS, "linux") == \
        'render "/mnt/show/a.ma" \\n'


def test_lists_of_paths():
    assert map_path("P:\\show\\py;P:\\show\\lib;C:\\tools", MAPS,
                    "linux") == "/mnt/show/py;/mnt/show/lib;C:\\tools"
    assert map_path("/usr/lib:/mnt/show/lib:/opt/x", MAPS, "mac") == \
        "/usr/lib:/Volumes/show/lib:/opt/x"
    assert map_path("/mnt/show/a:/usr/lib", MAPS, "windows") == \
        "P:\\show\\a:/usr/lib"


def test_a_drive_colon_is_not_a_list_separator():
    maps = [{"linux": "/show", "windows": "S:\\show", "mac": None}]
    assert map_path("C:/show/x", maps, "windows") == "C:/show/x"


# -- maps with missing folders and odd input ---------------------------------


def test_maps_without_a_folder_for_a_system_are_skipped():
    maps = [{"linux": "/mnt/show", "windows": None, "mac": "/Volumes/show"},
            {"linux": None, "windows": "Q:\\", "mac": "/Volumes/q"}]
    assert map_path("/Volumes/show/a", maps, "linux") == "/mnt/show/a"
    assert map_path("Q:\\a", maps, "linux") == "Q:\\a"
    assert map_path("Q:\\a", maps, "mac") == "/Volumes/q/a"
    assert map_path("/Volumes/q/a", maps, "windows") == "Q:\\a"


@pytest.mark.parametrize("target", ["bsd", "other", "amiga"])
def test_other_systems_get_no_mapping(target):
    assert map_path("P:\\show\\a", MAPS, target) == "P:\\show\\a"


def test_empty_maps_and_values():
    assert map_path("P:\\show\\a", [], "linux") == "P:\\show\\a"
    assert map_path("P:\\show\\a", None, "linux") == "P:\\show\\a"
    assert map_path("", MAPS, "linux") == ""
    assert map_path(None, MAPS, "linux") is None


def test_a_folder_that_is_not_a_string_is_refused():
    with pytest.raises(TypeError, match="'linux' folder"):
        map_path("x", [{"linux": 5, "windows": "P:\\"}], "windows")


# -- whole documents -------------------------------------------------------


def test_map_data_walks_dicts_and_lists():
    data = {"scene": "P:\\show\\010\\shot.ma", "frames": 10,
            "render": True, "camera": None,
            "layers": ["P:\\show\\a", {"path": "P:/show/b"}],
            "P:\\show\\key": "kept key", "tuple": ("P:\\show\\c",)}
    assert map_data(data, MAPS, "linux") == {
        "scene": "/mnt/show/010/shot.ma", "frames": 10, "render": True,
        "camera": None, "layers": ["/mnt/show/a", {"path": "/mnt/show/b"}],
        "P:\\show\\key": "kept key", "tuple": ["/mnt/show/c"]}
    assert data["scene"] == "P:\\show\\010\\shot.ma", "not changed in place"


def test_map_data_of_an_environ():
    environ = {"SHOT_DIR": "/Volumes/show/010",
               "PYTHONPATH": "/Volumes/show/py:/usr/lib/python"}
    assert map_data(environ, MAPS, "linux") == {
        "SHOT_DIR": "/mnt/show/010",
        "PYTHONPATH": "/mnt/show/py:/usr/lib/python"}


def test_a_mapper_is_reusable():
    mapper = PathMapper(MAPS, "windows")
    assert mapper.map("/mnt/show/a") == "P:\\show\\a"
    assert mapper.map_data(["/Volumes/show/b", 3]) == ["P:\\show\\b", 3]
