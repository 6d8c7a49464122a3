"""Global object identification (Relay): the ``id`` of every node, and ``node(id:)``.

A workflow's ``id`` is its own id (a contract name, kept as it is). A run's ``id``
is ``run:`` followed by the URL-safe base64 of ``workflowId/instanceId``: opaque,
the same for every observation of the run, and never equal to a workflow id,
since a workflow id cannot contain ``:``. So ``node(id:)`` tells the kinds apart
from the id alone, and a normalized client cache (Apollo, urql, Relay) keeps one
entry per run.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from runcast import models
from runcast.errors import BadUserInput
from runcast.resolvers._context import GraphQLContext
from runcast.resolvers._validation import check_id

RUN_ID_PREFIX = "run:"
MAX_NODES = 100
"""The most ids one ``nodes(ids:)`` call may ask for."""


@dataclass(frozen=True, slots=True)
class RunRef:
    """The run a node id names."""

    workflow_id: str
    instance_id: str


@dataclass(frozen=True, slots=True)
class WorkflowRef:
    """The workflow a node id names."""

    workflow_id: str


NodeRef = RunRef | WorkflowRef


def run_node_id(workflow_id: str, instance_id: str) -> str:
    """The global ``id`` of the run ``instance_id`` of ``workflow_id``."""
    raw = f"{workflow_id}/{instance_id}".encode()
    return RUN_ID_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_node_id(node_id: str) -> NodeRef:
    """What a global ``id`` names.

    Raises:
        BadUserInput: the id was not made by this API.
    """
    if not node_id.startswith(RUN_ID_PREFIX):
        return WorkflowRef(check_id(node_id, argument="id"))
    encoded = node_id[len(RUN_ID_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (ValueError, binascii.Error) as exc:
        raise BadUserInput(f"id {node_id!r} is not an id this API returned") from exc
    workflow_id, slash, instance_id = raw.partition("/")
    if not slash or run_node_id(workflow_id, instance_id) != node_id:
        raise BadUserInput(f"id {node_id!r} is not an id this API returned")
    return RunRef(
        check_id(workflow_id, argument="id (its workflow)"),
        check_id(instance_id, argument="id (its instance)"),
    )


async def find_node(context: GraphQLContext, node_id: str) -> models.Workflow | models.Run | None:
    """The workflow or run ``node_id`` names, or ``None`` when it does not exist."""
    return await _load(context, parse_node_id(node_id))


async def find_nodes(
    context: GraphQLContext, node_ids: Sequence[str]
) -> list[models.Workflow | models.Run | None]:
    """The nodes ``node_ids`` name, in order (``None`` for each unknown one), batched."""
    if len(node_ids) > MAX_NODES:
        raise BadUserInput(f"ids has {len(node_ids)} entries; the limit is {MAX_NODES}")
    refs = [parse_node_id(node_id) for node_id in node_ids]
    return list(await asyncio.gather(*(_load(context, ref) for ref in refs)))


async def _load(context: GraphQLContext, ref: NodeRef) -> models.Workflow | models.Run | None:
    if isinstance(ref, WorkflowRef):
        return await context.loaders.workflow.load(ref.workflow_id)
    return await context.loaders.run.load((ref.workflow_id, ref.instance_id))
