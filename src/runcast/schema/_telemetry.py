"""Counts, times, logs and traces every GraphQL operation; logs queries the guards refuse.

:class:`OperationTelemetry` is the outermost schema extension, so it sees each result
after ``ErrorCodes`` gave its errors their ``extensions.code``. While an operation runs,
log records carry its name (``operation``). :class:`OperationTracing` (only while tracing
is on) makes a span per operation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

from runcast.logs import bound_fields

logger = logging.getLogger("runcast.graphql")

GUARD_RULES = (
    ("max_fields", "fields with its fragments expanded"),
    ("max_field_comparisons", "pairs of fields and fragments"),
    ("max_depth", "exceeds maximum operation depth"),
    ("max_aliases", "aliases found. Allowed:"),
    ("max_tokens", "Document contains more than"),
    ("introspection", "introspection has been disabled"),
)
"""Each guard's rule name and a phrase of the error message it reports."""


CANCELLED_CODE = "CANCELLED"
"""The outcome code of a query or mutation cancelled before it had a result."""


class OperationRecorder(Protocol):
    """Where operation counts go (``runcast.metrics.Metrics`` is one)."""

    def observe_operation(
        self, type: str, name: str | None, code: object, seconds: float | None
    ) -> None:
        """Count one operation with its outcome code and duration."""
        ...


def guard_rule(error: GraphQLError) -> str | None:
    """The name of the guard that reported ``error``, or ``None`` if no guard did."""
    for rule, phrase in GUARD_RULES:
        if phrase in error.message:
            return rule
    return None


def _operation_type(context: ExecutionContext) -> str:
    if context.graphql_document is None:
        return "unknown"
    try:
        return context.operation_type.value
    except Exception:  # no operation by that name, or several without a name
        return "unknown"


def _first_code(result: Any) -> object:
    errors: list[GraphQLError] | None = getattr(result, "errors", None)
    if not errors:
        return None
    return (errors[0].extensions or {}).get("code", "INTERNAL_SERVER_ERROR")


class OperationTelemetry(SchemaExtension):
    """Metrics and log lines for each operation.

    Args:
        recorder: counts operations by type, name and outcome code; ``None`` only logs.
    """

    def __init__(self, *, recorder: OperationRecorder | None) -> None:
        self._recorder = recorder
        self._stream_code: object = None

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        started = time.perf_counter()
        self._stream_code = None
        try:
            yield
        except BaseException:
            # A subscription whose client went away ends here, and so does an operation
            # cancelled at its time limit: each still counts.
            self._record(context, time.perf_counter() - started, cancelled=True)
            raise
        self._record(context, time.perf_counter() - started)

    def _record(
        self, context: ExecutionContext, seconds: float, *, cancelled: bool = False
    ) -> None:
        kind = _operation_type(context)
        name = context.operation_name
        code = _first_code(context.result) or self._stream_code
        if cancelled and code is None and kind != "subscription":
            code = CANCELLED_CODE
        if self._recorder is not None:
            self._recorder.observe_operation(
                kind, name, code, None if kind == "subscription" else seconds
            )
        self._log(context, kind, name, code, seconds)

    def on_execute(self) -> Iterator[None]:
        # Bound here, once the document is parsed: requests need not send operationName.
        with bound_fields(operation=self.execution_context.operation_name):
            yield

    def on_stream_result(self, result: Any) -> Iterator[None]:
        yield None
        if self._stream_code is None:
            self._stream_code = _first_code(result)

    def _log(
        self, context: ExecutionContext, kind: str, name: str | None, code: object, seconds: float
    ) -> None:
        for error in context.pre_execution_errors or ():
            rule = guard_rule(error)
            if rule is not None:
                logger.info(
                    "query refused by guard %s: %s",
                    rule,
                    error.message,
                    extra={"operation": name, "guard": rule},
                )
                return
        logger.debug(
            "%s %s: %s in %.1f ms",
            kind,
            name or "<anonymous>",
            code or "ok",
            seconds * 1000,
            extra={"operation": name, "code": code or "ok"},
        )


class OperationTracing(SchemaExtension):
    """A span per operation, named ``query Name`` (``subscription Watch``, ...).

    Fields make no span of their own: one costs about 50 us on the SDK (as much as a
    tenth of a whole read), and the work worth seeing, the upstream call or the engine's
    run, has its own span under the operation's.

    Args:
        tracer: makes the spans.
    """

    def __init__(self, *, tracer: Tracer) -> None:
        self._tracer = tracer

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        with self._tracer.start_as_current_span("graphql") as span:
            try:
                yield
            finally:  # also when a subscription's client left
                _describe(span, context)


def _describe(span: Any, context: ExecutionContext) -> None:
    """Name the operation's span after it, and mark it failed when it had an error code."""
    kind = _operation_type(context)
    name = context.operation_name
    span.update_name(f"{kind} {name}" if name else kind)
    span.set_attribute("graphql.operation.type", kind)
    if name:
        span.set_attribute("graphql.operation.name", name)
    code = _first_code(context.result)
    if code is not None:
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("runcast.code", str(code))
        span.set_status(Status(StatusCode.ERROR, str(code)))
