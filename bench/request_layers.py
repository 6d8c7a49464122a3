"""CPU per embedded read, layer by layer, in process: what the gateway's request path holds.

Builds ``runcast serve``'s app on an embedded engine (``tests/workflows``), completes
one ``three-steps`` run, and calls the app as uvicorn would (an ASGI ``http``
scope, no sockets) with the read of ``bench/http.py``. It reports, as CPU time
per call (median of rounds, the variants alternating so drift spreads evenly):

- the whole ASGI call, and the same with the plain JSON POST path switched off
  (``GraphQLTransport.json_posts``) and with finished runs not kept in memory;
- ``schema.execute`` alone (Strawberry's execution: documents, extensions,
  graphql-core), graphql-core's ``execute`` of the parsed document alone (no
  extensions), and the upstream's ``get_run``.

Never run by the test suite. Usage::

    python bench/request_layers.py [--calls N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Run as a script, this file's folder leads sys.path, and bench/http.py would shadow the
# standard library's ``http`` package.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import orjson

ROOT = Path(__file__).resolve().parent.parent
RUN_QUERY = (
    "query Run($workflowId: ID!, $instanceId: ID!) "
    "{ run(workflowId: $workflowId, instanceId: $instanceId) { instanceId status output } }"
)
TRIGGER = (
    'mutation($i: ID!) { triggerRun(workflowId: "three-steps", instanceId: $i) { instanceId } }'
)
VARIABLES = {"workflowId": "three-steps", "instanceId": "layers-1"}

Call = Callable[[], Awaitable[object]]


def http_scope(body: bytes) -> dict[str, Any]:
    """The scope uvicorn gives the app for a JSON POST of ``body`` to /graphql."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"accept", b"*/*"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def asgi_call(app: Any, body: bytes) -> list[dict[str, Any]]:
    """Call ``app`` with a JSON POST of ``body``; the messages it sent."""
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(http_scope(body), receive, send)
    return sent


def cpu_us(samples: list[float]) -> str:
    """The median of ``samples`` (seconds per call) in microseconds."""
    return f"{statistics.median(samples) * 1e6:7.1f} us"


async def measure(
    variants: dict[str, tuple[Call, Callable[[], Any]]], calls: int, rounds: int
) -> dict[str, list[float]]:
    """CPU seconds per call of each variant (its call, and the context it runs in), per round."""
    results: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            call, within = variants[name]
            with within():
                started = time.process_time()
                for _ in range(calls):
                    await call()
                results[name].append((time.process_time() - started) / calls)
    return results


@contextmanager
def unchanged() -> Iterator[None]:
    """No switch: the app as it is."""
    yield


async def run(args: argparse.Namespace) -> None:
    """Build the app, complete the run, measure every variant, print the table."""
    from graphql import execute, parse

    from runcast._graphql_app import GraphQLTransport
    from runcast.app import create_app
    from runcast.engine._finished_runs import FinishedRuns
    from runcast.models import ANONYMOUS
    from runcast.resolvers import GraphQLContext
    from runcast.settings import Settings

    folder = Path(tempfile.mkdtemp(prefix="runcast-layers-"))
    app = create_app(Settings(workflows_dir=ROOT / "tests" / "workflows", db_path=folder / "l.db"))
    endpoints = (getattr(route, "endpoint", None) for route in app.routes)
    transport = next(e for e in endpoints if isinstance(e, GraphQLTransport))

    @contextmanager
    def view_only() -> Iterator[None]:
        transport.json_posts.enabled = False
        try:
            yield
        finally:
            transport.json_posts.enabled = True

    @contextmanager
    def nothing_kept() -> Iterator[None]:
        kept = FinishedRuns.get
        FinishedRuns.get = lambda self, *a, **k: None  # type: ignore[method-assign]
        try:
            yield
        finally:
            FinishedRuns.get = kept  # type: ignore[method-assign]

    async with app.router.lifespan_context(app):
        await asgi_call(app, orjson.dumps({"query": TRIGGER, "variables": {"i": "layers-1"}}))
        await asyncio.sleep(1.0)
        body = orjson.dumps({"query": RUN_QUERY, "variables": VARIABLES})
        answer = (await asgi_call(app, body))[1]["body"]
        assert b'"COMPLETE"' in answer, answer
        upstream = transport.resources.upstream
        document = parse(RUN_QUERY)
        graphql_schema = transport.schema._schema  # type: ignore[attr-defined]

        def context() -> GraphQLContext:
            return GraphQLContext(
                upstream=upstream, credentials=ANONYMOUS, settings=transport.settings
            )

        async def bare_execute() -> object:
            return await execute(  # type: ignore[misc]
                graphql_schema, document, variable_values=VARIABLES, context_value=context()
            )

        variants: dict[str, tuple[Call, Callable[[], Any]]] = {
            "the whole ASGI call": (lambda: asgi_call(app, body), unchanged),
            "  ... through Strawberry's view (JSON POST path off)": (
                lambda: asgi_call(app, body),
                view_only,
            ),
            "  ... finished runs read from the file": (lambda: asgi_call(app, body), nothing_kept),
            "schema.execute (Strawberry: documents, extensions, graphql-core)": (
                lambda: transport.schema.execute(RUN_QUERY, dict(VARIABLES), context()),
                unchanged,
            ),
            "graphql-core execute of the parsed document (no extensions)": (
                bare_execute,
                unchanged,
            ),
            "the upstream's get_run": (
                lambda: upstream.get_run("three-steps", "layers-1", credentials=ANONYMOUS),
                unchanged,
            ),
        }
        for call, within in variants.values():
            with within():
                for _ in range(200):
                    await call()
        gc.collect()
        gc.freeze()
        results = await measure(variants, args.calls, args.rounds)
    print(f"CPU per call, median of {args.rounds} rounds x {args.calls} calls:")
    for name, samples in results.items():
        print(f"{cpu_us(samples)}  {name}")


def main() -> int:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1000, help="calls per round and variant")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (median)")
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
