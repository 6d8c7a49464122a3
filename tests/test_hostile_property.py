"""Property: whatever reaches /graphql, the gateway answers without a 5xx or a traceback.

One real gateway (uvicorn on loopback, the embedded engine on a SQLite file, the
connection guards of `runcast serve`) runs in a thread for the whole module.
Hypothesis feeds it random bytes, random JSON bodies and random GraphQL documents
built from the schema (hypothesis-graphql) over HTTP, and random frames and
documents over WebSockets. Example counts are in ``EXAMPLES`` (about 200 in all),
modest so that the module runs in well under a minute.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import hypothesis_graphql
import pytest
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import nodes
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from runcast._server import connection_options
from runcast.app import create_app
from runcast.schema import print_schema
from runcast.settings import Settings

# On a failure, hypothesis' pytest plugin imports libcst (where installed) to suggest a patch;
# that import warns, which this suite makes an error and pytest an INTERNALERROR hiding the
# failure. Imported here once, its warning silenced, the report shows the failing example.
with warnings.catch_warnings(), suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import libcst  # noqa: F401

EXAMPLES = {"bytes": 40, "json": 40, "documents": 60, "ws_frames": 25, "ws_documents": 25}
"""Examples per property (190 in all)."""

PROPERTY = settings(
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    # No explain phase: it imports libcst, whose import warns (an error in this suite).
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)
WS_CLOSE_CODES = frozenset({1000, 1009, 4400, 4403, 4408, 4409, 4429})
"""Close codes the gateway may end a WebSocket with: normal, too big, and the protocols' own."""


