"""
Run a job's process: spawn it, stream its output, kill its whole tree.

:func:`spawn` starts ``argv`` with ``reactor.spawnProcess`` and returns a
:class:`RunningProcess`. Output of stdout and stderr goes, as it arrives,
to ``on_data(bytes)`` (the log) and, split into lines, to
``on_line(str)`` (the job type's parser). ``RunningProcess.ended`` fires
with an :class:`ExitStatus`.

:func:`kill_tree` stops a process and every descendant it started:
SIGTERM to all of them, SIGKILL to those still alive after a grace period.
"""

import os
import re
import shutil
from dataclasses import dataclass

import psutil
from twisted.internet import defer, protocol

from pyfarm.core.logger import getLogger

logger = getLogger("agent.process")

#: A line longer than this is passed on in pieces.
MAX_LINE = 64 * 1024

#: Seconds to wait, once the process exited, for the programs it left
#: behind to close its output; then the agent stops reading.
OUTPUT_GRACE = 5.0

#: Seconds between two checks whether a killed tree is gone.
KILL_POLL = 0.1

#: Seconds between two looks for children a killed tree started meanwhile.
#: Finding them reads every process of the machine (psutil), which takes
#: tens of milliseconds on a busy node: too much for every poll on the
#: reactor's thread.
KILL_RESCAN = 1.0

_EOL = re.compile(rb"\r\n|\r|\n")


class SpawnError(Exception):
    """The process could not be started; the message says why."""


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended: an exit ``code`` or the ``signal`` killing it."""

    code: int | None
    signal: int | None = None

    @property
    def success(self):
        """Whether the process exited with code 0."""
        return self.code == 0

    def describe(self):
        """Say how the process ended, for people."""
        if self.signal is not None:
            return f"killed by signal {self.signal}"
        return f"exit code {self.code}"


class LineSplitter:
    """Cut a byte stream into lines (``\\n``, ``\\r\\n`` or ``\\r``).

    Carriage returns count as line ends since progress bars redraw a line
    with them. Lines are decoded as UTF-8, bad bytes replaced.
    """

    def __init__(self, on_line, max_line=MAX_LINE):
        self.on_line = on_line
        self.max_line = max_line
        self._buffer = b""

    def feed(self, data):
        """Add ``data``; call ``on_line`` for every complete line."""
        self._buffer += data
        while True:
            match = _EOL.search(self._buffer)
            if match is None:
                break
            if match.group() == b"\r" and match.end() == len(self._buffer):
                break  # maybe the first half of \r\n
            line = self._buffer[:match.start()]
            self._buffer = self._buffer[match.end():]
            self._emit(line)
        while len(self._buffer) > self.max_line:
            line = self._buffer[:self.max_line]
            self._buffer = self._buffer[self.max_line:]
            self._emit(line)

    def flush(self):
        """Pass on what is left (a last line without an end)."""
        line, self._buffer = self._buffer.rstrip(b"\r"), b""
        if line:
            self._emit(line)

    def _emit(self, line):
        for start in range(0, max(len(line), 1), self.max_line):
            piece = line[start:start + self.max_line]
            self.on_line(piece.decode("utf-8", errors="replace"))


class OutputProtocol(protocol.ProcessProtocol):
    """Collect a process's output and tell when it ends."""

    def __init__(self, on_data, on_line, reactor=None,
                 output_grace=OUTPUT_GRACE):
        self.on_data = on_data
        self.reactor = reactor
        self.output_grace = output_grace
        self._close_call = None
        self.pid = None
        self.ended = defer.Deferred()
        self._splitters = {1: LineSplitter(on_line),
                           2: LineSplitter(on_line)}

    def connectionMade(self):  # noqa: N802 - Twisted interface
        """Close stdin: a render has nobody to talk to."""
        self.pid = self.transport.pid
        self.transport.closeStdin()

    def childDataReceived(self, fd, data):  # noqa: N802 - Twisted interface
        """Pass output on to the log and the line parser."""
        self.on_data(data)
        splitter = self._splitters.get(fd)
        if splitter is not None:
            splitter.feed(data)

    def processExited(self, reason):  # noqa: N802 - Twisted interface
        """The process is gone; its output may still be open.

        A program it started in the background may hold the output open
        forever; after a grace period the agent stops reading.
        """
        if self.reactor is not None:
            self._close_call = self.reactor.callLater(
                self.output_grace, self._close_output)

    def _close_output(self):
        self._close_call = None
        logger.warning("pid %s exited %g s ago but its output is still "
                       "open; closing it", self.pid,
                       self.output_grace)
        self.transport.loseConnection()

    def processEnded(self, reason):  # noqa: N802 - Twisted interface
        """Flush the last lines and fire :attr:`ended`."""
        if self._close_call is not None and self._close_call.active():
            self._close_call.cancel()
        for splitter in self._splitters.values():
            splitter.flush()
        value = reason.value
        self.ended.callback(ExitStatus(
            getattr(value, "exitCode", None), getattr(value, "signal", None)))


