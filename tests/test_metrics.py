"""/metrics after an operator's scenario: GraphQL operations, engine runs and steps, upstream."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from observability_support import (
    Serve,
    collected_records,
    observed_gateway,
    play,
    scenario_settings,
    subscribe,
)
from runcast.metrics import (
    ANONYMOUS_OPERATION,
    OTHER_OPERATION,
    Metrics,
    OperationNames,
    code_label,
)
from runcast.settings import Settings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text page, by name and label set."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series has no such sample."""
    return found.get((name, frozenset(labels.items())), 0.0)


def total(found: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and wanted <= ls)


async def test_metrics_count_what_the_scenario_did(
    serve: Serve, workflows_dir: Path, tmp_path: Path
) -> None:
    """Operation, run, step, attempt and upstream series hold the scenario's exact numbers."""
    async with observed_gateway(serve, scenario_settings(workflows_dir, tmp_path)) as scenario:
        await play(scenario)
        found = samples(await scenario.scrape())
    for (kind, name, code), count in scenario.operations.items():
        operation = name or ANONYMOUS_OPERATION
        labels = {"type": kind, "operation": operation, "code": code}
        assert value(found, "runcast_graphql_operations_total", **labels) == count, labels
    sent = sum(scenario.operations.values())
    assert total(found, "runcast_graphql_operations_total") == sent
    assert (
        value(
            found,
            "runcast_graphql_operations_total",
            type="query",
            operation="Deep",
            code="GRAPHQL_VALIDATION_FAILED",
        )
        == 1
    )
    assert total(found, "runcast_graphql_operation_duration_seconds_count") == sent

    engine = "runcast_engine_"
    for workflow, status in [
        ("three-steps", "complete"),
        ("flaky", "complete"),
        ("always-fails", "errored"),
        ("approval", "complete"),
    ]:
        assert value(found, engine + "runs_started_total", workflow=workflow) == 1
        assert value(found, engine + "runs_finished_total", workflow=workflow, status=status) == 1
    attempts = engine + "step_attempts_total"
    assert value(found, attempts, workflow="flaky", outcome="retry") == 2
    assert value(found, attempts, workflow="flaky", outcome="ok") == 1
    assert value(found, attempts, workflow="always-fails", outcome="retry") == 1
    assert value(found, attempts, workflow="always-fails", outcome="failed") == 1
    assert value(found, attempts, workflow="three-steps", outcome="ok") == 3
    assert value(found, engine + "step_duration_seconds_count", workflow="three-steps") == 3
    assert value(found, engine + "step_duration_seconds_count", workflow="approval") == 2
    assert value(found, engine + "commit_seconds_count") >= 10
    assert value(found, engine + "queue_depth") == 0
    assert value(found, engine + "running_slots") == 0

    upstream = "runcast_upstream_requests_total"
    refusals = 3  # the script's trigger, the unknown run's terminate, the wrong key
    assert value(found, upstream, upstream="embedded", outcome="client_error") == refusals
    # Every other operation made one upstream call, but Deep: a guard refused it first.
    assert value(found, upstream, upstream="embedded", outcome="ok") == sent - refusals - 1


def test_operation_names_are_bounded() -> None:
    """Past the limit, and for names that are not GraphQL names, operations share one label."""
    names = OperationNames(limit=2, known=("Trusted",))
    assert [names.label(n) for n in ["A", "B", "C", "A", "Trusted", None, "x-y"]] == [
        "A",
        "B",
        OTHER_OPERATION,
        "A",
        "Trusted",
        ANONYMOUS_OPERATION,
        OTHER_OPERATION,
    ]


def test_error_codes_are_bounded() -> None:
    """Codes that are not upper-case words collapse into OTHER; no error is ok."""
    assert [code_label(c) for c in [None, "NOT_FOUND", "weird code", 42]] == [
        "ok",
        "NOT_FOUND",
        "OTHER",
        "OTHER",
    ]


