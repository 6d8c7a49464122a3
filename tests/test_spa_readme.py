"""The README's single-page-app client setups (Apollo Client, urql, Relay), run as written."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp

from gateway_client import GraphQLClient
from node_support import NODE_DIR, NodeScript, node_or_fail
from runcast.app import create_app
from runcast.engine import Engine
from runcast.settings import Settings
from runcast.upstream.local import LocalUpstream

ROOT = Path(__file__).resolve().parent.parent
README_URL = "http://localhost:8000/graphql"
PACKAGES = {"apollo": "@apollo/client", "urql": "@urql/core", "relay": "relay-runtime"}


def readme_setup(name: str) -> str:
    """The JavaScript block that follows ``<!-- spa:NAME -->`` in the README."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- spa:{name} -->\n```js\n(.*?)```", text, re.S)
    assert found is not None, f"README has no spa:{name} block"
    return found.group(1)


def client_module(name: str, url: str) -> str:
    """The README setup pointed at ``url``, after the Node preamble, before its test driver."""
    setup = readme_setup(name)
    assert README_URL in setup
    setup = setup.replace(README_URL, url).replace(
        README_URL.replace("http", "ws"), url.replace("http", "ws")
    )
    driver = (NODE_DIR / "readme" / f"{name}.mjs").read_text(encoding="utf-8")
    return "import './readme/preamble.mjs';\n" + setup + "\n" + driver


async def compile_relay(tmp_path: Path) -> Path:
    """Run relay-compiler over .ci/node/readme/Relay.js against schema.graphql; the artifacts."""
    node = node_or_fail("relay-compiler")
    (tmp_path / "src").mkdir()
    (tmp_path / "__generated__").mkdir()
    shutil.copy(NODE_DIR / "readme" / "Relay.js", tmp_path / "src" / "Relay.js")
    config = {
        "src": "./src",
        "schema": str(ROOT / "schema.graphql"),
        "language": "javascript",
        "artifactDirectory": "./__generated__",
    }
    (tmp_path / "relay.config.json").write_text(json.dumps(config), encoding="utf-8")
    # relay-compiler writes ES modules (export default).
    (tmp_path / "package.json").write_text('{"type": "module"}', encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        node,
        str(NODE_DIR / "node_modules" / "relay-compiler" / "cli.js"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, output.decode()
    return tmp_path / "__generated__"


@pytest.mark.parametrize("name", ["apollo", "urql", "relay"])
async def test_readme_client_setup_keeps_a_listed_run_current(
    name: str,
    engine: Engine,
    tmp_path: Path,
    serve: Callable[[ASGIApp], AbstractAsyncContextManager[str]],
) -> None:
    """Each README setup lists runs, then a runStatus message updates that list: no refetch."""
    node = node_or_fail(PACKAGES[name])
    env = {"RUNCAST_WORKFLOW": "approval", "RUNCAST_INSTANCE": f"spa-{name}"}
    if name == "relay":
        env["RUNCAST_RELAY_ARTIFACTS"] = str(await compile_relay(tmp_path))
    app = create_app(Settings(poll_min_interval=0.05), upstream=LocalUpstream(engine))
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        client = GraphQLClient(http)
        await client.trigger("approval", {"orderId": "A"}, instance_id=f"spa-{name}")
        await client.wait_for_event_wait("approval", f"spa-{name}")
        process = await asyncio.create_subprocess_exec(
            node,
            "--input-type=module",
            "-e",
            client_module(name, f"{url}/graphql"),
            cwd=NODE_DIR,
            env={**_path_env(), **env},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        script = NodeScript(process)
        try:
            listed = await script.read()
            assert (await script.read()) == {"stage": "subscribed", "status": "PAUSED"}
            await client.data(
                f'mutation {{ sendEvent(workflowId: "approval", instanceId: "spa-{name}",'
                ' eventType: "approve", payload: {approved: true}) { id } }'
            )
            await script.send({"sent": True})
            updated = await script.read()
            await script.finish()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert listed["status"] == "PAUSED"
    assert updated["status"] == "COMPLETE"
    assert updated["requests"] == listed["requests"], "nothing was fetched after the list"
    if name == "apollo":
        assert updated["methods"][0] == "GET", "the persisted-queries link sends hashes by GET"


def _path_env() -> dict[str, str]:
    """The environment Node needs to start (PATH and HOME only, nothing of the test's)."""
    import os

    return {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
