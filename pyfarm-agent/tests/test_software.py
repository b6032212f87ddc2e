"""Finding renderers: configured, on the PATH, in the vendors' folders.

No real install is used: small scripts in ``tmp_path`` stand for the
programs, and the job types' install folder patterns are pointed there.
"""

import os
import subprocess

import pytest

from pyfarm.agent import jobtypes, software
from pyfarm.agent.jobtypes.blender import BlenderJobType
from pyfarm.agent.jobtypes.ffmpeg import FfmpegJobType
from pyfarm.agent.software import (
    Discovery,
    Installation,
    SoftwareNotFound,
    choose,
    discover,
    discover_all,
    pattern_paths,
    report,
)


def fake_blender(kit, path, version):
    """A script answering ``--version`` like Blender does."""
    return kit.executable(path, f'print("Blender {version}")\n'
                                f'print("\\tbuild date: 2024-01-01")\n')


@pytest.fixture
def tree(tmp_path, kit, monkeypatch):
    """Blenders in three places: configured, on the PATH, installed."""
    configured = fake_blender(kit, tmp_path / "custom" / "blender", "3.6.8")
    on_path = fake_blender(kit, tmp_path / "bin" / "blender", "4.0.2")
    fake_blender(kit, tmp_path / "opt" / "blender-4.1.1-linux-x64" /
                 "blender", "4.1.1")
    fake_blender(kit, tmp_path / "opt" / "blender-3.3.0-linux-x64" /
                 "blender", "3.3.0")
    monkeypatch.setattr(BlenderJobType, "install_patterns", {
        "linux": [str(tmp_path / "opt" / "blender*" / "blender")]})
    environ = {"PATH": str(tmp_path / "bin")}
    return configured, on_path, environ


# -- discovery ---------------------------------------------------------------


def test_looks_in_config_then_path_then_install_folders(tree, tmp_path):
    configured, on_path, environ = tree
    found = discover(BlenderJobType, [("blender", None, str(configured))],
                     environ, "linux")
    assert [(item.path, item.version, item.origin)
            for item in found.found] == [
        (str(configured), "3.6.8", "config"),
        (str(on_path), "4.0.2", "PATH"),
        (str(tmp_path / "opt/blender-4.1.1-linux-x64/blender"), "4.1.1",
         "install folder"),
        (str(tmp_path / "opt/blender-3.3.0-linux-x64/blender"), "3.3.0",
         "install folder")]
    assert found.versions() == ["3.6.8", "4.0.2", "4.1.1", "3.3.0"]
    assert found.looked_in[0].startswith("the agent_executables setting")
    assert found.looked_in[1] == f"PATH ({tmp_path / 'bin'}) for blender"
    assert found.looked_in[2] == str(tmp_path / "opt/blender*/blender")


def test_without_a_requirement_the_first_found_runs(tree):
    configured, on_path, environ = tree
    with_config = discover(BlenderJobType,
                           [("blender", None, str(configured))],
                           environ, "linux")
    assert choose(with_config).path == str(configured)
    assert choose(discover(BlenderJobType, (), environ, "linux")).path == \
        str(on_path)


def test_a_requirement_runs_the_newest_version_in_range(tree, tmp_path):
    configured, _, environ = tree
    found = discover(BlenderJobType, [("blender", None, str(configured))],
                     environ, "linux")
    newest = choose(found, [{"software": "blender", "min_version": "3.5",
                             "max_version": "4.1"}])
    assert (newest.version, newest.origin) == ("4.1.1", "install folder")
    assert choose(found, [{"software": "blender",
                           "max_version": "3"}]).version == "3.6.8"
    assert choose(found, [{"software": "blender",
                           "max_version": "3.4"}]).version == "3.3.0"
    assert choose(found, [{"software": "blender", "min_version": "4",
                           "max_version": "4.0.9"}]).version == "4.0.2"
    # Another program's requirement does not choose among the Blenders.
    assert choose(found, [{"software": "ffmpeg", "min_version": "9"}]) \
        .path == str(configured)


def test_no_version_in_range_says_what_there_is(tree):
    _, _, environ = tree
    found = discover(BlenderJobType, (), environ, "linux")
    with pytest.raises(SoftwareNotFound) as raised:
        choose(found, [{"software": "blender", "min_version": "4.2",
                        "max_version": None}])
    message = str(raised.value)
    assert "no blender version the job accepts (blender 4.2 or newer)" in \
        message
    assert "4.0.2 at " in message and "4.1.1 at " in message


def test_nothing_found_says_where_the_agent_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(BlenderJobType, "install_patterns", {
        "linux": [str(tmp_path / "opt/blender*/blender")]})
    found = discover(BlenderJobType, [("blender", None, "/no/blender")],
                     {"PATH": str(tmp_path)}, "linux")
    assert found.found == []
    with pytest.raises(SoftwareNotFound) as raised:
        choose(found)
    assert str(raised.value) == (
        f"blender not found on this agent (looked in: the agent_executables "
        f"setting (/no/blender); PATH ({tmp_path}) for blender; "
        f"{tmp_path}/opt/blender*/blender)")


def test_the_same_program_twice_is_found_once(tree, tmp_path):
    _, on_path, environ = tree
    os.symlink(on_path, tmp_path / "custom" / "link")
    found = discover(BlenderJobType,
                     [("blender", None, str(tmp_path / "custom" / "link"))],
                     environ, "linux")
    assert [item.origin for item in found.found] == [
        "config", "install folder", "install folder"]


def test_not_a_program_is_not_found(tree, tmp_path):
    _, _, environ = tree
    text = tmp_path / "notes.txt"
    text.write_text("blender")
    found = discover(BlenderJobType, [("blender", None, str(text))],
                     environ, "linux")
    assert str(text) not in [item.path for item in found.found]


