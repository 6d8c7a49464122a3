"""README is exactly true: every YAML and GraphQL example in it runs against a real server.

YAML examples say how to run them in `# run: input JSON -> STATUS RESULT` lines (RESULT is the
output, or the error as a JSON string); a GraphQL example that shows an error ends with
`# answers CODE: part of the message`. A YAML block starting `# mistakes` is followed by the
exact lines `runcast workflows check` prints for it.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conftest import running_server
from live_support import GraphQLSocket
from runcast.app import create_app
from runcast.engine import demo_workflows_dir, load_workflows
from runcast.engine.workflow_folder import check_folder
from runcast.settings import Settings

README = Path(__file__).parent.parent / "README.md"
PAYMENTS = "https://payments.example.com"
TOKEN = "pay-7Hq2-readme-token"
RUN_LINE = re.compile(r"^# run: input (.+?) -> ([A-Z]+) (.+)$", re.M)
ANSWERS = re.compile(r"^# answers ([A-Z_]+): (.+)$", re.M)


@dataclass(frozen=True)
class Block:
    """One fenced code block of README."""

    language: str
    text: str


def blocks(language: str) -> list[Block]:
    """README's code blocks in ``language``, in order."""
    found = re.findall(r"^```(\w+)\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)
    return [Block(lang, text) for lang, text in found if lang == language]


def workflow_blocks() -> list[Block]:
    """README's YAML workflow examples that are meant to load (not the mistakes example)."""
    return [block for block in blocks("yaml") if not block.text.startswith("# mistakes")]


def payments(hits: Counter[str]) -> Starlette:
    """The payment service README's http example talks to, checking its bearer token."""

    def authorized(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {TOKEN}"

    async def price(request: Request) -> Response:
        hits["price"] += 1
        if not authorized(request) or request.query_params.get("currency") != "EUR":
            return JSONResponse({"error": "no"}, status_code=401)
        return JSONResponse({"amount": 12.5, "currency": "EUR"})

    async def charge(request: Request) -> Response:
        hits["charge"] += 1
        body = await request.json()
        if not authorized(request) or body["amount"] != 12.5 or body["note"] != "web shop":
            return JSONResponse({"error": "no"}, status_code=400)
        return JSONResponse({"id": f"ch_{body['orderId']}"}, status_code=201)

    return Starlette(
        routes=[
            Route("/prices/{order}", price),
            Route("/charges", charge, methods=["POST"]),
        ]
    )


@pytest.fixture
async def server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, Counter[str]]]:
    """A real gateway on the demo workflows and README's, with the services they call."""
    folder = tmp_path / "workflows"
    shutil.copytree(demo_workflows_dir(), folder)
    hits: Counter[str] = Counter()
    async with running_server(payments(hits)) as payments_url:
        for block in workflow_blocks():
            document = yaml.safe_load(block.text)
            if (demo_workflows_dir() / f"{document['id']}.yaml").exists():
                continue  # README shows a demo file: the demo copy is loaded
            text = block.text.replace(PAYMENTS, payments_url)
            (folder / f"{document['id']}.yaml").write_text(text, encoding="utf-8")
        (tmp_path / "refunds.py").write_text(blocks("python")[0].text, encoding="utf-8")
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setenv("PAYMENTS_TOKEN", TOKEN)
        settings = Settings(
            workflows_dir=folder, db_path=tmp_path / "runs.db", workflows_strict=True
        )
        async with running_server(create_app(settings)) as url:
            yield url, hits


async def graphql(client: httpx.AsyncClient, query: str, variables: Any = None) -> Any:
    """POST one operation; the whole answer."""
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}})
    assert response.status_code == 200, response.text
    return response.json()


async def run_state(client: httpx.AsyncClient, workflow: str, instance: str) -> dict[str, Any]:
    """A run's status, output, error and steps."""
    answer = await graphql(
        client,
        "query($w: ID!, $i: ID!) { run(workflowId: $w, instanceId: $i)"
        " { status output error steps { name status } } }",
        {"w": workflow, "i": instance},
    )
    assert "errors" not in answer, answer
    run: dict[str, Any] = answer["data"]["run"]
    return run


async def until(client: httpx.AsyncClient, workflow: str, instance: str, check: Any) -> Any:
    """Poll the run until ``check(run)``; the run."""
    run: dict[str, Any] = {}
    try:
        async with asyncio.timeout(20):
            while True:
                run = await run_state(client, workflow, instance)
                if check(run):
                    return run
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{workflow}/{instance} never got there: {run}") from None


def test_readme_order_approval_is_the_demo_file() -> None:
    """The YAML README shows as the demo `order-approval` is exactly the shipped file."""
    shown = next(b for b in workflow_blocks() if "id: order-approval" in b.text)
    assert yaml.safe_load(shown.text) == yaml.safe_load(
        (demo_workflows_dir() / "order-approval.yaml").read_text(encoding="utf-8")
    )


def test_readme_mistakes_example_prints_what_readme_says(tmp_path: Path) -> None:
    """`runcast workflows check` prints exactly the lines README shows for its broken file."""
    mistakes = next(b for b in blocks("yaml") if b.text.startswith("# mistakes"))
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "broken.yaml").write_text(mistakes.text, encoding="utf-8")
    _, lines = check_folder(folder)
    text_blocks = blocks("text")
    shown = next(b for b in text_blocks if "broken.yaml" in b.text).text.splitlines()
    assert [line.replace(str(folder), "workflows") for line in lines] == shown


