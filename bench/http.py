"""What the GraphQL gateway costs over the engine's raw REST API, measured with wrk.

Starts, each in its own process, the embedded engine's REST API (``runcast engine``)
and the gateway in front of it (``runcast serve --upstream http://...``, which then
talks to the engine through the AwaitStep adapter). With wrk in a third process it
measures requests per second and p50/p99 latency of:

1. reading one completed run: the GraphQL query ``run(workflowId, instanceId)
   { instanceId status output }`` through the gateway, against
   ``GET /api/v1/workflows/three-steps/runs/{id}`` straight to the engine;
2. triggering a run: the ``triggerRun`` mutation through the gateway, against
   ``POST /api/v1/workflows/three-steps/runs`` straight to the engine.

Both sides of a pair run in the same invocation, on the same machine, with the
same wrk settings; each pair is reported as a ratio (gateway cost relative to
raw REST). Then the gateway is profiled with py-spy under the read load.

The table goes to stdout and to ``bench/results/http.md`` (gitignored), the
profile's collapsed stacks to ``bench/results/http.gateway-read.folded`` (input
for flamegraph.pl or speedscope). Never run by the test suite. Needs wrk
(``apt-get install -y wrk``) and, for the profile, py-spy (``pip install py-spy``).
With ``--observability`` it measures instead what metrics and tracing cost the gateway:
the same two operations through gateways that differ only in ``RUNCAST_METRICS`` and
``RUNCAST_OTEL`` (spans exported over OTLP/HTTP to a sink in this process), and through
one that traces with Strawberry's ``OpenTelemetryExtension`` instead of runcast's spans.
Usage::

    python bench/http.py [--duration S] [--connections N] [--rounds R] [--no-profile]
    python bench/http.py --observability [--duration S] [--connections N] [--rounds R]
    python bench/http.py --peers [--duration S] [--connections N] [--rounds R]
        [--profile] [--before-src DIR]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Run as a script, this file's folder leads sys.path, and this file (bench/http.py)
# would shadow the standard library's ``http`` package that httpx imports.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import httpx

ROOT = Path(__file__).resolve().parent.parent
LUA_SCRIPT = ROOT / "bench" / "_wrk" / "request.lua"
RESULTS_DIR = ROOT / "bench" / "results"
TEST_WORKFLOWS = ROOT / "tests" / "workflows"
WORKFLOW_ID = "three-steps"

RUN_QUERY = (
    "query Run($workflowId: ID!, $instanceId: ID!) "
    "{ run(workflowId: $workflowId, instanceId: $instanceId) { instanceId status output } }"
)
TRIGGER_MUTATION = (
    "mutation Trigger($workflowId: ID!, $input: JSON) "
    "{ triggerRun(workflowId: $workflowId, input: $input) { instanceId status } }"
)
TRIGGER_INPUT = {"orderId": "bench"}
REST_TRIGGER_BODY = {"input": TRIGGER_INPUT}

UNBUDGETED = {"RUNCAST_REQUEST_BUDGET_PER_SECOND": "0"}
READY_TIMEOUT = 30.0
IDLE_CPU_FRACTION = 0.10
IDLE_TIMEOUT = 120.0


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# --- processes ---------------------------------------------------------------------------


@dataclass
class Server:
    """A server process started by the benchmark, with its log file and base URL."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    base_url: str

    def log_tail(self, lines: int = 25) -> str:
        """The last lines the process wrote (stdout and stderr together)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise BenchError with the log's tail when the process has exited."""
        code = self.process.poll()
        if code is not None:
            raise BenchError(f"{self.name} exited with code {code}:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        """User plus system CPU seconds the process has used so far (0 off Linux)."""
        return process_cpu_seconds(self.process.pid)


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of ``pid`` from /proc (0.0 where /proc is missing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    name: str,
    argv: Sequence[str],
    log: Path,
    base_url: str,
    env_extra: Mapping[str, str] | None = None,
) -> Server:
    """Start ``argv`` in its own session with output to ``log`` (and ``env_extra`` set).

    The gateways get no request budget: ``runcast engine`` has no rate limit, and the
    budget a gateway keeps for an AwaitStep-like upstream (3 requests/s) would throttle
    the load to that.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1", **UNBUDGETED, **(env_extra or {}))
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
    return Server(name, process, log, base_url)


def stop_server(server: Server) -> None:
    """Ask the server to shut down (SIGINT, as Ctrl-C), then kill it after 10 s."""
    if server.process.poll() is not None:
        return
    server.process.send_signal(signal.SIGINT)
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


def wait_ready(server: Server, client: httpx.Client, paths: Sequence[str]) -> None:
    """Poll ``paths`` on ``server`` until each answers 200, within READY_TIMEOUT."""
    deadline = time.monotonic() + READY_TIMEOUT
    pending = list(paths)
    last = ""
    while pending:
        server.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(
                f"{server.name} not ready after {READY_TIMEOUT:.0f} s "
                f"({pending[0]}: {last}):\n{server.log_tail()}"
            )
        try:
            response = client.get(server.base_url + pending[0], timeout=2.0)
        except httpx.TransportError as exc:
            last = type(exc).__name__
        else:
            if response.status_code == 200:
                pending.pop(0)
                continue
            last = f"HTTP {response.status_code}"
        time.sleep(0.1)


def wait_idle(servers: Sequence[Server]) -> None:
    """Wait until the servers use under IDLE_CPU_FRACTION of a core (runs left executing)."""
    deadline = time.monotonic() + IDLE_TIMEOUT
    while time.monotonic() < deadline:
        before = [s.cpu_seconds() for s in servers]
        time.sleep(0.5)
        used = [s.cpu_seconds() - b for s, b in zip(servers, before, strict=True)]
        if max(used) / 0.5 < IDLE_CPU_FRACTION:
            return
    print(f"warning: servers still busy after {IDLE_TIMEOUT:.0f} s", file=sys.stderr)


# --- the API calls used for setup and checks ------------------------------------------------


def graphql(client: httpx.Client, url: str, query: str, variables: Mapping[str, Any]) -> Any:
    """POST a GraphQL operation; return ``data`` or raise BenchError on any error."""
    response = client.post(url, json={"query": query, "variables": dict(variables)})
    try:
        body = response.json()
    except ValueError as exc:
        raise BenchError(f"{url}: HTTP {response.status_code}, not JSON") from exc
    if response.status_code != 200 or body.get("errors"):
        raise BenchError(f"{url}: HTTP {response.status_code}: {json.dumps(body)[:500]}")
    return body["data"]


def create_completed_run(client: httpx.Client, graphql_url: str) -> str:
    """Trigger a three-steps run with a known id through the gateway; wait for COMPLETE."""
    instance_id = f"bench-read-{uuid.uuid4().hex[:12]}"
    graphql(
        client,
        graphql_url,
        "mutation($w: ID!, $i: ID!, $input: JSON) "
        "{ triggerRun(workflowId: $w, instanceId: $i, input: $input) { instanceId } }",
        {"w": WORKFLOW_ID, "i": instance_id, "input": TRIGGER_INPUT},
    )
    deadline = time.monotonic() + READY_TIMEOUT
    status = "?"
    while time.monotonic() < deadline:
        data = graphql(
            client, graphql_url, RUN_QUERY, {"workflowId": WORKFLOW_ID, "instanceId": instance_id}
        )
        status = data["run"]["status"]
        if status == "COMPLETE":
            return instance_id
        if status in {"ERRORED", "TERMINATED"}:
            raise BenchError(f"the read run {instance_id} ended {status}: {data}")
        time.sleep(0.05)
    raise BenchError(f"the read run {instance_id} is still {status} after {READY_TIMEOUT} s")


# --- wrk --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One request shape to load: a label, a URL, a method and an optional JSON body."""

    label: str
    url: str
    method: str = "GET"
    body: str = ""


@dataclass(frozen=True)
class Measurement:
    """What one wrk run measured, plus the CPU each server spent per request."""

    target: Target
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms_per_request: Mapping[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def check_target(client: httpx.Client, target: Target) -> None:
    """Send the target's request once and fail loudly unless it succeeds (wrk cannot tell)."""
    response = client.request(
        target.method,
        target.url,
        content=target.body.encode() or None,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    text = response.text
    if not response.is_success or '"errors"' in text:
        raise BenchError(
            f"{target.label}: {target.method} {target.url} -> "
            f"HTTP {response.status_code}: {text[:500]}"
        )


def run_wrk(target: Target, *, duration: float, connections: int) -> dict[str, float]:
    """Run wrk (one thread) against ``target``; return the BENCH_RESULT numbers."""
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        target.url,
    ]
    env = dict(os.environ, BENCH_METHOD=target.method, BENCH_BODY=target.body)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result: dict[str, float] = json.loads(line.removeprefix("BENCH_RESULT "))
            return result
    raise BenchError(
        f"wrk printed no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    )


def measure(
    target: Target, servers: Sequence[Server], *, duration: float, connections: int
) -> Measurement:
    """Load ``target`` with wrk and account the servers' CPU time per request."""
    before = {s.name: s.cpu_seconds() for s in servers}
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    raw = run_wrk(target, duration=duration, connections=connections)
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    requests = int(raw["requests"])
    cpu = {s.name: s.cpu_seconds() - before[s.name] for s in servers}
    cpu["wrk"] = (wrk_after.ru_utime + wrk_after.ru_stime) - (
        wrk_before.ru_utime + wrk_before.ru_stime
    )
    errors = sum(int(v) for k, v in raw.items() if k.startswith("errors_"))
    for server in servers:
        server.check_alive()
    return Measurement(
        target=target,
        requests=requests,
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1e3,
        p99_ms=raw["p99_us"] / 1e3,
        errors=errors,
        cpu_ms_per_request={k: 1e3 * v / requests for k, v in cpu.items()} if requests else {},
    )


def median_measurement(samples: Sequence[Measurement]) -> Measurement:
    """Per-metric medians of several rounds of the same target."""
    first = samples[0]
    if len(samples) == 1:
        return first
    return Measurement(
        target=first.target,
        requests=int(statistics.median(m.requests for m in samples)),
        seconds=statistics.median(m.seconds for m in samples),
        p50_ms=statistics.median(m.p50_ms for m in samples),
        p99_ms=statistics.median(m.p99_ms for m in samples),
        errors=sum(m.errors for m in samples),
        cpu_ms_per_request={
            k: statistics.median(m.cpu_ms_per_request.get(k, 0.0) for m in samples)
            for k in first.cpu_ms_per_request
        },
    )


# --- the profile ------------------------------------------------------------------------------

CLIENT_SIDE = "httpx/httpcore (the call to the engine)"
SERVER_SIDE = "uvicorn (HTTP server)"
EVENT_LOOP = "asyncio event loop (select, scheduling)"
OTHER = "other (stdlib, interpreter)"
# The top-level module of a frame's file names its category; modules not listed
# (typing, dataclasses, code compiled from strings, ...) fold into their caller.
CATEGORIES: Mapping[str, str] = {
    "strawberry": "Strawberry (schema execution, HTTP view, extensions)",
    "graphql": "graphql-core (parse, validate, execute)",
    "httpx": CLIENT_SIDE,
    "httpcore": CLIENT_SIDE,
    "aiohttp": CLIENT_SIDE,
    "httpx_aiohttp": CLIENT_SIDE,
    "uvicorn": SERVER_SIDE,
    "httptools": SERVER_SIDE,
    "starlette": "Starlette (routing, middleware, request/response)",
    "runcast": "runcast (resolvers, adapter, app)",
    "json": "json (stdlib encode/decode)",
    "logging": "logging",
    "asyncio": EVENT_LOOP,
    "selectors": EVENT_LOOP,
}
CLIENT_MODULES = frozenset({"httpx", "httpcore", "aiohttp", "httpx_aiohttp"})


def frame_module(frame: str) -> str:
    """The top-level module of a py-spy frame ``func (pkg/mod.py:12)`` (``pkg``)."""
    location = frame.rpartition(" (")[2].rstrip(")").rpartition(":")[0]
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in location:
            location = location.split(marker, 1)[1]
    if "/lib/python3." in location:
        location = location.split("/lib/python3.", 1)[1].partition("/")[2]
    if "/src/" in location:
        location = location.split("/src/", 1)[1]
    return location.partition("/")[0].removesuffix(".py")


def frame_category(module: str, *, under_client: bool) -> str | None:
    """The category of a frame's module; None for a generic one that folds into its caller."""
    if module in {"h11", "anyio"}:
        if under_client:
            return CLIENT_SIDE
        return SERVER_SIDE if module == "h11" else None
    return CATEGORIES.get(module)


@dataclass(frozen=True)
class ProfileSummary:
    """Where the gateway's CPU samples went."""

    samples: int
    self_by_category: list[tuple[str, float]]
    inclusive: list[tuple[str, float]]
    top_functions: list[tuple[str, float]]


def summarize_profile(folded: Path) -> ProfileSummary:
    """Attribute py-spy's collapsed stacks: each sample to the nearest library frame.

    A sample inside a task (above asyncio's ``Handle._run``) goes to the leaf-most
    frame of a known library; generic stdlib frames (typing, dataclasses,
    contextlib, and asyncio helpers such as ``current_task``) fold into the
    library that called them. A sample outside any task is the event loop's own
    work (select, scheduling).
    """
    by_category: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    functions: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        modules = [frame_module(f) for f in frames]
        under_client = not CLIENT_MODULES.isdisjoint(modules)
        task_start = next(
            (i + 1 for i in range(len(frames) - 1, -1, -1) if frames[i].startswith("Handle._run ")),
            None,
        )
        category = EVENT_LOOP if task_start is None else OTHER
        task_modules = [] if task_start is None else modules[task_start:]
        for module in reversed(task_modules):
            found = frame_category(module, under_client=under_client)
            if found is not None and found != EVENT_LOOP:
                category = found
                break
        else:
            if task_start is not None and EVENT_LOOP in {
                frame_category(m, under_client=under_client) for m in task_modules
            }:
                category = EVENT_LOOP
        by_category[category] += count
        # inclusive shares count only the running task's frames, not the ones that
        # start the server and the event loop at the bottom of every stack
        seen = {frame_category(m, under_client=under_client) for m in task_modules}
        for name in seen:
            if name is not None:
                inclusive[name] += count
        functions[shorten_frame(frames[-1]).rpartition(":")[0] + ")"] += count
    if not total:
        raise BenchError(f"py-spy recorded no samples in {folded}")

    def share(counter: collections.Counter[str], n: int | None = None) -> list[tuple[str, float]]:
        return [(k, 100.0 * v / total) for k, v in counter.most_common(n)]

    return ProfileSummary(total, share(by_category), share(inclusive), share(functions, 12))


def shorten_frame(frame: str) -> str:
    """``func (…/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py:12)``."""
    name, _, location = frame.partition(" (")
    for marker in ("/site-packages/", "/src/", "/lib/python3."):
        if marker in location:
            location = location.split(marker, 1)[1]
            if marker == "/lib/python3.":
                location = "stdlib/" + location.split("/", 1)[1]
            break
    return f"{name} ({location}"


def profile_gateway(
    gateway: Server, target: Target, out: Path, *, duration: float, connections: int
) -> ProfileSummary | None:
    """Record the gateway with py-spy while wrk loads ``target``; None without py-spy."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        print("py-spy not found: `pip install py-spy` to get the profile", file=sys.stderr)
        return None
    record = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(gateway.process.pid),
            "--duration",
            f"{max(1, round(duration))}",
            "--gil",
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(0.5)
    run_wrk(target, duration=duration, connections=connections)
    output, _ = record.communicate(timeout=duration + 30)
    if record.returncode != 0 or not out.exists():
        print(f"py-spy failed (exit {record.returncode}):\n{output}", file=sys.stderr)
        return None
    return summarize_profile(out)


# --- the report -------------------------------------------------------------------------------


def ratio(numerator: float, denominator: float) -> str:
    """``numerator / denominator`` as ``1.23x`` (``n/a`` when undefined)."""
    return f"{numerator / denominator:.2f}x" if denominator else "n/a"


def server_cpu_ms(m: Measurement) -> float:
    """Gateway plus engine CPU milliseconds per request of ``m``."""
    return sum(m.cpu_ms_per_request.get(k, 0.0) for k in ("gateway", "engine"))


def pair_rows(name: str, rest: Measurement, gateway: Measurement) -> list[str]:
    """Three table rows: raw REST, through the gateway, and the gateway's cost ratio."""
    rest_cpu = f"{rest.cpu_ms_per_request.get('engine', 0.0):.2f}"
    own = gateway.cpu_ms_per_request.get("gateway", 0.0)
    behind = gateway.cpu_ms_per_request.get("engine", 0.0)
    gateway_cpu = f"{server_cpu_ms(gateway):.2f} (gateway {own:.2f} + engine {behind:.2f})"
    return [
        f"| {name} | {rest.target.label} | {rest.rps:,.0f} | {rest.p50_ms:.2f} "
        f"| {rest.p99_ms:.2f} | {rest_cpu} | {rest.errors} |",
        f"| {name} | {gateway.target.label} | {gateway.rps:,.0f} | {gateway.p50_ms:.2f} "
        f"| {gateway.p99_ms:.2f} | {gateway_cpu} | {gateway.errors} |",
        f"| **{name}** | **gateway cost (x raw REST)** | **{ratio(rest.rps, gateway.rps)}** "
        f"| **{ratio(gateway.p50_ms, rest.p50_ms)}** | **{ratio(gateway.p99_ms, rest.p99_ms)}** "
        f"| **{ratio(server_cpu_ms(gateway), server_cpu_ms(rest))}** | |",
    ]


def render_report(
    pairs: Sequence[tuple[str, Measurement, Measurement]],
    profile: ProfileSummary | None,
    *,
    command: str,
    args: argparse.Namespace,
    workflows_note: str,
    load: tuple[float, float],
) -> str:
    """The markdown that goes to stdout and to bench/results/http.md."""
    cpu_model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    lines = [
        "## Gateway vs raw REST (`bench/http.py`)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{cpu_model}, {os.cpu_count()} cores shared by the engine, the gateway and wrk "
        f"(one uvicorn worker each; wrk with 1 thread, {args.connections} connections, "
        f"{args.duration:g} s per measurement after a {args.warmup:g} s warm-up, "
        f"median of {args.rounds} round(s)). Workflow `three-steps` ({workflows_note}). "
        f"Load average (1 min) {load[0]:.1f} before, {load[1]:.1f} after: other work on the "
        "machine moves req/s and latency more than server CPU per request.",
        "",
        "| operation | path | req/s | p50 ms | p99 ms | server CPU ms/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for name, rest, gateway in pairs:
        lines.extend(pair_rows(name, rest, gateway))
        cost = rest.rps / gateway.rps if gateway.rps else float("inf")
        verdicts.append(f"{name}: {cost:.2f}x ({'within' if cost <= 2.0 else 'over'} the 2x aim)")
    lines += [
        "",
        "Cost ratios: req/s is raw REST ÷ gateway; latencies and server CPU are gateway ÷ "
        "raw REST. Server CPU is the user+system CPU time the engine (and the gateway) used "
        "during the measurement, per request: it depends least on what else the machine "
        "runs. The gateway path includes a full REST call to the engine, so 1x is the floor.",
        "",
        "Throughput cost: " + "; ".join(verdicts) + ".",
        "",
        "Reproduce:",
        "",
        "```sh",
        command,
        "```",
    ]
    if profile is not None:
        lines += ["", *profile_lines("the gateway", profile)]
    return "\n".join(lines) + "\n"


def profile_lines(what: str, profile: ProfileSummary) -> list[str]:
    """A profile summary as markdown: self time by library, inclusive shares, hot functions."""
    return [
        f"### Where {what}'s time goes (py-spy, read load, {profile.samples} samples)",
        "",
        "Self time, each sample given to the nearest frame of a known library "
        "(generic stdlib frames fold into their caller):",
        "",
        "| where | share |",
        "|---|---:|",
        *(f"| {name} | {pct:.1f}% |" for name, pct in profile.self_by_category),
        "",
        "Inclusive (a sample counts for every library on its stack): "
        + ", ".join(f"{name.split(' (')[0]} {pct:.0f}%" for name, pct in profile.inclusive)
        + ".",
        "",
        "Hottest functions (self):",
        "",
        "| function | share |",
        "|---|---:|",
        *(f"| `{name}` | {pct:.1f}% |" for name, pct in profile.top_functions),
    ]


def publish_report(report: str, output: Path) -> None:
    """Print ``report`` and write it to ``output`` (its folder made if missing)."""
    print()
    print(report)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report)
    print(f"written to {output}")


# --- main -------------------------------------------------------------------------------------


def gateway_argv(args: argparse.Namespace, engine_url: str, port: int) -> list[str]:
    """The command starting the gateway in front of ``engine_url`` on ``port``."""
    launcher = [str(args.gateway_launcher)] if args.gateway_launcher else ["-m", "runcast.cli"]
    return [
        sys.executable,
        *launcher,
        "serve",
        "--upstream",
        engine_url,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


@contextlib.contextmanager
def servers_running(
    workdir: Path, workflows: Path, args: argparse.Namespace, parsers: Sequence[str] = ("",)
) -> Iterator[tuple[Server, list[Server]]]:
    """Start the engine and one gateway per HTTP parser in front of it; stop all on exit.

    ``""`` starts the gateway with its default parser (``--http-parser`` when given).
    """
    engine_port = free_port()
    python = sys.executable
    engine_url = f"http://127.0.0.1:{engine_port}"
    started: list[Server] = []
    try:
        engine = start_server(
            "engine",
            [
                python,
                "-m",
                "runcast.cli",
                "engine",
                "--db",
                str(workdir / "engine.db"),
                "--workflows",
                str(workflows),
                "--host",
                "127.0.0.1",
                "--port",
                str(engine_port),
            ],
            workdir / "engine.log",
            engine_url,
        )
        started.append(engine)
        gateways = []
        for parser in parsers:
            port = free_port()
            chosen = parser or args.http_parser
            gateway = start_server(
                f"gateway-{parser}" if parser else "gateway",
                gateway_argv(args, engine_url, port),
                workdir / f"gateway-{parser or 'default'}.log",
                f"http://127.0.0.1:{port}",
                {"RUNCAST_HTTP_PARSER": chosen} if chosen else None,
            )
            started.append(gateway)
            gateways.append(gateway)
        yield engine, gateways
    finally:
        for server in reversed(started):
            stop_server(server)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=10, help="wrk connections")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per target")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per target (median)")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, db)")
    parser.add_argument(
        "--gateway-launcher",
        type=Path,
        help="start the gateway with this Python file instead of `-m runcast.cli` (same "
        "arguments; for A/B runs of a patched gateway)",
    )
    parser.add_argument(
        "--http-parser",
        choices=["h11", "httptools"],
        help="the gateway's HTTP parser (RUNCAST_HTTP_PARSER; default: the gateway's own)",
    )
    parser.add_argument(
        "--compare-parsers",
        action="store_true",
        help="instead: the GraphQL read through two gateways, h11 and httptools, in one run",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="instead: the read and the trigger through raw REST, graphql-yoga, runcast "
        "(remote and embedded) and a naive Strawberry gateway, in one run (needs node, npm)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="with --peers: also record py-spy profiles of the runcast paths under the read load",
    )
    parser.add_argument(
        "--before-src",
        type=Path,
        help="with --peers: also the two runcast paths started with PYTHONPATH=BEFORE_SRC "
        "(a copy of another commit's src/, for before/after rows in one run)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR / "http.md",
        help="where to write the markdown report (default bench/results/http.md)",
    )
    parser.add_argument(
        "--observability",
        action="store_true",
        help="measure the cost of metrics and of tracing instead of the gateway vs REST",
    )
    args = parser.parse_args(argv)

    if shutil.which("wrk") is None:
        print(
            "wrk not found; install it with: apt-get update && apt-get install -y wrk",
            file=sys.stderr,
        )
        return 2
    command = "python bench/http.py " + shlex.join(
        [
            "--duration",
            f"{args.duration:g}",
            "--connections",
            str(args.connections),
            "--warmup",
            f"{args.warmup:g}",
            "--rounds",
            str(args.rounds),
        ]
    )
    if args.gateway_launcher:
        command += " " + shlex.join(["--gateway-launcher", str(args.gateway_launcher)])
    if args.observability:
        command += " --observability"
    if args.http_parser:
        command += f" --http-parser {args.http_parser}"
    if args.compare_parsers:
        command += " --compare-parsers"
    if args.peers:
        command += " --peers"
    if args.profile:
        command += " --profile"
    if args.before_src:
        command += " --before-src BEFORE_SRC"
    workdir = Path(tempfile.mkdtemp(prefix="runcast-bench-"))
    try:
        if args.observability:
            return _run_observability(args, workdir, command)
        if args.peers:
            return compare_peers(args, workdir, command)
        return _run(args, workdir, command)
    except BenchError as exc:
        print(f"bench/http.py: {exc}", file=sys.stderr)
        print(f"logs kept in {workdir}", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(args: argparse.Namespace, workdir: Path, command: str) -> int:
    load_before = os.getloadavg()[0]
    workflows, workflows_note = TEST_WORKFLOWS, "tests/workflows"

    if args.compare_parsers:
        return compare_parsers(args, workdir, command)
    with (
        servers_running(workdir, workflows, args) as (engine, [gateway]),
        httpx.Client(timeout=10.0) as client,
    ):
        wait_ready(engine, client, ["/api/v1/workflows"])
        wait_ready(gateway, client, ["/healthz", "/readyz"])
        graphql_url = gateway.base_url + "/graphql"
        instance_id = create_completed_run(client, graphql_url)
        print(f"engine {engine.base_url}, gateway {gateway.base_url}, read run {instance_id}")

        runs_url = f"{engine.base_url}/api/v1/workflows/{WORKFLOW_ID}/runs"
        variables = {"workflowId": WORKFLOW_ID, "instanceId": instance_id}
        pairs_targets = [
            (
                "read a run",
                Target(
                    f"REST `GET /api/v1/workflows/{WORKFLOW_ID}/runs/{{id}}`",
                    f"{runs_url}/{instance_id}",
                ),
                Target(
                    "GraphQL `run(workflowId, instanceId)` via gateway",
                    graphql_url,
                    "POST",
                    json.dumps({"query": RUN_QUERY, "variables": variables}),
                ),
            ),
            (
                "trigger a run",
                Target(
                    f"REST `POST /api/v1/workflows/{WORKFLOW_ID}/runs`",
                    runs_url,
                    "POST",
                    json.dumps(REST_TRIGGER_BODY),
                ),
                Target(
                    "GraphQL `triggerRun` via gateway",
                    graphql_url,
                    "POST",
                    json.dumps(
                        {
                            "query": TRIGGER_MUTATION,
                            "variables": {"workflowId": WORKFLOW_ID, "input": TRIGGER_INPUT},
                        }
                    ),
                ),
            ),
        ]
        servers = (engine, gateway)
        pairs: list[tuple[str, Measurement, Measurement]] = []
        for name, rest_target, gateway_target in pairs_targets:
            for target in (rest_target, gateway_target):
                check_target(client, target)
            samples: dict[str, list[Measurement]] = {"rest": [], "gateway": []}
            for round_index in range(args.rounds):
                # alternate which side goes first, so drift does not favour one side
                order = [("rest", rest_target), ("gateway", gateway_target)]
                if round_index % 2:
                    order.reverse()
                for side, target in order:
                    wait_idle(servers)
                    if args.warmup > 0:
                        run_wrk(target, duration=args.warmup, connections=args.connections)
                        wait_idle(servers)
                    m = measure(
                        target, servers, duration=args.duration, connections=args.connections
                    )
                    print(
                        f"  {name} / {side}: {m.rps:,.0f} req/s, p50 {m.p50_ms:.2f} ms, "
                        f"p99 {m.p99_ms:.2f} ms, {m.errors} errors, CPU ms/req "
                        + ", ".join(f"{k} {v:.2f}" for k, v in m.cpu_ms_per_request.items()),
                        flush=True,
                    )
                    samples[side].append(m)
            pairs.append(
                (name, median_measurement(samples["rest"]), median_measurement(samples["gateway"]))
            )

        profile = None
        if not args.no_profile:
            wait_idle(servers)
            args.output.parent.mkdir(parents=True, exist_ok=True)
            profile = profile_gateway(
                gateway,
                pairs_targets[0][2],
                args.output.with_suffix(".gateway-read.folded"),
                duration=args.duration,
                connections=args.connections,
            )

    report = render_report(
        pairs,
        profile,
        command=command,
        args=args,
        workflows_note=workflows_note,
        load=(load_before, os.getloadavg()[0]),
    )
    publish_report(report, args.output)
    if any(m.errors for _, rest, gw in pairs for m in (rest, gw)):
        print("warning: some requests failed (see the errors column)", file=sys.stderr)
    return 0


# --- observability: what metrics and tracing cost the gateway ------------------------------

STRAWBERRY_OTEL_LAUNCHER = ROOT / "bench" / "_strawberry_otel_gateway.py"


@dataclass(frozen=True)
class Variant:
    """One gateway configuration: its label, extra environment and launcher."""

    label: str
    env: Mapping[str, str]
    launcher: Path | None = None


OBSERVABILITY_VARIANTS = (
    Variant("metrics off, tracing off", {"RUNCAST_METRICS": "false"}),
    Variant("metrics on, tracing off (the default)", {}),
    Variant("metrics on, tracing on (runcast's spans)", {"RUNCAST_OTEL": "1"}),
    Variant(
        "metrics on, tracing on (Strawberry's OpenTelemetryExtension)",
        {"RUNCAST_OTEL": "1"},
        STRAWBERRY_OTEL_LAUNCHER,
    ),
)
BASELINE_VARIANT = 1
"""The variant the others are compared with: the default configuration."""


class OtlpSink:
    """Accepts OTLP/HTTP exports in a thread of this process and counts them."""

    def __init__(self) -> None:
        import http.server  # here: this file's folder is off sys.path by now (see above)

        self.exports = 0
        self.bytes = 0
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                sink.exports += 1
                sink.bytes += length
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def engine_argv(workdir: Path, workflows: Path, port: int) -> list[str]:
    """``runcast engine`` on a temporary database."""
    return [
        sys.executable,
        *("-m", "runcast.cli", "engine", "--db", str(workdir / "engine.db")),
        *("--workflows", str(workflows), "--host", "127.0.0.1", "--port", str(port)),
    ]


def variant_gateway_argv(engine_url: str, port: int, launcher: Path | None) -> list[str]:
    """``runcast serve`` in front of the engine (or the same through ``launcher``)."""
    start = [str(launcher)] if launcher else ["-m", "runcast.cli"]
    return [
        sys.executable,
        *start,
        *("serve", "--upstream", engine_url, "--host", "127.0.0.1", "--port", str(port)),
    ]


def operation_targets(graphql_url: str, instance_id: str) -> list[tuple[str, Target]]:
    """The read and the trigger, as GraphQL requests to the gateway."""
    variables = {"workflowId": WORKFLOW_ID, "instanceId": instance_id}
    trigger = {"workflowId": WORKFLOW_ID, "input": TRIGGER_INPUT}
    return [
        (
            "read a run",
            Target(
                "run", graphql_url, "POST", json.dumps({"query": RUN_QUERY, "variables": variables})
            ),
        ),
        (
            "trigger a run",
            Target(
                "triggerRun",
                graphql_url,
                "POST",
                json.dumps({"query": TRIGGER_MUTATION, "variables": trigger}),
            ),
        ),
    ]


def measure_variant(
    variant: Variant,
    engine: Server,
    workdir: Path,
    client: httpx.Client,
    sink: OtlpSink,
    args: argparse.Namespace,
) -> dict[str, Measurement]:
    """Start a gateway configured as ``variant``, load each operation, stop it."""
    port = free_port()
    env = {**variant.env, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "RUNCAST_ACCESS_LOG": "false"}
    gateway = start_server(
        "gateway",
        variant_gateway_argv(engine.base_url, port, variant.launcher),
        workdir / f"gateway-{port}.log",
        f"http://127.0.0.1:{port}",
        env,
    )
    found: dict[str, Measurement] = {}
    try:
        wait_ready(gateway, client, ["/healthz", "/readyz"])
        graphql_url = gateway.base_url + "/graphql"
        instance_id = create_completed_run(client, graphql_url)
        for name, target in operation_targets(graphql_url, instance_id):
            check_target(client, target)
            wait_idle([engine, gateway])
            if args.warmup > 0:
                run_wrk(target, duration=args.warmup, connections=args.connections)
                wait_idle([engine, gateway])
            m = measure(
                target, [engine, gateway], duration=args.duration, connections=args.connections
            )
            print(
                f"  {variant.label} / {name}: {m.rps:,.0f} req/s, p50 {m.p50_ms:.2f} ms, "
                f"gateway CPU {m.cpu_ms_per_request.get('gateway', 0.0):.3f} ms/req",
                flush=True,
            )
            found[name] = m
    finally:
        stop_server(gateway)
    return found


def render_observability_report(
    results: Mapping[tuple[int, str], Measurement],
    *,
    command: str,
    args: argparse.Namespace,
    load: tuple[float, float],
    exports: int,
) -> str:
    """The markdown table of every variant and operation, with ratios to the default."""
    lines = [
        "## The cost of metrics and tracing (`bench/http.py --observability`)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores; gateway over `runcast engine` (AwaitStep adapter), access "
        f"log off, wrk 1 thread {args.connections} connections, {args.duration:g} s per "
        f"measurement after {args.warmup:g} s warm-up, median of {args.rounds} round(s), the "
        f"variants alternating order. Load average {load[0]:.1f} before, {load[1]:.1f} after. "
        f"Spans went over OTLP/HTTP to a sink in the benchmark ({exports} exports).",
        "",
        "| gateway | operation | req/s | p50 ms | p99 ms | gateway CPU ms/req "
        "| CPU x default | req/s x default |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("read a run", "trigger a run"):
        base = results[(BASELINE_VARIANT, name)]
        base_cpu = base.cpu_ms_per_request.get("gateway", 0.0)
        for index, variant in enumerate(OBSERVABILITY_VARIANTS):
            m = results[(index, name)]
            cpu = m.cpu_ms_per_request.get("gateway", 0.0)
            lines.append(
                f"| {variant.label} | {name} | {m.rps:,.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} "
                f"| {cpu:.3f} | {ratio(cpu, base_cpu)} | {ratio(m.rps, base.rps)} |"
            )
    lines += ["", "Reproduce:", "", "```sh", command, "```"]
    return "\n".join(lines) + "\n"


def _run_observability(args: argparse.Namespace, workdir: Path, command: str) -> int:
    load_before = os.getloadavg()[0]
    samples: dict[tuple[int, str], list[Measurement]] = collections.defaultdict(list)
    engine_port = free_port()
    with OtlpSink() as sink, httpx.Client(timeout=10.0) as client:
        engine = start_server(
            "engine",
            engine_argv(workdir, TEST_WORKFLOWS, engine_port),
            workdir / "engine.log",
            f"http://127.0.0.1:{engine_port}",
        )
        try:
            wait_ready(engine, client, ["/api/v1/workflows"])
            for round_index in range(args.rounds):
                order = list(enumerate(OBSERVABILITY_VARIANTS))
                if round_index % 2:
                    order.reverse()
                for index, variant in order:
                    for name, m in measure_variant(
                        variant, engine, workdir, client, sink, args
                    ).items():
                        samples[(index, name)].append(m)
        finally:
            stop_server(engine)
        exports = sink.exports
    results = {key: median_measurement(ms) for key, ms in samples.items()}
    report = render_observability_report(
        results,
        command=command,
        args=args,
        load=(load_before, os.getloadavg()[0]),
        exports=exports,
    )
    publish_report(report, args.output.with_name("http-observability.md"))
    return 0


PARSERS = ("h11", "httptools")


def compare_parsers(args: argparse.Namespace, workdir: Path, command: str) -> int:
    """The GraphQL read through a gateway on each HTTP parser, rounds alternating; a table."""
    load_before = os.getloadavg()[0]
    with (
        servers_running(workdir, TEST_WORKFLOWS, args, PARSERS) as (engine, gateways),
        httpx.Client(timeout=10.0) as client,
    ):
        wait_ready(engine, client, ["/api/v1/workflows"])
        for gateway in gateways:
            wait_ready(gateway, client, ["/healthz", "/readyz"])
        instance_id = create_completed_run(client, gateways[0].base_url + "/graphql")
        body = json.dumps(
            {
                "query": RUN_QUERY,
                "variables": {"workflowId": WORKFLOW_ID, "instanceId": instance_id},
            }
        )
        targets = [
            Target(f"GraphQL read via gateway ({p})", g.base_url + "/graphql", "POST", body)
            for p, g in zip(PARSERS, gateways, strict=True)
        ]
        samples: dict[str, list[Measurement]] = {p: [] for p in PARSERS}
        servers = (engine, *gateways)
        for round_index in range(max(args.rounds, 1)):
            order = list(zip(PARSERS, targets, strict=True))
            if round_index % 2:
                order.reverse()
            for parser, target in order:
                check_target(client, target)
                wait_idle(servers)
                if args.warmup > 0:
                    run_wrk(target, duration=args.warmup, connections=args.connections)
                    wait_idle(servers)
                m = measure(target, servers, duration=args.duration, connections=args.connections)
                print(f"  {parser}: {m.rps:,.0f} req/s, p50 {m.p50_ms:.2f} ms", flush=True)
                samples[parser].append(m)
    medians = {p: median_measurement(samples[p]) for p in PARSERS}
    report = render_parser_report(medians, command, (load_before, os.getloadavg()[0]))
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".parsers.md").write_text(report)
    return 0


def render_parser_report(
    medians: Mapping[str, Measurement], command: str, load: tuple[float, float]
) -> str:
    """The markdown table of :func:`compare_parsers`, httptools as the baseline."""
    base = medians["httptools"]
    lines = [
        "## HTTP parser: h11 (bounded request heads) vs httptools (`bench/http.py`)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average {load[0]:.1f} before, "
        f"{load[1]:.1f} after.",
        "",
        "| parser | req/s | p50 ms | p99 ms | gateway CPU ms/req | vs httptools (CPU) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for parser, m in medians.items():
        cpu = m.cpu_ms_per_request.get(f"gateway-{parser}", 0.0)
        base_cpu = base.cpu_ms_per_request.get("gateway-httptools", 0.0)
        lines.append(
            f"| {parser} | {m.rps:,.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | {cpu:.3f} "
            f"| {ratio(cpu, base_cpu)} |"
        )
    return "\n".join([*lines, "", "Reproduce:", "", "```sh", command, "```", ""])


# --- peers: the same read and trigger through every path, one table ---------------------------

YOGA_DIR = ROOT / "bench" / "yoga"
NAIVE_LAUNCHER = ROOT / "bench" / "_naive_gateway.py"


@dataclass(frozen=True)
class PeerPath:
    """One way to serve the operations: its row label, its server's name and what it calls."""

    label: str
    server: str
    behind_engine: bool


PEER_PATHS = (
    PeerPath("raw REST on the engine", "engine", False),
    PeerPath("graphql-yoga (Node, one resolver using fetch) over that REST API", "yoga", True),
    PeerPath("runcast over that REST API", "gateway", True),
    PeerPath("runcast on the embedded engine (no HTTP hop)", "embedded", False),
    PeerPath("a naive Strawberry gateway (one httpx resolver, no caches)", "naive", True),
)
BEFORE_PATHS = (
    PeerPath("runcast over that REST API, before (--before-src)", "gateway-before", True),
    PeerPath("runcast on the embedded engine, before (--before-src)", "embedded-before", False),
)
"""With ``--before-src``: the two runcast paths again, started from another source tree."""
PROFILED_PATHS = ("gateway", "embedded", "gateway-before", "embedded-before")
"""The paths ``--peers --profile`` records with py-spy under the read load."""


def peer_paths(args: argparse.Namespace) -> tuple[PeerPath, ...]:
    """PEER_PATHS, plus the before rows when ``--before-src`` names a source tree."""
    return PEER_PATHS + (BEFORE_PATHS if args.before_src else ())


def install_yoga() -> None:
    """``npm ci`` in bench/yoga (its package-lock.json pins graphql-yoga); BenchError if not."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise BenchError(
            "node and npm are needed for the yoga peer (apt-get install -y nodejs npm)"
        )
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=YOGA_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"npm ci in {YOGA_DIR} failed:\n{done.stdout}\n{done.stderr}")


def embedded_argv(db: Path, port: int) -> list[str]:
    """``runcast serve`` on its own embedded engine with the database ``db``."""
    return [
        sys.executable,
        *("-m", "runcast.cli", "serve", "--workflows", str(TEST_WORKFLOWS), "--db", str(db)),
        *("--host", "127.0.0.1", "--port", str(port)),
    ]


@contextlib.contextmanager
def peers_running(workdir: Path, before_src: Path | None) -> Iterator[dict[str, Server]]:
    """The engine, and in front of it yoga, runcast and the naive gateway; plus embedded runcast.

    With ``before_src``, the two runcast servers once more with ``PYTHONPATH=before_src``.
    """
    started: dict[str, Server] = {}
    engine_port = free_port()
    engine_url = f"http://127.0.0.1:{engine_port}"
    try:
        started["engine"] = start_server(
            "engine",
            engine_argv(workdir, TEST_WORKFLOWS, engine_port),
            workdir / "engine.log",
            engine_url,
        )
        argvs: dict[str, Callable[[int], list[str]]] = {
            "yoga": lambda port: ["node", str(YOGA_DIR / "server.mjs"), str(port), engine_url],
            "gateway": lambda port: variant_gateway_argv(engine_url, port, None),
            "embedded": lambda port: embedded_argv(workdir / "embedded.db", port),
            "naive": lambda port: [sys.executable, str(NAIVE_LAUNCHER), str(port), engine_url],
        }
        if before_src is not None:
            argvs["gateway-before"] = argvs["gateway"]
            argvs["embedded-before"] = lambda port: embedded_argv(
                workdir / "embedded-before.db", port
            )
        for name, argv in argvs.items():
            port = free_port()
            env = {"PYTHONPATH": str(before_src)} if name.endswith("-before") else None
            started[name] = start_server(
                name, argv(port), workdir / f"{name}.log", f"http://127.0.0.1:{port}", env
            )
        yield started
    finally:
        for server in reversed(started.values()):
            stop_server(server)


def peer_targets(
    servers: Mapping[str, Server], client: httpx.Client, paths: Sequence[PeerPath]
) -> dict[str, dict[str, Target]]:
    """For each operation, the request each path is loaded with (read runs created first)."""
    wait_ready(servers["engine"], client, ["/api/v1/workflows"])
    wait_ready(servers["yoga"], client, ["/graphql?query=%7B__typename%7D"])
    wait_ready(servers["naive"], client, ["/graphql?query=%7B__typename%7D"])
    runcast = [name for name in servers if name.startswith(("gateway", "embedded"))]
    for name in runcast:
        wait_ready(servers[name], client, ["/healthz", "/readyz"])
    remote_run = create_completed_run(client, servers["gateway"].base_url + "/graphql")
    embedded_runs = {
        name: create_completed_run(client, servers[name].base_url + "/graphql")
        for name in runcast
        if name.startswith("embedded")
    }
    runs = f"/api/v1/workflows/{WORKFLOW_ID}/runs"
    targets: dict[str, dict[str, Target]] = {"read a run": {}, "trigger a run": {}}
    for path in paths:
        base = servers[path.server].base_url
        instance_id = embedded_runs.get(path.server, remote_run)
        if path.server == "engine":
            targets["read a run"][path.server] = Target(path.label, f"{base}{runs}/{instance_id}")
            targets["trigger a run"][path.server] = Target(
                path.label, base + runs, "POST", json.dumps(REST_TRIGGER_BODY)
            )
            continue
        for name, target in operation_targets(base + "/graphql", instance_id):
            targets[name][path.server] = Target(path.label, target.url, "POST", target.body)
    return targets


def render_peers_report(
    results: Mapping[tuple[str, str], Measurement],
    *,
    command: str,
    args: argparse.Namespace,
    load: tuple[float, float],
    profiles: Mapping[str, ProfileSummary],
) -> str:
    """The issue's table: every path for each operation, with ratios to raw REST and to yoga."""
    lines = [
        "## runcast against its peers over the same engine (`bench/http.py --peers`)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, Node "
        f"{subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}, "
        f"{os.cpu_count()} cores shared with other work; wrk 1 thread {args.connections} "
        f"connections, {args.duration:g} s per measurement after {args.warmup:g} s warm-up, "
        f"median of {args.rounds} round(s), the paths alternating order. Every server with its "
        f"defaults (runcast's access log on). Load average {load[0]:.1f} before, "
        f"{load[1]:.1f} after.",
        "",
        "| operation | path | req/s | p50 ms | p99 ms | server CPU ms/req | CPU x raw REST "
        "| req/s x yoga |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for operation in ("read a run", "trigger a run"):
        rest = results[(operation, "engine")]
        yoga = results[(operation, "yoga")]
        rest_cpu = rest.cpu_ms_per_request.get("engine", 0.0)
        for path in peer_paths(args):
            m = results[(operation, path.server)]
            own = m.cpu_ms_per_request.get(path.server, 0.0)
            behind = m.cpu_ms_per_request.get("engine", 0.0) if path.behind_engine else 0.0
            cpu = f"{own:.2f}" + (f" (+ engine {behind:.2f})" if path.behind_engine else "")
            lines.append(
                f"| {operation} | {path.label} | {m.rps:,.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} "
                f"| {cpu} | {ratio(own + behind, rest_cpu)} | {ratio(m.rps, yoga.rps)} |"
            )
    lines += [
        "",
        "Server CPU: the path's own process, plus the engine behind it where it calls the "
        "engine over HTTP; CPU x raw REST compares that sum with the engine alone.",
        "",
        "Reproduce:",
        "",
        "```sh",
        command,
        "```",
    ]
    for name, profile in profiles.items():
        lines += ["", *profile_lines(f"{name}, read a run", profile)]
    return "\n".join(lines) + "\n"


def profile_peers(
    servers: Mapping[str, Server], reads: Mapping[str, Target], args: argparse.Namespace
) -> dict[str, ProfileSummary]:
    """py-spy profiles of the runcast paths under the read load, one after the other."""
    profiles: dict[str, ProfileSummary] = {}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    for name in PROFILED_PATHS:
        if name not in servers:
            continue
        wait_idle(list(servers.values()))
        folded = args.output.with_name(f"http-peers.{name}-read.folded")
        profile = profile_gateway(
            servers[name], reads[name], folded, duration=args.duration, connections=args.connections
        )
        if profile is not None:
            profiles[name] = profile
    return profiles


def compare_peers(args: argparse.Namespace, workdir: Path, command: str) -> int:
    """Every path of PEER_PATHS for the read and the trigger, rounds alternating; the table."""
    install_yoga()
    load_before = os.getloadavg()[0]
    samples: dict[tuple[str, str], list[Measurement]] = collections.defaultdict(list)
    profiles: dict[str, ProfileSummary] = {}
    with (
        peers_running(workdir, args.before_src) as servers,
        httpx.Client(timeout=10.0) as client,
    ):
        targets = peer_targets(servers, client, peer_paths(args))
        every = list(servers.values())
        for operation, by_path in targets.items():
            for target in by_path.values():
                check_target(client, target)
            for round_index in range(max(args.rounds, 1)):
                order = list(by_path.items())
                if round_index % 2:
                    order.reverse()
                for name, target in order:
                    wait_idle(every)
                    if args.warmup > 0:
                        run_wrk(target, duration=args.warmup, connections=args.connections)
                        wait_idle(every)
                    m = measure(target, every, duration=args.duration, connections=args.connections)
                    print(
                        f"  {operation} / {name}: {m.rps:,.0f} req/s, p50 {m.p50_ms:.2f} ms, "
                        f"{m.errors} errors, CPU ms/req {name} "
                        f"{m.cpu_ms_per_request.get(name, 0.0):.2f} engine "
                        f"{m.cpu_ms_per_request.get('engine', 0.0):.2f}",
                        flush=True,
                    )
                    samples[(operation, name)].append(m)
        if args.profile:
            profiles = profile_peers(servers, targets["read a run"], args)
    results = {key: median_measurement(ms) for key, ms in samples.items()}
    report = render_peers_report(
        results,
        command=command,
        args=args,
        load=(load_before, os.getloadavg()[0]),
        profiles=profiles,
    )
    publish_report(report, args.output.with_name("http-peers.md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
