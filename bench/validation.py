"""What the worst documents the guards let through cost to accept or refuse, against a trivial one.

Each shape is grown as large as the token limit allows (RUNCAST_MAX_QUERY_TOKENS, default
2,000), then parsed and checked (the field cost and response-name guards, then GraphQL's own
validation with the depth and alias guards) by the gateway's own ``PreparedDocuments`` with
its caches emptied, so each round pays the full price. The shapes aim at graphql-core's
OverlappingFieldsCanBeMergedRule, whose pairwise comparisons are the one part of validation
that grows faster than the document: the same response name many times (plain, with other
arguments, with sub-selections, through inline fragments, through one fragment spread many
times, through many fragments), and trees of repeated sub-selections.

For each shape the bench finds the accepted document that makes the most comparisons
(the most repeats, and copies under aliases, that the guards let through) and the refused
one that makes the most within every other limit (tokens, aliases, fields with fragments
expanded: the worst case without this guard), and checks each with the
merge guard (RUNCAST_MAX_FIELD_COMPARISONS at its default) and without it (graphql-core's
own budget only), both in the same run.

Run: ``python3 -P bench/validation.py [--rounds N]`` (``-P``: ``bench/http.py`` would
shadow the standard library's ``http``). Columns: tokens, comparisons counted, median and
worst milliseconds with the guard, ratio to the trivial query's median, verdict (ok, the
error code, or the first words of a validation error), then the median and ratio without
the guard and that verdict.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable

from graphql import GraphQLError, Lexer, Source, TokenKind, parse, specified_rules

from runcast.schema import build_schema
from runcast.schema._cost import merge_comparisons, query_cost
from runcast.settings import Settings

Shape = Callable[[int, int], str]
"""A document from ``repeats`` (how often one name stands in one merged set) and ``copies``."""
BASELINE = "{ workflows { id } }"
SCALARS = ("id", "name", "kind", "url", "version", "schedule", "inputSchema", "__typename")
"""Workflow's fields without arguments or sub-selections."""


def tokens(query: str) -> int:
    """The tokens graphql-core's parser counts against ``max_tokens``."""
    lexer = Lexer(Source(query))
    count = 0
    while lexer.advance().kind is not TokenKind.EOF:
        count += 1
    return count


def siblings(copies: int, inner: str, field: str = "workflows") -> str:
    """``copies`` aliased copies of ``field { inner }`` (distinct response names: no merging)."""
    return " ".join(f"a{i}: {field} {{ {inner} }}" for i in range(copies))


def ordinary(repeats: int, copies: int) -> str:
    """Reference: distinct fields only, as large as the limits allow (no name repeats)."""
    node = (
        "node { instanceId workflowId status rawStatus isTerminal input output error"
        " steps { name type status attempts } wait { reason eventType until } }"
    )
    runs = f"runs(first: 5) {{ edges {{ cursor {node} }} pageInfo {{ hasNextPage endCursor }} }}"
    return "{ " + siblings(copies, " ".join(SCALARS) + " " + runs) + " }"


def same_fields(repeats: int, copies: int) -> str:
    """Every scalar field ``repeats`` times in each of ``copies`` aliased sets."""
    return "{ " + siblings(copies, " ".join(f"{name} " * repeats for name in SCALARS)) + " }"


def other_arguments(repeats: int, copies: int) -> str:
    """``run`` ``repeats`` times with other arguments in each set: every pair conflicts."""
    runs = " ".join(f'run(instanceId: "{i}") {{ status }}' for i in range(repeats))
    return "{ " + siblings(copies, runs, 'workflow(id: "w")') + " }"


def sub_selections(repeats: int, copies: int) -> str:
    """``runs { ... }`` ``repeats`` times in each set: each pair compares the sub-selections."""
    inner = "runs { edges { node { instanceId status } } } " * repeats
    return "{ " + siblings(copies, inner) + " }"


