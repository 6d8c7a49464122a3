"""The allowed-hosts guard: requests naming a host the gateway does not serve are refused.

A page on ``evil.example`` whose name is rebound to 127.0.0.1 sends ``Host: evil.example``
and ``Origin: http://evil.example``, which look same-origin; only the ``Host`` check stops it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from starlette.types import ASGIApp
from websockets.asyncio.client import connect
from websockets.typing import Origin, Subprotocol

from runcast._host_guard import HostPolicy, allowed_hosts_notice
from runcast._settings_checks import check_settings
from runcast.app import create_app
from runcast.engine import Engine
from runcast.errors import ConfigurationError
from runcast.settings import Settings
from runcast.upstream.local import LocalUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]
QUERY = {"query": "{ workflows { id } }"}
TRANSPORT_WS = "graphql-transport-ws"


@asynccontextmanager
async def gateway(
    serve: Serve, engine: Engine, settings: Settings | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    """Serve a gateway over the test engine on a real socket; yield a client and the port."""
    app = create_app(settings or Settings(), upstream=LocalUpstream(engine))
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        port = urlsplit(url).port
        assert port is not None
        yield http, port


async def post_as(http: httpx.AsyncClient, host: str) -> httpx.Response:
    """POST a query to /graphql with ``host`` as the Host header."""
    return await http.post("/graphql", json=QUERY, headers={"Host": host})


async def ws_handshake(port: int, host: str, origin: str) -> dict[str, object]:
    """Open /graphql over WebSocket with explicit Host and Origin; return the first message."""
    async with connect(
        f"ws://{host}/graphql",
        host="127.0.0.1",
        port=port,
        subprotocols=[Subprotocol(TRANSPORT_WS)],
        origin=Origin(origin),
        open_timeout=5,
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        answer: dict[str, object] = json.loads(await ws.recv())
        return answer


def assert_refused(response: httpx.Response) -> None:
    """The guard's answer: 400 with a JSON error naming the setting."""
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "HOST_NOT_ALLOWED"}
    assert "RUNCAST_ALLOWED_HOSTS" in error["message"]


async def test_default_allows_loopback_names_and_ip_addresses(serve: Serve, engine: Engine) -> None:
    """By default localhost, *.localhost, 127.0.0.1, [::1] and any IP address are served."""
    async with gateway(serve, engine) as (http, port):
        for host in (
            f"localhost:{port}",
            "LOCALHOST",
            f"app.localhost:{port}",
            f"127.0.0.1:{port}",
            f"[::1]:{port}",
            "192.168.1.20",
        ):
            answer = await post_as(http, host)
            assert answer.status_code == 200, host
            assert "workflows" in answer.json()["data"], host
        ack = await ws_handshake(port, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}")
        assert ack["type"] == "connection_ack"


async def test_default_refuses_a_rebound_name_on_http(serve: Serve, engine: Engine) -> None:
    """A Host the gateway does not serve gets 400 on /graphql (POST, GraphiQL) and /metrics."""
    async with gateway(serve, engine) as (http, port):
        host = f"evil.example:{port}"
        assert_refused(await post_as(http, host))
        assert_refused(await http.get("/graphql", headers={"Host": host, "Accept": "text/html"}))
        assert_refused(await http.get("/metrics", headers={"Host": host}))
        for malformed in ("localhost:http", "[::1", ""):
            assert (await post_as(http, malformed)).status_code == 400, malformed


async def test_default_refuses_a_rebound_name_on_websockets(serve: Serve, engine: Engine) -> None:
    """A handshake whose Host and Origin are the same rebound name is refused, not same-origin."""
    async with gateway(serve, engine) as (_, port):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await ws_handshake(port, f"evil.example:{port}", f"http://evil.example:{port}")
        assert refused.value.response.status_code == 400
        assert b"HOST_NOT_ALLOWED" in refused.value.response.body


