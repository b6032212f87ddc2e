"""What the agent tells the master about its machine."""

import subprocess
from collections import namedtuple

from pyfarm.agent import sysinfo
from pyfarm.core.enums import OperatingSystem

Partition = namedtuple("Partition", "device mountpoint fstype")
Usage = namedtuple("Usage", "total free")
MB = 1024 * 1024


def test_collect_has_the_registration_fields_and_types():
    info = sysinfo.collect()
    assert set(info) == {"hostname", "os", "os_version", "cpus", "ram",
                         "free_ram", "gpus", "disks"}
    assert isinstance(info["hostname"], str) and info["hostname"]
    assert info["os"] in {member.value for member in OperatingSystem}
    assert isinstance(info["os_version"], str)
    assert isinstance(info["cpus"], int) and info["cpus"] >= 1
    assert isinstance(info["ram"], int) and info["ram"] >= 1
    assert isinstance(info["free_ram"], int)
    assert 0 <= info["free_ram"] <= info["ram"]
    assert isinstance(info["gpus"], list)
    assert info["disks"], "at least one disk"
    for disk in info["disks"]:
        assert set(disk) == {"path", "total", "free"}
        assert isinstance(disk["total"], int)
        assert 0 <= disk["free"] <= disk["total"]


def test_os_name_maps_platforms():
    assert sysinfo.os_name("linux") == "linux"
    assert sysinfo.os_name("darwin") == "mac"
    assert sysinfo.os_name("win32") == "windows"


def test_disks_skip_pseudo_file_systems_and_duplicates():
    partitions = [Partition("/dev/sda1", "/", "ext4"),
                  Partition("/dev/sda1", "/", "ext4"),
                  Partition("/dev/loop3", "/snap/x", "squashfs"),
                  Partition("tmpfs", "/run", "tmpfs"),
                  Partition("/dev/sdb1", "/media/cd", "vfat")]

    def usage(path):
        if path == "/media/cd":
            raise OSError("no medium")
        return Usage(100 * MB, 40 * MB)

    assert sysinfo.disks(partitions, usage) == [
        {"path": "/", "total": 100, "free": 40}]


def test_disks_fall_back_to_the_root():
    assert sysinfo.disks([], lambda path: Usage(10 * MB, 5 * MB)) == [
        {"path": "/", "total": 10, "free": 5}]


def test_gpus_without_nvidia_smi_is_empty():
    assert sysinfo.gpus(which=lambda name: None) == []


def test_gpus_from_nvidia_smi():
    seen = {}

    def run(argv, **options):
        seen["argv"] = argv
        return subprocess.CompletedProcess(
            argv, 0, "NVIDIA RTX A6000, 49140\nTesla T4, [N/A]\n", "")

    gpus = sysinfo.gpus(run=run, which=lambda name: "/usr/bin/nvidia-smi")
    assert gpus == [{"name": "NVIDIA RTX A6000", "ram": 49140},
                    {"name": "Tesla T4", "ram": None}]
    assert seen["argv"][0] == "/usr/bin/nvidia-smi"
    assert "--query-gpu=name,memory.total" in seen["argv"]


def test_gpus_when_nvidia_smi_fails():
    def run(argv, **options):
        return subprocess.CompletedProcess(argv, 9, "", "no driver")

    def hangs(argv, **options):
        raise subprocess.TimeoutExpired(argv, 10)

    which = lambda name: "/usr/bin/nvidia-smi"  # noqa: E731
    assert sysinfo.gpus(run=run, which=which) == []
    assert sysinfo.gpus(run=hangs, which=which) == []
