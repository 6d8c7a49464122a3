"""Prepared operations: a repeated query is parsed, guarded and validated once."""

from __future__ import annotations

import strawberry
from graphql.validation import NoSchemaIntrospectionCustomRule

from runcast.schema._prepared import PreparedDocuments, PreparedOperations


@strawberry.type
class Query:
    """A one-field schema."""

    @strawberry.field
    def hello(self, name: str = "world") -> str:
        """A greeting."""
        return f"hello {name}"


def prepared_schema(**limits: int) -> tuple[strawberry.Schema, PreparedDocuments]:
    """A schema whose only guard is PreparedOperations over fresh caches."""
    documents = PreparedDocuments(
        max_tokens=limits.get("max_tokens", 1000),
        max_fields=limits.get("max_fields", 100),
        max_comparisons=limits.get("max_comparisons", 2000),
        guard_rules=[NoSchemaIntrospectionCustomRule],
        maxsize=8,
    )
    return strawberry.Schema(Query, extensions=[lambda: PreparedOperations(documents)]), documents


async def test_a_repeated_query_is_parsed_and_validated_once() -> None:
    """The second and third runs of one text hit both caches and still execute."""
    schema, documents = prepared_schema()
    for name in ("a", "b", "c"):
        result = await schema.execute("query($n: String!) { hello(name: $n) }", {"n": name})
        assert result.errors is None
        assert result.data == {"hello": f"hello {name}"}
    assert documents.parse.cache_info().misses == 1
    assert documents.parse.cache_info().hits == 2
    assert documents.verdict.cache_info().hits == 2


async def test_guard_verdicts_are_kept_with_the_document() -> None:
    """A refused document stays refused on a cache hit: the added rules and the field cost."""
    schema, documents = prepared_schema(max_fields=2)
    for _ in range(2):
        introspection = await schema.execute("{ __schema { queryType { name } } }")
        assert introspection.errors
        costly = await schema.execute("{ a: hello b: hello c: hello }")
        assert costly.errors
        assert (costly.errors[0].extensions or {})["code"] == "QUERY_TOO_COMPLEX"
    assert documents.verdict.cache_info().hits == 2


async def test_unparsable_and_too_long_texts_are_refused_and_not_kept() -> None:
    """Syntax errors and texts over the token limit get errors; neither enters the cache."""
    schema, documents = prepared_schema(max_tokens=5)
    broken = await schema.execute("{ hello(")
    long = await schema.execute("{ a: hello b: hello c: hello }")
    assert broken.errors
    assert long.errors
    assert "token" in long.errors[0].message.lower()
    assert documents.parse.cache_info().currsize == 0
