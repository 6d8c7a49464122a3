"""GraphQL over HTTP and WebSockets at ``/graphql``, on Strawberry's ASGI view.

What this adds to ``strawberry.asgi.GraphQL``:

- ``application/graphql-response+json`` when the client accepts it, with 400
  and no ``data`` entry for requests that fail before execution (parse,
  validation, variable coercion), as the GraphQL-over-HTTP spec says;
  ``application/json`` (always 200 for GraphQL errors) otherwise.
- Transport errors as a JSON ``{"errors": [...]}`` body; mutations over GET
  refused with 405 and ``Allow: POST``; a body size limit answered with 413.
- The caller's ``Authorization`` (HTTP header, or the ``connection_init``
  payload on WebSockets) becomes the context's ``Credentials``.
- A connection-init timeout for the legacy ``graphql-ws`` protocol too.
- GraphiQL says so when its CDN assets could not load, and links to the dashboard.
- Hostile bytes are answered, never crashed on: a body or WebSocket message that
  is not UTF-8, not JSON, nested deeper than ``MAX_JSON_NESTING`` or not shaped
  like a request is a coded 400 (HTTP) or a close with 4400 (WebSockets); every
  transport error carries ``extensions.code``.
- A time limit per query or mutation on every transport (``operation_timeout``,
  kept by the schema: ``schema/_timeout.py``); a timed-out operation is no request
  error, so it keeps status 200.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Mapping
from contextlib import suppress
from datetime import timedelta
from typing import Any, Protocol

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived
from strawberry.http.types import QueryParams
from strawberry.schema.base import BaseSchema
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import (
    GRAPHQL_SSE_PROTOCOL,
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
)
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType

from runcast._accept import media_weights
from runcast._graphiql import with_offline_notice
from runcast._sse import EventStreamTransport
from runcast._wire_guards import (
    INVALID_MESSAGE_CLOSE_CODE,
    UnreadableJSON,
    decode_json_strictly,
    transport_error,
    ws_message_problem,
)
from runcast._ws_protocols import LegacyWSHandler, TransportWSHandler
from runcast.live import LiveHub
from runcast.models import ANONYMOUS, Credentials
from runcast.resolvers import GraphQLContext
from runcast.schema._timeout import is_timeout
from runcast.settings import Settings
from runcast.upstream import RunAPI

logger = logging.getLogger("runcast.graphql")

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
SUBSCRIPTION_PROTOCOLS = (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL, GRAPHQL_SSE_PROTOCOL)
"""Both WebSocket subprotocols, and GraphQL over SSE (graphql-sse) on HTTP."""
APPLICATION_JSON = "application/json"


class GatewayResources(Protocol):
    """Where the transport finds what the app's lifespan opened."""

    @property
    def upstream(self) -> RunAPI:
        """The run API (raises if the lifespan has not opened it)."""
        ...

    @property
    def live(self) -> LiveHub | None:
        """The live hub for subscriptions, or ``None``."""
        ...


class _BodyTooLarge(Exception):
    pass


def preferred_media_type(accept: str | None) -> str:
    """The response media type for an ``Accept`` header value.

    ``application/graphql-response+json`` when the client lists it at least as
    high as ``application/json``; ``application/json`` otherwise (also for a
    missing header and ``*/*``).
    """
    weights = media_weights(accept)
    graphql_weight = weights.get(GRAPHQL_RESPONSE_JSON, 0.0)
    if graphql_weight > 0 and graphql_weight >= weights.get(APPLICATION_JSON, 0.0):
        return GRAPHQL_RESPONSE_JSON
    return APPLICATION_JSON


def encode_json_body(data: object) -> bytes:
    """``data`` as compact JSON bytes: orjson, or the standard library for what orjson refuses.

    orjson refuses integers beyond 64 bits and non-string keys, which ``json`` writes.
    """
    try:
        return orjson.dumps(data)
    except TypeError:
        return json.dumps(data, separators=(",", ":")).encode()


