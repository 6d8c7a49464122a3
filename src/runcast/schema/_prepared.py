"""Prepared operations: a query text parsed, guarded and validated once, then looked up.

The guards (token limit, depth, aliases, field cost, field merging, introspection) and GraphQL's
own validation depend only on the document and the schema's fixed settings, so
their verdict is kept with the parsed document. A repeated query (every request
of an app, and every persisted query) costs two dictionary lookups and one
extension's hooks, where Strawberry's ``MaxTokensLimiter``, ``ParserCache``,
``AddValidationRules`` and ``ValidationCache`` cost four extensions' hooks per
request (each wrapped in a fresh context manager) and the cost count one pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import suppress
from functools import _lru_cache_wrapper, lru_cache

from graphql import DocumentNode, GraphQLError, GraphQLSchema, parse
from graphql.validation import ASTValidationRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from runcast.schema._cost import cost_error, merge_verdict, query_cost

Rules = tuple[type[ASTValidationRule], ...]


class PreparedDocuments:
    """The shared caches of one schema: documents by query text, verdicts by document.

    Args:
        max_tokens: the most tokens a query text may have (parsing stops beyond).
        max_fields: the most fields a document may resolve, fragments expanded.
        max_comparisons: the most pairs of same-named fields (and of fragments) the
            overlapping-fields rule may compare (``_cost.py``).
        guard_rules: validation rules added to GraphQL's own (depth, aliases, ...).
        maxsize: distinct query texts (and verdicts) kept, least recently used out.
    """

    def __init__(
        self,
        *,
        max_tokens: int,
        max_fields: int,
        max_comparisons: int,
        guard_rules: Sequence[type[ASTValidationRule]],
        maxsize: int,
    ) -> None:
        self.max_tokens = max_tokens
        self.max_fields = max_fields
        self.max_comparisons = max_comparisons
        self.guard_rules: Rules = tuple(guard_rules)
        self.parse: _lru_cache_wrapper[DocumentNode] = lru_cache(maxsize=maxsize)(self._parse)
        self.verdict: _lru_cache_wrapper[list[GraphQLError]] = lru_cache(maxsize=maxsize)(
            self._verdict
        )

    def _parse(self, query: str) -> DocumentNode:
        return parse(query, max_tokens=self.max_tokens)

    def _verdict(
        self, schema: GraphQLSchema, document: DocumentNode, rules: Rules
    ) -> list[GraphQLError]:
        if query_cost(document, limit=self.max_fields) > self.max_fields:
            return [cost_error(self.max_fields)]
        refused = merge_verdict(document, limit=self.max_comparisons, max_fields=self.max_fields)
        if refused is not None:
            return [refused]
        return validate_document(schema, document, rules + self.guard_rules)


class PreparedOperations(SchemaExtension):
    """Looks the operation's document and validation verdict up in :class:`PreparedDocuments`.

    A text that fails to parse is not cached: the document stays unset and
    Strawberry's parse step, which turns the syntax error into a coded result,
    parses it again with the same token limit.
    """

    def __init__(self, documents: PreparedDocuments) -> None:
        super().__init__()
        self.documents = documents

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        context.parse_options["max_tokens"] = self.documents.max_tokens
        if context.query is not None:
            with suppress(GraphQLError):
                context.graphql_document = self.documents.parse(context.query)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None:
            context.pre_execution_errors = self.documents.verdict(
                context.schema._schema, context.graphql_document, context.validation_rules
            )
        yield
