"""Real processes for cluster-mode tests: `runcast engine`, gateway replicas, a counting proxy."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.types import Receive, Scope, Send

from conftest import free_port

TESTS = Path(__file__).parent
RUNCAST = [sys.executable, "-m", "runcast.cli"]
START_TIMEOUT = 60.0

CLUSTER_WORKFLOWS = {
    "stepper.yaml": """
id: stepper
nodes:
  - wait_for_event: first
    event_type: first
  - step: flaky
    action:
      fail: {message: "busy", times: 1}
    retries: {limit: 2, delay: 1500ms, backoff: constant}
  - wait_for_event: second
    event_type: second
  - step: done
    action:
      return: {done: "`true`"}
""",
}
"""A run that stays in each status long enough for polls to see it:
PAUSED (first) -> WAITING (1.5 s retry) -> PAUSED (second) -> COMPLETE."""


@dataclass
class Hit:
    """One request the proxy forwarded (or refused)."""

    at: float
    replica: str
    method: str
    path: str
    token: str | None


@dataclass
class CountingProxy:
    """ASGI proxy in front of `runcast engine`, counting requests per replica.

    Replica ``rN`` is configured with the upstream ``http://proxy/rN``; the proxy strips
    that prefix, records the request, and forwards it. ``forbid`` maps a bearer token to
    the run ids it may not read (answered 403, as an upstream with per-run permissions).
    """

    target: str
    hits: list[Hit] = field(default_factory=list)
    forbid: dict[str, set[str]] = field(default_factory=dict)
    client: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(self, receive, send)
            return
        replica, _, rest = scope["path"].lstrip("/").partition("/")
        path = "/" + rest
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        token = headers.get("authorization", "").removeprefix("Bearer ").strip() or None
        self.hits.append(Hit(time.monotonic(), replica, scope["method"], path, token))
        if token and any(
            path.rstrip("/").endswith(f"/runs/{i}") for i in self.forbid.get(token, ())
        ):
            await _answer(send, 403, b'{"error": {"code": "FORBIDDEN", "message": "not yours"}}')
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        assert self.client is not None
        query = scope.get("query_string", b"").decode()
        forwarded = {k: v for k, v in headers.items() if k in {"authorization", "content-type"}}
        answer = await self.client.request(
            scope["method"],
            f"{self.target}{path}" + (f"?{query}" if query else ""),
            content=body,
            headers=forwarded,
        )
        await _answer(send, answer.status_code, answer.content, answer.headers)

    def requests(self, *, replica: str | None = None, since: float = 0.0) -> list[Hit]:
        """The requests after ``since`` (of one replica, if given)."""
        return [h for h in self.hits if h.at >= since and replica in (None, h.replica)]

    def by_replica(self, *, since: float = 0.0, run: str | None = None) -> Counter[str]:
        """How many requests each replica sent after ``since`` (about one run, if given)."""
        return Counter(
            h.replica for h in self.requests(since=since) if run is None or run in h.path
        )


async def _lifespan(proxy: CountingProxy, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            proxy.client = httpx.AsyncClient(timeout=30)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if proxy.client is not None:
                await proxy.client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _answer(send: Send, status: int, body: bytes, headers: Any = None) -> None:
    kept = [(b"content-type", b"application/json")]
    if headers is not None and "retry-after" in headers:
        kept.append((b"retry-after", headers["retry-after"].encode()))
    kept.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": kept})
    await send({"type": "http.response.body", "body": body})


def process_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without RUNCAST_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCAST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@dataclass
class Process:
    """A `runcast` process listening on ``url``, with its output in ``log``."""

    name: str
    url: str
    log: Path
    process: asyncio.subprocess.Process

    async def kill(self) -> None:
        """kill -9, and wait for it to be gone."""
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()

    async def stop(self) -> None:
        """SIGINT (a graceful stop), then kill -9 if it takes longer than 15 s."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(15):
                    await self.process.wait()
            except TimeoutError:
                await self.kill()

    def output(self) -> str:
        """What the process printed so far."""
        return self.log.read_text(errors="replace")


async def start(name: str, args: list[str], folder: Path, env: dict[str, str]) -> Process:
    """Start ``runcast ARGS --port P`` and return once its port answers HTTP."""
    port = free_port()
    log = folder / f"{name}.log"
    handle = log.open("wb")
    process = await asyncio.create_subprocess_exec(
        *RUNCAST,
        *args,
        "--port",
        str(port),
        stdout=handle,
        stderr=asyncio.subprocess.STDOUT,
        env=process_env(env),
    )
    handle.close()
    started = Process(name, f"http://127.0.0.1:{port}", log, process)
    deadline = time.monotonic() + START_TIMEOUT
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            if process.returncode is not None:
                raise AssertionError(f"{name} exited: {started.output()}")
            try:
                await client.get(started.url + "/healthz")
                return started
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name} did not start: {started.output()}") from None
                await asyncio.sleep(0.1)


async def metrics_text(url: str) -> str:
    """The gateway's /metrics."""
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(url + "/metrics")).text


async def sample(url: str, name: str) -> float:
    """One unlabelled sample of the gateway's /metrics (0 when absent)."""
    for line in (await metrics_text(url)).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0
