"""The GraphQL schema of the public contract (design.md section 2).

``schema`` uses the default guards; ``build_schema(settings)`` applies a
``Settings``' limits (query depth, tokens, aliases, introspection).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from typing import Any

import strawberry
from graphql import GraphQLError, get_operation_ast
from graphql import OperationType as DocumentOperation
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.schema.schema import StreamResult
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from runcast.documents import OperationDocuments
from runcast.errors import RuncastError
from runcast.schema._errors import ErrorCodes, FreshLoaders, log_errors, refusal
from runcast.schema._prepared import PreparedDocuments, PreparedOperations
from runcast.schema._timeout import timed_out, within_limit
from runcast.schema.mutation import Mutation
from runcast.schema.query import Query
from runcast.schema.subscription import Subscription
from runcast.schema.types import (
    PageInfo,
    Run,
    RunConnection,
    RunEdge,
    RunStatus,
    RunStatusUpdate,
    Step,
    Workflow,
    WorkflowKind,
)
from runcast.settings import Settings

ExtensionFactory = type[SchemaExtension] | Callable[[], SchemaExtension]

PREPARED_CACHE_SIZE = 512
"""Distinct query texts whose parsed document and validation verdict are kept."""

SINGLE_RESULT = frozenset({OperationType.QUERY, OperationType.MUTATION})
"""The operation types ``execute`` runs; subscriptions only ``stream``."""


class RuncastSchema(strawberry.Schema):
    """A Strawberry schema that logs only what clients are not told.

    Every transport executes through ``execute`` (HTTP) or ``stream`` (WebSockets,
    SSE), which first turn what the request sent into the document to run
    (``documents``: persisted queries, trusted documents; a refusal is a result with
    one coded error), then run a query or mutation within ``operation_timeout``
    (``_timeout.py``; subscriptions have no time limit).
    """

    def __init__(
        self,
        *args: Any,
        documents: OperationDocuments,
        prepared: PreparedDocuments,
        operation_timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.documents = documents
        self.prepared = prepared
        self.operation_timeout = operation_timeout

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        # One result only: a subscription is refused (InvalidOperationTypeError) here.
        single = SINGLE_RESULT.intersection(
            SINGLE_RESULT if allowed_operation_types is None else allowed_operation_types
        )
        try:
            async with asyncio.timeout(self.operation_timeout):
                resolved = await self._resolve(query, operation_extensions)
                if isinstance(resolved, PreExecutionError):
                    return resolved
                return await super().execute(
                    resolved,
                    variable_values,
                    context_value,
                    root_value,
                    operation_name,
                    single,
                    operation_extensions,
                )
        except TimeoutError:
            return timed_out(self.operation_timeout)

    async def stream(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
    ) -> StreamResult:
        resolved = await self._resolve(query, operation_extensions)
        if isinstance(resolved, PreExecutionError):
            return _single(resolved)
        results = await super().stream(
            resolved,
            variable_values,
            context_value,
            root_value,
            operation_name,
            operation_extensions,
            allowed_operation_types,
        )
        if self._is_subscription(resolved, operation_name):
            return results
        return within_limit(results, self.operation_timeout)

    async def _resolve(
        self, query: str | None, extensions: dict[str, Any] | None
    ) -> str | PreExecutionError | None:
        """The query text to run, or the refusal of what the request named."""
        try:
            return await self.documents.resolve(query, extensions)
        except RuncastError as exc:
            return PreExecutionError(data=None, errors=[refusal(exc)])

    def _is_subscription(self, query: str | None, operation_name: str | None) -> bool:
        """Whether ``query`` runs a subscription (a cached parse; unparsable texts do not)."""
        if query is None:
            return False
        try:
            document = self.prepared.parse(query)
        except GraphQLError:
            return False
        operation = get_operation_ast(document, operation_name)
        return operation is not None and operation.operation is DocumentOperation.SUBSCRIPTION

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors, execution_context)


async def _single(result: PreExecutionError) -> AsyncGenerator[ExecutionResult, None]:
    yield result


def build_schema(
    settings: Settings | None = None,
    *,
    observers: Sequence[ExtensionFactory] = (),
    documents: OperationDocuments | None = None,
) -> RuncastSchema:
    """The schema with the guards of ``settings`` (defaults when ``None``).

    Args:
        settings: limits for query fields, depth, tokens and aliases, and whether
            introspection is allowed.
        observers: extensions that run outermost, around every other one (the app's
            operation metrics and traces), so they see results with their error codes.
        documents: persisted queries and trusted documents; from ``settings`` when ``None``.
    """
    settings = settings or Settings()
    # The guard rules are built once per schema, so that validation verdicts stay
    # cacheable with the document (see PreparedDocuments).
    guard_rules: list[type[ASTValidationRule]] = [
        depth_rule(settings.max_query_depth, None),
        aliases_rule(settings.max_aliases),
    ]
    if not settings.introspection:
        guard_rules.append(NoSchemaIntrospectionCustomRule)
    prepared = PreparedDocuments(
        max_tokens=settings.max_query_tokens,
        max_fields=settings.max_query_fields,
        max_comparisons=settings.max_field_comparisons,
        guard_rules=guard_rules,
        maxsize=PREPARED_CACHE_SIZE,
    )
    extensions: list[ExtensionFactory] = [
        *observers,
        ErrorCodes,
        FreshLoaders,
        lambda: PreparedOperations(prepared),
    ]
    kwargs: dict[str, Any] = {"extensions": extensions}
    return RuncastSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        documents=documents or OperationDocuments.from_settings(settings),
        prepared=prepared,
        operation_timeout=settings.operation_timeout,
        **kwargs,
    )


schema = build_schema()
"""The schema with default guards."""


def print_schema() -> str:
    """The schema's SDL, as kept in ``schema.graphql`` at the repository root."""
    return schema.as_str()


__all__ = [
    "Mutation",
    "PageInfo",
    "Query",
    "Run",
    "RunConnection",
    "RunEdge",
    "RunStatus",
    "RunStatusUpdate",
    "RuncastSchema",
    "Step",
    "Subscription",
    "Workflow",
    "WorkflowKind",
    "build_schema",
    "print_schema",
    "schema",
]
