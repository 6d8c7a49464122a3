"""One owner per database: an exclusive ``flock`` on a lock file beside the SQLite file.

The lock is held for the engine's lifetime. The kernel drops it when the process
ends, however it ends, so a ``kill -9`` never leaves a stale lock behind. The file
holds the owner's pid, so a second process can say who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

__all__ = ["DatabaseLock", "LockHeld", "lock_path"]


class LockHeld(Exception):
    """Another open engine (``pid``, when it could be read) holds the database's lock."""

    def __init__(self, path: Path, pid: int | None) -> None:
        super().__init__(f"{path} is locked by process {pid}")
        self.path = path
        self.pid = pid


def lock_path(db_path: Path) -> Path:
    """The lock file of ``db_path``: ``<db_path>.lock`` in the same folder."""
    return db_path.with_name(db_path.name + ".lock")


class DatabaseLock:
    """The exclusive lock of one database file, taken by ``acquire`` and given up by ``release``."""

    def __init__(self, db_path: Path) -> None:
        self.path = lock_path(db_path)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write this pid into the lock file (blocking: run it off the loop).

        Raises:
            LockHeld: another process (or another engine of this one) holds it.
            OSError: the lock file cannot be created.
        """
        if self._fd is not None:
            raise RuntimeError("the database lock is already held")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise LockHeld(self.path, holder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (the file stays; its content no longer means anything)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
