"""What a WebSocket costs the gateway: `runcast serve` keeps no zlib state per connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

from conftest import free_port
from process_support import interrupt
from runcast.settings import Settings

RUNCAST = [sys.executable, "-m", "runcast.cli"]


@contextmanager
def gateway(tmp_path: Path, **env: str) -> Iterator[str]:
    """`runcast serve` (demo workflows, ``RUNCAST_*`` from ``env`` only); yields its ws:// URL."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RUNCAST_")}
    process = subprocess.Popen(
        [*RUNCAST, "serve", "--port", str(free_port()), "--db", str(tmp_path / "runcast.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**environ, **env},
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.startswith("runcast: GraphiQL at "), first_line
        yield first_line.split(" at ", 1)[1].strip().replace("http://", "ws://")
    finally:
        interrupt(process)
        if process.stdout is not None:
            process.stdout.close()


@contextmanager
def connect(url: str) -> Iterator[ClientConnection]:
    """A graphql-transport-ws connection (offering permessage-deflate, as clients do by default)."""
    ready = url.replace("ws://", "http://").replace("/graphql", "/readyz")
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(ready, timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the gateway never became ready"
        time.sleep(0.05)
    with ws_connect(url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "connection_ack"
        yield ws


def test_serve_does_not_negotiate_permessage_deflate_by_default(tmp_path: Path) -> None:
    """A client offering permessage-deflate to `runcast serve` gets an uncompressed connection."""
    with gateway(tmp_path) as url, connect(url) as ws:
        assert ws.request is not None
        assert ws.response is not None
        assert "permessage-deflate" in ws.request.headers["Sec-WebSocket-Extensions"]
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert ws.subprotocol == "graphql-transport-ws"


def test_permessage_deflate_can_be_turned_on(tmp_path: Path) -> None:
    """RUNCAST_WS_PER_MESSAGE_DEFLATE=true makes `runcast serve` accept permessage-deflate."""
    assert Settings.from_env({"RUNCAST_WS_PER_MESSAGE_DEFLATE": "true"}).ws_per_message_deflate
    assert not Settings().ws_per_message_deflate
    with gateway(tmp_path, RUNCAST_WS_PER_MESSAGE_DEFLATE="true") as url, connect(url) as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