def operation_type_refused(operation_type: OperationType) -> HTTPException:
    """The refusal of an operation type the request's method does not run."""
    if operation_type is OperationType.SUBSCRIPTION:
        return HTTPException(
            400,
            "Subscriptions are served over WebSocket, or over SSE (Accept: "
            "text/event-stream), at this same URL",
        )
    return HTTPException(405, "Mutations are only allowed over POST")


def is_request_error(result: ExecutionResult) -> bool:
    """Whether execution never started: parse, validation or variable coercion failed."""
    if isinstance(result, PreExecutionError):
        return True
    return (
        result.data is None
        and bool(result.errors)
        and all(error.path is None for error in result.errors or ())
    )


class _CheckedWebSocketAdapter(ASGIWebSocketAdapter):
    """Yields only messages of a usable shape; closes with 4400 at the first other one."""

    async def iter_json(
        self, *, ignore_parsing_errors: bool = False
    ) -> AsyncGenerator[object, None]:
        messages = super().iter_json(ignore_parsing_errors=False)
        try:
            async for message in messages:
                problem = ws_message_problem(message)
                if problem is not None:
                    await self._refuse(problem)
                    return
                yield message
        except NonJsonMessageReceived as exc:
            cause = exc.__cause__
            reason = cause.reason if isinstance(cause, UnreadableJSON) else "Not valid JSON"
            await self._refuse(reason.replace("The body", "The message"))
        except NonTextMessageReceived:
            await self._refuse("A message must be text")
        finally:
            await messages.aclose()

    async def _refuse(self, reason: str) -> None:
        with suppress(Exception):
            await self.close(INVALID_MESSAGE_CLOSE_CODE, reason[:120])


