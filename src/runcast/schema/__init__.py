"""The GraphQL schema of the public contract (design.md section 2).

``schema`` uses the default guards; ``build_schema(settings)`` applies a
``Settings``' limits (query depth, tokens, aliases, introspection).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from graphql import GraphQLError
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.types import ExecutionContext

from runcast.schema._errors import ErrorCodes, FreshLoaders, log_errors
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


class RuncastSchema(strawberry.Schema):
    """A Strawberry schema that logs only what clients are not told."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors, execution_context)


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    """The schema with the guards of ``settings`` (defaults when ``None``).

    Args:
        settings: limits for query depth, tokens and aliases, and whether
            introspection is allowed.
    """
    settings = settings or Settings()
    # The guard rules are built once per schema, so that validation results stay
    # cacheable: ValidationCache keys on the document and the rule classes.
    guard_rules: list[type[ASTValidationRule]] = [
        depth_rule(settings.max_query_depth, None),
        aliases_rule(settings.max_aliases),
    ]
    if not settings.introspection:
        guard_rules.append(NoSchemaIntrospectionCustomRule)
    extensions: list[ExtensionFactory] = [
        ErrorCodes,
        FreshLoaders,
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        lambda: AddValidationRules(guard_rules),
        lambda: ValidationCache(maxsize=512),
    ]
    kwargs: dict[str, Any] = {"extensions": extensions}
    return RuncastSchema(query=Query, mutation=Mutation, subscription=Subscription, **kwargs)


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
