"""Workflow files as a user meets them: the JSON Schema, `runcast workflows check`, `--strict`,
one-line problems, the empty-folder warning, and reload without a restart."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml

from conftest import free_port
from engine_support import wait_for_status
from process_support import start_runcast
from runcast.cli import main
from runcast.engine import Engine, demo_workflows_dir, load_workflows
from runcast.engine.format import json_schema, schema_text, shipped_json_schema
from runcast.engine.workflow_folder import WorkflowFolderError, plan_reload
from runcast.models import RunStatus
from runcast.settings import Settings
from runcast.upstream.factory import open_upstream
from runcast.upstream.local import LocalUpstream

TEST_WORKFLOWS = Path(__file__).parent / "workflows"
BAD = """
id: broken
nodes:
  - step: fetch-price
    action: {return: {amount: input.amount}}
    timeout: 10
  - step: total
    action: {return: fetch-price.amount}
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_the_shipped_schema_is_generated_from_the_format() -> None:
    """The JSON Schema in the package is exactly the one generated from the pydantic models."""
    assert shipped_json_schema() == schema_text()
    assert json.loads(shipped_json_schema())["$schema"].endswith("2020-12/schema")


def test_workflows_schema_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    """`runcast workflows schema` prints the shipped JSON Schema."""
    assert main(["workflows", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema()


@pytest.mark.parametrize(
    "path",
    sorted(demo_workflows_dir().glob("*.yaml")) + sorted(TEST_WORKFLOWS.glob("*.yaml")),
    ids=lambda path: path.name,
)
def test_the_schema_accepts_every_shipped_workflow(path: Path) -> None:
    """Editors using the schema accept the demo and test workflows."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    jsonschema.validate(document, json_schema())


@pytest.mark.parametrize(
    "document",
    [
        {"id": "x", "nodes": [{"sleep": "s", "duration": 10}]},
        {"id": "x", "nodes": [{"step": "a", "action": {"retrun": "input"}}]},
        {"id": "x", "nodes": [{"step": "a", "action": {"return": "input"}, "retries": {"n": 1}}]},
        {"id": "bad id", "nodes": [{"sleep": "s", "duration": "1s"}]},
    ],
)
def test_the_schema_refuses_what_the_loader_refuses(document: dict[str, object]) -> None:
    """Editors flag a plain-number duration, an unknown action or key, and a bad id."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, json_schema())


def test_check_passes_a_good_folder(capsys: pytest.CaptureFixture[str]) -> None:
    """`runcast workflows check DIR` exits 0 on a folder without problems."""
    assert main(["workflows", "check", str(demo_workflows_dir())]) == 0
    assert "6 workflows, no problems" in capsys.readouterr().out


def test_check_prints_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each problem is one line `file: node 'name': what is wrong`; the exit code is 1."""
    bad = write(tmp_path, "broken.yaml", BAD)
    yaml_error = write(tmp_path, "typo.yaml", "id: [unclosed\nnodes: []\n")
    assert main(["workflows", "check", str(tmp_path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"{bad}: node 'fetch-price': bad 'timeout': 10 has no unit: write 10s"
        " (or 500ms, 30s, 5m, 2h, 1d)",
        f"{bad}: node 'total': 'return': 'fetch-price.amount' is not a valid JMESPath"
        " expression: Unknown token '-' at column 6; a name with '-' or a leading digit is"
        ' quoted: "fetch-price"',
        f"{yaml_error}: not valid YAML at line 2, column 6: expected ',' or ']', but got ':'",
    ]


def test_check_refuses_an_empty_or_missing_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty folder is a problem for `check`, and so is a folder that does not exist."""
    assert main(["workflows", "check", str(tmp_path)]) == 1
    expected = f"{tmp_path}: no workflow files (*.yaml, *.yml, *.json) in this folder\n"
    assert capsys.readouterr().err == expected
    assert main(["workflows", "check", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err == f"{tmp_path / 'nope'}: is not a folder\n"


@pytest.mark.parametrize("command", ["serve", "engine"])
def test_strict_refuses_to_start_with_a_bad_file(
    tmp_path: Path,
    command: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`--strict` prints every problem and exits 2 instead of starting without the bad file."""
    folder = tmp_path / "workflows"
    write(folder, "broken.yaml", BAD)
    write(folder, "good.yaml", "id: good\nnodes: [{sleep: s, duration: 1s}]\n")
    args = [command, "--strict", "--workflows", str(folder), "--db", str(tmp_path / "r.db")]
    assert main([*args, "--port", str(free_port())]) == 2
    captured = capsys.readouterr().err + "\n".join(r.getMessage() for r in caplog.records)
    assert "--strict refuses to start" in captured
    assert f"{folder / 'broken.yaml'}: node 'fetch-price': bad 'timeout'" in captured


async def test_serve_warns_about_an_empty_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An empty workflows folder is one warning line; with strict it is an error."""
    folder = tmp_path / "empty"
    folder.mkdir()
    settings = Settings(workflows_dir=folder, db_path=tmp_path / "r.db", workflows_reload=False)
    with caplog.at_level(logging.WARNING, logger="runcast.app"):
        async with open_upstream(settings) as upstream:
            assert isinstance(upstream, LocalUpstream)
            assert upstream.engine.list_workflows() == []
    assert [record.getMessage() for record in caplog.records] == [
        f"{folder}: no workflow files (*.yaml, *.yml, *.json) in this folder"
    ]
    with pytest.raises(WorkflowFolderError, match="1 problem"):
        async with open_upstream(settings.replace(workflows_strict=True)):
            pass


async def poll(condition: Callable[[], bool], what: str, within: float = 15.0) -> None:
    """Wait until ``condition()`` holds (the watcher reacts within a second or so)."""
    try:
        async with asyncio.timeout(within):
            while True:
                if condition():
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not reached in {within}s: {what}") from None


WAITING = """
id: approve
nodes:
  - wait_for_event: approval
    event_type: go
  - step: finish
    action: {return: "`version-one`"}
"""


async def test_changes_to_the_folder_are_reloaded_without_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Added, changed and removed files take effect; a run in flight keeps its definition."""
    folder = tmp_path / "workflows"
    write(folder, "approve.yaml", WAITING)
    settings = Settings(workflows_dir=folder, db_path=tmp_path / "r.db")
    async with open_upstream(settings) as upstream:
        assert isinstance(upstream, LocalUpstream)
        engine: Engine = upstream.engine
        await engine.trigger("approve", instance_id="old")

        write(folder, "extra.yaml", "id: extra\nnodes: [{step: a, action: {return: '`1`'}}]\n")
        await poll(lambda: "extra" in engine.definitions, "the added file is loaded")

        write(folder, "approve.yaml", WAITING.replace("version-one", "version-two"))
        await poll(
            lambda: "version-two" in repr(engine.definitions["approve"].nodes),
            "the changed file is loaded",
        )
        await engine.trigger("approve", instance_id="new")
        for instance in ("old", "new"):
            await engine.send_event("approve", instance, event_type="go")
        old = await wait_for_status(engine, "approve", "old", RunStatus.COMPLETE)
        new = await wait_for_status(engine, "approve", "new", RunStatus.COMPLETE)
        assert (old.output, new.output) == ("version-one", "version-two")

        write(folder, "approve.yaml", "id: approve\nnodes: oops\n")
        (folder / "extra.yaml").unlink()
        await poll(lambda: "extra" not in engine.definitions, "the removed file is unloaded")
        assert "approve" in engine.definitions  # a broken file keeps its last good definition
        await poll(
            lambda: any("approve.yaml: bad 'nodes'" in r.getMessage() for r in caplog.records),
            "the broken file is reported",
        )


@pytest.mark.parametrize(
    ("text", "node", "message"),
    [
        pytest.param(
            "id: x\nschedule: every minute\nnodes: [{sleep: s, duration: 1s}]",
            None,
            "bad 'schedule': 'every minute' is not a cron expression (e.g. '*/5 * * * *')",
            id="bad-cron",
        ),
        pytest.param(
            "id: x\nschedule: '* * * * *'\nschedule_input: 3\ninput_schema: {type: object}\n"
            "nodes: [{sleep: s, duration: 1s}]",
            None,
            "bad 'schedule_input': $: 3 is not of type 'object'",
            id="schedule-input-against-schema",
        ),
        pytest.param(
            "id: x\ninput_schema: {type: 7}\nnodes: [{sleep: s, duration: 1s}]",
            None,
            "bad 'input_schema': 7 is not valid under any of the given schemas at $.type",
            id="bad-input-schema",
        ),
        pytest.param(
            "id: x\nsecrets: {T: env.TOKEN}\nnodes: [{step: a, action: {return: secrets.T}}]",
            "a",
            "'return': 'secrets.T' reads secrets, which only an http step's url, headers,"
            " query and json may",
            id="secret-in-return",
        ),
        pytest.param(
            "id: x\nsecrets: {T: env.TOKEN}\n"
            "nodes: [{step: a, action: {http: {url: 'https://x/${secrets.U}'}}}]",
            "a",
            "'http.url': unknown secret 'U' (declared: T)",
            id="undeclared-secret",
        ),
        pytest.param(
            "id: x\nsecrets: {T: TOKEN}\nnodes: [{sleep: s, duration: 1s}]",
            None,
            "bad 'secrets.T': 'TOKEN' is invalid: write env.VARIABLE_NAME",
            id="secret-not-env",
        ),
        pytest.param(
            "id: x\nnodes: [{sleep: s, duration: 1s, when: 'nobody.x'}]",
            "s",
            "'when': 'nobody.x' refers to unknown node 'nobody'",
            id="when-reference",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {http: {url: 'https://x', retry_on: [6xx]}}}]",
            "a",
            "bad 'http.retry_on[0]': '6xx' is not a status code (100-599) or one of: 4xx, 5xx,"
            " connection",
            id="retry-on",
        ),
    ],
)
def test_problems_of_the_newer_keys(
    tmp_path: Path, text: str, node: str | None, message: str
) -> None:
    """Schedules, input schemas, secrets, conditions and retry_on are checked at load time."""
    write(tmp_path, "wf.yaml", text)
    result = load_workflows(tmp_path)
    assert result.definitions == {}
    assert [(problem.node, problem.message) for problem in result.problems] == [(node, message)]


def start_engine(folder: Path, db: Path, port: int) -> subprocess.Popen[str]:
    """`runcast engine` on ``folder`` in a child process, with file watching off."""
    args = ["engine", "--workflows", str(folder), "--db", str(db), "--port", str(port)]
    no_watching = {"RUNCAST_WORKFLOWS_RELOAD": "false"}
    return start_runcast(*args, stdout=subprocess.DEVNULL, env=no_watching)


async def test_sighup_reloads_the_folder_of_runcast_engine(tmp_path: Path) -> None:
    """With watching off, SIGHUP to `runcast engine` loads an added file without a restart."""
    folder = tmp_path / "flows"
    write(folder, "one.yaml", "id: one\nnodes: [{sleep: s, duration: 1s}]\n")
    port = free_port()
    process = start_engine(folder, tmp_path / "e.db", port)

    async def ids(client: httpx.AsyncClient) -> list[str]:
        response = await client.get("/api/v1/workflows")
        return [workflow["id"] for workflow in response.json()["data"]]

    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            async with asyncio.timeout(20):
                while True:
                    assert process.poll() is None, process.communicate()
                    try:
                        assert await ids(client) == ["one"]
                        break
                    except httpx.ConnectError:
                        await asyncio.sleep(0.05)
            write(folder, "two.yaml", "id: two\nnodes: [{sleep: s, duration: 1s}]\n")
            await asyncio.sleep(0.5)
            assert await ids(client) == ["one"]  # not watching: nothing changes by itself
            process.send_signal(signal.SIGHUP)
            async with asyncio.timeout(20):
                while True:
                    if await ids(client) == ["one", "two"]:
                        break
                    await asyncio.sleep(0.05)
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.to_thread(process.communicate, timeout=20)


def test_a_reload_of_a_folder_that_is_gone_keeps_the_workflows(tmp_path: Path) -> None:
    """If the watched folder disappears, the loaded workflows stay and one line says so."""
    folder = tmp_path / "flows"
    write(folder, "one.yaml", "id: one\nnodes: [{sleep: s, duration: 1s}]\n")
    current = load_workflows(folder).definitions
    shutil.rmtree(folder)
    kept, changes, lines = plan_reload(current, folder)
    assert (kept, changes) == (current, [])
    assert lines == [f"{folder}: is not a folder; the loaded workflows stay"]
