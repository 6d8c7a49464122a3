"""Fixtures shared by the whole suite.

Edit this file only by adding or replacing a fixture in place (several people
work on it); keep fixtures that one test module needs in that module.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp

from crash_support import Crash
from engine_probe import GATES
from redis_support import RedisServer
from runcast.engine import Engine, load_workflows
from runcast.engine.definitions import WorkflowDefinition
from runcast.engine.server import create_engine_app
from runcast.settings import Settings
from runcast.upstream import RunAPI
from runcast.upstream.awaitstep import AwaitStepUpstream
from runcast.upstream.local import LocalUpstream


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def running_server(app: ASGIApp, *, lifespan: str = "on") -> AsyncIterator[str]:
    """Serve ``app`` with a real uvicorn server on a loopback port; yield its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free_port(),
        lifespan=lifespan,  # type: ignore[arg-type]
        log_level="warning",
        ws_ping_interval=None,
        ws=Settings.ws_implementation,  # WebSocket tests run on the gateway's implementation
    )
    async with serving(config) as url:
        yield url


@asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[str]:
    """Run a uvicorn server of ``config`` (on loopback) for the block; yield its base URL."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(15):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        try:
            async with asyncio.timeout(15):
                await task
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def gates() -> Iterator[dict[str, asyncio.Event]]:
    """Fresh gates for ``engine_probe.hold`` steps, released and cleared after the test."""
    yield GATES
    for gate in GATES.values():
        gate.set()
    GATES.clear()


@pytest.fixture
def crash(tmp_path: Path) -> Iterator[Crash]:
    """A crash scenario (``crash_support.Crash``); its worker is killed after the test."""
    scenario = Crash(tmp_path)
    yield scenario
    if scenario.process is not None and scenario.process.poll() is None:
        scenario.process.kill()
        scenario.process.wait(timeout=10)


@pytest.fixture
def serve() -> Callable[[ASGIApp], AbstractAsyncContextManager[str]]:
    """Start an ASGI app on a real uvicorn socket: ``async with serve(app) as url: ...``."""
    return running_server


@pytest.fixture
def workflows_dir() -> Path:
    """The folder of test workflow definitions (tests/workflows)."""
    return Path(__file__).parent / "workflows"


@pytest.fixture
def definitions(workflows_dir: Path) -> dict[str, WorkflowDefinition]:
    """The test workflow definitions (tests/workflows), loaded without problems."""
    loaded = load_workflows(workflows_dir)
    assert not loaded.problems, loaded.problems
    return loaded.definitions


@pytest.fixture
async def engine(
    definitions: dict[str, WorkflowDefinition], tmp_path: Path
) -> AsyncIterator[Engine]:
    """A started Engine over tests/workflows on a SQLite file in tmp_path, closed after."""
    async with Engine(definitions, db_path=tmp_path / "engine.db") as started:
        yield started


# -- the engine's REST API and the upstream adapters (the contract suite) -------------------

EngineServer = Callable[..., AbstractAsyncContextManager[str]]
"""``async with engine_server(api_keys=("k",)) as url:`` serves the test engine's REST API."""

AdapterBuilder = Callable[[Engine, tuple[str, ...]], AbstractAsyncContextManager[RunAPI]]
"""Builds one adapter over ``engine``, enforcing ``api_keys`` (empty: no authentication)."""


@dataclass(frozen=True)
class UpstreamFactory:
    """One adapter kind over the test engine: ``async with upstream_factory() as upstream:``.

    Pass ``api_keys=("k",)`` to require those bearer tokens, or ``engine=`` a started Engine
    the test owns to use it instead; the adapter is closed (its server stopped) on exit.
    """

    adapter: str
    builder: AdapterBuilder
    engine: Engine

    def __call__(
        self, *, api_keys: tuple[str, ...] = (), engine: Engine | None = None
    ) -> AbstractAsyncContextManager[RunAPI]:
        return self.builder(engine or self.engine, tuple(api_keys))

    def has(self, feature: str) -> bool:
        """Whether this adapter's upstream has ``feature`` (see ``UPSTREAM_GAPS``)."""
        return feature not in UPSTREAM_GAPS.get(self.adapter, frozenset())


