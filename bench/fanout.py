"""What live subscriptions cost the upstream and the gateway: the shared poller against a naive one.

Starts, each in its own process, the embedded engine's REST API (with a counter of the
GET requests it serves), the gateway in front of it through the AwaitStep adapter, and
the WebSocket clients. N clients (1,000 and 10,000 by default) each subscribe to
``runStatus`` of one of M runs that wait for an event. The bench then

1. holds for a while with nothing changing and counts the upstream requests per second;
2. completes the runs one after another and measures, for every subscriber, the time
   from the upstream change (the event's POST returning) to the client receiving COMPLETE;
3. reads the gateway's CPU time (``/proc``) and its memory growth per subscriber.

It does this twice in the same invocation: with the shared poller (``runcast.live``)
and with the naive design as the baseline, where every subscription polls the upstream
itself at the same interval. The table goes to stdout and to ``bench/results/fanout.md``,
with the exact command. Never run by the test suite. 10,000 sockets need file
descriptors: the bench raises its soft limit to the hard one (``ulimit -Hn``). Usage::

    python bench/fanout.py [--subscribers 1000,10000] [--runs 20] [--interval 1.0]
                           [--budget 25] [--hold 10] [--designs shared,naive]
"""

from __future__ import annotations

# First: it takes bench/ off sys.path (see its docstring).
import _support as bench

# isort: split

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runcast.settings import Settings

WORKFLOW = """
id: bench-wait
nodes:
  - wait_for_event: go
    event_type: go
  - step: done
    action:
      return: {done: "`true`"}
"""

DEFAULT_WS = Settings.ws_implementation
"""The gateway's default WebSocket implementation."""

RUN_STATUS = """
subscription Watch($workflowId: ID!, $instanceId: ID!) {
  runStatus(workflowId: $workflowId, instanceId: $instanceId) { status }
}
"""

RESULTS = Path(__file__).resolve().parent / "results" / "fanout.md"


# ----------------------------------------------------------------------- children


def child_engine(port: int, folder: Path) -> None:
    """Serve the engine's REST API over the bench's workflow, counting its GETs."""
    bench.serve_counting_engine(port, folder, {"bench-wait.yaml": WORKFLOW})


class NaiveHub:
    """The baseline: every subscription polls the upstream itself, at a fixed interval."""

    def __init__(self, upstream: Any, settings: Any, *, metrics: Any) -> None:
        self.upstream = upstream
        self.interval = settings.poll_min_interval

    async def __aenter__(self) -> NaiveHub:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def watch_run(
        self, workflow_id: str, instance_id: str, credentials: Any
    ) -> AsyncGenerator[Any, None]:
        from runcast.errors import UpstreamError
        from runcast.live import RunChange

        previous = None
        while True:
            try:
                run = await self.upstream.get_run(workflow_id, instance_id, credentials=credentials)
            except UpstreamError:  # a fair baseline: ride out timeouts, try again later
                await asyncio.sleep(self.interval)
                continue
            if previous is None or run.observable() != previous.observable():
                status = None if previous is None else previous.status
                yield RunChange(run, status, datetime.now(UTC))
                if run.is_terminal:
                    return
            previous = run
            await asyncio.sleep(self.interval)

    async def watch_workflow(
        self, workflow_id: str, statuses: Any, credentials: Any
    ) -> AsyncGenerator[Any, None]:
        raise NotImplementedError("the bench only subscribes to runStatus")
        yield


def child_gateway(
    port: int, upstream: str, naive: bool, interval: float, budget: float, ws: str
) -> None:
    """Serve the gateway in front of ``upstream``, with the shared poller or the naive one.

    ``ws`` names uvicorn's WebSocket implementation (the ``ws_implementation`` setting).
    """
    import logging

    import httpx
    import uvicorn

    import runcast.app
    import runcast.live

    # Upstream failures of the naive design would flood the log: the clients count them.
    logging.getLogger("runcast").setLevel(logging.CRITICAL)
    from runcast.app import create_app
    from runcast.upstream.awaitstep import AwaitStepUpstream

    if naive:  # the app builds whichever LiveHub its module sees
        runcast.app.LiveHub = NaiveHub  # type: ignore[misc,assignment]
        runcast.live.LiveHub = NaiveHub  # type: ignore[misc,assignment]
    settings = Settings(
        poll_min_interval=interval,
        poll_max_interval=interval,
        request_budget_per_second=budget,
        ws_max_operations=10,
        ws_connection_init_timeout=120.0,
        ws_implementation=ws,
    )
    # Both designs get a pool big enough that the upstream, not the pool, is the limit.
    pool = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    )
    adapter = AwaitStepUpstream(upstream, settings=settings, transport=pool)
    bench.raise_fd_limit()
    uvicorn.run(
        create_app(settings, upstream=adapter),
        host="127.0.0.1",
        port=port,
        log_level="error",
        backlog=8192,
        ws_ping_interval=None,
        ws_per_message_deflate=settings.ws_per_message_deflate,
        ws=settings.ws_implementation,
    )


