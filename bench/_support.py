"""What the live-layer benches share: ports, child processes, the counting engine, clients.

Imported first by ``bench/changes.py``, ``bench/fanout.py`` and ``bench/cluster.py``. Run
as a script, a bench's folder leads ``sys.path`` (which is how this module is found);
this module takes it off again, since ``bench/http.py`` would shadow the standard
library's ``http`` package that httpx and uvicorn import.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
    del sys.path[0]

STOP_SECONDS = 10.0
"""How long a child process has to stop after SIGTERM before it is killed."""


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, seconds: float = 60.0) -> None:
    """Wait until ``url`` answers 200."""
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.1)


@contextlib.contextmanager
def process(args: list[str], **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """Run ``args``; SIGTERM (then SIGKILL) it on exit."""
    child = subprocess.Popen(args, text=True, **popen)
    try:
        yield child
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def python_child(script: str, *args: str, **popen: Any) -> Any:
    """:func:`process` running the Python file ``script`` with ``args``."""
    return process([sys.executable, script, *args], **popen)


def serve_counting_engine(port: int, folder: Path, workflows: dict[str, str]) -> None:
    """Serve the engine's REST API over ``workflows``, counting GETs at ``/_bench/gets``."""
    import uvicorn

    from runcast.engine import Engine
    from runcast.engine.loader import load_workflows
    from runcast.engine.server import create_engine_app

    (folder / "workflows").mkdir(parents=True, exist_ok=True)
    for name, text in workflows.items():
        (folder / "workflows" / name).write_text(text)
    loaded = load_workflows(folder / "workflows")
    engine = Engine(loaded.definitions, db_path=folder / "runs.db", max_running=100_000)
    inner = create_engine_app(engine, manage_engine=True)
    gets = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal gets
        if scope["type"] == "http":
            if scope["path"] == "/_bench/gets":
                body = json.dumps({"gets": gets}).encode()
                headers = [(b"content-type", b"application/json")]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            if scope["method"] == "GET":
                gets += 1
        await inner(scope, receive, send)

    raise_fd_limit()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", backlog=4096)


def engine_gets(engine_url: str) -> int:
    """GETs the counting engine has served so far."""
    import httpx

    return int(httpx.get(engine_url + "/_bench/gets", timeout=10).json()["gets"])


async def open_subscription_socket(ws_url: str) -> Any:
    """A ``graphql-transport-ws`` WebSocket to ``ws_url``, acknowledged and ready."""
    import websockets

    ws = await websockets.connect(
        ws_url,
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        open_timeout=300,
        ping_interval=None,
        close_timeout=1,
    )
    await ws.send(json.dumps({"type": "connection_init"}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    return ws
