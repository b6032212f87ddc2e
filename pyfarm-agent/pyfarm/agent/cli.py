"""
The ``pyfarm-agent`` command.

::

    pyfarm-agent start --master URL --token TOKEN [--cpus N] [--ram MB]
                       [--tags a,b] [--data-dir DIR] [--no-daemon]
    pyfarm-agent stop [--data-dir DIR] [--timeout SECONDS]
    pyfarm-agent status [--data-dir DIR]

Settings also come from the config files and ``PYFARM_*`` variables (see
:mod:`pyfarm.agent.config`); options win. ``start`` detaches from the
terminal (double fork) and logs to ``DATA_DIR/agent.log`` unless
``--no-daemon`` is given; either way the pid is kept in
``DATA_DIR/agent.pid``. ``stop`` sends SIGTERM to that pid and waits;
``status`` exits 0 when the agent runs and 3 when it does not.
"""

import argparse
import json
import os
import signal
import sys
import time

import psutil

from pyfarm.agent import __version__
from pyfarm.agent.config import load_settings
from pyfarm.agent.errors import AgentError
from pyfarm.core.config import ConfigError
from pyfarm.core.logger import getLogger

logger = getLogger("agent.cli")

#: Exit status of ``status`` when the agent does not run (as in LSB).
NOT_RUNNING = 3

#: Words in the command line of a running agent (``pyfarm-agent start``
#: or ``python -m pyfarm.agent.cli``); "pyfarm" alone would also match the
#: master, which may have reused the pid of a dead agent on its host.
AGENT_COMMANDS = ("pyfarm-agent", "pyfarm.agent")


def build_parser():
    """Return the argument parser of ``pyfarm-agent``."""
    parser = argparse.ArgumentParser(
        prog="pyfarm-agent", description="PyFarm's render node agent.")
    commands = parser.add_subparsers(dest="command", required=True)

    start = commands.add_parser("start", help="start the agent")
    start.add_argument("--master", metavar="URL",
                       help="the master, e.g. http://master:5000 "
                            "(PYFARM_MASTER_URL)")
    start.add_argument("--token", help="the agent's API token "
                                       "(PYFARM_AGENT_TOKEN)")
    start.add_argument("--cpus", type=int, metavar="N",
                       help="CPUs to offer (default: all)")
    start.add_argument("--ram", type=int, metavar="MB",
                       help="memory to offer in MB (default: all)")
    start.add_argument("--tags", metavar="A,B",
                       help="tags to add to this agent")
    start.add_argument("--data-dir", metavar="DIR",
                       help="where the agent keeps its state")
    start.add_argument("--no-daemon", action="store_true",
                       help="stay in the foreground and log to stderr")
    start.set_defaults(handler=cmd_start)

    stop = commands.add_parser("stop", help="stop the running agent")
    stop.add_argument("--data-dir", metavar="DIR")
    stop.add_argument("--timeout", type=float, default=30.0,
                      help="seconds to wait for it to end (default 30)")
    stop.set_defaults(handler=cmd_stop)

    status = commands.add_parser("status", help="say whether it runs")
    status.add_argument("--data-dir", metavar="DIR")
    status.set_defaults(handler=cmd_status)
    return parser


def settings_for(args, require):
    """Return the settings with the command-line options applied."""
    overrides = {
        "master_url": getattr(args, "master", None),
        "agent_token": getattr(args, "token", None),
        "agent_cpus": getattr(args, "cpus", None),
        "agent_ram": getattr(args, "ram", None),
        "agent_tags": getattr(args, "tags", None),
        "agent_data_dir": args.data_dir,
    }
    return load_settings(overrides, require=require)


def pid_in(pid_file):
    """Return the pid written in ``pid_file`` or None."""
    try:
        return int(pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def running_pid(pid_file):
    """Return the pid of the agent recorded in ``pid_file`` if it runs."""
    pid = pid_in(pid_file)
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        command = " ".join(process.cmdline())
    except psutil.AccessDenied:
        return pid  # another user's process: it is there, trust the file
    except psutil.Error:
        return None
    if any(word in command for word in AGENT_COMMANDS):
        return pid
    return None  # a pid a dead agent left, reused by another program


def daemonize(log_file):
    """Detach from the terminal (double fork); return a pipe to report.

    The first process waits until the daemon writes its pid to the
    returned file descriptor (then prints it) or closes it (a failure).
    """
    if not hasattr(os, "fork"):
        raise AgentError("this system cannot detach a process; run "
                         "'pyfarm-agent start --no-daemon' as a service")
    read_end, write_end = os.pipe()
    child = os.fork()
    if child > 0:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as stream:
            report = stream.read().decode("ascii", "replace").strip()
        os.waitpid(child, 0)
        if report.isdigit():
            print(f"pyfarm-agent started (pid {report}); log: {log_file}")
            sys.stdout.flush()
            os._exit(0)
        print(f"pyfarm-agent: the agent did not start; see {log_file}",
              file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)
    os.close(read_end)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    os.umask(0o022)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    output = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                     0o644)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(null)
    os.close(output)
    return write_end


