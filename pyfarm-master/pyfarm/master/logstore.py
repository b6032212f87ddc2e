"""
Task logs: one log per assignment (one process on an agent), on disk.

The interface is small so that shared or object storage can replace the
files later: append a chunk at an offset, read a range, tell the size.
Appends are idempotent: a chunk sent again after a timeout is a no-op.
"""

import os
import re
import threading
from pathlib import Path

from pyfarm.master.errors import Conflict

_LOG_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_local_lock = threading.Lock()

try:  # POSIX: lock the file against other master processes.
    import fcntl
except ImportError:  # pragma: no cover - Windows masters lock in-process
    fcntl = None


class LogGap(Conflict):
    """A chunk starts after the end of the stored log."""


class FileLogStore:
    """Logs as files under ``root``: ``root/ab/abcdef....log``."""

    def __init__(self, root):
        self.root = Path(root)

    def path(self, log_id):
        """Return the file of ``log_id``."""
        if not _LOG_ID.match(log_id):
            raise ValueError(f"bad log id {log_id!r}")
        return self.root / log_id[:2] / f"{log_id}.log"

    def size(self, log_id):
        """Return the stored size of ``log_id`` in bytes (0 if none)."""
        try:
            return self.path(log_id).stat().st_size
        except FileNotFoundError:
            return 0

    def exists(self, log_id):
        """Whether anything was stored for ``log_id``."""
        return self.path(log_id).exists()

    def append(self, log_id, offset, data):
        """Store ``data`` (bytes) at ``offset``; return the new size.

        Bytes already stored are not written again, so a repeated chunk is
        a no-op. A chunk starting past the end raises :class:`LogGap`,
        whose ``size`` tells where the next chunk must start.
        """
        path = self.path(log_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _local_lock, open(path, "ab") as stream:
            if fcntl is not None:
                fcntl.flock(stream.fileno(), fcntl.LOCK_EX)
            try:
                size = os.fstat(stream.fileno()).st_size
                if offset > size:
                    raise LogGap(
                        f"log chunk starts at byte {offset} but the log "
                        f"holds {size} bytes; send from byte {size}",
                        size=size)
                skip = size - offset
                if skip < len(data):
                    stream.write(data[skip:])
                    stream.flush()
                    size += len(data) - skip
                return size
            finally:
                if fcntl is not None:
                    fcntl.flock(stream.fileno(), fcntl.LOCK_UN)

    def read(self, log_id, offset=0, length=None):
        """Return up to ``length`` bytes of ``log_id`` from ``offset``."""
        try:
            with open(self.path(log_id), "rb") as stream:
                stream.seek(offset)
                return stream.read(-1 if length is None else length)
        except FileNotFoundError:
            return b""
