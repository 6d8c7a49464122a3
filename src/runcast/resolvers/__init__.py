"""Resolvers: thin functions from GraphQL arguments to one upstream call each."""

from __future__ import annotations

from runcast.resolvers._context import GraphQLContext, Loaders
from runcast.resolvers._node import find_node, find_nodes, run_node_id
from runcast.resolvers._operations import (
    delete_run,
    find_run,
    find_workflow,
    list_runs,
    list_workflows,
    pause_run,
    restart_run,
    resume_run,
    send_event,
    terminate_run,
    trigger_run,
    workflow_of,
)
from runcast.resolvers._pagination import RunSlice
from runcast.resolvers._validation import (
    check_event_type,
    check_id,
    check_payload_size,
)

__all__ = [
    "GraphQLContext",
    "Loaders",
    "RunSlice",
    "check_event_type",
    "check_id",
    "check_payload_size",
    "delete_run",
    "find_node",
    "find_nodes",
    "find_run",
    "find_workflow",
    "list_runs",
    "list_workflows",
    "pause_run",
    "restart_run",
    "resume_run",
    "run_node_id",
    "send_event",
    "terminate_run",
    "trigger_run",
    "workflow_of",
]
