"""One controller per database file: an exclusive lock held for the controller's lifetime.

Two controllers writing one SQLite file would each resume and end the other's runs. The
lock is an flock(2) on ``<db>.lock``, which also records the holder's pid for the error
message. The kernel releases the lock when the process exits, so a killed controller
never leaves a stale lock behind. Reports and tests that only read the database take no
lock.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from llmping.errors import StoreError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


class DatabaseInUseError(StoreError):
    """Another controller holds the database's lock."""

    exit_code = 2


def lock_path_for(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


class DatabaseLock:
    """An exclusive, non-blocking lock on a database file; release() to give it up."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.path = lock_path_for(db_path)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; raises DatabaseInUseError when another process holds it."""
        if fcntl is None:
            # NOTE: no flock on Windows, so two controllers there are not kept apart.
            log.warning(
                "cannot lock %s on this platform; run one controller per file", self.db_path
            )
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(
                f"cannot create the lock file {self.path}: {exc.strerror}; "
                "check that the directory is writable"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            raise DatabaseInUseError(
                f"database {self.db_path} is in use by another controller (pid {holder}); "
                "stop that controller or give this one another --db file"
            ) from exc
        _write_pid(fd)
        self._fd = fd

    def release(self) -> None:
        """Give up the lock; the lock file stays, which is harmless."""
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