def inline_fragments(repeats: int, copies: int) -> str:
    """``repeats`` inline fragments selecting the same fields, in each set."""
    inner = ("... on Workflow { " + " ".join(SCALARS) + " } ") * repeats
    return "{ " + siblings(copies, inner) + " }"


def fragments(repeats: int, copies: int) -> str:
    """``repeats`` fragments with the same fields, all spread in each set."""
    spreads = " ".join(f"...F{i}" for i in range(repeats))
    defs = " ".join(f"fragment F{i} on Workflow {{ {' '.join(SCALARS)} }}" for i in range(repeats))
    return "{ " + siblings(copies, spreads) + " } " + defs


def fragments_other_fields(repeats: int, copies: int) -> str:
    """Fragments selecting one field each, each field in ``repeats`` of them, all spread."""
    count = repeats * len(SCALARS)
    spreads = " ".join(f"...F{i}" for i in range(count))
    defs = " ".join(
        f"fragment F{i} on Workflow {{ {SCALARS[i % len(SCALARS)]} }}" for i in range(count)
    )
    return "{ " + siblings(copies, spreads) + " } " + defs


def repeated_tree(repeats: int, copies: int) -> str:
    """``run { workflow { ... } }`` twice per level: merged, the repeats double per level."""
    inner = "id"
    levels = max(repeats.bit_length() - 1, 1)  # 2**levels <= repeats
    for _ in range(levels):
        inner = f'run(instanceId: "i") {{ workflow {{ {inner} }} }}'
        inner = f"{inner} {inner}"
    return "{ " + siblings(copies, inner, 'workflow(id: "w")') + " }"


SHAPES: dict[str, Shape] = {
    "same fields": same_fields,
    "same field, other arguments": other_arguments,
    "same field, sub-selections": sub_selections,
    "inline fragments": inline_fragments,
    "fragments, same fields": fragments,
    "fragments, one field each": fragments_other_fields,
    "repeated tree": repeated_tree,
}


def tokens_copies(shape: Shape, repeats: int, settings: Settings) -> int:
    """The most copies of ``shape`` the token and alias limits allow (at least 1)."""
    copies = 1
    while (
        copies < settings.max_aliases
        and tokens(shape(repeats, copies + 1)) <= settings.max_query_tokens
    ):
        copies += 1
    return copies


def largest(shape: Shape, repeats: int, settings: Settings) -> str:
    """The document of ``shape`` with the most copies the token and alias limits allow."""
    return shape(repeats, tokens_copies(shape, repeats, settings))


class Checker:
    """Parses and checks a text as the gateway does, with its caches emptied each time."""

    def __init__(self, settings: Settings) -> None:
        self.schema = build_schema(settings)
        self.rules = tuple(specified_rules)

    def check(self, query: str) -> tuple[float, str]:
        """Seconds to parse and check ``query``, and its verdict (ok or the first error code)."""
        prepared = self.schema.prepared
        prepared.parse.cache_clear()
        prepared.verdict.cache_clear()
        started = time.perf_counter()
        try:
            document = prepared.parse(query)
        except GraphQLError as exc:
            return time.perf_counter() - started, f"parse: {exc.message[:40]}"
        errors = prepared.verdict(self.schema._schema, document, self.rules)
        seconds = time.perf_counter() - started
        if not errors:
            return seconds, "ok"
        code = (errors[0].extensions or {}).get("code")
        return seconds, str(code or errors[0].message[:50])


def measure(checker: Checker, query: str, rounds: int) -> tuple[float, float, str]:
    """Median and worst milliseconds over ``rounds``, and the verdict."""
    times = []
    verdict = ""
    for _ in range(rounds):
        seconds, verdict = checker.check(query)
        times.append(seconds * 1000)
    return statistics.median(times), max(times), verdict