class Crashes(logging.Handler):
    """Collects every log record that carries a traceback or reports a crash."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep ``record`` if it has exception info or reports an unhandled error."""
        text = record.getMessage()
        if record.exc_info or "Traceback" in text or "Exception in ASGI" in text:
            self.records.append(record)


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def crashes() -> Iterator[Crashes]:
    """A handler on the root logger collecting crash reports while the module runs."""
    handler = Crashes()
    logging.getLogger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, crashes: Crashes) -> Iterator[str]:
    """`create_app` on the embedded engine, served by uvicorn in a thread; yields its URL."""
    folder = tmp_path_factory.mktemp("property")
    workflows = Path(__file__).parent / "workflows"
    config_settings = Settings(db_path=folder / "gateway.db", workflows_dir=workflows)
    port = free_port()
    config = uvicorn.Config(
        create_app(config_settings),
        host="127.0.0.1",
        port=port,
        log_config=None,
        log_level="warning",
        ws_ping_interval=None,
        **connection_options(config_settings.server_options()),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="property-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the gateway stopped while starting"
        assert time.monotonic() < deadline, "the gateway did not start within 30 s"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def http(gateway: str) -> Iterator[httpx.Client]:
    """One keep-alive HTTP client of the gateway for every example."""
    with httpx.Client(base_url=gateway, timeout=30) as client:
        yield client


def assert_coded_answer(response: httpx.Response, crashes: Crashes) -> None:
    """No 5xx, a JSON body, a code on every error, nothing crashed in the log."""
    assert response.status_code < 500, response.text
    body = response.json()
    assert isinstance(body, dict)
    for error in body.get("errors") or []:
        assert error["extensions"]["code"], error
    assert not crashes.records, [r.getMessage() for r in crashes.records]


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value, nested a little."""
    leaves = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text()
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=12,
    )


def graphql_json_literals() -> st.SearchStrategy[Any]:
    """GraphQL literals for the JSON scalar."""
    leaves = (
        st.just(nodes.Null)
        | st.integers(-(10**9), 10**9).map(nodes.Int)
        | st.text(max_size=20).map(nodes.String)
        | st.booleans().map(nodes.Boolean)
    )
    return st.recursive(
        leaves, lambda inner: st.lists(inner, max_size=3).map(nodes.List), max_leaves=6
    )


DOCUMENTS = hypothesis_graphql.from_schema(
    print_schema(),
    custom_scalars={
        "JSON": graphql_json_literals(),
        "DateTime": st.just("2026-01-01T00:00:00Z").map(nodes.String),
    },
)
"""Queries and mutations valid against the schema, with random arguments."""

FIELDS = st.sampled_from(["query", "variables", "operationName", "extensions"])
REQUEST_LIKE = st.dictionaries(FIELDS, json_values(), max_size=4)


@settings(PROPERTY, max_examples=EXAMPLES["bytes"])
@given(body=st.binary(max_size=2048), content_type=st.sampled_from(["application/json", ""]))
def test_random_bytes_get_a_coded_answer(
    http: httpx.Client, crashes: Crashes, body: bytes, content_type: str
) -> None:
    """Random bytes POSTed to /graphql get a coded 4xx (or an answer), never a 5xx."""
    headers = {"content-type": content_type} if content_type else {}
    assert_coded_answer(http.post("/graphql", content=body, headers=headers), crashes)


@settings(PROPERTY, max_examples=EXAMPLES["json"])
@given(body=json_values() | REQUEST_LIKE)
def test_random_json_gets_a_coded_answer(http: httpx.Client, crashes: Crashes, body: Any) -> None:
    """Random JSON, and objects with random request fields, get a coded answer."""
    assert_coded_answer(http.post("/graphql", json=body), crashes)


@settings(PROPERTY, max_examples=EXAMPLES["documents"])
@given(document=DOCUMENTS, variables=st.none() | st.dictionaries(st.text(), json_values()))
def test_random_documents_get_a_coded_answer(
    http: httpx.Client, crashes: Crashes, document: str, variables: Any
) -> None:
    """Documents built from the schema, with random arguments, get a coded answer."""
    response = http.post("/graphql", json={"query": document, "variables": variables})
    assert_coded_answer(response, crashes)


def ws_exchange(gateway: str, frames: list[str | bytes]) -> int | None:
    """Send ``frames`` after the handshake; the server's close code, or None if it stayed open."""
    url = gateway.replace("http://", "ws://") + "/graphql"
    with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:  # type: ignore[list-item]
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
        try:
            for frame in frames:
                ws.send(frame)
            while True:
                ws.recv(timeout=0.3)
        except TimeoutError:
            return None
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else 1006
    return None


def assert_ws_outcome(code: int | None, crashes: Crashes) -> None:
    """The socket stayed open or was closed with a documented code; nothing crashed."""
    assert code is None or code in WS_CLOSE_CODES, code
    assert not crashes.records, [r.getMessage() for r in crashes.records]


@settings(PROPERTY, max_examples=EXAMPLES["ws_frames"])
@given(
    frames=st.lists(
        st.binary(max_size=64) | st.text(max_size=64) | json_values().map(json.dumps),
        min_size=1,
        max_size=3,
    )
)
def test_random_websocket_frames_close_with_a_documented_code(
    gateway: str, crashes: Crashes, frames: list[str | bytes]
) -> None:
    """Random frames after connection_init never crash the socket (no 1006 or 1011)."""
    assert_ws_outcome(ws_exchange(gateway, frames), crashes)


@settings(PROPERTY, max_examples=EXAMPLES["ws_documents"])
@given(document=DOCUMENTS, variables=st.none() | st.dictionaries(st.text(), json_values()))
def test_random_documents_over_websockets(
    gateway: str, crashes: Crashes, document: str, variables: Any
) -> None:
    """Documents built from the schema, subscribed over WebSockets, are answered, not crashed."""
    message = {
        "type": "subscribe",
        "id": "1",
        "payload": {"query": document, "variables": variables},
    }
    assert_ws_outcome(ws_exchange(gateway, [json.dumps(message)]), crashes)


def test_the_gateway_still_answers(http: httpx.Client, crashes: Crashes) -> None:
    """After everything above, /healthz and a query still answer, and nothing crashed."""
    assert http.get("/healthz").status_code == 200
    answer = http.post("/graphql", json={"query": "{ workflows { id } }"}).json()
    assert answer["data"]["workflows"]
    assert not crashes.records
