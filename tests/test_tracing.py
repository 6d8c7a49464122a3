"""OpenTelemetry traces: one trace from the client's traceparent through the gateway to steps."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from conftest import free_port
from observability_support import collected_records, observed_gateway, scenario_settings, subscribe
from runcast.app import create_app
from runcast.engine import Engine, load_workflows
from runcast.engine.server import create_engine_app
from runcast.engine.tracing import EngineTracing
from runcast.schema._telemetry import OperationTracing
from runcast.settings import Settings
from runcast.tracing import Tracing, TracingMiddleware

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
TRIGGER = """mutation Trigger {
  triggerRun(workflowId: "three-steps", instanceId: "traced-1", input: {orderId: "A"}) { status }
}"""
POLL = '{ run(workflowId: "three-steps", instanceId: "traced-1") { status } }'


def in_memory() -> tuple[Tracing, InMemorySpanExporter]:
    """Tracing whose spans are kept in memory as they end."""
    exporter = InMemorySpanExporter()
    return Tracing(SimpleSpanProcessor(exporter)), exporter


async def trigger_and_finish(http: httpx.AsyncClient) -> None:
    """Trigger the traced run with the client's traceparent and poll until it completes."""
    answer = await http.post(
        "/graphql", json={"query": TRIGGER}, headers={"traceparent": TRACEPARENT}
    )
    assert "errors" not in answer.json(), answer.text
    deadline = time.monotonic() + 10
    while (await http.post("/graphql", json={"query": POLL})).json()["data"]["run"][
        "status"
    ] != "COMPLETE":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


def by_name(spans: tuple[ReadableSpan, ...] | list[Any], name: str) -> Any:
    """The only span called ``name``."""
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


def parent_of(span: ReadableSpan) -> int:
    """The span id of ``span``'s parent."""
    assert span.parent is not None, span.name
    return span.parent.span_id


def assert_run_under(spans: tuple[ReadableSpan, ...], parent: ReadableSpan) -> None:
    """The run span is a child of ``parent``, its three step spans children of it."""
    run = by_name(spans, "run three-steps")
    assert parent_of(run) == parent.context.span_id
    assert run.attributes["runcast.status"] == "complete"
    for step in ("first", "second", "third"):
        span = by_name(spans, f"step {step}")
        assert parent_of(span) == run.context.span_id
        assert span.attributes["runcast.attempt"] == 1


async def test_embedded_trace_goes_from_the_callers_traceparent_to_each_step(
    serve: Serve, workflows_dir: Path, tmp_path: Path
) -> None:
    """Server span, operation, run and steps form one trace; logs carry its id."""
    tracing, exporter = in_memory()
    settings = Settings(workflows_dir=workflows_dir, db_path=tmp_path / "t.db")
    app = create_app(settings, tracing=tracing)
    with collected_records("runcast") as collector:
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            await trigger_and_finish(http)
    await tracing.aclose()
    triggered = next(r for r in collector.records if "triggered" in r.getMessage())
    assert triggered.trace_id == TRACE_ID  # type: ignore[attr-defined]
    spans = exporter.get_finished_spans()
    server = next(s for s in spans if s.name == "POST /graphql" and s.parent is not None)
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert parent_of(server) == int(PARENT_ID, 16)
    assert server.attributes["http.response.status_code"] == 200
    operation = by_name(spans, "mutation Trigger")
    assert parent_of(operation) == server.context.span_id
    assert operation.attributes["graphql.operation.name"] == "Trigger"
    assert_run_under(spans, operation)


@asynccontextmanager
async def traced_engine_server(
    serve: Serve, workflows_dir: Path, tmp_path: Path, tracing: Tracing
) -> AsyncIterator[str]:
    """``runcast engine``'s parts with tracing on: traced engine, REST app under the middleware."""
    engine = Engine(
        load_workflows(workflows_dir).definitions,
        db_path=tmp_path / "remote.db",
        observers=[EngineTracing(tracing.tracer("runcast.engine"))],
    )
    async with engine:
        app = TracingMiddleware(create_engine_app(engine), tracer=tracing.tracer("server"))
        async with serve(app) as url:
            yield url


async def test_traceparent_reaches_the_upstream_and_its_spans_join_the_trace(
    serve: Serve, workflows_dir: Path, tmp_path: Path
) -> None:
    """Over AwaitStep the upstream call is a CLIENT span whose traceparent the engine continues."""
    tracing, exporter = in_memory()
    async with traced_engine_server(serve, workflows_dir, tmp_path, tracing) as engine_url:
        settings = Settings(upstream=f"{engine_url}/api/v1")
        app = create_app(settings, tracing=tracing)
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            await trigger_and_finish(http)
    await tracing.aclose()
    spans = exporter.get_finished_spans()
    operation = by_name(spans, "mutation Trigger")
    client = next(s for s in spans if s.name == "POST awaitstep" and s.parent is not None)
    assert parent_of(client) == operation.context.span_id
    assert client.attributes["http.response.status_code"] == 201
    engine_side = by_name(spans, "POST /api/v1/workflows/three-steps/runs")
    assert parent_of(engine_side) == client.context.span_id
    assert format(engine_side.context.trace_id, "032x") == TRACE_ID
    assert_run_under(spans, engine_side)