# -- versions ----------------------------------------------------------------


def test_a_configured_version_is_taken_as_given(tree):
    configured, _, environ = tree
    found = discover(BlenderJobType,
                     [("blender", "3.6.8-studio", str(configured))],
                     environ, "linux")
    assert found.found[0].version == "3.6.8-studio"


def test_the_folder_name_tells_when_the_program_does_not(tmp_path, kit):
    path = kit.executable(tmp_path / "blender-4.2.1-linux-x64" / "blender",
                          "import sys\nsys.exit(3)\n")
    assert software.version_of(BlenderJobType, str(path)) == "4.2.1"

    def hangs(argv, **options):
        raise subprocess.TimeoutExpired(argv, options["timeout"])

    assert software.version_of(BlenderJobType, str(path), run=hangs) == \
        "4.2.1"
    silent = kit.executable(tmp_path / "bin" / "blender", "pass\n")
    assert software.version_of(BlenderJobType, str(silent)) is None


def test_the_program_is_asked_with_its_version_arguments(tmp_path, kit):
    seen = {}

    def run(argv, **options):
        seen["argv"] = argv
        seen["timeout"] = options["timeout"]
        return subprocess.CompletedProcess(
            argv, 0, "ffmpeg version 6.1.1-3ubuntu5 Copyright (c) 2000-2023 "
                     "the FFmpeg developers\n", "")

    path = kit.executable(tmp_path / "ffmpeg", "pass\n")
    assert software.version_of(FfmpegJobType, str(path), run=run) == "6.1.1"
    assert seen["argv"] == [str(path), "-version"]
    assert seen["timeout"] == software.VERSION_TIMEOUT


def test_install_folder_patterns_use_the_environment(tmp_path):
    (tmp_path / "hfs20.0.547" / "bin").mkdir(parents=True)
    hython = tmp_path / "hfs20.0.547" / "bin" / "hython"
    hython.write_text("")
    assert pattern_paths("${HFS}/bin/hython",
                         {"HFS": str(tmp_path / "hfs20.0.547")}) == \
        [str(hython)]
    assert pattern_paths("${HFS}/bin/hython", {}) == []
    assert pattern_paths("${ProgramFiles}/x", {}) == []  # no such folder
    assert pattern_paths(str(tmp_path / "hfs*" / "bin" / "hython"), {}) == \
        [str(hython)]


def test_version_in_name_reads_folder_names_from_the_file_up():
    pattern = r"(?i)^nuke(\d+)\.(\d+)v(\d+)"
    assert software.version_in_name(
        pattern, "/usr/local/Nuke15.0v4/Nuke15.0") == "15.0.4"
    assert software.version_in_name(
        pattern, "C:\\Program Files\\Nuke14.1v2\\Nuke14.1.exe") == "14.1.2"
    assert software.version_in_name(pattern, "/usr/bin/nuke") is None


# -- the registration's software list ----------------------------------------


def test_report_lists_configured_and_found_versions_once():
    inventory = {
        "blender": Discovery("blender", [
            Installation("blender", "/a", "4.1.1", "PATH"),
            Installation("blender", "/b", "4.1.1", "install folder"),
            Installation("blender", "/c", None, "install folder")]),
        "ffmpeg": Discovery("ffmpeg", [
            Installation("ffmpeg", "/f", "5.1.9", "PATH")]),
    }
    assert report(inventory, [("maya", "2024"), ("blender", "4.1.1")]) == [
        {"software": "maya", "version": "2024"},
        {"software": "blender", "version": "4.1.1"},
        {"software": "ffmpeg", "version": "5.1.9"}]
    assert report({}) == []


def test_discover_all_once_per_program_and_survives_a_broken_one(
        tree, caplog):
    _, _, environ = tree

    class Broken(BlenderJobType):
        software = "broken"
        executables = None  # a bug: .get() fails

    class SecondBlender(BlenderJobType):
        pass

    class NoProgram(jobtypes.JobType):
        pass

    inventory = discover_all([BlenderJobType, SecondBlender, NoProgram,
                              Broken], (), environ, "linux")
    assert sorted(inventory) == ["blender"]
    assert "looking for broken failed" in caplog.text


def test_the_installed_job_types_find_their_programs(tmp_path, kit,
                                                     monkeypatch):
    for cls in (jobtypes.load(name) for name in jobtypes.available()):
        if cls.software:
            monkeypatch.setattr(cls, "install_patterns", {})
    fake_blender(kit, tmp_path / "blender", "4.2.3")
    kit.executable(tmp_path / "ffmpeg",
                   'print("ffmpeg version 7.0.1 Copyright (c) 2000-2024")\n')
    kit.install_fake("Render", tmp_path / "maya2024" / "bin" / "Render")
    inventory = jobtypes.find_software(
        [("maya", None, str(tmp_path / "maya2024" / "bin" / "Render"))],
        {"PATH": str(tmp_path)}, "linux")
    assert {name: found.versions() for name, found in inventory.items()} \
        == {"blender": ["4.2.3"], "ffmpeg": ["7.0.1"], "maya": ["2024"],
            "houdini": [], "nuke": []}


def test_the_agents_token_is_not_shown_to_the_programs_it_asks(tmp_path,
                                                              kit):
    seen = {}

    def run(argv, **options):
        seen.update(options["env"])
        return subprocess.CompletedProcess(argv, 0, "Blender 4.1.1\n", "")

    path = kit.executable(tmp_path / "blender", "pass\n")
    assert software.version_of(BlenderJobType, str(path), run=run, environ={
        "PATH": "/bin", "PYFARM_AGENT_TOKEN": "secret"}) == "4.1.1"
    assert seen == {"PATH": "/bin"}
