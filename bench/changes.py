"""A dashboard of a busy workflow: changes delivered per second, latency, upstream requests.

Starts, each in its own process, the embedded engine's REST API (counting the GETs it
serves), the gateway in front of it through the AwaitStep adapter (budget 3 requests/s,
one credential), and the WebSocket clients. For each rate R (10, 25, 50 runs/s):

1. 500 runs of one workflow wait for an event; 500 clients subscribe to ``runStatus``,
   one run each, all at once: the time until every one has its first message;
2. the bench sends the runs' events straight to the engine's REST API at R per second,
   in random order; each run then completes. For every run: the time from the event's
   POST returning to its client receiving COMPLETE;
3. delivered changes per second and upstream GETs per second over that phase.

Every rate runs twice in the same invocation: with this tree's gateway, and with the
baseline design (by default commit b394924, the release before the live layer's split,
extracted with ``git archive`` into a temporary folder and run from there). The engine is
this tree's in both. Table to stdout and ``bench/results/changes.md``. Usage::

    python bench/changes.py [--rates 10,25,50] [--runs 500] [--budget 3]
                            [--baseline b394924] [--designs current,baseline] [--page-size 100]
"""

from __future__ import annotations

# First: it takes bench/ off sys.path (see its docstring).
from _support import (
    engine_gets,
    free_port,
    open_subscription_socket,
    python_child,
    raise_fd_limit,
    serve_counting_engine,
    wait_http,
)

# isort: split

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = """
id: dash
nodes:
  - wait_for_event: go
    event_type: go
  - step: done
    action:
      return: {done: "`true`"}
"""
RUN_STATUS = """
subscription Watch($workflowId: ID!, $instanceId: ID!) {
  runStatus(workflowId: $workflowId, instanceId: $instanceId) {
    status previousStatus observedAt run { instanceId status output error endedAt }
  }
}
"""
RESULTS = Path(__file__).resolve().parent / "results" / "changes.md"


# ----------------------------------------------------------------------- children


def child_engine(port: int, folder: Path) -> None:
    """Serve the engine's REST API over the bench's workflow, counting its GETs."""
    serve_counting_engine(port, folder, {"dash.yaml": WORKFLOW})


def child_gateway(port: int, upstream: str, budget: float, page_size: int) -> None:
    """Serve whichever gateway ``runcast`` imports as (PYTHONPATH picks the design)."""
    import logging

    import uvicorn

    from runcast.app import create_app
    from runcast.settings import Settings
    from runcast.upstream.awaitstep import AwaitStepUpstream

    logging.getLogger("runcast").setLevel(logging.ERROR)
    settings = Settings(
        request_budget_per_second=budget,
        live_list_page_size=page_size,
        ws_max_operations=10,
        ws_connection_init_timeout=300.0,
    )
    adapter = AwaitStepUpstream(upstream, settings=settings)
    raise_fd_limit()
    uvicorn.run(
        create_app(settings, upstream=adapter),
        host="127.0.0.1",
        port=port,
        log_level="error",
        backlog=4096,
        ws_ping_interval=None,
        ws_per_message_deflate=False,
    )


@dataclass
class Socket:
    """What one client saw."""

    instance_id: str
    subscribed: float = 0.0
    first: float | None = None
    complete: float | None = None
    failure: str | None = None


async def one_client(ws_url: str, me: Socket, gate: asyncio.Semaphore) -> None:
    """Subscribe to one run; note when the first message and COMPLETE arrive."""
    try:
        async with gate:
            ws = await open_subscription_socket(ws_url)
        variables = {"workflowId": "dash", "instanceId": me.instance_id}
        payload = {"query": RUN_STATUS, "variables": variables}
        me.subscribed = time.time()
        async with ws:
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            async for raw in ws:
                now, message = time.time(), json.loads(raw)
                if message["type"] != "next" or message["payload"].get("errors"):
                    me.failure = me.failure or str(message)[:200]
                    return
                me.first = me.first or now
                if message["payload"]["data"]["runStatus"]["status"] == "COMPLETE":
                    me.complete = now
                    return
    except Exception as exc:
        me.failure = f"{type(exc).__name__}: {exc}"[:200]


