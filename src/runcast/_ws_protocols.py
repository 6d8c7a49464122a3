"""The two WebSocket subprotocols at ``/graphql``, as Strawberry serves them plus what SPAs send.

- ``graphql-transport-ws``: a ``subscribe`` whose ``extensions.persistedQuery``
  names a hash runs the persisted query (Apollo's link sends hashes there too).
- ``graphql-ws`` (legacy, subscriptions-transport-ws): queries and mutations run
  as well as subscriptions, since those clients send every operation over the
  socket; persisted-query hashes as above; and a connection never initialised
  is closed after the connection-init timeout.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing, suppress
from datetime import timedelta

from graphql import GraphQLError
from strawberry.schema.base import BaseSchema
from strawberry.schema.schema import StreamResult
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    CompleteMessage,
    ErrorMessage,
    StartMessage,
)
from strawberry.types.execution import ExecutionResult, PreExecutionError

from runcast.errors import RuncastError
from runcast.resolvers import GraphQLContext
from runcast.schema import RuncastSchema
from runcast.schema._errors import refusal


async def resolve_persisted_query(schema: BaseSchema, payload: object) -> GraphQLError | None:
    """Put the persisted query a ``payload`` names by hash into its ``query``.

    Returns:
        The refusal to send back (unknown hash, wrong hash, untrusted), or ``None``
        when the payload names no persisted query or it was resolved.
    """
    if not isinstance(schema, RuncastSchema) or not isinstance(payload, dict):
        return None
    extensions = payload.get("extensions")
    if not isinstance(extensions, dict) or "persistedQuery" not in extensions:
        return None
    query = payload.get("query")
    try:
        payload["query"] = await schema.documents.resolve(
            query if isinstance(query, str) else None, extensions
        )
    except RuncastError as exc:
        return refusal(exc)
    return None


class TransportWSHandler(BaseGraphQLTransportWSHandler[GraphQLContext, None]):
    """``graphql-transport-ws``, with persisted-query hashes in ``subscribe`` messages."""

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and message["id"] not in self.operations:
            refused = await resolve_persisted_query(self.schema, message.get("payload"))
            if refused is not None:
                await self.send_message(
                    {"id": message["id"], "type": "error", "payload": [refused.formatted]}
                )
                return
        await super().handle_subscribe(message)


class LegacyWSHandler(BaseGraphQLWSHandler[GraphQLContext, None]):
    """The legacy ``graphql-ws`` protocol: every operation type, and an init timeout."""

    async def handle(self) -> None:
        view = self.view
        timeout = getattr(view, "connection_init_wait_timeout", timedelta(seconds=10))
        watchdog = asyncio.create_task(self._close_unless_initialised(timeout))
        try:
            await super().handle()
        finally:
            watchdog.cancel()
            with suppress(asyncio.CancelledError):
                await watchdog

    async def _close_unless_initialised(self, delay: timedelta) -> None:
        await asyncio.sleep(delay.total_seconds())
        if not self.connection_acknowledged:
            with suppress(Exception):
                await self.websocket.close(code=4408, reason="Connection initialisation timeout")

    async def handle_start(self, message: StartMessage) -> None:
        if self.connection_acknowledged:
            refused = await resolve_persisted_query(self.schema, message.get("payload"))
            if refused is not None:
                await self.send_message(
                    ErrorMessage(type="error", id=message["id"], payload=refused.formatted)
                )
                return
        await super().handle_start(message)

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        # Strawberry's own version runs subscriptions only ("queries are not allowed").
        try:
            result_source = await self.schema.stream(
                query=query,
                variable_values=variables,
                operation_name=operation_name,
                context_value=self.context,
                root_value=self.root_value,
            )
            self.subscriptions[operation_id] = result_source
            async with aclosing(result_source):
                await self._relay(operation_id, result_source)
        except asyncio.CancelledError:
            await self.send_message(CompleteMessage(type="complete", id=operation_id))
        finally:
            self.subscriptions.pop(operation_id, None)
            self.tasks.pop(operation_id, None)

    async def _relay(self, operation_id: str, results: StreamResult) -> None:
        first = True
        async for result in results:
            if first and isinstance(result, PreExecutionError):
                assert result.errors
                await self.send_message(
                    ErrorMessage(type="error", id=operation_id, payload=result.errors[0].formatted)
                )
                return
            first = False
            if isinstance(result, ExecutionResult):
                await self.send_data_message(result, operation_id)
        await self.send_message(CompleteMessage(type="complete", id=operation_id))


__all__ = ["LegacyWSHandler", "TransportWSHandler", "resolve_persisted_query"]