def accepted(checker: Checker, query: str) -> bool:
    """Whether the guards let ``query`` through to validation's own rules (conflicts or not)."""
    verdict = checker.check(query)[1]
    return verdict == "ok" or verdict.startswith("Fields")


def most_copies(checker: Checker, shape: Shape, repeats: int, settings: Settings) -> str | None:
    """The accepted document of ``shape`` with the most copies, or ``None`` if one is refused."""
    low, high = 1, tokens_copies(shape, repeats, settings)
    if not accepted(checker, shape(repeats, low)):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        if accepted(checker, shape(repeats, middle)):
            low = middle
        else:
            high = middle - 1
    return shape(repeats, low)


def within_fields(shape: Shape, repeats: int, settings: Settings) -> str | None:
    """The document of ``shape`` with the most copies within the token, alias and field limits."""
    low, high = 1, tokens_copies(shape, repeats, settings)
    fields = settings.max_query_fields

    def fits(copies: int) -> bool:
        query = shape(repeats, copies)
        return (
            tokens(query) <= settings.max_query_tokens
            and query_cost(parse(query), limit=fields) <= fields
        )

    if not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return shape(repeats, low)


def most_pairs(queries: Iterable[str | None]) -> str:
    """The query that makes the most comparisons."""
    found = [query for query in queries if query is not None]
    return max(found, key=lambda q: merge_comparisons(parse(q), limit=10**9, visits=10**9).count)


def worst_cases(checker: Checker, shape: Shape, settings: Settings) -> tuple[str, str]:
    """The accepted document of ``shape`` that makes the most comparisons, and the refused one.

    Accepted: for each number of repeats, the most copies the guards accept. Refused: the
    one the field cost, token and alias limits let through (the worst without this guard).
    """
    accepted: list[str | None] = [BASELINE]
    for repeats in range(2, 400):
        query = most_copies(checker, shape, repeats, settings)
        if query is None:
            break
        accepted.append(query)
    refused = [within_fields(shape, repeats, settings) for repeats in range(2, 400, 3)]
    return most_pairs(accepted), most_pairs(refused)


def report(
    checkers: tuple[Checker, Checker], name: str, query: str, base: float, rounds: int
) -> None:
    """Print one row: tokens, comparisons, ms with the guard (median, worst), x baseline,
    verdict, and the median ms and verdict without the merge guard (the rule's own budget)."""
    guarded, unguarded = checkers
    median, worst, verdict = measure(guarded, query, rounds)
    before, _, old_verdict = measure(unguarded, query, max(rounds // 3, 1))
    pairs = merge_comparisons(parse(query), limit=10**9, visits=10**9).count
    print(
        f"{name:36} {tokens(query):6} {pairs:6} {median:8.2f} {worst:8.2f} {median / base:6.1f}"
        f"  {verdict[:18]:18} {before:8.2f} {before / base:7.1f}  {old_verdict[:18]}"
    )


def main() -> None:
    """Print each shape's cost at and over the comparisons limit against the trivial query's."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    settings = Settings()
    checkers = (Checker(settings), Checker(settings.replace(max_field_comparisons=10**7)))
    base, base_worst, _ = measure(checkers[0], BASELINE, rounds)
    print(f"baseline {BASELINE!r}: median {base:.3f} ms, worst {base_worst:.3f} ms")
    print(
        f"{'shape':36} {'tokens':>6} {'pairs':>6} {'median':>8} {'worst':>8} {'x base':>6}"
        f"  {'verdict':18} {'no guard':>8} {'x base':>7}  verdict"
    )
    reference = within_fields(ordinary, 1, settings) or BASELINE
    report(checkers, "ordinary (no repeats)", reference, base, rounds)
    for name, shape in SHAPES.items():
        accepted, refused = worst_cases(checkers[0], shape, settings)
        report(checkers, f"{name}: accepted", accepted, base, rounds)
        report(checkers, f"{name}: refused", refused, base, rounds)


if __name__ == "__main__":
    main()