async def test_cors_preflight_from_a_rebound_name_is_refused(serve: Serve, engine: Engine) -> None:
    """The guard runs before CORS, so even an allowed origin's preflight needs an allowed Host."""
    origin = "http://evil.example"
    settings = Settings(allowed_origins=(origin,))
    async with gateway(serve, engine, settings) as (http, port):
        headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        refused = await http.options("/graphql", headers={**headers, "Host": "evil.example"})
        assert_refused(refused)
        allowed = await http.options("/graphql", headers={**headers, "Host": f"localhost:{port}"})
        assert allowed.status_code == 200


async def test_health_and_readiness_answer_any_host(serve: Serve, engine: Engine) -> None:
    """/healthz and /readyz answer whatever the Host, so probes by pod name or IP keep working."""
    async with gateway(serve, engine) as (http, _):
        for host in ("evil.example", "pod-7.internal:8000", ""):
            health = await http.get("/healthz", headers={"Host": host})
            assert health.json() == {"status": "ok"}, host
            ready = await http.get("/readyz", headers={"Host": host})
            assert ready.status_code == 200, host


async def test_wildcard_subdomains_are_allowed(serve: Serve, engine: Engine) -> None:
    """``*.example.com`` serves its subdomains, not the bare domain nor look-alike names."""
    settings = Settings(allowed_hosts=("*.example.com", "gateway.test"))
    async with gateway(serve, engine, settings) as (http, port):
        for host in ("api.example.com", f"a.b.example.com:{port}", "gateway.test.", "localhost"):
            assert (await post_as(http, host)).status_code == 200, host
        for host in ("example.com", "evilexample.com", "example.com.evil.example"):
            assert_refused(await post_as(http, host))
        ack = await ws_handshake(port, "api.example.com", "http://api.example.com")
        assert ack["type"] == "connection_ack"
        with pytest.raises(websockets.InvalidStatus):
            await ws_handshake(port, "example.com", "http://example.com")


async def test_star_allows_every_host(serve: Serve, engine: Engine) -> None:
    """``*`` turns the guard off: any Host is served on HTTP and WebSockets."""
    settings = Settings(allowed_hosts=("*",))
    async with gateway(serve, engine, settings) as (http, port):
        assert (await post_as(http, "evil.example")).status_code == 200
        ack = await ws_handshake(port, f"evil.example:{port}", f"http://evil.example:{port}")
        assert ack["type"] == "connection_ack"


def test_the_configured_host_name_is_allowed() -> None:
    """``host`` is allowed when it is a name; binding every interface adds no name."""
    named = HostPolicy((), bind_host="Gateway.LAN")
    assert named.allows("gateway.lan:8000")
    assert not named.allows("other.lan")
    for wildcard in ("0.0.0.0", "::", "[::]"):
        everywhere = HostPolicy((), bind_host=wildcard)
        assert everywhere.allows("10.0.0.5:8000")
        assert not everywhere.allows("evil.example")
        assert not everywhere.allow_any


def test_allowed_hosts_come_from_the_environment() -> None:
    """RUNCAST_ALLOWED_HOSTS is a comma-separated list."""
    settings = Settings.from_env({"RUNCAST_ALLOWED_HOSTS": "api.example.com, *.corp.test,"})
    assert settings.allowed_hosts == ("api.example.com", "*.corp.test")
    check_settings(settings)


@pytest.mark.parametrize(
    "entry", ["http://api.example.com", "api.example.com:8000", "*example.com", "a.*.b", "a/b", ""]
)
def test_entries_that_are_not_host_names_are_configuration_errors(entry: str) -> None:
    """An allowed host with a scheme, port, path or misplaced ``*`` is refused at startup."""
    settings = Settings(allowed_hosts=(entry,))
    with pytest.raises(ConfigurationError, match="allowed host"):
        check_settings(settings)
    with pytest.raises(ConfigurationError):
        create_app(settings)


def test_serve_explains_the_guard_when_listening_everywhere() -> None:
    """Binding every interface without allowed hosts prints how to allow host names."""
    notice = allowed_hosts_notice(Settings(host="0.0.0.0"))
    assert notice is not None
    assert "RUNCAST_ALLOWED_HOSTS" in notice
    assert allowed_hosts_notice(Settings(host="::")) is not None
    assert allowed_hosts_notice(Settings(host="0.0.0.0", allowed_hosts=("*",))) is None
    assert allowed_hosts_notice(Settings()) is None
