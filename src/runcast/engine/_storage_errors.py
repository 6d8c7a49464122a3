"""The errors of the engine's database: it cannot be opened, is in use, or cannot be written."""

from __future__ import annotations

from runcast.errors import RuncastError, UpstreamUnavailable

__all__ = ["DatabaseInUse", "DatabaseUnusable", "StorageUnavailable"]


class DatabaseUnusable(RuncastError):
    """The engine's SQLite file cannot be opened or read: not a database, corrupt, unwritable.

    Raised by ``Engine.start``; the message is one line naming the file and the reason.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot open the database {path!r}: {reason}")
        self.path = path


class DatabaseInUse(DatabaseUnusable):
    """Another process (``pid``) already runs an engine on this database file.

    Two engines on one file would both execute its runs, so the second refuses to start.
    """

    def __init__(self, path: str, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            path,
            f"it is in use by {holder} (lock file {path}.lock); stop that process,"
            " or give this one its own file with --db",
        )
        self.pid = pid


class StorageUnavailable(UpstreamUnavailable):
    """The engine's database cannot be written right now (a full disk, an I/O error).

    New calls are refused while it lasts; calls already accepted wait, and the engine
    retries their commit until it succeeds, then continues every run by itself.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the engine cannot write its database right now ({reason}); it retries by"
            " itself, try again in a few seconds",
            status_code=503,
        )
        self.reason = reason