async def clients(url: str, runs: list[str], count: int, deadline: float) -> str:
    """Subscribe ``count`` sockets round-robin to ``runs``; record when each gets COMPLETE."""
    bench.raise_fd_limit()
    ws_url = url.replace("http://", "ws://") + "/graphql"
    handshakes = asyncio.Semaphore(100)
    subscribed = 0
    everyone = asyncio.Event()
    completes: list[tuple[str, float]] = []
    failures: list[str] = []

    async def one(index: int) -> None:
        nonlocal subscribed
        instance_id = runs[index % len(runs)]
        counted = False
        try:
            async with handshakes:
                ws = await bench.open_subscription_socket(ws_url)
                variables = {"workflowId": "bench-wait", "instanceId": instance_id}
                payload = {"query": RUN_STATUS, "variables": variables}
                await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            async with ws:
                first = True
                async for raw in ws:
                    received = time.time()
                    message = json.loads(raw)
                    if first:
                        first = False
                        counted = True
                        subscribed += 1
                        if subscribed + len(failures) >= count:
                            everyone.set()
                    if message["type"] == "next":
                        data = message["payload"].get("data") or {}
                        status = (data.get("runStatus") or {}).get("status")
                        if status == "COMPLETE":
                            completes.append((instance_id, received))
                        elif message["payload"].get("errors"):
                            failures.append(str(message["payload"]["errors"])[:200])
                    elif message["type"] == "error":
                        failures.append(str(message.get("payload"))[:200])
                        return
                    elif message["type"] == "complete":
                        return
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}"[:200])
        finally:
            if not counted and subscribed + len(failures) >= count:
                everyone.set()

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(deadline):
            await everyone.wait()
    print(f"SUBSCRIBED {subscribed} {len(failures)}", flush=True)
    # The parent completes the runs now; wait until every socket is done or time is up.
    _, pending = await asyncio.wait(tasks, timeout=deadline)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return json.dumps({"completes": completes, "failures": failures})


# ------------------------------------------------------------------------- parent


@dataclass
class Result:
    """One design at one subscriber count."""

    design: str
    subscribers: int
    runs: int
    subscribed: int
    delivered: int
    failures: int
    upstream_rps: float
    p50_ms: float
    p99_ms: float
    cpu_seconds: float
    cpu_ms_per_subscriber: float
    kib_per_subscriber: float


