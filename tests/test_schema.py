"""The exported SDL and the public GraphQL contract of design.md section 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from graphql import build_schema as parse_sdl
from graphql.type import GraphQLEnumType, GraphQLObjectType

from runcast.schema import build_schema, print_schema
from runcast.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

CONTRACT = """
scalar JSON
scalar DateTime
enum RunStatus {
  QUEUED RUNNING PAUSED WAITING WAITING_FOR_PAUSE ERRORED TERMINATED COMPLETE UNKNOWN
}
enum WorkflowKind { WORKFLOW SCRIPT }
type Workflow {
  id: ID!
  name: String!
  kind: WorkflowKind!
  url: String
  version: String
  runs(status: [RunStatus!], first: Int = 20, after: String): RunConnection!
  run(instanceId: ID!): Run
}
type Run {
  instanceId: ID!
  workflowId: ID!
  workflow: Workflow
  status: RunStatus!
  rawStatus: String!
  isTerminal: Boolean!
  input: JSON
  output: JSON
  error: String
  createdAt: DateTime
  startedAt: DateTime
  endedAt: DateTime
  steps: [Step!]
  workflowVersion: String
  wait: RunWait
}
type RunWait { reason: RunWaitReason! eventType: String until: DateTime }
enum RunWaitReason { SLEEP EVENT RETRY REQUESTED_PAUSE }
type Step { name: String! type: String! status: String! attempts: Int! output: JSON
  error: String startedAt: DateTime endedAt: DateTime }
type RunConnection { edges: [RunEdge!]! pageInfo: PageInfo! }
type RunEdge { cursor: String! node: Run! }
type PageInfo { hasNextPage: Boolean! endCursor: String }
type RunStatusUpdate {
  run: Run!
  status: RunStatus!
  previousStatus: RunStatus
  observedAt: DateTime!
}
type Query {
  workflows: [Workflow!]!
  workflow(id: ID!): Workflow
  run(workflowId: ID!, instanceId: ID!): Run
}
type Mutation {
  triggerRun(workflowId: ID!, input: JSON, instanceId: ID): Run!
  sendEvent(workflowId: ID!, instanceId: ID!, eventType: String!, payload: JSON): Run!
  terminateRun(workflowId: ID!, instanceId: ID!): Run!
  pauseRun(workflowId: ID!, instanceId: ID!): Run!
  resumeRun(workflowId: ID!, instanceId: ID!): Run!
  restartRun(workflowId: ID!, instanceId: ID!, fromStep: String): Run!
  deleteRun(workflowId: ID!, instanceId: ID!): Boolean!
}
type Subscription {
  runStatus(workflowId: ID!, instanceId: ID!): RunStatusUpdate!
  workflowRuns(workflowId: ID!, status: [RunStatus!]): RunStatusUpdate!
}
"""


def test_schema_graphql_file_matches_the_code() -> None:
    """schema.graphql at the repository root is exactly the SDL the code exports."""
    exported = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert exported == print_schema() + "\n", (
        "schema.graphql is stale: regenerate it with `runcast schema > schema.graphql`"
    )


def test_every_contract_type_field_and_argument_is_kept() -> None:
    """Every type, field, argument, default and enum value of the contract exists unchanged."""
    contract = parse_sdl(CONTRACT)
    ours = parse_sdl(print_schema())
    for name, expected in contract.type_map.items():
        if name.startswith("__"):
            continue
        actual = ours.type_map.get(name)
        assert actual is not None, f"type {name} is missing"
        if isinstance(expected, GraphQLEnumType):
            assert isinstance(actual, GraphQLEnumType)
            assert list(actual.values) == list(expected.values), name
        if isinstance(expected, GraphQLObjectType):
            assert isinstance(actual, GraphQLObjectType)
            for field_name, field in expected.fields.items():
                ours_field = actual.fields.get(field_name)
                assert ours_field is not None, f"{name}.{field_name} is missing"
                assert str(ours_field.type) == str(field.type), f"{name}.{field_name}"
                for arg_name, arg in field.args.items():
                    ours_arg = ours_field.args.get(arg_name)
                    assert ours_arg is not None, f"{name}.{field_name}({arg_name}) is missing"
                    assert str(ours_arg.type) == str(arg.type), f"{name}.{field_name}({arg_name})"
                    assert ours_arg.default_value == arg.default_value, (
                        f"{name}.{field_name}({arg_name}) default"
                    )
                assert set(ours_field.args) == set(field.args), f"{name}.{field_name} arguments"


def test_guards_do_not_change_the_sdl() -> None:
    """A schema built with other guard settings prints the same SDL."""
    strict = build_schema(Settings(max_query_depth=3, introspection=False, max_aliases=1))
    assert strict.as_str() == print_schema()


def test_runcast_schema_command_prints_the_sdl() -> None:
    """`runcast schema` prints the same SDL as schema.graphql."""
    printed = subprocess.run(
        [sys.executable, "-m", "runcast.cli", "schema"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert printed == (ROOT / "schema.graphql").read_text(encoding="utf-8")
