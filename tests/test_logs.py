"""Log lines an operator acts on: one per event at info, context fields, nothing secret."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import httpx
import pytest

from observability_support import (
    API_KEY,
    PAYLOAD_MARK,
    WRONG_KEY,
    Serve,
    collected_records,
    observed_gateway,
    play,
    scenario_settings,
)
from runcast.errors import BadUserInput, RateLimited
from runcast.logs import JsonFormatter, bound_fields, configure_logging, parse_log_format
from runcast.upstream import RequestBudget
from runcast.upstream._http import UpstreamHttpClient

TEXT = logging.Formatter("%(levelname)s %(name)s: %(message)s")
JSON_LINES = JsonFormatter()
FINISHED = "run three-1 of workflow three-steps finished"


def info_lines(records: list[logging.LogRecord]) -> list[str]:
    """The messages of the records at info."""
    return [r.getMessage() for r in records if r.levelno == logging.INFO]


async def test_scenario_logs_each_event_once_and_nothing_secret(
    serve: Serve, workflows_dir: Path, tmp_path: Path
) -> None:
    """Triggers, step failures, finishes and guard refusals are info lines; no secret anywhere."""
    with collected_records("runcast", "uvicorn") as collector:
        async with observed_gateway(serve, scenario_settings(workflows_dir, tmp_path)) as scenario:
            await play(scenario)
    records = collector.records
    lines = info_lines(records)
    for record in records:
        shown = TEXT.format(record) + JSON_LINES.format(record)
        assert API_KEY not in shown, shown
        assert WRONG_KEY not in shown, shown
        if record.levelno >= logging.INFO:
            assert PAYLOAD_MARK not in shown, shown
        if record.levelno <= logging.WARNING:
            assert record.exc_info is None, shown
            assert "Traceback" not in shown, shown
    assert sum("triggered" in line for line in lines) == 4
    assert sum("of run flaky-1 (workflow flaky) failed on attempt" in line for line in lines) == 2
    assert any("failed on attempt 1, retrying in 0.1s: temporary failure" in ln for ln in lines)
    assert any("failed on attempt 2, no retries left: always fails" in line for line in lines)
    for run, status in [("three-1", "complete"), ("fails-1", "errored"), ("flaky-1", "complete")]:
        assert sum(
            f"run {run} of workflow" in ln and f"finished: {status} in" in ln for ln in lines
        )
    assert any(line.startswith("query refused by guard max_depth") for line in lines)


async def test_json_lines_carry_run_workflow_and_operation(
    serve: Serve, workflows_dir: Path, tmp_path: Path
) -> None:
    """In JSON, engine lines name the run and workflow, GraphQL lines the operation."""
    with collected_records("runcast") as collector:
        async with observed_gateway(serve, scenario_settings(workflows_dir, tmp_path)) as scenario:
            await play(scenario)
    entries = [json.loads(JSON_LINES.format(r)) for r in collector.records]
    finished = next(
        e
        for e in entries
        if e["message"].startswith("run three-1 of workflow three-steps finished")
    )
    assert (finished["run_id"], finished["workflow_id"]) == ("three-1", "three-steps")
    assert (finished["status"], finished["level"]) == ("complete", "info")
    triggered = next(e for e in entries if "triggered" in e["message"])
    assert (triggered["operation"], triggered["logger"]) == ("Trigger", "runcast.graphql")
    refused = next(e for e in entries if e["message"].startswith("query refused"))
    assert (refused["guard"], refused["operation"]) == ("max_depth", "Deep")


async def test_a_429_is_one_info_line_with_its_retry_after() -> None:
    """An upstream 429 is logged at info with the Retry-After it asked for."""

    def limited(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "slow down"})

    client = UpstreamHttpClient(
        "awaitstep", "http://upstream.test", transport=httpx.MockTransport(limited)
    )
    with collected_records("runcast") as collector, pytest.raises(RateLimited):
        await client.request("GET", "/api/v1/workflows")
    await client.aclose()
    assert info_lines(collector.records) == [
        "upstream awaitstep answered 429 to GET /api/v1/workflows; retry after 7s"
    ]


async def test_an_exhausted_budget_is_logged_once_per_shortage() -> None:
    """Callers that wait for the budget make one info line, not one per request."""
    budget = RequestBudget(200.0, burst=1.0)
    with collected_records("runcast.live") as collector:
        await asyncio.gather(*(budget.acquire() for _ in range(5)))
    assert info_lines(collector.records) == [
        "request budget exhausted (200 requests/s): polls wait their turn"
    ]


def test_configure_logging_writes_json_lines_with_bound_fields() -> None:
    """RUNCAST_LOG_FORMAT=json: one object per line, with the fields bound for the block."""
    stream = io.StringIO()
    handler = configure_logging(format="json", stream=stream)
    try:
        with bound_fields(operation="Trigger", run_id="r-1"):
            logging.getLogger("runcast.test").info("hello %s", "there")
        logging.getLogger("runcast.test").debug("not shown at info")
    finally:
        logging.getLogger("runcast").removeHandler(handler)
        logging.getLogger("uvicorn").removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert (entry["message"], entry["level"]) == ("hello there", "info")
    assert (entry["operation"], entry["run_id"]) == ("Trigger", "r-1")


def test_a_bad_log_format_is_refused() -> None:
    """An unknown RUNCAST_LOG_FORMAT is a setting error naming the choices."""
    with pytest.raises(BadUserInput, match="'text' or 'json'"):
        parse_log_format("xml")
