"""The GraphQL schema of the public contract (design.md section 2).

``schema`` uses the default guards; ``build_schema(settings)`` applies a
``Settings``' limits (query depth, tokens, aliases, introspection).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from typing import Any

import strawberry
from graphql import GraphQLError
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


class RuncastSchema(strawberry.Schema):
    """A Strawberry schema that logs only what clients are not told.

    Every transport executes through ``execute`` or ``stream``, which first turn
    what the request sent into the document to run (``documents``: persisted
    queries, trusted documents); a refusal is a result with one coded error.
    """

    def __init__(self, *args: Any, documents: OperationDocuments, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.documents = documents

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
        try:
            query = await self.documents.resolve(query, operation_extensions)
        except RuncastError as exc:
            return PreExecutionError(data=None, errors=[refusal(exc)])
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed_operation_types,
            operation_extensions,
        )

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
        try:
            query = await self.documents.resolve(query, operation_extensions)
        except RuncastError as exc:
            return _single(PreExecutionError(data=None, errors=[refusal(exc)]))
        return await super().stream(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            operation_extensions,
            allowed_operation_types,
        )

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
