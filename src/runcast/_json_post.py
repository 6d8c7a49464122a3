"""``POST /graphql`` with a JSON body of one operation, answered below Strawberry's HTTP view.

That request is nearly every request an app sends. Strawberry's view finds out
what it is on every request: it wraps the request in an adapter, makes a
sub-response object, checks whether to render GraphiQL, parses the
``Content-Type`` header with the standard library's e-mail parser, asks every
stream transport whether the ``Accept`` header is theirs, and routes through the
batch and stream branches. :func:`json_operation` decides the same in one pass
over the headers and the decoded body, and :class:`JSONPostAnswerer` then runs
the transport's own steps (context, ``execute_single``, ``process_result``,
``create_response``), so the guards, the masking, the telemetry and the
persisted or trusted documents are the ones every other request gets.

Anything else (another content type, a stream ``Accept``, a batch, a body that
does not decode or is not shaped like one operation) goes to the view, which
reads the body Starlette already keeps and answers as it always has: every
refusal stays the view's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from strawberry.http import GraphQLRequestData

from runcast._wire_guards import UnreadableJSON, decode_json_strictly

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from runcast._graphql_app import GraphQLTransport

_OPTIONAL_OBJECTS = ("variables", "extensions")


def is_plain_json_post(method: str, headers: Mapping[str, str], streaming: bool) -> bool:
    """Whether a request is a ``POST`` of ``application/json`` that wants one JSON answer.

    Args:
        method: the request's HTTP method.
        headers: its headers (case-insensitive names).
        streaming: whether a stream transport (SSE, multipart) claims its ``Accept``.
    """
    if method != "POST" or streaming:
        return False
    content_type = headers.get("content-type")
    if content_type is None:
        return False
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json"


def json_operation(body: bytes) -> GraphQLRequestData | None:
    """The one operation a JSON body asks for; ``None`` for anything the view must judge.

    ``None`` when the body does not decode (the view refuses it in the same words),
    is a batch, or has a member of the wrong type.
    """
    try:
        data = decode_json_strictly(body)
    except UnreadableJSON:
        return None
    if not isinstance(data, dict):
        return None
    query = data.get("query")
    operation_name = data.get("operationName")
    if not isinstance(query, str | None) or not isinstance(operation_name, str | None):
        return None
    for name in _OPTIONAL_OBJECTS:
        if not isinstance(data.get(name), dict | None):
            return None
    return GraphQLRequestData(
        query=query,
        variables=data.get("variables"),
        operation_name=operation_name,
        extensions=data.get("extensions"),
        protocol="http",
    )


class _PostAdapter:
    """What ``execute_single`` reads of the request adapter: the method."""

    method: Literal["POST"] = "POST"


class JSONPostAnswerer:
    """Answers plain JSON POSTs for ``transport``, or says the view must.

    Args:
        transport: the ``/graphql`` endpoint whose steps it runs.
    """

    def __init__(self, transport: GraphQLTransport) -> None:
        self.transport = transport
        self._adapter = _PostAdapter()
        # With incremental delivery a result may be a stream, which only the view writes.
        self.enabled = not transport.schema.config.enable_experimental_incremental_execution

    def accepts(self, request: Request) -> bool:
        """Whether ``request`` is one this answerer may take (before its body is read)."""
        if not self.enabled:
            return False
        headers = request.headers
        streaming = self.transport._get_stream_transport_from_headers(headers) is not None
        return is_plain_json_post(request.method, headers, streaming)

    async def answer(self, request: Request) -> Response | None:
        """The response to ``request``, or ``None`` when the view must answer it.

        Raises what the transport's own steps raise (``HTTPException`` and friends),
        for the transport to answer as it answers the view's.
        """
        operation = json_operation(await request.body())
        if operation is None:
            return None
        transport = self.transport
        sub_response = await transport.get_sub_response(request)
        context = await transport.get_context(request, response=sub_response)
        result = await transport.execute_single(
            request,
            self._adapter,  # type: ignore[arg-type]
            sub_response,
            context,
            None,
            operation,
        )
        response_data = await transport.process_result(request, result)
        if result.errors:
            transport._handle_errors(result.errors, response_data)
        return transport.create_response(response_data, sub_response)
