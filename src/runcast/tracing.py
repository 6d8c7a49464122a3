"""OpenTelemetry traces: off unless ``RUNCAST_OTEL=1``, then exported over OTLP/HTTP.

A :class:`Tracing` holds one SDK ``TracerProvider``; whoever made it closes it (flushing
what is buffered). It gives the pieces that create spans, each added only while tracing is
on, so that tracing off costs nothing per request:

- :class:`TracingMiddleware`: a SERVER span per HTTP request, continuing an incoming W3C
  ``traceparent``;
- :class:`TracingTransport`: a CLIENT span per upstream HTTP attempt, sending ``traceparent``;
- ``runcast.engine.tracing.EngineTracing``: spans for runs and step attempts;
- ``runcast.schema._telemetry.OperationTracing``: a span per GraphQL operation.

The exporter reads the standard ``OTEL_EXPORTER_OTLP_*`` variables (endpoint, headers,
timeout, compression), the provider ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``
and ``OTEL_TRACES_SAMPLER``. This module imports nothing of the gateway or the engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, MutableMapping
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runcast.logs import set_trace_id_source

__all__ = ["Tracing", "TracingMiddleware", "TracingTransport", "current_trace_id"]

PROPAGATOR = TraceContextTextMapPropagator()
"""W3C Trace Context (``traceparent``, ``tracestate``), in and out."""

DEFAULT_SERVICE_NAME = "runcast"


def current_trace_id() -> str | None:
    """The trace id of the current span as 32 hex digits, if a span is recording."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


class Tracing:
    """One tracer provider and the spans made with it.

    Args:
        processor: where finished spans go (a batch processor with the OTLP exporter in
            production; a simple processor with an in-memory exporter in tests).
        service_name: ``service.name`` unless ``OTEL_SERVICE_NAME`` says otherwise.
    """

    def __init__(self, processor: SpanProcessor, *, service_name: str = DEFAULT_SERVICE_NAME):
        resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: service_name}))
        self.provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self.provider.add_span_processor(processor)
        self._closed = False
        set_trace_id_source(current_trace_id)

    @classmethod
    def from_environment(cls, *, service_name: str = DEFAULT_SERVICE_NAME) -> Tracing:
        """Export over OTLP/HTTP as the ``OTEL_EXPORTER_OTLP_*`` variables say."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        return cls(BatchSpanProcessor(OTLPSpanExporter()), service_name=service_name)

    def tracer(self, name: str) -> Tracer:
        """A tracer for instrumentation scope ``name`` (``runcast.gateway``, ...)."""
        return self.provider.get_tracer(name)

    async def aflush(self) -> None:
        """Export every finished span now (in a thread: the exporter blocks)."""
        await asyncio.to_thread(self.provider.force_flush)

    async def aclose(self) -> None:
        """Flush and shut the provider down; later spans are dropped."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self.provider.shutdown)


def _headers_of(scope: Scope) -> dict[str, str]:
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope.get("headers", ())
        if name in (b"traceparent", b"tracestate")
    }


class TracingMiddleware:
    """A SERVER span around each HTTP request, child of the caller's ``traceparent``.

    Args:
        app: the app to wrap.
        tracer: makes the spans.
    """

    def __init__(self, app: ASGIApp, *, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        parent = PROPAGATOR.extract(_headers_of(scope))
        method = scope.get("method", "GET")
        path = scope.get("path", "")
        with self.tracer.start_as_current_span(
            f"{method} {path}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        ) as span:

            async def send_traced(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, send_traced)


class _HeaderSetter:
    def set(self, carrier: MutableMapping[str, str], key: str, value: str) -> None:
        carrier[key] = value


class TracingTransport(httpx.AsyncBaseTransport):
    """A CLIENT span per HTTP attempt through ``inner``, and ``traceparent`` sent with it.

    Args:
        inner: the transport that sends.
        tracer: makes the spans.
        peer: a name for the other side (``awaitstep``, ``cloudflare``).
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, *, tracer: Tracer, peer: str) -> None:
        self.inner = inner
        self.tracer = tracer
        self.peer = peer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        attributes: Mapping[str, Any] = {
            "http.request.method": request.method,
            "server.address": request.url.host,
            "url.path": request.url.path,
            "runcast.upstream": self.peer,
        }
        with self.tracer.start_as_current_span(
            f"{request.method} {self.peer}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            PROPAGATOR.inject(request.headers, setter=_HeaderSetter())  # type: ignore[arg-type]
            response = await self.inner.handle_async_request(request)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_status(Status(StatusCode.ERROR, f"HTTP {response.status_code}"))
            return response

    async def aclose(self) -> None:
        """Close ``inner``."""
        await self.inner.aclose()
