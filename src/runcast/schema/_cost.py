"""The query cost guard: the fields a document would resolve, fragments expanded.

Validation rules that follow fragment spreads (query depth, overlapping fields)
do work that doubles with every fragment that spreads the previous one twice: a
1 KB document can pin the CPU for minutes. :func:`query_cost` counts the same
expansion with one memoised pass over the document (each fragment is counted
once, however often it is spread) and stops as soon as the count passes the
limit, so any document the token limit lets through is measured in well under a
millisecond. ``PreparedDocuments`` (``_prepared.py``) refuses an expensive document
before any other validation rule sees it.
"""

from __future__ import annotations

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

MAX_COUNTED_NESTING = 100
"""Selection sets below this nesting are not counted: the depth rule refuses such documents."""

COST_CODE = "QUERY_TOO_COMPLEX"
"""The ``extensions.code`` of a document refused for its cost."""


class _Counter:
    """Counts fields below selection sets, fragments expanded, up to ``limit + 1``."""

    def __init__(self, document: DocumentNode, limit: int) -> None:
        self.over = limit + 1
        self.fragments = {
            node.name.value: node
            for node in document.definitions
            if isinstance(node, FragmentDefinitionNode)
        }
        self.known: dict[str, int] = {}
        self.counting: set[str] = set()

    def selection_set(self, node: SelectionSetNode | None, nesting: int) -> int:
        if node is None or nesting > MAX_COUNTED_NESTING:
            return 0
        total = 0
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                total += 1 + self.selection_set(selection.selection_set, nesting + 1)
            elif isinstance(selection, InlineFragmentNode):
                total += self.selection_set(selection.selection_set, nesting + 1)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.fragment(selection.name.value, nesting)
            if total >= self.over:
                return self.over
        return total

    def fragment(self, name: str, nesting: int) -> int:
        if name in self.known:
            return self.known[name]
        definition = self.fragments.get(name)
        if definition is None or name in self.counting:
            return 0  # unknown fragments and cycles are refused by validation
        self.counting.add(name)
        cost = self.selection_set(definition.selection_set, nesting + 1)
        self.counting.discard(name)
        self.known[name] = cost
        return cost


def query_cost(document: DocumentNode, *, limit: int) -> int:
    """The fields ``document`` would resolve with its fragments expanded, at most ``limit + 1``.

    Every operation counts (validation looks at all of them), and so does the most
    expensive fragment on its own (an unused fragment is validated too).

    Args:
        document: a parsed GraphQL document.
        limit: the count is exact up to ``limit``; anything above is ``limit + 1``.
    """
    counter = _Counter(document, limit)
    total = 0
    for node in document.definitions:
        if isinstance(node, OperationDefinitionNode):
            total += counter.selection_set(node.selection_set, 1)
        if total >= counter.over:
            return counter.over
    for name in counter.fragments:
        total = max(total, counter.fragment(name, 1))
    return min(total, counter.over)


def cost_error(limit: int) -> GraphQLError:
    """The error for a document over ``limit`` fields, naming the limit and its setting."""
    return GraphQLError(
        f"The document would resolve more than {limit} fields with its fragments "
        "expanded (the limit is RUNCAST_MAX_QUERY_FIELDS)",
        extensions={"code": COST_CODE, "limit": limit},
    )
