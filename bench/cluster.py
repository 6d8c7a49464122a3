"""Cluster mode: one replica against three behind one Redis, for the upstream and the clients.

Starts, each in its own process: Redis, the engine's REST API (counting the GETs it
serves, from ``bench/fanout.py``), 1 or 3 ``runcast serve --redis`` replicas in front of
it, and one WebSocket client process per replica. N subscribers (10,000 by default) are
spread evenly over the replicas, each watching ``runStatus`` of one of M runs (100) that
wait for an event. For each replica count the bench

1. holds with nothing changing and counts the upstream requests per second (the cluster
   should cost what one replica costs: 3 replicas within 5% of 1);
2. with 3 replicas, kills the replica holding the most leases with SIGKILL and times how
   long until the others hold every watch again (the takeover time);
3. completes the runs one after another and measures, for every subscriber still
   connected, the time from the event's POST returning to the client receiving COMPLETE
   (p50, p99), and Redis commands per published change (``INFO commandstats``).

The table goes to stdout and ``bench/results/cluster.md`` with the exact command. Never
run by the test suite. Usage::

    python bench/cluster.py [--subscribers 10000] [--runs 100] [--replicas 1,3]
                            [--interval 1.0] [--budget 25] [--hold 10]
"""

from __future__ import annotations

# First: it takes bench/ off sys.path (see its docstring).
from _support import HERE, engine_gets, free_port, process, raise_fd_limit, wait_http

# isort: split

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

RESULTS = HERE / "results" / "cluster.md"
SECRET = "bench-cluster-secret"


def redis_info(port: int) -> dict[str, int]:
    """Redis's ``INFO commandstats`` as calls per command."""
    import redis

    client = redis.Redis(port=port)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name: int(value["calls"]) for name, value in stats.items()}