async def test_every_readme_workflow_runs_as_its_run_lines_say(
    server: tuple[str, Counter[str]],
) -> None:
    """Each README workflow, triggered as its `# run:` lines say, ends as they say."""
    url, hits = server
    expectations = 0
    async with httpx.AsyncClient(base_url=url) as client:
        for block in workflow_blocks():
            workflow = yaml.safe_load(block.text)["id"]
            for number, (given, status, result) in enumerate(RUN_LINE.findall(block.text)):
                instance = f"readme-{number}"
                answer = await graphql(
                    client,
                    "mutation($w: ID!, $in: JSON, $i: ID) {"
                    " triggerRun(workflowId: $w, input: $in, instanceId: $i) { status } }",
                    {"w": workflow, "in": json.loads(given), "i": instance},
                )
                assert "errors" not in answer, answer
                run = await until(
                    client, workflow, instance, lambda r: r["status"] in {"COMPLETE", "ERRORED"}
                )
                got = run["output"] if status == "COMPLETE" else run["error"]
                assert (run["status"], got) == (status, json.loads(result)), block.text
                expectations += 1
    assert expectations >= 5
    assert hits == Counter({"price": 1, "charge": 1})


async def test_every_readme_graphql_example_runs_in_order(
    server: tuple[str, Counter[str]],
) -> None:
    """The tour and every GraphQL example answer as README says, on a real server, in order."""
    url, _ = server
    subscriptions: list[asyncio.Task[list[dict[str, Any]]]] = []
    async with httpx.AsyncClient(base_url=url) as client:
        for block in blocks("graphql"):
            if block.text.lstrip().startswith("subscription"):
                subscriptions.append(asyncio.create_task(subscribe(url, block.text)))
                await asyncio.sleep(0.3)  # subscribed before the next example acts
                continue
            await check_answer(client, block.text)
            if "order-42" in block.text and "triggerRun" in block.text:
                await paused_twice(client, "order-42")
        updates = await asyncio.wait_for(asyncio.gather(*subscriptions), timeout=30)
        order_42 = await until(client, "order-approval", "order-42", lambda r: r["output"])
        stated = re.search(r"`COMPLETE`, with output `(\{.*?\})`", README.read_text())
        assert stated is not None
        assert (order_42["status"], order_42["output"]) == ("COMPLETE", json.loads(stated[1]))
        metrics = (await client.get("/metrics")).text
    workflow_runs, run_status = updates
    seen = [(u["run"]["instanceId"], u["status"]) for u in workflow_runs]
    assert ("order-43", "COMPLETE") in seen
    assert ("order-43", "PAUSED") in seen
    assert run_status[-1]["status"] == "COMPLETE"
    polls = [line for line in metrics.splitlines() if line.startswith("runcast_live_polls_total{")]
    # README: on the embedded engine, one first read per watch (a run, a listing), no polling.
    assert sum(float(line.split()[-1]) for line in polls) == len(subscriptions), polls


async def check_answer(client: httpx.AsyncClient, text: str) -> None:
    """Run one query or mutation: no errors, or the one README says after `# answers`."""
    answer = await graphql(client, text)
    expected = ANSWERS.search(text)
    if expected is None:
        assert "errors" not in answer, (text, answer)
        return
    (error,) = answer["errors"]
    assert error["extensions"]["code"] == expected[1]
    assert expected[2] in error["message"]


async def paused_twice(client: httpx.AsyncClient, instance: str) -> None:
    """README: PAUSED in the cool-off, then PAUSED at the approval wait, as `steps` shows."""
    for node in ("cool_off", "approval"):
        await until(
            client,
            "order-approval",
            instance,
            lambda r, node=node: (
                r["status"] == "PAUSED" and r["steps"][-1] == {"name": node, "status": "paused"}
            ),
        )


async def subscribe(url: str, text: str) -> list[dict[str, Any]]:
    """Updates of one subscription until it completes (workflowRuns: until order-43 ends)."""
    field = "workflowRuns" if "workflowRuns" in text else "runStatus"
    received: list[dict[str, Any]] = []
    async with GraphQLSocket.connect(url) as socket:
        await socket.subscribe("1", text, {})
        while True:
            message = await socket.receive()
            if message["type"] == "complete":
                return received
            assert message["type"] == "next", message
            assert "errors" not in message["payload"], message
            update = message["payload"]["data"][field]
            received.append(update)
            ended = update["status"] == "COMPLETE" and update["run"].get("instanceId") == "order-43"
            if field == "workflowRuns" and ended:
                await socket.complete("1")
                return received


def test_every_yaml_example_loads_and_matches_the_editor_schema(tmp_path: Path) -> None:
    """README's workflow examples load without problems (and together, with unique ids)."""
    for number, block in enumerate(workflow_blocks()):
        (tmp_path / f"example-{number}.yaml").write_text(block.text, encoding="utf-8")
    result = load_workflows(tmp_path)
    assert result.problems == []
    assert len(result.definitions) == len(workflow_blocks())
    assert replace(result.definitions["order-approval"], source=None) == replace(
        load_workflows(None).definitions["order-approval"], source=None
    )
