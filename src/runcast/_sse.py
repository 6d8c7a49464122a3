"""GraphQL over SSE (the graphql-sse protocol, distinct connections mode) at ``/graphql``.

Strawberry's SSE transport, with two changes that keep every client working:

- It answers with an event stream only when the client prefers one to JSON.
  urql lists ``text/event-stream`` among the JSON types for every query; those
  get JSON, as before SSE was served. graphql-sse (``Accept: text/event-stream``)
  and urql's subscriptions (``text/event-stream, multipart/mixed``) get a stream.
- Events end with LF, not CRLF: both are SSE, but urql's parser splits on LF LF.
"""

from __future__ import annotations

from strawberry.http.streaming import SSETransport

from runcast._accept import media_weights

JSON_MEDIA_TYPES = ("application/json", "application/graphql-response+json")
EVENT_STREAM = "text/event-stream"


class EventStreamTransport(SSETransport):
    """Strawberry's SSE transport, chosen only when preferred to JSON, framed with LF."""

    def accepts(self, accept: str) -> bool:
        weights = media_weights(accept)
        stream = weights.get(EVENT_STREAM, 0.0)
        return stream > 0 and stream > max(weights.get(media, 0.0) for media in JSON_MEDIA_TYPES)

    def encode_event(self, event: str, data: str | None = None) -> str:
        if data and ("\r" in data or "\n" in data):
            raise ValueError("SSE event data must not contain newlines")
        return f"event: {event}\ndata: {data or ''}\n\n"

    def encode_comment(self, comment: str) -> str:
        return f": {comment}\n\n"


__all__ = ["EventStreamTransport"]