async def clients(url: str, runs: list[str], deadline: float, out: Path) -> None:
    """One socket per run; print FIRST when every one has its first message, then wait."""
    raise_fd_limit()
    ws_url = url.replace("http://", "ws://") + "/graphql"
    gate = asyncio.Semaphore(100)
    sockets = [Socket(instance_id) for instance_id in runs]
    tasks = [asyncio.create_task(one_client(ws_url, s, gate)) for s in sockets]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(deadline):
            while not all(s.first or s.failure for s in sockets):
                await asyncio.wait(tasks, timeout=0.05)
    print("FIRST", flush=True)
    _, pending = await asyncio.wait(tasks, timeout=deadline)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await asyncio.to_thread(out.write_text, json.dumps([s.__dict__ for s in sockets]))


# ------------------------------------------------------------------------- parent


@dataclass
class Result:
    """One design at one rate."""

    design: str
    rate: float
    runs: int
    first_all_s: float
    first_p99_s: float
    delivered: int
    failures: int
    delivered_per_s: float
    p50_s: float
    p99_s: float
    upstream_rps: float


def baseline_tree(commit: str, into: Path) -> Path:
    """The ``src`` folder of ``commit``, extracted from git into ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "src"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def paused_runs(engine: str, count: int) -> list[str]:
    """Create ``count`` runs and wait until every one waits for its event."""
    import httpx

    with httpx.Client(base_url=engine, timeout=30) as http:
        runs = [
            http.post("/api/v1/workflows/dash/runs", json={}).json()["instanceId"]
            for _ in range(count)
        ]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            page = http.get(
                "/api/v1/workflows/dash/runs", params={"status": "paused", "limit": 1000}
            ).json()
            if len(page["data"]) >= count:
                return runs
            time.sleep(0.2)
    raise RuntimeError("the runs did not all reach their wait")


async def drive(engine: str, runs: list[str], rate: float) -> dict[str, float]:
    """Send each run its event, ``rate`` per second in random order; when each POST returned."""
    import httpx

    order = list(runs)
    random.Random(7).shuffle(order)
    sent: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=engine, timeout=30) as http:

        async def send(instance_id: str, at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            path = f"/api/v1/workflows/dash/runs/{instance_id}/events"
            (await http.post(path, json={"eventType": "go"})).raise_for_status()
            sent[instance_id] = time.time()

        start = time.monotonic()
        await asyncio.gather(*(send(r, start + i / rate) for i, r in enumerate(order)))
    return sent


def measure(design: str, rate: float, args: argparse.Namespace, src: Path) -> Result:
    """One design at one rate."""
    with tempfile.TemporaryDirectory() as tmp:
        engine_port, gateway_port = free_port(), free_port()
        engine = f"http://127.0.0.1:{engine_port}"
        gateway = f"http://127.0.0.1:{gateway_port}"
        with python_child(__file__, "_engine", str(engine_port), tmp):
            wait_http(engine + "/_bench/gets")
            runs = paused_runs(engine, args.runs)
            env = {**os.environ, "PYTHONPATH": str(src)}
            gateway_args = [str(gateway_port), engine, str(args.budget), str(args.page_size)]
            with python_child(__file__, "_gateway", *gateway_args, env=env):
                wait_http(gateway + "/healthz")
                out = Path(tmp) / "clients.json"
                client_args = ["_clients", gateway, ",".join(runs), str(args.deadline), str(out)]
                with python_child(
                    __file__, *client_args, stdout=subprocess.PIPE
                ) as clients_process:
                    assert clients_process.stdout is not None
                    clients_process.stdout.readline()  # FIRST: every socket has its first message
                    time.sleep(args.hold)
                    gets0, t0 = engine_gets(engine), time.time()
                    sent = asyncio.run(drive(engine, runs, rate))
                    clients_process.wait(args.deadline + 60)
                    gets1, t1 = engine_gets(engine), time.time()
                seen = json.loads(out.read_text())
    return summarise(design, rate, seen, sent, (gets1 - gets0) / (t1 - t0), t0)


def summarise(
    design: str,
    rate: float,
    seen: list[dict[str, Any]],
    sent: dict[str, float],
    rps: float,
    t0: float,
) -> Result:
    """Turn what the clients saw into one row."""
    firsts = [s["first"] - s["subscribed"] for s in seen if s["first"]]
    start = min(s["subscribed"] for s in seen if s["subscribed"]) if seen else 0.0
    first_all = max((s["first"] for s in seen if s["first"]), default=start) - start
    done = [s for s in seen if s["complete"] and s["instance_id"] in sent]
    latencies = sorted(s["complete"] - sent[s["instance_id"]] for s in done)
    span = max((s["complete"] for s in done), default=t0 + 1) - t0

    def quantile(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else 0.0

    return Result(
        design=design,
        rate=rate,
        runs=len(seen),
        first_all_s=first_all,
        first_p99_s=quantile(sorted(firsts), 99),
        delivered=len(done),
        failures=sum(1 for s in seen if s["failure"]),
        delivered_per_s=len(done) / span if span > 0 else 0.0,
        p50_s=quantile(latencies, 50),
        p99_s=quantile(latencies, 99),
        upstream_rps=rps,
    )


def table(results: list[Result]) -> str:
    """The results as a markdown table."""
    lines = [
        "| design | runs/s driven | subscribers | all first messages s | delivered "
        "| failed | delivered changes/s | p50 s | p99 s | upstream req/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.design} | {r.rate:g} | {r.runs} | {r.first_all_s:.1f} | {r.delivered} "
            f"| {r.failures} | {r.delivered_per_s:.1f} | {r.p50_s:.2f} | {r.p99_s:.2f} "
            f"| {r.upstream_rps:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Parse arguments and either act as a child process or run the whole bench."""
    if argv and argv[0] == "_engine":
        child_engine(int(argv[1]), Path(argv[2]))
        return 0
    if argv and argv[0] == "_gateway":
        child_gateway(int(argv[1]), argv[2], float(argv[3]), int(argv[4]))
        return 0
    if argv and argv[0] == "_clients":
        url, runs, deadline, out = argv[1:5]
        asyncio.run(clients(url, runs.split(","), float(deadline), Path(out)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="10,25,50", help="runs changing per second")
    parser.add_argument("--runs", type=int, default=500, help="watched runs (one client each)")
    parser.add_argument("--budget", type=float, default=3.0, help="upstream requests/s")
    parser.add_argument("--page-size", type=int, default=100, help="runs per list request")
    parser.add_argument("--hold", type=float, default=3.0, help="quiet seconds before changes")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds to give up")
    parser.add_argument("--baseline", default="b394924", help="the baseline design's commit")
    parser.add_argument("--designs", default="current,baseline", help="current and/or baseline")
    args = parser.parse_args(argv)
    raise_fd_limit()
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"current": ROOT / "src", "baseline": baseline_tree(args.baseline, Path(tmp))}
        for rate in [float(r) for r in args.rates.split(",")]:
            for design in args.designs.split(","):
                print(f"measuring {design} at {rate:g} runs/s ...", file=sys.stderr, flush=True)
                results.append(measure(design, rate, args, trees[design]))
                print(table(results[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    command = "python bench/changes.py " + shlex.join(argv)
    text = (
        "# A busy workflow's dashboard: changes from list reads against the previous design\n\n"
        f"Command: `{command.strip()}`\n\n"
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Budget {args.budget:g} requests/s, one "
        f"credential; baseline = commit {args.baseline}. Latency: event POST returned to "
        "the client receiving COMPLETE.\n\n" + table(results)
    )
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
