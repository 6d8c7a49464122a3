"""Plain values shared by every layer: workflows, runs, steps and credentials.

Models are frozen dataclasses. They know nothing of HTTP, SQLite or GraphQL;
adapters build them from what an upstream said, the schema renders them.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

JSON: TypeAlias = Any
"""Any JSON-serialisable value (dict, list, str, int, float, bool or None)."""


class RunStatus(enum.Enum):
    """The status of a run, as the lifecycle in design.md section 1 defines it.

    The value is the upstream's spelling; anything an upstream says that is not
    listed here parses as ``UNKNOWN`` (the raw string is kept on the run).
    """

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    WAITING = "waiting"
    WAITING_FOR_PAUSE = "waitingForPause"
    ERRORED = "errored"
    TERMINATED = "terminated"
    COMPLETE = "complete"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, raw: object) -> RunStatus:
        """Return the status named by ``raw``, or ``UNKNOWN`` for anything else."""
        if isinstance(raw, str):
            try:
                return cls(raw)
            except ValueError:
                return cls.UNKNOWN
        return cls.UNKNOWN

    @property
    def is_terminal(self) -> bool:
        """Whether a run in this status can never change again."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({RunStatus.ERRORED, RunStatus.TERMINATED, RunStatus.COMPLETE})


class WorkflowKind(enum.Enum):
    """A ``workflow`` has runs; a ``script`` is a stateless Worker that is called by URL."""

    WORKFLOW = "workflow"
    SCRIPT = "script"


@dataclass(frozen=True, slots=True)
class Workflow:
    """A deployed workflow (or script) as an upstream describes it."""

    id: str
    name: str
    kind: WorkflowKind = WorkflowKind.WORKFLOW
    url: str | None = None
    version: str | None = None
    """The current version of the definition, where the upstream tells."""
    input_schema: JSON = None
    """The JSON Schema a run's input must match, where the upstream has one."""
    schedule: str | None = None
    """The cron expression that triggers runs, where the upstream has one."""
    next_scheduled_at: datetime | None = None
    """When the schedule triggers the next run."""


@dataclass(frozen=True, slots=True)
class Step:
    """One node of a run as executed so far."""

    name: str
    type: str
    status: str
    attempts: int = 0
    output: JSON = None
    error: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


class RunWaitReason(enum.Enum):
    """Why a suspended run is not executing: what ``resumeRun`` can and cannot change."""

    SLEEP = "sleep"
    EVENT = "event"
    RETRY = "retry"
    REQUESTED_PAUSE = "requestedPause"


@dataclass(frozen=True, slots=True)
class RunWait:
    """What a suspended run waits for: a sleep's end, an event, a retry, or a resume."""

    reason: RunWaitReason
    event_type: str | None = None
    """For ``EVENT``: the event type the run waits for."""
    until: datetime | None = None
    """When it resumes by itself (a sleep's end, a retry, a wait's timeout), if ever."""


@dataclass(frozen=True, slots=True)
class Run:
    """One execution of a workflow, named by its ``instance_id``.

    ``raw_status`` is exactly what the upstream said; ``status`` is its parsed form.
    ``steps`` is ``None`` where the upstream does not expose steps.
    """

    workflow_id: str
    instance_id: str
    status: RunStatus
    raw_status: str
    input: JSON = None
    output: JSON = None
    error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    steps: tuple[Step, ...] | None = None
    wake_at: datetime | None = None
    """When a paused run resumes by itself (end of a sleep or a wait's timeout), if known."""
    workflow_version: str | None = None
    """The version of the workflow's definition the run executes, where the upstream tells."""
    wait: RunWait | None = None
    """What a suspended run waits for, where the upstream tells; ``None`` otherwise."""

    @property
    def is_terminal(self) -> bool:
        """Whether the run has finished for good."""
        return self.status.is_terminal

    def observable(self) -> tuple[RunStatus, str, JSON, str | None]:
        """The part of a run whose change subscribers are told about."""
        return (self.status, self.raw_status, self.output, self.error)


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of a run listing; ``next_cursor`` is ``None`` on the last page."""

    runs: tuple[Run, ...]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the caller presented, passed through to the upstream unchanged.

    The token never appears in ``repr`` or logs; ``fingerprint`` identifies it
    without revealing it (used to keep one tenant's watches apart from another's).
    """

    token: str | None = field(default=None, repr=False)
    scheme: str = "Bearer"
    """The ``Authorization`` scheme the token came with; a bare token counts as ``Bearer``."""

    @classmethod
    def from_authorization(cls, header: str | None) -> Credentials:
        """Build credentials from an ``Authorization`` header value (``Scheme x`` or ``x``)."""
        if not header or not header.strip():
            return cls(None)
        scheme, _, rest = header.strip().partition(" ")
        if not rest.strip():
            return cls(scheme)
        if scheme.lower() == "bearer":
            return cls(rest.strip())
        return cls(rest.strip(), scheme=scheme)

    @property
    def is_bearer(self) -> bool:
        """Whether the token is a bearer token (the only kind the upstreams accept)."""
        return self.scheme.lower() == "bearer"

    @property
    def fingerprint(self) -> str:
        """A short, stable, non-reversible name for these credentials."""
        if self.token is None:
            return "anonymous"
        return hashlib.sha256(f"{self.scheme.lower()} {self.token}".encode()).hexdigest()[:16]

    def authorization_header(self) -> dict[str, str]:
        """The header to send upstream, scheme kept as the caller sent it; or nothing."""
        return {"Authorization": f"{self.scheme} {self.token}"} if self.token else {}


ANONYMOUS = Credentials(None)
