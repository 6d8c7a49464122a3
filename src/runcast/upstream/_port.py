"""The upstream port: what runcast needs from a run API, whoever serves it."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol, runtime_checkable

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


class RequestLimiter(Protocol):
    """Paces the requests sent to one upstream; the live layer's ``RequestBudget`` is one.

    Promises that :meth:`acquire` returns once a request may be sent, and that
    :attr:`paused_for` is positive while the upstream asked for no requests at all.
    """

    @property
    def paused_for(self) -> float:
        """Seconds left of a pause the upstream asked for (a 429); 0 when not paused."""
        ...

    async def acquire(self, *, urgent: bool = False) -> None:
        """Wait until one more request may be sent, and count it."""
        ...


@runtime_checkable
class LimitedUpstream(Protocol):
    """An upstream whose every request can be paced by a :class:`RequestLimiter`.

    The HTTP adapters are; the app hands them the live layer's request budget, so
    that polls, queries, mutations, retries and resends all come out of one budget.
    """

    def limit_requests(self, limiter: RequestLimiter) -> None:
        """Take a token from ``limiter`` before every request from now on."""
        ...
