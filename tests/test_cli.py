"""`runcast serve` and friends as a user runs them: real processes, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

from conftest import free_port
from process_support import interrupt

RUNCAST = [sys.executable, "-m", "runcast.cli"]

# The README tour, exactly as written there.
TOUR_LIST = "{ workflows { id name kind url } }"
TOUR_TRIGGER = """
mutation {
  triggerRun(workflowId: "order-approval", input: {orderId: 42}, instanceId: "order-42") {
    instanceId
    status
  }
}
"""
TOUR_STATUS = """
{
  run(workflowId: "order-approval", instanceId: "order-42") {
    status
    steps { name status }
  }
}
"""
TOUR_EVENT = """
mutation {
  sendEvent(
    workflowId: "order-approval"
    instanceId: "order-42"
    eventType: "user-approval"
    payload: {approved: true, approvedBy: "ana"}
  ) {
    status
  }
}
"""
TOUR_OUTPUT = """
{
  run(workflowId: "order-approval", instanceId: "order-42") {
    status
    output
  }
}
"""


def clean_env() -> dict[str, str]:
    """The environment without any RUNCAST_* variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RUNCAST_")}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the command line to completion (at most 60 s)."""
    return subprocess.run(
        [*RUNCAST, *args], capture_output=True, text=True, timeout=60, env=clean_env()
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["serve", "--upstream", "ftp://example.com"], "unknown upstream 'ftp://example.com'"),
        (["serve", "--upstream", "cloudflare://"], "names no account"),
        (["serve", "--workflows", "/no/such/folder"], "is not a readable folder"),
        (["engine", "--workflows", "/no/such/folder"], "is not a readable folder"),
    ],
)
def test_bad_settings_exit_2_with_one_line(args: list[str], needle: str) -> None:
    """A bad setting prints one line on stderr (no traceback) and exits with code 2."""
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("runcast: ")
    assert needle in lines[0]


def test_bad_environment_variable_exits_2() -> None:
    """A RUNCAST_* variable of the wrong type is one line and exit code 2."""
    result = subprocess.run(
        [*RUNCAST, "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean_env(), "RUNCAST_PORT": "eighty"},
    )
    assert result.returncode == 2
    assert "RUNCAST_PORT" in result.stderr


def test_port_in_use_exits_2(tmp_path: Path) -> None:
    """Serving on a port something already listens on is one line and exit code 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), "--db", str(tmp_path / "x.db"))
    assert result.returncode == 2
    assert "the port is in use" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`runcast serve` with the demo workflows on a free port; stopped with SIGINT after."""
    port = free_port()
    process = subprocess.Popen(
        [*RUNCAST, "serve", "--port", str(port), "--db", str(tmp_path / "runcast.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        yield process, first_line
    finally:
        if process.poll() is None:
            interrupt(process)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def graphql(url: str, query: str, variables: dict[str, object] | None = None) -> dict:
    """POST one operation and return its data (there must be no errors)."""
    answer = httpx.post(url, json={"query": query, "variables": variables or {}}, timeout=10)
    body = answer.json()
    assert "errors" not in body, body
    return body["data"]


def test_serve_prints_graphiql_url_and_runs_the_readme_tour(
    gateway_process: tuple[subprocess.Popen[str], str],
) -> None:
    """`runcast serve` prints the GraphiQL URL, answers the README tour, and stops on Ctrl-C."""
    process, first_line = gateway_process
    assert first_line.startswith("runcast: GraphiQL at http://127.0.0.1:")
    url = first_line.split(" at ", 1)[1].strip()
    assert url.endswith("/graphql")
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(url.replace("/graphql", "/readyz"), timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the gateway never became ready"
        time.sleep(0.05)
    assert "text/html" in httpx.get(url, headers={"accept": "text/html"}).headers["content-type"]

    workflows = graphql(url, TOUR_LIST)["workflows"]
    assert "order-approval" in {w["id"] for w in workflows}
    run = graphql(url, TOUR_TRIGGER)["triggerRun"]
    assert run["instanceId"] == "order-42"
    assert graphql(url, TOUR_STATUS)["run"]["status"] in {"QUEUED", "RUNNING", "PAUSED"}
    graphql(url, TOUR_EVENT)
    deadline = time.monotonic() + 20
    while (found := graphql(url, TOUR_OUTPUT)["run"])["status"] != "COMPLETE":
        assert time.monotonic() < deadline, found
        time.sleep(0.1)
    assert found == {"status": "COMPLETE", "output": {"orderId": 42, "approved": True, "by": "ana"}}

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=15) == 130  # the usual code after Ctrl-C, once shut down
    assert process.stderr is not None
    log = process.stderr.read()
    assert "Traceback" not in log
    assert "Application shutdown complete" in log


def _send_then_receive(ws: ClientConnection, message: str) -> None:
    ws.send(message)
    ws.recv(timeout=5)


def test_serve_holds_websocket_messages_to_the_body_limit(
    gateway_process: tuple[subprocess.Popen[str], str],
) -> None:
    """`runcast serve` closes a WebSocket whose message is over the request body limit (1009)."""
    _, first_line = gateway_process
    url = first_line.split(" at ", 1)[1].strip().replace("http://", "ws://")
    query = "{ workflows { id } }" + " " * (2 * 1024 * 1024 + 1)
    message = json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}})
    deadline = time.monotonic() + 15
    while True:
        try:
            ws = ws_connect(url, subprotocols=[Subprotocol("graphql-transport-ws")])
            break
        except OSError:
            assert time.monotonic() < deadline, "the gateway never accepted a WebSocket"
            time.sleep(0.05)
    with ws:
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "connection_ack"
        with pytest.raises(ConnectionClosed) as closed:
            _send_then_receive(ws, message)
    # The server closes with 1009 as soon as it reads the frame header. While the client is
    # still writing the 2 MiB payload, the kernel may reset the connection before the client
    # reads that close frame; then no close code arrives, but the connection is still refused.
    if closed.value.rcvd is not None:
        assert closed.value.rcvd.code == 1009
    with ws_connect(url, subprotocols=[Subprotocol("graphql-transport-ws")]) as again:
        again.send(json.dumps({"type": "connection_init"}))
        assert json.loads(again.recv(timeout=5))["type"] == "connection_ack"


def test_unusable_database_path_exits_2(tmp_path: Path) -> None:
    """A database path whose folder cannot be created is one line and exit code 2."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli("serve", "--port", str(free_port()), "--db", str(blocker / "runcast.db"))
    assert result.returncode == 2
    assert "cannot create the folder for the database" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