def find_executable(name, environ, cwd=None):
    """Return the path of ``name``, searched on the ``PATH`` in ``environ``.

    A name with a directory part is taken relative to ``cwd``. Raises
    :class:`SpawnError` naming the program when it is not found.
    """
    if os.path.dirname(name):
        if cwd is not None and not os.path.isabs(name):
            name = os.path.join(cwd, name)
        if os.access(name, os.X_OK) and not os.path.isdir(name):
            return name
        raise SpawnError(f"cannot run {name!r}: no such executable file")
    found = shutil.which(name, path=environ.get("PATH", os.defpath))
    if found is None:
        raise SpawnError(
            f"cannot run {name!r}: not found on PATH "
            f"({environ.get('PATH', os.defpath)})")
    return found


class RunningProcess:
    """A spawned process: its ``pid`` and the ``ended`` Deferred."""

    def __init__(self, reactor, pid, ended):
        self.reactor = reactor
        self.pid = pid
        self.ended = ended
        self.finished = False
        ended.addBoth(self._finished)

    def _finished(self, result):
        self.finished = True
        return result

    def kill(self, grace):
        """Kill the process and its descendants (see :func:`kill_tree`)."""
        if self.finished:
            return defer.succeed([])
        return kill_tree(self.reactor, self.pid, grace)


def spawn(reactor, argv, environ, cwd, on_data, on_line,
          output_grace=OUTPUT_GRACE):
    """Start ``argv`` in ``cwd`` with ``environ``; return a process.

    Raises :class:`SpawnError` when the program cannot be started.
    """
    if not argv:
        raise SpawnError("cannot run an empty command")
    if cwd is not None and not os.path.isdir(cwd):
        raise SpawnError(f"cannot run in {cwd!r}: no such directory")
    executable = find_executable(argv[0], environ, cwd)
    output = OutputProtocol(on_data, on_line, reactor, output_grace)
    try:
        transport = reactor.spawnProcess(
            output, executable, [str(arg) for arg in argv], env=environ,
            path=cwd)
    except OSError as error:
        raise SpawnError(f"cannot run {argv[0]!r}: {error}") from None
    logger.info("started pid %s: %r", transport.pid, argv)
    return RunningProcess(reactor, transport.pid, output.ended)


def process_tree(pid):
    """Return ``[process, *descendants]`` of ``pid`` (empty if gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def alive(process):
    """Whether ``process`` still runs (a zombie does not)."""
    try:
        return process.is_running() and \
            process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _signal(processes, how):
    for process in processes:
        try:
            getattr(process, how)()
        except psutil.NoSuchProcess:
            pass
        except psutil.AccessDenied:
            logger.warning("may not %s pid %s", how, process.pid)


def kill_tree(reactor, pid, grace, poll=KILL_POLL, rescan=KILL_RESCAN):
    """Terminate ``pid`` and its descendants; SIGKILL them after ``grace``.

    The tree is read before the first signal, since orphans lose their
    parent link, and again every ``rescan`` seconds and at the deadline
    for children started meanwhile; between those only the known
    processes are checked. Fires with the pids that needed SIGKILL.
    """
    tree = process_tree(pid)
    if not tree:
        return defer.succeed([])
    logger.info("terminating pid %s and %d descendants", pid, len(tree) - 1)
    _signal(tree, "terminate")
    done = defer.Deferred()
    deadline = reactor.seconds() + grace
    known = {process.pid: process for process in tree}
    scanned = [reactor.seconds()]

    def check():
        """Signal again or finish: is anything of the tree left?"""
        now = reactor.seconds()
        if now - scanned[0] >= rescan or now >= deadline:
            scanned[0] = now
            for process in process_tree(pid):  # children started meanwhile
                known.setdefault(process.pid, process)
        living = [process for process in known.values() if alive(process)]
        if not living:
            done.callback([])
        elif now >= deadline:
            logger.warning("killing pids %s: still alive %g s after "
                           "SIGTERM", [p.pid for p in living], grace)
            _signal(living, "kill")
            done.callback([process.pid for process in living])
        else:
            reactor.callLater(min(poll, grace), check)

    reactor.callLater(0, check)
    return done
