"""Watches: what the live layer keeps per (credentials, run) and per (credentials, workflow)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from runcast.live._subscriber import Subscriber
from runcast.models import JSON, Credentials, Run, RunStatus

RunKey = tuple[str, str, str]
"""(credentials fingerprint, workflow id, instance id)."""

WorkflowKey = tuple[str, str]
"""(credentials fingerprint, workflow id)."""


@dataclass(eq=False)
class Watch:
    """State shared by every subscriber of one watched thing, polled as one.

    Attributes:
        credentials: what the first subscriber presented; every subscriber has the same
            fingerprint, so polling with them shows nobody anything they could not read.
        interval: seconds until the next poll when nothing goes wrong (adaptive).
        due: monotonic time the next poll is due.
        failures: consecutive transient failures (5xx, timeouts), for back-off.
        inflight: the poll being made right now, which late joiners await.
        observed_at: monotonic time of the last successful observation.
        ended: set once the watch is removed; its subscribers were closed or left.
    """

    credentials: Credentials
    interval: float
    subscribers: set[Subscriber] = field(default_factory=set)
    due: float = 0.0
    failures: int = 0
    inflight: asyncio.Task[None] | None = None
    observed_at: float | None = None
    observed_wall: datetime | None = None
    ended: bool = False

    @property
    def label(self) -> str:
        """What is watched, for log lines (never the credentials)."""
        return "watch"


Observable = tuple[RunStatus, str, JSON, str | None]
"""What ``Run.observable()`` returns: the part of a run whose changes are delivered."""


@dataclass(eq=False)
class RunWatch(Watch):
    """One run watched for one set of credentials (``runStatus``).

    While ``riding``, the run showed up in its workflow's list poll (made for the same
    credentials), so it is not polled on its own: the list poll asks for its detail
    when its summary there (``summary``) changes.
    """

    key: RunKey = ("", "", "")
    run: Run | None = None
    riding: bool = False
    summary: Observable | None = None

    @property
    def label(self) -> str:
        """What is watched, for log lines (never the credentials)."""
        return f"run {self.key[2]} of {self.key[1]}"

    @property
    def workflow_id(self) -> str:
        """The workflow of the watched run."""
        return self.key[1]

    @property
    def instance_id(self) -> str:
        """The instance id of the watched run."""
        return self.key[2]


@dataclass(eq=False)
class WorkflowWatch(Watch):
    """The run list of one workflow watched for one set of credentials (``workflowRuns``).

    ``known`` holds what the last poll said of each run it saw, and keeps every run
    not yet seen in a terminal status (however old); a run whose entry changes (or
    appears) is a change to deliver. The first poll only sets ``known``. ``discover``
    is set while the unfinished runs older than the first page have not all been
    listed yet (at the start, or after a burst of new runs longer than a poll reads).
    ``listed_with`` is the status filter the last poll sent upstream (``None``: none).
    The same list poll carries the ``runStatus`` watches of that workflow and
    credentials (see ``RunWatch.riding``), so it lives on without subscribers while
    such watches exist.
    """

    key: WorkflowKey = ("", "")
    known: dict[str, Observable] = field(default_factory=dict)
    baselined: bool = False
    discover: bool = True
    listed_with: tuple[RunStatus, ...] | None = None

    @property
    def label(self) -> str:
        """What is watched, for log lines (never the credentials)."""
        return f"runs of {self.key[1]}"

    @property
    def workflow_id(self) -> str:
        """The watched workflow."""
        return self.key[1]
