"""
What this machine is: psutil and friends turned into plain dicts.

Sizes are whole megabytes (MiB). :func:`collect` gives the fields the
master's registration expects; :func:`free_ram` is cheap enough to call
before every sync.
"""

import platform
import shutil
import socket
import subprocess

import psutil

from pyfarm.core.enums import OperatingSystem
from pyfarm.core.logger import getLogger

logger = getLogger("agent.sysinfo")

MB = 1024 * 1024

#: File systems that are never a place to render to.
SKIP_FSTYPES = frozenset({"squashfs", "tmpfs", "devtmpfs", "iso9660"})

#: Seconds ``nvidia-smi`` may take before it is ignored.
NVIDIA_SMI_TIMEOUT = 10


def hostname():
    """Return this machine's host name."""
    return socket.gethostname()


def os_name(platform_name=None):
    """Return the :class:`OperatingSystem` value of this machine."""
    return OperatingSystem.current(platform_name).value


def os_version():
    """Return a human readable version of the operating system."""
    return _os_version()[:255]


def _os_version():
    system = OperatingSystem.current()
    if system is OperatingSystem.LINUX:
        try:
            release = platform.freedesktop_os_release()
        except OSError:
            release = {}
        name = release.get("PRETTY_NAME")
        kernel = platform.release()
        return f"{name} (kernel {kernel})" if name else kernel
    if system is OperatingSystem.MAC:
        return platform.mac_ver()[0] or platform.release()
    if system is OperatingSystem.WINDOWS:
        return platform.version()
    return platform.release()


def cpus():
    """Return the number of logical CPUs (at least 1)."""
    return psutil.cpu_count(logical=True) or 1


def ram():
    """Return the total memory in MB."""
    return max(1, psutil.virtual_memory().total // MB)


def free_ram():
    """Return the memory available to new processes in MB."""
    return psutil.virtual_memory().available // MB


def disks(partitions=None, usage=None):
    """Return ``[{"path", "total", "free"}]`` (MB) of the local disks."""
    partitions = psutil.disk_partitions(all=False) if partitions is None \
        else partitions
    usage = usage or psutil.disk_usage
    found, seen = [], set()
    for part in partitions:
        if part.fstype in SKIP_FSTYPES or part.device.startswith(
                "/dev/loop") or part.mountpoint in seen:
            continue
        seen.add(part.mountpoint)
        try:
            space = usage(part.mountpoint)
        except OSError:  # removable drive without media, stale mount
            continue
        found.append({"path": part.mountpoint, "total": space.total // MB,
                      "free": space.free // MB})
    if not found:  # containers often list no partitions at all
        root = "C:\\" if OperatingSystem.current() is \
            OperatingSystem.WINDOWS else "/"
        try:
            space = usage(root)
            found.append({"path": root, "total": space.total // MB,
                          "free": space.free // MB})
        except OSError:
            pass
    return found


def parse_nvidia_smi(text):
    """Parse ``nvidia-smi --query-gpu=name,memory.total`` CSV output."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        name, _, memory = line.rpartition(",")
        if not name:
            name, memory = memory, ""
        try:
            memory_mb = int(float(memory.strip()))
        except ValueError:
            memory_mb = None
        if name.strip():
            gpus.append({"name": name.strip()[:255], "ram": memory_mb})
    return gpus


def gpus(run=subprocess.run, which=shutil.which):
    """Return ``[{"name", "ram"}]`` of the GPUs ``nvidia-smi`` reports.

    Without ``nvidia-smi`` (or when it fails) the list is empty: other
    vendors give no portable way to ask.
    """
    program = which("nvidia-smi")
    if program is None:
        return []
    try:
        result = run(
            [program, "--query-gpu=name,memory.total",
             "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT,
            check=False)
    except (OSError, subprocess.SubprocessError) as error:
        logger.warning("nvidia-smi failed: %s", error)
        return []
    if result.returncode != 0:
        logger.warning("nvidia-smi exited with %s: %s", result.returncode,
                       result.stderr.strip())
        return []
    return parse_nvidia_smi(result.stdout)


def collect():
    """Return everything the master's registration wants to know."""
    return {
        "hostname": hostname(),
        "os": os_name(),
        "os_version": os_version(),
        "cpus": cpus(),
        "ram": ram(),
        "free_ram": free_ram(),
        "gpus": gpus(),
        "disks": disks(),
    }