@asynccontextmanager
async def local_adapter(engine: Engine, api_keys: tuple[str, ...]) -> AsyncIterator[RunAPI]:
    """The ``local`` adapter: the engine in process."""
    upstream = LocalUpstream(engine, api_keys=api_keys)
    try:
        yield upstream
    finally:
        await upstream.aclose()


@asynccontextmanager
async def awaitstep_adapter(engine: Engine, api_keys: tuple[str, ...]) -> AsyncIterator[RunAPI]:
    """The ``awaitstep`` adapter against the engine's REST API on a real uvicorn socket."""
    async with running_server(create_engine_app(engine, api_keys=api_keys)) as url:
        upstream = AwaitStepUpstream(
            url, settings=Settings(upstream_get_retries=1), retry_base_delay=0.01
        )
        try:
            yield upstream
        finally:
            await upstream.aclose()


@asynccontextmanager
async def cloudflare_adapter(engine: Engine, api_keys: tuple[str, ...]) -> AsyncIterator[RunAPI]:
    """The ``cloudflare`` adapter against the engine's Cloudflare API on a real uvicorn socket."""
    from runcast.engine.cloudflare_api import create_cloudflare_app
    from runcast.upstream.cloudflare import CloudflareUpstream

    app = create_cloudflare_app(engine, account_id="local", api_tokens=api_keys)
    async with running_server(app) as url:
        upstream = CloudflareUpstream(
            "local",
            base_url=url + "/client/v4",
            settings=Settings(upstream_get_retries=1),
            retry_base_delay=0.01,
        )
        try:
            yield upstream
        finally:
            await upstream.aclose()


UPSTREAM_ADAPTERS: dict[str, AdapterBuilder] = {
    "local": local_adapter,
    "awaitstep": awaitstep_adapter,
    "cloudflare": cloudflare_adapter,
}
"""Every adapter the contract suite (tests/test_upstream_contract.py) runs against.

To add one, write an ``AdapterBuilder`` (an async context manager taking the engine and the
API keys, yielding a started adapter that talks to that engine) and add it here by name.
"""


UPSTREAM_GAPS: dict[str, frozenset[str]] = {"cloudflare": frozenset({"scripts", "display_names"})}
"""Features an adapter's upstream does not have, by adapter name; the contract tests skip
what needs them. Known features: ``scripts`` (the upstream lists and refuses scripts),
``display_names`` (a workflow's name can differ from its id)."""


@pytest.fixture(params=list(UPSTREAM_ADAPTERS))
def upstream_factory(request: pytest.FixtureRequest, engine: Engine) -> UpstreamFactory:
    """One adapter kind per parameter (see ``UPSTREAM_ADAPTERS``), over the test engine."""
    return UpstreamFactory(request.param, UPSTREAM_ADAPTERS[request.param], engine)


@pytest.fixture
def engine_server(engine: Engine) -> EngineServer:
    """Serve the test engine's REST API on a real socket: ``async with engine_server() as url``."""

    def make(*, api_keys: tuple[str, ...] = ()) -> AbstractAsyncContextManager[str]:
        return running_server(create_engine_app(engine, api_keys=api_keys))

    return make


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A real redis-server on a free loopback port in tmp_path, killed after the test."""
    server = RedisServer(free_port(), tmp_path / "redis")
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


# -- the log guard: no stack trace and no credential in any info line of any test -----------


class _InfoLineGuard(logging.Handler):
    """Keeps runcast's info records that hold a traceback or a credential."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.bad: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno != logging.INFO or not record.name.startswith("runcast"):
            return
        text = record.getMessage()
        if record.exc_info is not None or "Traceback" in text or "Bearer " in text:
            self.bad.append(f"{record.name}: {text}")


@pytest.fixture(autouse=True)
def _no_secrets_or_tracebacks_at_info() -> Iterator[None]:
    """Every test: runcast's info lines that it logs carry no traceback and no bearer token."""
    guard = _InfoLineGuard()
    logger = logging.getLogger("runcast")
    # Passive: it sees the info lines of tests that log at info (levels are left alone, so
    # timing-sensitive tests run as they would without it). tests/test_logs.py logs all.
    logger.addHandler(guard)
    try:
        yield
    finally:
        logger.removeHandler(guard)
    assert not guard.bad, guard.bad