def run(settings, on_started=None):
    """Run the agent on the global reactor until it is told to stop.

    ``on_started`` is called once the service started.
    """
    from twisted.internet import reactor
    from twisted.logger import STDLibLogObserver, globalLogBeginner

    from pyfarm.agent.service import AgentService

    globalLogBeginner.beginLoggingTo(
        [STDLibLogObserver(name="pyfarm.agent.twisted")],
        redirectStandardIO=False)
    agent = AgentService(settings, reactor)
    agent.startService()
    if on_started is not None:
        on_started()
    reactor.addSystemEventTrigger("before", "shutdown", agent.stopService)
    reactor.run()


def cmd_start(args):
    """Start the agent, detached unless ``--no-daemon``."""
    settings = settings_for(args, require=True)
    pid = running_pid(settings.pid_file)
    if pid is not None:
        raise AgentError(f"an agent already runs with data directory "
                         f"{settings.data_dir} (pid {pid}); stop it first")
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AgentError(f"cannot use {settings.data_dir} as the data "
                         f"directory (agent_data_dir, --data-dir): "
                         f"{error.strerror}") from None
    report = None if args.no_daemon else daemonize(settings.log_file)
    settings.pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")

    def started():
        """Tell the waiting parent process the daemon's pid."""
        if report is not None:
            os.write(report, str(os.getpid()).encode("ascii"))
            os.close(report)

    try:
        logger.info("pyfarm-agent %s starting (pid %s, master %s, data "
                    "%s)", __version__, os.getpid(), settings.master_url,
                    settings.data_dir)
        run(settings, on_started=started)
    finally:
        if pid_in(settings.pid_file) == os.getpid():  # not another agent's
            settings.pid_file.unlink(missing_ok=True)
    logger.info("pyfarm-agent stopped")


def alive(process):
    """Whether ``process`` still runs (a zombie does not)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_for_exit(pid, timeout, poll=0.05):
    """Wait until ``pid`` ended (a zombie has); return whether it did."""
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    deadline = time.monotonic() + timeout
    while alive(process):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True


def cmd_stop(args):
    """Send SIGTERM to the running agent and wait for it to end."""
    settings = settings_for(args, require=False)
    pid = running_pid(settings.pid_file)
    if pid is None:
        print("pyfarm-agent is not running")
        return 0
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:  # it ended since we looked
        print("pyfarm-agent is not running")
        return 0
    if not wait_for_exit(pid, args.timeout):
        raise AgentError(f"the agent (pid {pid}) still runs "
                         f"{args.timeout:g} s after SIGTERM")
    print(f"pyfarm-agent stopped (pid {pid})")
    return 0


def cmd_status(args):
    """Say whether the agent runs, its id and its master."""
    settings = settings_for(args, require=False)
    pid = running_pid(settings.pid_file)
    try:
        status = json.loads((settings.data_dir / "status.json").read_text(
            encoding="utf-8"))
    except (OSError, ValueError):
        status = {}
    agent_id = status.get("id")
    if agent_id is None and (settings.data_dir / "agent_id").is_file():
        agent_id = (settings.data_dir / "agent_id").read_text(
            encoding="utf-8").strip()
    print(f"pyfarm-agent is running (pid {pid})" if pid
          else "pyfarm-agent is not running")
    print(f"id: {agent_id or 'none yet'}")
    print(f"master: {status.get('master') or settings.master_url or 'unset'}")
    if pid and status.get("registered_at"):
        print(f"registered at: {status['registered_at']}")
    print(f"data directory: {settings.data_dir}")
    return 0 if pid else NOT_RUNNING


def main(argv=None):
    """Run ``pyfarm-agent``; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except (ConfigError, AgentError) as error:
        print(f"pyfarm-agent: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