def proc_stats(pid: int) -> tuple[float, int]:
    """(CPU seconds used, resident set in KiB) of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return cpu, rss


def measure(design: str, subscribers: int, args: argparse.Namespace, ws: str) -> Result:
    """Run one design on WebSocket implementation ``ws`` with ``subscribers`` clients."""
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        engine_port, gateway_port = bench.free_port(), bench.free_port()
        engine_url = f"http://127.0.0.1:{engine_port}"
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        with bench.python_child(__file__, "_engine", str(engine_port), tmp):
            bench.wait_http(engine_url + "/_bench/gets")
            gateway_args = ["_gateway", str(gateway_port), engine_url, str(args.interval)]
            gateway_args += [str(args.budget), "naive" if design == "naive" else "shared", ws]
            with (
                bench.python_child(__file__, *gateway_args) as gateway,
                httpx.Client(timeout=30) as http,
            ):
                bench.wait_http(gateway_url + "/healthz")
                runs = [
                    http.post(engine_url + "/api/v1/workflows/bench-wait/runs", json={}).json()[
                        "instanceId"
                    ]
                    for _ in range(args.runs)
                ]
                _, rss0 = proc_stats(gateway.pid)
                out = Path(tmp) / "clients.json"
                client_args = ["_clients", gateway_url, ",".join(runs), str(subscribers)]
                client_args += [str(args.deadline), str(out)]
                with bench.python_child(__file__, *client_args, stdout=subprocess.PIPE) as client:
                    assert client.stdout is not None
                    line = client.stdout.readline().split()
                    subscribed = int(line[1]) if line and line[0] == "SUBSCRIBED" else 0
                    cpu1, rss1 = proc_stats(gateway.pid)

                    gets1, t1 = bench.engine_gets(engine_url), time.monotonic()
                    time.sleep(args.hold)
                    gets2, t2 = bench.engine_gets(engine_url), time.monotonic()
                    changed: dict[str, float] = {}
                    for instance_id in runs:
                        http.post(
                            f"{engine_url}/api/v1/workflows/bench-wait/runs/{instance_id}/events",
                            json={"eventType": "go"},
                        ).raise_for_status()
                        changed[instance_id] = time.time()
                        time.sleep(args.hold / len(runs))
                    client.wait(args.deadline + 60)
                    cpu3, _ = proc_stats(gateway.pid)
                report = json.loads(out.read_text())
    print(
        f"  {design} {subscribers}: subscribed {subscribed}, GETs {gets1} -> {gets2} in "
        f"{t2 - t1:.1f}s, {len(report['completes'])} completes, "
        f"{len(report['failures'])} failures {report['failures'][:2]}",
        file=sys.stderr,
        flush=True,
    )
    latencies = sorted(
        (received - changed[instance_id]) * 1000 for instance_id, received in report["completes"]
    )
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return Result(
        design=design if ws == DEFAULT_WS else f"{design} ({ws})",
        subscribers=subscribers,
        runs=args.runs,
        subscribed=subscribed,
        delivered=len(latencies),
        failures=len(report["failures"]),
        upstream_rps=(gets2 - gets1) / (t2 - t1),
        p50_ms=quantiles[49],
        p99_ms=quantiles[98],
        cpu_seconds=cpu3 - cpu1,
        cpu_ms_per_subscriber=(cpu3 - cpu1) * 1000 / subscribers,
        kib_per_subscriber=(rss1 - rss0) / subscribers,
    )


def table(results: list[Result]) -> str:
    """The results as a markdown table, with the naive/shared ratio of upstream requests."""
    header = (
        "| design | subscribers | runs | subscribed | delivered | failed | upstream req/s "
        "| p50 ms | p99 ms | gateway CPU s | CPU ms/sub | KiB/sub | req/s vs shared |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    shared = {r.subscribers: r.upstream_rps for r in results if r.design == "shared"}
    rows = []
    for r in results:
        base = shared.get(r.subscribers)
        ratio = f"{r.upstream_rps / base:.1f}x" if base else "-"
        rows.append(
            f"| {r.design} | {r.subscribers} | {r.runs} | {r.subscribed} | {r.delivered} "
            f"| {r.failures} "
            f"| {r.upstream_rps:.1f} | {r.p50_ms:.0f} | {r.p99_ms:.0f} | {r.cpu_seconds:.1f} "
            f"| {r.cpu_ms_per_subscriber:.2f} | {r.kib_per_subscriber:.1f} | {ratio} |"
        )
    return header + "\n".join(rows) + "\n"


def main(argv: list[str]) -> int:
    """Parse arguments and either act as a child process or run the whole bench."""
    if argv and argv[0] == "_engine":
        child_engine(int(argv[1]), Path(argv[2]))
        return 0
    if argv and argv[0] == "_gateway":
        port, upstream, interval, budget, design, ws = argv[1:7]
        child_gateway(int(port), upstream, design == "naive", float(interval), float(budget), ws)
        return 0
    if argv and argv[0] == "_clients":
        url, runs, count, deadline, out = argv[1:6]
        report = asyncio.run(clients(url, runs.split(","), int(count), float(deadline)))
        Path(out).write_text(report)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", default="1000,10000", help="comma-separated counts")
    parser.add_argument("--runs", type=int, default=20, help="runs the subscribers spread over")
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval, seconds")
    parser.add_argument("--budget", type=float, default=25.0, help="shared poller's requests/s")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds of each phase")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds to give up")
    parser.add_argument("--designs", default="shared,naive", help="shared and/or naive")
    parser.add_argument(
        "--ws",
        default=DEFAULT_WS,
        help="comma-separated uvicorn WebSocket implementations to compare "
        "(websockets, websockets-sansio, wsproto)",
    )
    args = parser.parse_args(argv)
    limit = bench.raise_fd_limit()
    counts = [int(n) for n in args.subscribers.split(",")]
    if max(counts) + 100 > limit:
        print(f"open-file limit {limit} is too low for {max(counts)} sockets", file=sys.stderr)
        return 2
    command = "python bench/fanout.py " + shlex.join(argv)
    results: list[Result] = []
    for count in counts:
        for design in args.designs.split(","):
            for ws in args.ws.split(","):
                print(
                    f"measuring {design} ({ws}), {count} subscribers", file=sys.stderr, flush=True
                )
                results.append(measure(design, count, args, ws))
    text = (
        f"# Live fan-out: shared poller against per-subscription polling\n\n"
        f"Command: `{command.strip()}`\n\n"
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.\n"
        f"Poll interval {args.interval}s, shared budget {args.budget} req/s, {args.runs} runs; "
        f"latency is from the upstream change to the client receiving COMPLETE.\n\n"
        + table(results)
    )
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