def test_tracing_off_adds_no_middleware_and_no_extension(workflows_dir: Path) -> None:
    """Without RUNCAST_OTEL the app has no tracing middleware and no tracing extension."""
    app = create_app(Settings(workflows_dir=workflows_dir))
    assert TracingMiddleware not in [m.cls for m in app.user_middleware]
    traced = create_app(Settings(workflows_dir=workflows_dir), tracing=in_memory()[0])
    assert TracingMiddleware in [m.cls for m in traced.user_middleware]
    for route_app, expected in [(app, False), (traced, True)]:
        transport = next(r for r in route_app.routes if getattr(r, "path", "") == "/graphql")
        factories = transport.endpoint.schema.extensions  # type: ignore[attr-defined]
        made = [factory() for factory in factories]
        assert any(isinstance(e, OperationTracing) for e in made) is expected


class OtlpReceiver:
    """A small OTLP/HTTP trace receiver: decodes each export with opentelemetry-proto."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.app = Starlette(routes=[Route("/v1/traces", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> Response:
        assert request.headers["content-type"] == "application/x-protobuf"
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        self.requests.append(message)
        return Response(
            ExportTraceServiceResponse().SerializeToString(),
            media_type="application/x-protobuf",
        )

    def spans(self) -> list[tuple[str, Any]]:
        """Every received span with its resource's service.name."""
        found = []
        for message in self.requests:
            for resource_spans in message.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append((attributes.get("service.name"), span))
        return found


async def test_runcast_otel_exports_over_otlp_http(
    serve: Serve, workflows_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RUNCAST_OTEL=1 with OTEL_EXPORTER_OTLP_ENDPOINT: the receiver gets the whole trace."""
    receiver = OtlpReceiver()
    async with serve(receiver.app) as receiver_url:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver_url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "runcast-under-test")
        settings = Settings.from_env(
            {"RUNCAST_OTEL": "1", "RUNCAST_DB_PATH": str(tmp_path / "otlp.db")}
        ).replace(workflows_dir=workflows_dir)
        async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
            await trigger_and_finish(http)
        # The app's lifespan flushed and closed its exporter on the way out.
    received = receiver.spans()
    assert {service for service, _ in received} == {"runcast-under-test"}
    spans = {span.name: span for _, span in received}
    for name in ["mutation Trigger", "run three-steps", "step third"]:
        assert spans[name].trace_id.hex() == TRACE_ID, name
    assert spans["run three-steps"].parent_span_id == spans["mutation Trigger"].span_id
    assert spans["step third"].parent_span_id == spans["run three-steps"].span_id


async def test_the_readme_command_exports_spans_and_logs_json_with_trace_ids(
    serve: Serve, tmp_path: Path
) -> None:
    """`RUNCAST_OTEL=1 OTEL_EXPORTER_OTLP_ENDPOINT=... runcast serve`: spans arrive, logs join."""
    receiver = OtlpReceiver()
    async with serve(receiver.app) as receiver_url:
        port = free_port()
        env = dict(
            os.environ,
            RUNCAST_OTEL="1",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver_url,
            OTEL_SERVICE_NAME="runcast",
            RUNCAST_LOG_FORMAT="json",
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "runcast", "serve", "--port", str(port), "--db", str(tmp_path / "cli.db")),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                await wait_until_ready(http)
                answer = await http.post(
                    "/graphql",
                    json={
                        "query": 'mutation Trigger { triggerRun(workflowId: "order-approval") '
                        "{ instanceId } }"
                    },
                    headers={"traceparent": TRACEPARENT},
                )
                assert "errors" not in answer.json()
        finally:
            process.send_signal(signal.SIGINT)
            assert process.stderr is not None
            log = (await process.stderr.read()).decode()
            await process.wait()
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    triggered = next(e for e in entries if "triggered" in e["message"])
    assert triggered["trace_id"] == TRACE_ID
    assert "Traceback" not in log
    received = receiver.spans()
    assert {service for service, _ in received} == {"runcast"}
    names = {span.name for _, span in received if span.trace_id.hex() == TRACE_ID}
    assert {"POST /graphql", "mutation Trigger", "step reserve"} <= names


async def wait_until_ready(http: httpx.AsyncClient) -> None:
    """Poll /readyz until the gateway answers 200 (within 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the gateway never became ready"
        await asyncio.sleep(0.05)


async def test_subscriptions_under_tracing_make_an_operation_span_and_no_context_errors(
    serve: Serve, workflows_dir: Path, tmp_path: Path
) -> None:
    """A traced runStatus subscription, completed and abandoned, leaves OpenTelemetry happy."""
    tracing, exporter = in_memory()
    settings = scenario_settings(workflows_dir, tmp_path)
    with collected_records("opentelemetry") as collector:
        async with observed_gateway(serve, settings, tracing=tracing) as scenario:
            await scenario.trigger("three-steps", "watched", {"orderId": "w"})
            await subscribe(scenario.url, "watched", until_complete=True)
            await scenario.trigger("three-steps", "left")
            await subscribe(scenario.url, "left", until_complete=False)
    await tracing.aclose()
    assert [r.getMessage() for r in collector.records if r.levelno >= logging.WARNING] == []
    watches = [s for s in exporter.get_finished_spans() if s.name == "subscription Watch"]
    assert len(watches) == 2
