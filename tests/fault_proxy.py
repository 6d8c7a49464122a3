"""A counting HTTP/1.1 proxy that injects faults: what an unreliable network and upstream do.

Importable as ``fault_proxy`` (pytest puts ``tests/`` on ``sys.path``). It sits between an
adapter and a real upstream server on loopback, records every request that arrives (time,
method, path), and for each one does what ``plan`` says: forward it, answer 503, drop the
connection before forwarding, or forward it and drop the connection before the answer
(the upstream has applied the call, the client never hears so).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Literal

import httpx

Fault = Literal["forward", "503", "drop_before", "drop_after"]
Plan = Callable[[int, str, str], Fault]
"""``plan(index, method, path)`` for the index-th request (from 0) that arrived."""

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


@dataclass
class Arrival:
    """One request as the proxy saw it."""

    at: float
    method: str
    path: str
    fault: Fault


@dataclass
class FaultProxy:
    """The running proxy: its URL and every request that reached it."""

    url: str
    arrivals: list[Arrival] = field(default_factory=list)

    def count(self, method: str | None = None) -> int:
        """Requests that arrived (with ``method``, when given)."""
        return sum(1 for a in self.arrivals if method is None or a.method == method)

    def most_in_any_window(self, seconds: float) -> int:
        """The most requests that arrived within any ``seconds``-long window."""
        times = sorted(a.at for a in self.arrivals)
        best, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= seconds:
                start += 1
            best = max(best, end - start + 1)
        return best


DELIVERY_SLACK = 0.5
"""Seconds a request may reach the proxy after its token was taken, on a loaded machine."""


def budget_ceiling(rate: float, burst: float, seconds: float = 1.0) -> int:
    """The most arrivals a token bucket lets into any ``seconds``-long window at the proxy.

    A bucket hands out at most ``burst + rate * seconds`` tokens in such a window; requests
    that took theirs just before it may still arrive inside it, up to ``DELIVERY_SLACK`` late.
    """
    return int(burst + rate * (seconds + DELIVERY_SLACK))


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return method, target, headers, body


def _response_bytes(response: httpx.Response) -> bytes:
    head = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
    head += [f"{k}: {v}" for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP]
    head.append(f"content-length: {len(response.content)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.content


UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"


@asynccontextmanager
async def fault_proxy(upstream_url: str, plan: Plan) -> AsyncIterator[FaultProxy]:
    """Serve the proxy in front of ``upstream_url`` on a free loopback port while in the block."""
    client = httpx.AsyncClient(base_url=upstream_url, timeout=30)
    proxy = FaultProxy(url="")

    async def forward(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
        sent = {k: v for k, v in headers.items() if k not in HOP_BY_HOP | {"host"}}
        response = await client.request(method, target, headers=sent, content=body)
        return _response_bytes(response)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                method, target, headers, body = await _read_request(reader)
                fault = plan(len(proxy.arrivals), method, target)
                proxy.arrivals.append(Arrival(time.monotonic(), method, target, fault))
                if fault == "drop_before":
                    break
                if fault == "503":
                    writer.write(UNAVAILABLE)
                    continue
                answer = await forward(method, target, headers, body)
                if fault == "drop_after":
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy.url = f"http://127.0.0.1:{port}"
    try:
        yield proxy
    finally:
        server.close()
        with suppress(Exception):
            await server.wait_closed()
        await client.aclose()
