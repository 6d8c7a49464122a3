"""The cost guards: what a document would cost, counted before any validation rule runs.

**Fields**: the fields a document would resolve, fragments expanded.

Validation rules that follow fragment spreads (query depth, overlapping fields)
do work that doubles with every fragment that spreads the previous one twice: a
1 KB document can pin the CPU for minutes. :func:`query_cost` counts the same
expansion with one memoised pass over the document (each fragment is counted
once, however often it is spread) and stops as soon as the count passes the
limit, so any document the token limit lets through is measured in well under a
millisecond. ``PreparedDocuments`` (``_prepared.py``) refuses an expensive document
before any other validation rule sees it.

**Merging**: the field comparisons GraphQL's overlapping-fields rule would make.

OverlappingFieldsCanBeMergedRule compares every pair of fields that share a response
name in one selection set, with its inline and spread fragments, then each such pair
again through their sub-selections, and every pair of fragments spread together: its
work grows with the square of a name's repeats and multiplies level by level
(``run { workflow { run ... } } run { ... }`` doubles the repeats at each level), up to
graphql-core's own budget, about a second of CPU. :func:`merge_comparisons` counts the
same pairs on the document merged as execution would merge it (a selection set with its
fragments, the sub-selections of same-named fields together), in one walk that stops
as soon as the count passes the limit, so that the rule only ever sees documents whose
checking costs about as much as an ordinary document's.

The walk spreads each fragment once per merged set and never inside itself, visits at
most ``visits`` fields (beyond them the document is refused as too complex, which the
field cost guard already does for every document without a fragment cycle), and walks
fragments that nothing spreads on their own, since validation checks them too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Comparisons:
    """The pairs counted (exact up to the limit), and what stood most often in one merged set."""

    count: int
    name: str | None = None
    """The response name that stood most often in one merged set."""
    repeats: int = 0
    fragments: int = 0
    """The most fragments spread into one merged set."""

    def worst(self) -> str:
        """What repeats most, in words: ``'id' stands 40 times`` or ``60 fragments are spread``."""
        if self.fragments > self.repeats:
            return f"{self.fragments} fragments are spread in one selection set"
        return f"{self.name!r} stands {self.repeats} times in one selection set"


class _Stop(Exception):
    pass


class _Walk:
    """Merges selection sets level by level, counting pairs of fields and of fragments."""

    def __init__(self, document: DocumentNode, limit: int, visits: int) -> None:
        self.limit = limit
        self.visits_left = visits
        self.pairs = 0
        self.most = ("", 0)
        self.most_fragments = 0
        self.fragments = {
            node.name.value: node
            for node in document.definitions
            if isinstance(node, FragmentDefinitionNode)
        }

    def merged(self, sets: list[SelectionSetNode], path: frozenset[str], nesting: int) -> None:
        if nesting > MAX_COUNTED_NESTING:
            return
        counts: dict[str, int] = {}
        children: dict[str, list[SelectionSetNode]] = {}
        spread = set(path)
        for field in self._fields(sets, spread, len(path)):
            name = field.alias.value if field.alias else field.name.value
            count = counts[name] = counts.get(name, 0) + 1
            if count > self.most[1]:
                self.most = (name, count)
            self._pairs(count - 1)
            if field.selection_set is not None:
                children.setdefault(name, []).append(field.selection_set)
        inner = frozenset(spread)
        for subsets in children.values():
            self.merged(subsets, inner, nesting + 1)

    def _pairs(self, more: int) -> None:
        self.pairs += more
        if self.pairs > self.limit:
            raise _Stop

    def _fields(
        self, sets: Iterable[SelectionSetNode], spread: set[str], inherited: int
    ) -> Iterator[FieldNode]:
        """The fields of ``sets``, inline fragments and newly spread fragments flattened."""
        pending = list(sets)
        while pending:
            for selection in pending.pop().selections:
                if isinstance(selection, FieldNode):
                    self.visits_left -= 1
                    if self.visits_left < 0:
                        raise _Stop
                    yield selection
                elif isinstance(selection, InlineFragmentNode):
                    pending.append(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    definition = self.fragments.get(selection.name.value)
                    if definition is not None and definition.name.value not in spread:
                        together = len(spread) - inherited  # spread here before this one
                        self.most_fragments = max(self.most_fragments, together + 1)
                        self._pairs(together)
                        spread.add(definition.name.value)
                        pending.append(definition.selection_set)


def _roots(document: DocumentNode) -> Iterator[tuple[SelectionSetNode, frozenset[str]]]:
    """Each operation's selection set, and each fragment's that nothing spreads."""
    spread: set[str] = set()
    pending = [
        node.selection_set
        for node in document.definitions
        if isinstance(node, OperationDefinitionNode | FragmentDefinitionNode)
    ]
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FragmentSpreadNode):
                spread.add(selection.name.value)
            elif isinstance(selection, FieldNode | InlineFragmentNode) and selection.selection_set:
                pending.append(selection.selection_set)
    for node in document.definitions:
        if isinstance(node, OperationDefinitionNode):
            yield node.selection_set, frozenset()
        elif isinstance(node, FragmentDefinitionNode) and node.name.value not in spread:
            yield node.selection_set, frozenset([node.name.value])


def merge_comparisons(document: DocumentNode, *, limit: int, visits: int) -> Comparisons:
    """The pairs of fields and fragments the overlapping-fields rule compares, up to ``limit + 1``.

    Raises:
        ValueError: the walk would visit more than ``visits`` fields.
    """
    walk = _Walk(document, limit, visits)
    try:
        for selection_set, path in _roots(document):
            walk.merged([selection_set], path, 1)
    except _Stop:
        if walk.visits_left < 0:
            raise ValueError(visits) from None
    name, repeats = walk.most
    return Comparisons(min(walk.pairs, limit + 1), name or None, repeats, walk.most_fragments)


def comparisons_error(found: Comparisons, limit: int) -> GraphQLError:
    """The error for a document over ``limit`` comparisons, naming the limit and its setting."""
    return GraphQLError(
        f"Checking that same-named fields merge would compare more than {limit} pairs of "
        f"fields and fragments ({found.worst()}, with fragments and same-named fields "
        "merged; the limit is RUNCAST_MAX_FIELD_COMPARISONS)",
        extensions={"code": COST_CODE, "limit": limit},
    )


def merge_verdict(document: DocumentNode, *, limit: int, max_fields: int) -> GraphQLError | None:
    """The refusal of ``document`` for its comparisons (or too many visits), or ``None``."""
    try:
        found = merge_comparisons(document, limit=limit, visits=max_fields + 1)
    except ValueError:
        return cost_error(max_fields)
    return comparisons_error(found, limit) if found.count > limit else None
