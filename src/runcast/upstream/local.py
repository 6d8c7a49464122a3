"""The ``local`` adapter: the run API of an embedded engine in this process, without HTTP."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from runcast.engine import Engine
from runcast.engine.api_keys import ApiKeys
from runcast.errors import BadUserInput, RuncastError, Unauthenticated, UpstreamUnavailable
from runcast.models import JSON, Credentials, Run, RunPage, RunStatus, Workflow
from runcast.upstream._http import RequestObserver, RequestOutcome
from runcast.upstream._port import RunListener

P = ParamSpec("P")
T = TypeVar("T")

_SERVER_CODES = frozenset({"UPSTREAM_UNAVAILABLE", "INTERNAL_SERVER_ERROR"})


def outcome_of(exc: BaseException | None) -> RequestOutcome:
    """The outcome an HTTP upstream would report for a call that raised ``exc`` (or not)."""
    if exc is None:
        return "ok"
    if isinstance(exc, RuncastError):
        if exc.code == "RATE_LIMITED":
            return "rate_limited"
        return "server_error" if exc.code in _SERVER_CODES else "client_error"
    return "server_error"


def _counted(
    method: Callable[Concatenate[LocalUpstream, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[LocalUpstream, P], Coroutine[Any, Any, T]]:
    """Tell the adapter's ``on_request`` observer how each call ended, like an HTTP attempt."""

    async def counted(self: LocalUpstream, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if self.on_request is None:
            return await method(self, *args, **kwargs)
        try:
            result = await method(self, *args, **kwargs)
        except BaseException as exc:
            self.on_request(self.name, outcome_of(exc))
            raise
        self.on_request(self.name, "ok")
        return result

    functools.update_wrapper(counted, method)
    return counted


class LocalUpstream:
    """:class:`~runcast.upstream.RunAPI` and ``RunChangeSource`` over an in-process engine.

    It behaves like the engine's REST API seen through the AwaitStep adapter: the
    same errors for the same mistakes, including ``Unauthenticated`` when
    ``api_keys`` are configured and the caller's token is missing or wrong.
    The engine's lifetime belongs to whoever created it; :meth:`aclose` only
    makes this adapter refuse further calls.

    Args:
        engine: a started engine.
        api_keys: bearer tokens accepted; empty means no authentication.
        on_request: told the outcome of every call (the app's request metrics).
    """

    name = "embedded"

    def __init__(
        self,
        engine: Engine,
        *,
        api_keys: Collection[str] = (),
        on_request: RequestObserver | None = None,
    ) -> None:
        self.engine = engine
        self.on_request = on_request
        self._api_keys = ApiKeys(api_keys)
        self._closed = False

    def _check(self, credentials: Credentials) -> None:
        if self._closed:
            raise UpstreamUnavailable("the embedded upstream has been closed")
        if not self._api_keys:
            return
        if credentials.token is None or not credentials.is_bearer:
            raise Unauthenticated("a bearer API key is required")
        if not self._api_keys.accepts(credentials.token):
            raise Unauthenticated("the API key is not valid")

    @_counted
    async def list_workflows(self, *, credentials: Credentials) -> list[Workflow]:
        """Every workflow and script the engine has loaded."""
        self._check(credentials)
        return list(self.engine.list_workflows())

    @_counted
    async def get_workflow(self, workflow_id: str, *, credentials: Credentials) -> Workflow:
        """One workflow; raises ``WorkflowNotFound``."""
        self._check(credentials)
        return self.engine.get_workflow(workflow_id)

    @_counted
    async def trigger(
        self,
        workflow_id: str,
        *,
        input: JSON = None,
        instance_id: str | None = None,
        credentials: Credentials,
    ) -> Run:
        """Create a run; the engine names it with a ULID unless ``instance_id`` is given."""
        self._check(credentials)
        return await self.engine.trigger(workflow_id, input=input, instance_id=instance_id)

    @_counted
    async def get_run(self, workflow_id: str, instance_id: str, *, credentials: Credentials) -> Run:
        """One run with its steps; raises ``RunNotFound``."""
        self._check(credentials)
        return await self.engine.get_run(workflow_id, instance_id)

    @_counted
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
        self._check(credentials)
        if not 1 <= limit <= 1000:
            raise BadUserInput(f"limit must be between 1 and 1000, got {limit}")
        return await self.engine.list_runs(
            workflow_id,
            statuses=list(statuses) if statuses else None,
            cursor=cursor or None,
            limit=limit,
        )

    @_counted
    async def send_event(
        self,
        workflow_id: str,
        instance_id: str,
        *,
        event_type: str,
        payload: JSON = None,
        credentials: Credentials,
    ) -> Run:
        """Deliver an event; raises ``RunFinished`` if the run has finished."""
        self._check(credentials)
        if not event_type.strip():
            raise BadUserInput("'eventType' must be a non-empty string")
        return await self.engine.send_event(
            workflow_id, instance_id, event_type=event_type, payload=payload
        )

    @_counted
    async def terminate(
        self, workflow_id: str, instance_id: str, *, credentials: Credentials
    ) -> Run:
        """Stop a run for good."""
        self._check(credentials)
        return await self.engine.terminate(workflow_id, instance_id)

    @_counted
    async def pause(self, workflow_id: str, instance_id: str, *, credentials: Credentials) -> Run:
        """Pause a run at its next node boundary."""
        self._check(credentials)
        return await self.engine.pause(workflow_id, instance_id)

    @_counted
    async def resume(self, workflow_id: str, instance_id: str, *, credentials: Credentials) -> Run:
        """Resume a paused run."""
        self._check(credentials)
        return await self.engine.resume(workflow_id, instance_id)

    @_counted
    async def restart(
        self,
        workflow_id: str,
        instance_id: str,
        *,
        credentials: Credentials,
        from_step: str | None = None,
    ) -> Run:
        """Run again under the same instance id, from the beginning or from ``from_step``."""
        self._check(credentials)
        return await self.engine.restart(workflow_id, instance_id, from_step=from_step)

    @_counted
    async def delete_run(
        self, workflow_id: str, instance_id: str, *, credentials: Credentials
    ) -> bool:
        """Delete a finished run for good."""
        self._check(credentials)
        return await self.engine.delete_run(workflow_id, instance_id)

    async def ping(self) -> None:
        """The engine is in this process: reachable unless this adapter was closed."""
        if self._closed:
            raise UpstreamUnavailable("the embedded upstream has been closed")

    async def aclose(self) -> None:
        """Refuse further calls (the engine itself stays open for its owner to close)."""
        self._closed = True

    def add_run_listener(self, listener: RunListener) -> Callable[[], None]:
        """Be told about every change of every run, as it happens."""
        return self.engine.add_run_listener(listener)