class GraphQLTransport(GraphQL[GraphQLContext, None]):
    """The ``/graphql`` endpoint: HTTP GET/POST, GraphiQL, and both WebSocket protocols.

    Args:
        schema: the schema to execute.
        settings: body size limit, WebSocket timeouts and caps, allowed origins.
        resources: gives the upstream and live hub opened by the app's lifespan.
    """

    graphql_ws_handler_class = LegacyWSHandler
    graphql_transport_ws_handler_class = TransportWSHandler
    websocket_adapter_class = _CheckedWebSocketAdapter
    stream_transport_classes_by_protocol = {
        **GraphQL.stream_transport_classes_by_protocol,
        GRAPHQL_SSE_PROTOCOL: EventStreamTransport,
    }

    def __init__(
        self, schema: BaseSchema, *, settings: Settings, resources: GatewayResources
    ) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql",
            allow_queries_via_get=True,
            keep_alive=True,
            keep_alive_interval=settings.ws_keepalive_interval,
            subscription_protocols=SUBSCRIPTION_PROTOCOLS,
            connection_init_wait_timeout=timedelta(seconds=settings.ws_connection_init_timeout),
            max_subscriptions_per_connection=settings.ws_max_operations,
            allowed_origins=settings.allowed_origins,
        )
        self.settings = settings
        self.resources = resources
        self._graphiql_page = with_offline_notice(
            super().graphql_ide_html, dashboard_url="/" if settings.dashboard else None
        )

    @property
    def graphql_ide_html(self) -> str:
        """GraphiQL's page, which says plainly when its CDN assets could not load."""
        return self._graphiql_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive=self._limited(receive))
        media_type = preferred_media_type(request.headers.get("accept"))
        request.state.media_type = media_type
        request.state.request_error = False
        try:
            declared = int(request.headers.get("content-length") or 0)
        except ValueError:
            declared = 0
        if declared > self.settings.max_body_bytes:
            response: Response = self._too_large(media_type)
        else:
            try:
                response = await self.run(request)
            except HTTPException as exc:
                response = self._error_response(exc.status_code, exc.reason, media_type)
                if exc.status_code == 405:
                    response.headers["allow"] = "POST" if request.method == "GET" else "GET, POST"
            except _BodyTooLarge:
                response = self._too_large(media_type)
            except Exception:
                logger.exception("unexpected error answering %s /graphql", request.method)
                response = self._error_response(500, "Internal server error", media_type)
            else:
                if response.media_type == APPLICATION_JSON:
                    response.headers["content-type"] = f"{media_type}; charset=utf-8"
                    if request.state.request_error and media_type == GRAPHQL_RESPONSE_JSON:
                        response.status_code = 400
        await response(scope, receive, send)

    def encode_json(self, data: object) -> str:
        # Text, since WebSocket messages must be text frames; HTTP bodies skip the str.
        return encode_json_body(data).decode()

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = Response(encode_json_body(response_data), media_type=APPLICATION_JSON)
        response.headers.raw.extend(sub_response.headers.raw)
        response.background = sub_response.background
        if sub_response.status_code:
            response.status_code = sub_response.status_code
        return response

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        # A hash-only persisted query is a GET with no `query`: an operation, not a page.
        return "extensions" not in request.query_params and super().should_render_graphql_ide(
            request
        )

    def _limited(self, receive: Receive) -> Receive:
        limit = self.settings.max_body_bytes
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        return receive_limited

    def _too_large(self, media_type: str) -> Response:
        return self._error_response(
            413,
            f"Request body too large: the limit is {self.settings.max_body_bytes} bytes",
            media_type,
        )

    @staticmethod
    def _error_response(status_code: int, message: str, media_type: str) -> Response:
        return JSONResponse(
            transport_error(status_code, message),
            status_code=status_code,
            media_type=media_type,
        )

    async def get_context(self, request: Request | WebSocket, response: Any) -> GraphQLContext:
        return GraphQLContext(
            upstream=self.resources.upstream,
            credentials=Credentials.from_authorization(request.headers.get("authorization")),
            settings=self.settings,
            live=self.resources.live,
        )

    async def on_ws_connect(self, context: GraphQLContext) -> UnsetType | dict[str, object] | None:
        params = context.connection_params or {}
        authorization = params.get("Authorization", params.get("authorization"))
        if isinstance(authorization, str):
            context.credentials = Credentials.from_authorization(authorization)
        elif authorization is not None:
            context.credentials = ANONYMOUS
        no_ack_payload: UnsetType = UNSET
        return no_ack_payload

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        try:
            parsed = await super().parse_http_body(request)
        except (AttributeError, TypeError) as exc:
            raise HTTPException(400, "The request must be a JSON object") from exc
        if isinstance(parsed, GraphQLRequestData) and not isinstance(
            parsed.operation_name, (str, type(None))
        ):
            raise HTTPException(
                400, "The GraphQL operation's `operationName` must be a string or null."
            )
        return parsed

    def decode_json(self, data: str | bytes) -> object:
        return decode_json_strictly(data)

    def parse_json(self, data: str | bytes) -> Any:
        try:
            return decode_json_strictly(data)
        except UnreadableJSON as exc:
            raise HTTPException(400, exc.reason) from exc

    def parse_query_params(self, params: QueryParams) -> dict[str, Any]:
        for name in ("variables", "extensions"):
            value = params.get(name)
            if value:
                try:
                    decoded = decode_json_strictly(value)
                except UnreadableJSON as exc:
                    raise HTTPException(
                        400, exc.reason.replace("The body", f"The `{name}` query parameter")
                    ) from exc
                if not isinstance(decoded, dict | None):
                    raise HTTPException(400, f"The `{name}` query parameter must be an object")
        return super().parse_query_params(params)

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Any,
        context: GraphQLContext,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        # Strawberry's own, with our words for an operation type the method cannot run;
        # tests/test_strawberry_contract.py fails if Strawberry stops raising it this way.
        try:
            return await super().execute_single(
                request, request_adapter, sub_response, context, root_value, request_data
            )
        except HTTPException as exc:
            cause = exc.__cause__
            if isinstance(cause, InvalidOperationTypeError):
                raise operation_type_refused(cause.operation_type) from cause
            raise

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        if is_request_error(result) and not is_timeout(result):
            request.state.request_error = True
            if request.state.media_type == GRAPHQL_RESPONSE_JSON:
                response.pop("data", None)
        return response

    def get_websocket_headers(self, request: WebSocket) -> Mapping[str, str]:
        return request.headers
