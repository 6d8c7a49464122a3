"""The one exception tree that every layer of runcast raises and catches.

Each error carries a stable GraphQL ``code`` (``extensions.code``) and its
context as attributes, so the GraphQL layer maps the whole tree in one place::

    RuncastError                       INTERNAL_SERVER_ERROR
    ├── BadUserInput                   BAD_USER_INPUT
    │   ├── PayloadTooLarge            BAD_USER_INPUT   (limit)
    │   └── RunNotFinished             BAD_USER_INPUT   (workflow_id, instance_id, status)
    ├── NotFound                       NOT_FOUND
    │   ├── WorkflowNotFound                            (workflow_id)
    │   └── RunNotFound                                 (workflow_id, instance_id)
    ├── NotTriggerable                 NOT_TRIGGERABLE  (workflow_id, url)
    ├── AlreadyExists                  ALREADY_EXISTS   (workflow_id, instance_id)
    ├── RunFinished                    RUN_FINISHED     (workflow_id, instance_id, status)
    ├── Unauthenticated                UNAUTHENTICATED
    ├── Forbidden                      FORBIDDEN
    ├── RateLimited                    RATE_LIMITED     (retry_after seconds)
    ├── PersistedQueryNotFound         PERSISTED_QUERY_NOT_FOUND     (sha256_hash)
    ├── PersistedQueryNotSupported     PERSISTED_QUERY_NOT_SUPPORTED
    ├── OperationNotTrusted            OPERATION_NOT_TRUSTED
    ├── ConfigurationError                              (a setting that cannot work, at start-up)
    └── UpstreamError                  UPSTREAM_UNAVAILABLE
        ├── UpstreamUnavailable                         (timeouts, 5xx, refused connections)
        └── UpstreamProtocolError                       (a response runcast cannot read)

Foreign errors (httpx, sqlite3, ...) are translated into this tree at the boundary
where they occur, with ``raise ... from exc``; nothing outside that boundary sees them.
"""

from __future__ import annotations


class RuncastError(Exception):
    """Root of every error runcast raises on purpose."""

    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def extensions(self) -> dict[str, object]:
        """The GraphQL ``extensions`` for this error (at least ``code``)."""
        return {"code": self.code}


class BadUserInput(RuncastError):
    """An argument is malformed, empty or over a limit."""

    code = "BAD_USER_INPUT"


class PayloadTooLarge(BadUserInput):
    """A payload is larger than the limit (``limit`` in bytes), which the message names."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class RunNotFinished(BadUserInput):
    """The run has not finished, so it cannot be deleted (terminate it first)."""

    def __init__(self, workflow_id: str, instance_id: str, status: str) -> None:
        super().__init__(
            f"run {instance_id!r} of workflow {workflow_id!r} is {status}: only a finished"
            " run can be deleted (terminate it first)"
        )
        self.workflow_id = workflow_id
        self.instance_id = instance_id
        self.status = status


class NotFound(RuncastError):
    """The workflow or run does not exist."""

    code = "NOT_FOUND"


class WorkflowNotFound(NotFound):
    """No workflow with this id."""

    def __init__(self, workflow_id: str, message: str | None = None) -> None:
        super().__init__(message or f"workflow {workflow_id!r} does not exist")
        self.workflow_id = workflow_id


class RunNotFound(NotFound):
    """No run with this instance id in this workflow."""

    def __init__(self, workflow_id: str, instance_id: str, message: str | None = None) -> None:
        super().__init__(
            message or f"run {instance_id!r} of workflow {workflow_id!r} does not exist"
        )
        self.workflow_id = workflow_id
        self.instance_id = instance_id


class NotTriggerable(RuncastError):
    """The workflow is a script: it has no runs and is called by its URL instead."""

    code = "NOT_TRIGGERABLE"

    def __init__(self, workflow_id: str, url: str | None) -> None:
        where = f"call its URL instead: {url}" if url else "it has no URL configured"
        super().__init__(f"{workflow_id!r} is a script and cannot be triggered; {where}")
        self.workflow_id = workflow_id
        self.url = url

    def extensions(self) -> dict[str, object]:
        return {"code": self.code, "url": self.url}


class AlreadyExists(RuncastError):
    """A run with this instance id already exists in this workflow."""

    code = "ALREADY_EXISTS"

    def __init__(self, workflow_id: str, instance_id: str, message: str | None = None) -> None:
        super().__init__(
            message or f"run {instance_id!r} of workflow {workflow_id!r} already exists"
        )
        self.workflow_id = workflow_id
        self.instance_id = instance_id


class RunFinished(RuncastError):
    """The run is in a terminal status and refuses events, pause and resume."""

    code = "RUN_FINISHED"

    def __init__(
        self, workflow_id: str, instance_id: str, status: str, message: str | None = None
    ) -> None:
        super().__init__(message or f"run {instance_id!r} has already finished ({status})")
        self.workflow_id = workflow_id
        self.instance_id = instance_id
        self.status = status

    def extensions(self) -> dict[str, object]:
        return {"code": self.code, "status": self.status}


class Unauthenticated(RuncastError):
    """The caller's credentials are missing or invalid."""

    code = "UNAUTHENTICATED"


class Forbidden(RuncastError):
    """The caller's credentials are valid but not enough for this operation."""

    code = "FORBIDDEN"


class RateLimited(RuncastError):
    """The upstream refused for rate; retry after ``retry_after`` seconds (if known)."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def extensions(self) -> dict[str, object]:
        ext: dict[str, object] = {"code": self.code}
        if self.retry_after is not None:
            ext["retryAfter"] = self.retry_after
        return ext


class PersistedQueryNotFound(RuncastError):
    """A persisted-query hash the gateway does not know: the client should send the query.

    The message is ``PersistedQueryNotFound``, which Apollo's persisted-queries link
    (like the code) waits for before it sends the full query with its hash.
    """

    code = "PERSISTED_QUERY_NOT_FOUND"

    def __init__(self, sha256_hash: str) -> None:
        super().__init__("PersistedQueryNotFound")
        self.sha256_hash = sha256_hash


class PersistedQueryNotSupported(RuncastError):
    """Automatic persisted queries are turned off (a cache size of 0)."""

    code = "PERSISTED_QUERY_NOT_SUPPORTED"

    def __init__(self) -> None:
        super().__init__("PersistedQueryNotSupported")


class OperationNotTrusted(RuncastError):
    """Trusted documents are on, and the operation is not one of them."""

    code = "OPERATION_NOT_TRUSTED"


class ConfigurationError(RuncastError):
    """A setting cannot be used (unknown upstream, unreadable folder, port in use).

    Raised at start-up, by ``runcast serve`` and ``runcast engine`` alike, before anything
    answers; the command prints its one-line message and exits 2.
    """


class UpstreamError(RuncastError):
    """The upstream failed in a way the caller cannot fix."""

    code = "UPSTREAM_UNAVAILABLE"


class UpstreamUnavailable(UpstreamError):
    """The upstream timed out, refused the connection or answered 5xx, after retries."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class UpstreamProtocolError(UpstreamError):
    """The upstream answered something runcast cannot read."""
