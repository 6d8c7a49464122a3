"""The one place where errors become GraphQL errors with a stable ``extensions.code``.

``runcast.errors`` map to their own code (plus ``retryAfter`` and friends from
``RuncastError.extensions()``). Parse and validation failures get
``GRAPHQL_PARSE_FAILED`` / ``GRAPHQL_VALIDATION_FAILED``, bad variables
``BAD_USER_INPUT``. Anything else raised while resolving is masked as
``INTERNAL_SERVER_ERROR``: the client sees no detail, the log gets all of it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionContext, StreamExecutionResult

from runcast.errors import RuncastError, UpstreamError

logger = logging.getLogger("runcast.graphql")

INTERNAL_MESSAGE = "Internal server error"


class _ResultWithErrors(Protocol):
    errors: list[GraphQLError] | None


def _errors_holder(result: object) -> _ResultWithErrors | None:
    """``result`` if it has an ``errors`` attribute, else ``None``.

    The same test ``isinstance`` makes against a runtime-checkable protocol with this
    one member, without its cost (several microseconds per call, on every operation).
    """
    return result if hasattr(result, "errors") else None


_REQUEST_PROBLEMS = (
    GraphQLError,
    MissingQueryError,
    CannotGetOperationTypeError,
    InvalidOperationTypeError,
)
"""Exceptions behind errors that describe the request itself, which the client may read."""


def is_masked(error: GraphQLError) -> bool:
    """Whether ``error`` is an unexpected failure whose detail must not reach the client.

    An exception of runcast's own tree is not; any other exception raised by code
    (a resolver, or a subscription's source, whose errors carry no ``path``) is.
    Errors about the request (parse, validation, variables) are not.
    """
    original = error.original_error
    if isinstance(original, RuncastError) or isinstance(error, GraphQLSyntaxError):
        return False
    if original is not None and not isinstance(original, _REQUEST_PROBLEMS):
        return True
    if error.path is None:
        return False
    return "code" not in (error.extensions or {})


def log_errors(errors: list[GraphQLError], execution_context: ExecutionContext | None) -> None:
    """Log what the client will not see: unexpected errors in full, upstream failures briefly."""
    operation = execution_context.operation_name if execution_context else None
    for error in errors:
        original = error.original_error
        if is_masked(error):
            logger.error(
                "unexpected error at %s in operation %s",
                ".".join(str(p) for p in error.path or ()),
                operation or "<anonymous>",
                exc_info=original if original is not None else error,
            )
        elif isinstance(original, UpstreamError):
            logger.warning("upstream failure in operation %s: %s", operation, original.message)


def refusal(error: RuncastError) -> GraphQLError:
    """The GraphQL error for a request refused before execution (``extensions.code`` set)."""
    return GraphQLError(error.message, extensions=error.extensions(), original_error=error)


class ErrorCodes(SchemaExtension):
    """Give every error of a result an ``extensions.code``, masking unexpected ones."""

    def __init__(self) -> None:
        self._validation_errors: set[int] = set()
        self._stream_result_processed = False

    def on_validate(self) -> Iterator[None]:
        yield
        self._validation_errors = {
            id(error) for error in self.execution_context.pre_execution_errors or ()
        }

    def on_operation(self) -> Iterator[None]:
        self._stream_result_processed = False
        yield
        if self._stream_result_processed:
            return
        result: Any = self.execution_context.result
        if (holder := _errors_holder(result)) is not None:
            self._process(holder)
        elif (initial := _errors_holder(getattr(result, "initial_result", None))) is not None:
            self._process(initial)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        self._stream_result_processed = True
        if (holder := _errors_holder(result)) is not None:
            self._process(holder)
        yield None

    def _process(self, result: _ResultWithErrors) -> None:
        if result.errors:
            result.errors = [self.coded(error) for error in result.errors]

    def coded(self, error: GraphQLError) -> GraphQLError:
        """``error`` with its ``extensions.code`` (a masked copy for unexpected errors)."""
        original = error.original_error
        if isinstance(original, RuncastError):
            error.message = original.message
            error.extensions = {**(error.extensions or {}), **original.extensions()}
            return error
        if is_masked(error):
            return GraphQLError(
                INTERNAL_MESSAGE,
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                extensions={"code": "INTERNAL_SERVER_ERROR"},
            )
        if "code" not in (error.extensions or {}):
            if isinstance(error, GraphQLSyntaxError):
                code = "GRAPHQL_PARSE_FAILED"
            elif id(error) in self._validation_errors:
                code = "GRAPHQL_VALIDATION_FAILED"
            else:
                code = "BAD_USER_INPUT"
            error.extensions = {**(error.extensions or {}), "code": code}
        return error


class FreshLoaders(SchemaExtension):
    """Give every operation its own DataLoader cache (WebSocket contexts outlive operations)."""

    def on_operation(self) -> Iterator[None]:
        reset = getattr(self.execution_context.context, "reset_loaders", None)
        if callable(reset):
            reset()
        yield