async def test_every_series_is_documented_in_the_readme(
    serve: Serve, workflows_dir: Path, tmp_path: Path
) -> None:
    """Each runcast_* family that /metrics serves has a row in README's metrics table."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    async with observed_gateway(serve, scenario_settings(workflows_dir, tmp_path)) as scenario:
        text = await scenario.scrape()
    # prometheus_client also writes each counter's and histogram's creation time as a family.
    families = {
        f.name for f in text_string_to_metric_families(text) if not f.name.endswith("_created")
    }
    assert "runcast_engine_runs_started" in families
    for family in sorted(families):
        kind = next(f.type for f in text_string_to_metric_families(text) if f.name == family)
        shown = f"{family}_total" if kind == "counter" else family
        assert f"| `{shown}` |" in readme, shown


async def test_metrics_off_leaves_out_operation_and_engine_series(
    serve: Serve, workflows_dir: Path, tmp_path: Path
) -> None:
    """RUNCAST_METRICS=false: no per-operation samples, no engine series; the live ones stay."""
    settings = scenario_settings(workflows_dir, tmp_path).replace(metrics=False)
    async with observed_gateway(serve, settings) as scenario:
        await scenario.send("query", "Workflows", "query Workflows { workflows { id } }")
        found = samples(await scenario.scrape())
    assert total(found, "runcast_graphql_operations_total") == 0
    assert not [name for name, _ in found if name.startswith("runcast_engine_")]
    assert any(name == "runcast_live_subscribers" for name, _ in found)


async def test_subscriptions_count_when_they_end_or_their_client_leaves(
    serve: Serve, workflows_dir: Path, tmp_path: Path
) -> None:
    """A completed runStatus and one whose client left each count once, without a duration."""
    async with observed_gateway(serve, scenario_settings(workflows_dir, tmp_path)) as scenario:
        await scenario.trigger("three-steps", "watched", {"orderId": "w"})
        await subscribe(scenario.url, "watched", until_complete=True)
        await subscribe(scenario.url, "missing-run", until_complete=True)
        await scenario.trigger("three-steps", "left")
        await subscribe(scenario.url, "left", until_complete=False)
        deadline = time.monotonic() + 10
        while True:
            found = samples(await scenario.scrape())
            labels = {"type": "subscription", "operation": "Watch"}
            if total(found, "runcast_graphql_operations_total", **labels) >= 3:
                break
            assert time.monotonic() < deadline, found
            await asyncio.sleep(0.05)
    operations = "runcast_graphql_operations_total"
    assert value(found, operations, code="ok", **labels) == 2
    assert value(found, operations, code="NOT_FOUND", **labels) == 1
    assert total(found, "runcast_graphql_operation_duration_seconds_count", **labels) == 0


async def test_an_operation_cut_at_its_time_limit_counts_as_cancelled(serve: Serve) -> None:
    """A query cancelled at RUNCAST_OPERATION_TIMEOUT counts once, with the code CANCELLED."""
    release = asyncio.Event()

    async def never_answers(request: Request) -> Response:
        await release.wait()
        return JSONResponse({"error": {"code": "gone", "message": "released"}}, status_code=503)

    upstream = Starlette(routes=[Route("/api/v1/workflows/{w}/runs/{i}", never_answers)])
    async with serve(upstream) as upstream_url:
        settings = Settings(upstream=f"{upstream_url}/api/v1", operation_timeout=0.2)
        async with observed_gateway(serve, settings) as scenario:
            body = await scenario.send(
                "query", "Slow", 'query Slow { run(workflowId: "w", instanceId: "i") { status } }'
            )
            found = samples(await scenario.scrape())
        release.set()
    assert body["errors"][0]["extensions"]["code"] == "OPERATION_TIMEOUT"
    labels = {"type": "query", "operation": "Slow"}
    assert value(found, "runcast_graphql_operations_total", code="CANCELLED", **labels) == 1


async def test_the_field_cost_guard_is_counted_and_logged_with_its_rule(
    serve: Serve, workflows_dir: Path, tmp_path: Path
) -> None:
    """A document over RUNCAST_MAX_QUERY_FIELDS: code QUERY_TOO_COMPLEX, one info line."""
    settings = scenario_settings(workflows_dir, tmp_path).replace(max_query_fields=3)
    with collected_records("runcast.graphql") as collector:
        async with observed_gateway(serve, settings) as scenario:
            query = "query Wide { workflows { id name kind url } }"
            await scenario.send("query", "Wide", query)
            found = samples(await scenario.scrape())
    labels = {"type": "query", "operation": "Wide", "code": "QUERY_TOO_COMPLEX"}
    assert value(found, "runcast_graphql_operations_total", **labels) == 1
    lines = [r.getMessage() for r in collector.records if r.levelno == logging.INFO]
    assert [line.split(":")[0] for line in lines] == ["query refused by guard max_fields"]


def test_repeated_observations_add_up_in_one_series() -> None:
    """Operations and upstream requests observed many times count in one series each."""
    metrics = Metrics()
    for _ in range(3):
        metrics.observe_operation("query", "Run", None, 0.002)
        metrics.observe_upstream_request("embedded", "ok")
    metrics.observe_operation("query", "Run", "BAD_USER_INPUT", 0.002)
    found = samples(metrics.render().decode())
    ok = frozenset({("type", "query"), ("operation", "Run"), ("code", code_label(None))})
    bad = frozenset({("type", "query"), ("operation", "Run"), ("code", "BAD_USER_INPUT")})
    assert found[("runcast_graphql_operations_total", ok)] == 3
    assert found[("runcast_graphql_operations_total", bad)] == 1
    duration = frozenset({("type", "query"), ("operation", "Run")})
    assert found[("runcast_graphql_operation_duration_seconds_count", duration)] == 4
    upstream = frozenset({("upstream", "embedded"), ("outcome", "ok")})
    assert found[("runcast_upstream_requests_total", upstream)] == 3
