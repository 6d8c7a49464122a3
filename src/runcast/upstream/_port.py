"""The upstream port: what runcast needs from a run API, whoever serves it."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from runcast.models import JSON, Credentials, Run, RunPage, RunStatus, Workflow


@runtime_checkable
class RunAPI(Protocol):
    """A run API that promises the lifecycle of design.md section 1.

    Every call carries the caller's credentials and raises only errors from
    ``runcast.errors``: ``WorkflowNotFound``/``RunNotFound`` for unknown ids,
    ``NotTriggerable`` for scripts, ``AlreadyExists`` for a duplicate instance id,
    ``RunFinished`` for events, pause or resume sent to a finished run,
    ``Unauthenticated``/``Forbidden``, ``RateLimited`` and ``UpstreamError``.
    """

    name: str
    """A short label for metrics and logs: ``embedded``, ``awaitstep`` or ``cloudflare``."""

    async def list_workflows(self, *, credentials: Credentials) -> list[Workflow]:
        """Every workflow and script the caller can see."""
        ...

    async def get_workflow(self, workflow_id: str, *, credentials: Credentials) -> Workflow:
        """One workflow; raises ``WorkflowNotFound``."""
        ...

    async def trigger(
        self,
        workflow_id: str,
        *,
        input: JSON = None,
        instance_id: str | None = None,
        credentials: Credentials,
    ) -> Run:
        """Create a run; the upstream names it unless ``instance_id`` is given."""
        ...

    async def get_run(self, workflow_id: str, instance_id: str, *, credentials: Credentials) -> Run:
        """One run with its steps (where the upstream exposes them); raises ``RunNotFound``."""
        ...

    async def list_runs(
        self,
        workflow_id: str,
        *,
        statuses: Collection[RunStatus] | None = None,
        cursor: str | None = None,
        limit: int = 50,
        credentials: Credentials,
    ) -> RunPage:
        """Runs of one workflow, newest first, optionally only in ``statuses``."""
        ...

    async def send_event(
        self,
        workflow_id: str,
        instance_id: str,
        *,
        event_type: str,
        payload: JSON = None,
        credentials: Credentials,
    ) -> Run:
        """Deliver an event to a run; raises ``RunFinished`` if it has finished."""
        ...

    async def terminate(
        self, workflow_id: str, instance_id: str, *, credentials: Credentials
    ) -> Run:
        """Stop a run for good."""
        ...

    async def pause(self, workflow_id: str, instance_id: str, *, credentials: Credentials) -> Run:
        """Pause a run at its next node boundary."""
        ...

    async def resume(self, workflow_id: str, instance_id: str, *, credentials: Credentials) -> Run:
        """Resume a paused run."""
        ...

    async def restart(
        self,
        workflow_id: str,
        instance_id: str,
        *,
        credentials: Credentials,
        from_step: str | None = None,
    ) -> Run:
        """Run again under the same instance id: from the beginning, or from ``from_step``.

        With ``from_step`` the results of the nodes before it are kept; an unknown
        step is ``BadUserInput`` naming the steps that exist.
        """
        ...

    async def delete_run(
        self, workflow_id: str, instance_id: str, *, credentials: Credentials
    ) -> bool:
        """Delete a finished run for good; ``RunNotFinished`` for a run that has not finished."""
        ...

    async def ping(self) -> None:
        """Return if the upstream is reachable, else raise ``UpstreamError``."""
        ...

    async def aclose(self) -> None:
        """Release connections; the adapter refuses calls afterwards."""
        ...


RunListener = Callable[[Run], None]
"""Called with the new state of a run every time it changes."""


@runtime_checkable
class RunChangeSource(Protocol):
    """An upstream that pushes run changes as they happen (the embedded engine).

    The live layer uses it instead of polling. Listeners run on the event loop
    and must not block.
    """

    def add_run_listener(self, listener: RunListener) -> Callable[[], None]:
        """Register ``listener``; the returned callable unregisters it."""
        ...


@dataclass(frozen=True)
class LimiterState:
    """What a :class:`RequestLimiter` would do with a request asked for now.

    Attributes:
        state: ``available`` (a token now), ``exhausted`` (a wait for the next token) or
            ``paused`` (held: the upstream asked for no requests, e.g. a 429's Retry-After).
        paused_for: seconds left of the hold (0 when not held).
        rate: tokens per second (``None``: no pace, only holds and quotas apply).
    """

    state: Literal["available", "exhausted", "paused"]
    paused_for: float
    rate: float | None


@dataclass(frozen=True)
class Quota:
    """An upstream's documented limit per credential: ``requests`` per ``window`` seconds."""

    requests: int
    window: float


class RequestLimiter(Protocol):
    """The one limiter of one upstream credential, asked by the live layer and the adapters.

    Promises that :meth:`acquire` returns once one more request may be sent, and counts it;
    that nothing is handed out while it is held (:meth:`pause`: the upstream said to wait,
    a 429's Retry-After); and that a caller which cannot wait long (``within``) gets
    ``RateLimited`` with ``retry_after`` at once instead of a long wait. The local
    ``RequestBudget`` and cluster mode's ``ClusterBudget`` (one budget in Redis for every
    replica) are the two.
    """

    @property
    def rate(self) -> float | None:
        """Requests per second it hands out (``None``: no pace)."""
        ...

    @property
    def paused_for(self) -> float:
        """Seconds left of a hold the upstream asked for (a 429); 0 when not held."""
        ...

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` from now (extends, never shortens, a hold)."""
        ...

    def refund(self) -> None:
        """Give back a token taken for a request that was not sent."""
        ...

    async def acquire(self, *, urgent: bool = False, within: float | None = None) -> None:
        """Wait until one more request may be sent, and count it.

        Urgent callers go before ordinary ones. With ``within``, raise ``RateLimited``
        (``retry_after`` in seconds) without taking anything when the request could not
        go within that many seconds.
        """
        ...

    async def state(self) -> LimiterState:
        """What it would do with a request now (for ``/readyz``); takes nothing."""
        ...


class RequestLimits(Protocol):
    """Gives the one :class:`RequestLimiter` of each credential of one upstream."""

    @property
    def rate(self) -> float | None:
        """Requests per second each credential's limiter hands out (``None``: no pace)."""
        ...

    def limiter(self, key: str) -> RequestLimiter:
        """The limiter of the credential ``key`` (``LimitedUpstream.limit_key``)."""
        ...


@runtime_checkable
class LimitedUpstream(Protocol):
    """An upstream whose every request is paced by the limiter of its credential.

    The HTTP adapters are; the app hands them the live layer's :class:`RequestLimits`,
    so that polls, queries, mutations, retries and resends all ask one limiter per
    credential.
    """

    quota: Quota | None
    """The upstream's documented limit per credential, if it has one."""

    def limit_requests(self, limits: RequestLimits) -> None:
        """Take a token from the limiter of each request's credential from now on."""
        ...

    def limit_key(self, credentials: Credentials) -> str:
        """The key of the limiter that requests made with ``credentials`` ask."""
        ...
