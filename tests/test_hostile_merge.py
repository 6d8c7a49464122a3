"""Documents that make the overlapping-fields rule compare pairs quadratically are refused first."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
import pytest
from graphql import parse
from starlette.types import ASGIApp

from runcast.app import create_app
from runcast.engine import Engine
from runcast.schema._cost import merge_comparisons
from runcast.settings import Settings
from runcast.upstream.local import LocalUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]


def repeated_tree(levels: int) -> str:
    """``run { workflow { ... } }`` twice at each of ``levels`` levels: merged, repeats double."""
    inner = "id"
    for _ in range(levels):
        inner = f'run(instanceId: "i") {{ workflow {{ {inner} }} }}'
        inner = f"{inner} {inner}"
    return f'{{ workflow(id: "w") {{ {inner} }} }}'


def pairs(query: str, limit: int = 10**6) -> int:
    """The comparisons counted for ``query``."""
    return merge_comparisons(parse(query), limit=limit, visits=10**6).count


def test_pairs_are_counted_on_the_merged_document() -> None:
    """Repeats of a name, fragments spread together and merged sub-selections all count."""
    assert pairs("{ workflows { id name kind } }") == 0
    assert pairs("{ workflows { id id id } }") == 3
    assert pairs("{ workflows { id ...A } } fragment A on Workflow { id }") == 1
    two = "fragment A on Workflow { id } fragment B on Workflow { name }"
    assert pairs("{ workflows { ...A ...B } } " + two) == 1
    assert pairs("{ a: workflows { id } b: workflows { id } }") == 0
    # 2, 4 and 8 runs (and as many workflows) merged per level, then 8 ids: 1+1+6+6+28+28+28.
    assert pairs(repeated_tree(3)) == 98


def test_counting_stops_at_the_limit_and_survives_cycles_and_unused_fragments() -> None:
    """The count stops at limit + 1; a fragment cycle ends; an unused fragment counts alone."""
    assert pairs("{ workflows { " + "id " * 5000 + "} }", limit=10) == 11
    cycle = (
        "{ workflows { ...A } } fragment A on Workflow { id ...B } fragment B on Workflow { ...A }"
    )
    assert pairs(cycle) == 1  # A and B spread together once
    assert pairs("{ workflows { id } } fragment X on Workflow { id id }") == 1
    with pytest.raises(ValueError, match="5"):
        merge_comparisons(parse("{ workflows { id name kind url version } }"), limit=9, visits=5)


SAME_FIELD = "{ workflows { " + "id " * 900 + "} }"
OTHER_ARGUMENTS = (
    '{ workflow(id: "w") { '
    + " ".join(f'run(instanceId: "{i}") {{ status }}' for i in range(150))
    + " } }"
)
SUB_SELECTIONS = "{ workflows { " + "runs { edges { node { status } } } " * 120 + "} }"
FRAGMENTS = (
    "{ workflows { "
    + " ".join(f"...F{i}" for i in range(150))
    + " } } "
    + " ".join(f"fragment F{i} on Workflow {{ id }}" for i in range(150))
)


@pytest.mark.parametrize(
    ("query", "name"),
    [
        (SAME_FIELD, "'id' stands"),
        (OTHER_ARGUMENTS, "'run' stands"),
        (SUB_SELECTIONS, "'runs' stands"),
        (FRAGMENTS, "fragments are spread"),
        (repeated_tree(6), "stands"),
    ],
    ids=["same-field", "other-arguments", "sub-selections", "fragments", "repeated-tree"],
)
async def test_quadratic_merges_are_refused_while_healthz_answers(
    serve: Serve, engine: Engine, query: str, name: str
) -> None:
    """Each shape is QUERY_TOO_COMPLEX naming the limit, its setting and the repeated name."""
    app = create_app(Settings(), upstream=LocalUpstream(engine))
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        attack = asyncio.create_task(http.post("/graphql", json={"query": query}))
        assert (await http.get("/healthz")).status_code == 200
        response = await attack
        again = await http.post("/graphql", json={"query": "{ workflows { id id } }"})
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX", "limit": 2000}
    assert "RUNCAST_MAX_FIELD_COMPARISONS" in error["message"]
    assert name in error["message"]
    assert again.json()["data"]["workflows"]


async def test_the_limit_is_a_setting(serve: Serve, engine: Engine) -> None:
    """With RUNCAST_MAX_FIELD_COMPARISONS at 2, three repeats are refused and two pass."""
    app = create_app(Settings(max_field_comparisons=2), upstream=LocalUpstream(engine))
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        refused = await http.post("/graphql", json={"query": "{ workflows { id id id } }"})
        passed = await http.post("/graphql", json={"query": "{ workflows { id id } }"})
    assert refused.json()["errors"][0]["extensions"] == {"code": "QUERY_TOO_COMPLEX", "limit": 2}
    assert passed.json()["data"]["workflows"]