def sample(url: str, name: str) -> float:
    """The sum of the samples of ``name`` in a replica's /metrics."""
    text = httpx.get(url + "/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in {" ", "{"}:
            total += float(line.split()[-1])
    return total


@dataclass
class Result:
    """One replica count."""

    replicas: int
    subscribers: int
    runs: int
    subscribed: int
    delivered: int
    failures: int
    upstream_rps: float
    p50_ms: float
    p99_ms: float
    redis_commands_per_change: float
    takeover_s: float | None


def start_replicas(
    count: int, engine_url: str, redis_url: str, args: argparse.Namespace, stack: ExitStack
) -> tuple[list[str], list[subprocess.Popen[str]]]:
    """``count`` ``runcast serve --redis`` processes; their URLs and processes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCAST_")}
    env.update(
        RUNCAST_CLUSTER_SECRET=SECRET,
        RUNCAST_POLL_MIN_INTERVAL=str(args.interval),
        RUNCAST_POLL_MAX_INTERVAL=str(args.interval),
        RUNCAST_REQUEST_BUDGET_PER_SECOND=str(args.budget),
        RUNCAST_WS_CONNECTION_INIT_TIMEOUT="300",
        RUNCAST_MAX_CONNECTIONS="100000",
        RUNCAST_ACCESS_LOG="false",
        RUNCAST_LOG_LEVEL="warning",
    )
    urls, children = [], []
    for _ in range(count):
        port = free_port()
        command = [sys.executable, "-m", "runcast.cli", "serve", "--upstream", engine_url]
        command += ["--redis", redis_url, "--port", str(port)]
        children.append(stack.enter_context(process(command, env=env)))
        urls.append(f"http://127.0.0.1:{port}")
    for url in urls:
        wait_http(url + "/healthz")
    return urls, children


def measure(replicas: int, args: argparse.Namespace) -> Result:
    """Run the cluster with ``replicas`` gateways and return what was measured."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack, httpx.Client() as http:
        redis_port, engine_port = free_port(), free_port()
        redis_cmd = [shutil.which("redis-server") or "redis-server", "--port", str(redis_port)]
        redis_cmd += ["--save", "", "--appendonly", "no", "--dir", tmp, "--maxclients", "10000"]
        stack.enter_context(process(redis_cmd, stdout=subprocess.DEVNULL))
        engine_url = f"http://127.0.0.1:{engine_port}"
        engine_cmd = [sys.executable, str(HERE / "fanout.py"), "_engine", str(engine_port), tmp]
        stack.enter_context(process(engine_cmd))
        wait_http(engine_url + "/_bench/gets")
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        urls, gateways = start_replicas(replicas, engine_url, redis_url, args, stack)
        runs = [
            http.post(f"{engine_url}/api/v1/workflows/bench-wait/runs", json={}).json()[
                "instanceId"
            ]
            for _ in range(args.runs)
        ]
        clients = []
        for index, url in enumerate(urls):
            out = Path(tmp) / f"clients-{index}.json"
            count = args.subscribers // replicas
            command = [sys.executable, str(HERE / "fanout.py"), "_clients", url, ",".join(runs)]
            command += [str(count), str(args.deadline), str(out)]
            child = stack.enter_context(process(command, stdout=subprocess.PIPE))
            clients.append((child, out))
        subscribed = 0
        for child, _ in clients:
            assert child.stdout is not None
            line = child.stdout.readline().split()
            subscribed += int(line[1]) if line and line[0] == "SUBSCRIBED" else 0

        gets1, t1 = engine_gets(engine_url), time.monotonic()
        time.sleep(args.hold)
        gets2, t2 = engine_gets(engine_url), time.monotonic()
        takeover = kill_holder(urls, gateways) if replicas > 1 else None
        published0 = published_changes(urls, gateways)
        commands0 = sum(redis_info(redis_port).values())
        changed: dict[str, float] = {}
        for instance_id in runs:
            http.post(
                f"{engine_url}/api/v1/workflows/bench-wait/runs/{instance_id}/events",
                json={"eventType": "go"},
            ).raise_for_status()
            changed[instance_id] = time.time()
            time.sleep(args.hold / len(runs))
        for child, _ in clients:
            child.wait(args.deadline + 60)
        time.sleep(1.0)
        published = published_changes(urls, gateways) - published0
        commands = sum(redis_info(redis_port).values()) - commands0
        completes, failures = [], 0
        for _, out in clients:
            report = json.loads(out.read_text())
            completes += report["completes"]
            failures += len(report["failures"])
    latencies = sorted((received - changed[i]) * 1000 for i, received in completes)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return Result(
        replicas=replicas,
        subscribers=args.subscribers,
        runs=args.runs,
        subscribed=subscribed,
        delivered=len(latencies),
        failures=failures,
        upstream_rps=(gets2 - gets1) / (t2 - t1),
        p50_ms=quantiles[49],
        p99_ms=quantiles[98],
        redis_commands_per_change=commands / published if published else 0.0,
        takeover_s=takeover,
    )


def live(urls: list[str], gateways: list[subprocess.Popen[str]]) -> list[str]:
    """The URLs of the replicas still running."""
    return [url for url, gateway in zip(urls, gateways, strict=True) if gateway.poll() is None]


def published_changes(urls: list[str], gateways: list[subprocess.Popen[str]]) -> float:
    """Changes the running replicas have published so far."""
    return sum(
        sample(url, "runcast_cluster_changes_published_total") for url in live(urls, gateways)
    )


def kill_holder(urls: list[str], gateways: list[subprocess.Popen[str]]) -> float:
    """SIGKILL the replica holding the most leases; seconds until the rest hold them all.

    The leases are the runs' and their workflow's (whose holder polls the list for all).
    """
    held = [sample(url, "runcast_cluster_leases_held") for url in urls]
    victim = held.index(max(held))
    gateways[victim].kill()
    gateways[victim].wait()
    killed, leases = time.monotonic(), sum(held)
    while time.monotonic() - killed < 120:
        now_held = sum(sample(url, "runcast_cluster_leases_held") for url in live(urls, gateways))
        if now_held >= leases:
            return time.monotonic() - killed
        time.sleep(0.05)
    raise RuntimeError("no takeover within 120 s")


def table(results: list[Result]) -> str:
    """The results as a markdown table, with upstream requests/s against one replica."""
    header = (
        "| replicas | subscribers | runs | subscribed | delivered | failed | upstream req/s "
        "| vs 1 replica | p50 ms | p99 ms | Redis commands/change | takeover s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    base = next((r.upstream_rps for r in results if r.replicas == 1), None)
    rows = []
    for r in results:
        ratio = f"{r.upstream_rps / base:.2f}x" if base else "-"
        takeover = "-" if r.takeover_s is None else f"{r.takeover_s:.2f}"
        rows.append(
            f"| {r.replicas} | {r.subscribers} | {r.runs} | {r.subscribed} | {r.delivered} "
            f"| {r.failures} | {r.upstream_rps:.2f} | {ratio} | {r.p50_ms:.0f} | {r.p99_ms:.0f} "
            f"| {r.redis_commands_per_change:.1f} | {takeover} |"
        )
    return header + "\n".join(rows) + "\n"


def main(argv: list[str]) -> int:
    """Parse the arguments and run every replica count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--replicas", default="1,3", help="comma-separated replica counts")
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval, seconds")
    parser.add_argument("--budget", type=float, default=25.0, help="cluster requests/s")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds of each phase")
    parser.add_argument("--deadline", type=float, default=180.0, help="seconds to give up")
    args = parser.parse_args(argv)
    limit = raise_fd_limit()
    if args.subscribers + 100 > limit:
        print(f"open-file limit {limit} is too low for {args.subscribers} sockets", file=sys.stderr)
        return 2
    results = [measure(int(n), args) for n in args.replicas.split(",")]
    text = (
        f"`python bench/cluster.py {shlex.join(argv)}` on {platform.platform()}, "
        f"{os.cpu_count()} CPUs\n\n{table(results)}"
    )
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
