"""Reading hostile bytes: request bodies and WebSocket messages checked before any work.

Every way a body or message can be unusable (not UTF-8, not JSON, nested past
``MAX_JSON_NESTING``, a WebSocket message that is not an object of the
protocol's shape) is found here and described in one sentence a client can act
on; the transport answers it with a coded 400 or a WebSocket close with 4400.
"""

from __future__ import annotations

import json

import orjson

from runcast.limits import MAX_JSON_NESTING, json_nesting_exceeds

INVALID_MESSAGE_CLOSE_CODE = 4400
"""The WebSocket close code for a message that cannot be read (both protocols)."""

TRANSPORT_ERROR_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    500: "INTERNAL_SERVER_ERROR",
}
"""``extensions.code`` of a request refused before any GraphQL work, by HTTP status."""


class UnreadableJSON(json.JSONDecodeError):
    """A body or message that is not UTF-8 JSON of a usable shape; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, "", 0)
        self.reason = reason


def decode_json_strictly(data: str | bytes) -> object:
    """Decode a request body or WebSocket message, refusing what cannot be served.

    Raises:
        UnreadableJSON: the bytes are not UTF-8, the text is not JSON (``NaN`` and
            ``Infinity`` are not), or it nests
            objects and arrays deeper than ``MAX_JSON_NESTING``.
    """
    try:
        # orjson refuses everything the strict reading below refuses, in a few percent of
        # its time; it also refuses a little that JSON allows (integers past 64 bits, lone
        # surrogates), so whatever it refuses is read again below, which has the reason.
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        value = _decode_with_reason(data)
    if json_nesting_exceeds(value):
        raise UnreadableJSON(_too_deep())
    return value


def _decode_with_reason(data: str | bytes) -> object:
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise UnreadableJSON("The body is not valid UTF-8") from exc
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise UnreadableJSON(_too_deep()) from exc
    except ValueError as exc:
        raise UnreadableJSON("The body is not valid JSON") from exc
    return value


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _too_deep() -> str:
    return f"The JSON nests deeper than the limit of {MAX_JSON_NESTING} levels"


def transport_error(status_code: int, message: str) -> dict[str, object]:
    """The ``{"errors": [...]}`` body of a request refused with ``status_code``."""
    code = TRANSPORT_ERROR_CODES.get(status_code, "BAD_REQUEST")
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


_ID_MESSAGES = frozenset({"subscribe", "complete", "start", "stop"})
_OPERATION_MESSAGES = frozenset({"subscribe", "start"})
_OPTIONAL_OBJECTS = ("variables", "extensions")


def ws_message_problem(message: object) -> str | None:
    """What makes a decoded WebSocket message unusable, or ``None`` when it is usable.

    Checks the shape both protocols (``graphql-transport-ws``, ``graphql-ws``)
    share: an object with a string ``type``; a string ``id`` on operation
    messages; an object ``payload`` with a string ``query`` on ``subscribe`` and
    ``start`` (or none, when ``extensions.persistedQuery`` names it by hash),
    whose ``variables`` and ``extensions`` are objects or null.
    """
    if not isinstance(message, dict):
        return "A message must be a JSON object"
    kind = message.get("type")
    if not isinstance(kind, str):
        return "A message must have a string `type`"
    if kind in _ID_MESSAGES and not isinstance(message.get("id"), str):
        return f"A {kind} message must have a string `id`"
    if kind in _OPERATION_MESSAGES:
        return _operation_payload_problem(kind, message.get("payload"))
    return None


def _operation_payload_problem(kind: str, payload: object) -> str | None:
    if not isinstance(payload, dict):
        return f"A {kind} message must have an object `payload`"
    query = payload.get("query")
    extensions = payload.get("extensions")
    by_hash = query is None and isinstance(extensions, dict) and "persistedQuery" in extensions
    if not (isinstance(query, str) or by_hash):
        return f"A {kind} payload must have a string `query`"
    for name in _OPTIONAL_OBJECTS:
        if not isinstance(payload.get(name), dict | None):
            return f"A {kind} payload's `{name}` must be an object or null"
    if not isinstance(payload.get("operationName"), str | None):
        return f"A {kind} payload's `operationName` must be a string or null"
    return None
