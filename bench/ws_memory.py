"""Where an idle WebSocket subscriber's memory goes in the gateway, by tracemalloc.

Serves ``runcast serve``'s app (embedded engine, the default WebSocket
implementation or ``--ws``) with uvicorn in this process, with tracemalloc on.
A child process opens N graphql-transport-ws connections, each subscribed to
``runStatus`` of a run waiting for an event, and holds them. The difference of
two snapshots (before the clients, once all have their first message), divided
by N, is each subscriber's share, grouped by the library that allocated it (the
innermost frame of a known package). RSS growth per subscriber is printed next
to it: tracemalloc sees Python allocations only.

Usage::

    python bench/ws_memory.py [--subscribers N] [--ws wsproto|websockets-sansio] [--frames F]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import socket
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

# Run as a script, this file's folder leads sys.path, and bench/http.py would shadow the
# standard library's ``http`` package.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = """
id: bench-wait
nodes:
  - wait_for_event: go
    event_type: go
"""
RUN_STATUS = (
    "subscription Watch($workflowId: ID!, $instanceId: ID!) "
    "{ runStatus(workflowId: $workflowId, instanceId: $instanceId) { status } }"
)
PACKAGES = (
    "strawberry",
    "graphql",
    "uvicorn",
    "websockets",
    "wsproto",
    "h11",
    "httptools",
    "starlette",
    "runcast",
)
"""Packages an allocation is charged to: the innermost frame in one of them (stdlib folds in)."""


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib() -> int:
    """This process's resident memory in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def owner(frames: list[tracemalloc.Frame]) -> tuple[str, str]:
    """The package and ``file:line`` of the innermost frame in PACKAGES (or 'other')."""
    for frame in reversed(frames):
        for package in PACKAGES:
            if f"/{package}/" in frame.filename:
                tail = frame.filename.rsplit(f"/{package}/", 1)[1]
                return package, f"{package}/{tail}:{frame.lineno}"
    last = frames[-1]
    return "other", f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno}"


Breakdown = tuple[collections.Counter[str], collections.Counter[str]]


def breakdown(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> Breakdown:
    """Bytes allocated between the snapshots, by owning package and by file:line."""
    by_package: collections.Counter[str] = collections.Counter()
    by_line: collections.Counter[str] = collections.Counter()
    own = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
    before, after = before.filter_traces(own), after.filter_traces(own)
    for stat in after.compare_to(before, "traceback"):
        package, line = owner(list(stat.traceback))
        by_package[package] += stat.size_diff
        by_line[line] += stat.size_diff
    return by_package, by_line


CLIENT = """
import asyncio, json, sys
import websockets

url, count, ids, query = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4]


async def one(i, ready, gate):
    async with gate:
        ws = await websockets.connect(
            url, subprotocols=["graphql-transport-ws"], ping_interval=None, open_timeout=120
        )
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        variables = {"workflowId": "bench-wait", "instanceId": ids[i % len(ids)]}
        payload = {"query": query, "variables": variables}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        json.loads(await ws.recv())
    ready.append(i)
    await asyncio.Event().wait()


async def main():
    ready, gate = [], asyncio.Semaphore(50)
    tasks = [asyncio.create_task(one(i, ready, gate)) for i in range(count)]
    while len(ready) < count:
        await asyncio.sleep(0.1)
        for task in tasks:
            if task.done() and task.exception():
                raise task.exception()
    print("ready", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
"""
"""The clients' process: N subscribers that stay connected until it is terminated."""


async def start_gateway(args: argparse.Namespace) -> tuple[Any, asyncio.Task[None], int, Any]:
    """The gateway on uvicorn in this process, configured as `runcast serve` configures it."""
    import uvicorn

    from runcast._server import connection_options
    from runcast.app import create_app
    from runcast.settings import Settings

    folder = Path(tempfile.mkdtemp(prefix="runcast-wsmem-"))
    (folder / "workflows").mkdir()
    (folder / "workflows" / "bench-wait.yaml").write_text(WORKFLOW)
    settings = Settings(
        workflows_dir=folder / "workflows",
        db_path=folder / "g.db",
        ws_implementation=args.ws or Settings.ws_implementation,
        max_connections=100_000,
    )
    port = free_port()
    options = settings.server_options()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        # as runcast._server.serve_app configures uvicorn for `runcast serve`
        ws_ping_interval=20.0,
        ws_max_size=options.ws_max_size,
        ws_per_message_deflate=options.ws_per_message_deflate,
        **connection_options(options),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
        await asyncio.sleep(0.05)
    return server, task, port, settings


async def waiting_runs(port: int, count: int = 10) -> list[str]:
    """Trigger ``count`` bench-wait runs through the gateway; their instance ids."""
    import httpx

    trigger = (
        'mutation($i: ID!) { triggerRun(workflowId: "bench-wait", instanceId: $i) { instanceId } }'
    )
    ids = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for n in range(count):
            body = {"query": trigger, "variables": {"i": f"w{n}"}}
            answer = (await http.post("/graphql", json=body)).json()
            ids.append(answer["data"]["triggerRun"]["instanceId"])
    return ids


async def serve_and_measure(args: argparse.Namespace) -> None:
    """Start the gateway here, the clients in a child, and print the breakdown."""
    server, task, port, settings = await start_gateway(args)
    ids = await waiting_runs(port)
    await asyncio.sleep(1.0)
    tracemalloc.start(args.frames)
    before, rss_before = tracemalloc.take_snapshot(), rss_kib()
    clients = [f"ws://127.0.0.1:{port}/graphql", str(args.subscribers), ",".join(ids), RUN_STATUS]
    child = subprocess.Popen(  # noqa: ASYNC220 (started once, before the measurement)
        [sys.executable, "-c", CLIENT, *clients], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    line = await asyncio.to_thread(child.stdout.readline)
    if line.strip() != "ready":
        raise SystemExit(f"the clients failed: {line!r}")
    await asyncio.sleep(2.0)
    after, rss_after = tracemalloc.take_snapshot(), rss_kib()
    by_package, by_line = breakdown(before, after)
    n = args.subscribers
    print(
        f"{n} idle subscribers, ws={settings.ws_implementation}, http={settings.http_parser}: "
        f"RSS +{(rss_after - rss_before) / n:.1f} KiB each (with tracemalloc's own overhead), "
        f"traced +{sum(by_package.values()) / n / 1024:.1f} KiB each"
    )
    for name, size in [*by_package.most_common(), *by_line.most_common(args.lines)]:
        print(f"  {name:72s} {size / n / 1024:7.2f} KiB")
    child.terminate()
    child.wait(timeout=10)
    server.should_exit = True
    await task


def main() -> int:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--ws", choices=["websockets-sansio", "wsproto"])
    parser.add_argument("--frames", type=int, default=25, help="traceback depth kept")
    parser.add_argument("--lines", type=int, default=25, help="allocation sites shown")
    args = parser.parse_args()
    asyncio.run(serve_and_measure(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
