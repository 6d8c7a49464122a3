"""A full disk: the engine refuses new work while commits fail and resumes by itself after.

A real ``runcast engine`` process runs on a real 4 MiB tmpfs; a filler file takes
the last free byte while runs sleep, and is removed again. Nothing accepted is lost,
no run stays stuck, and the log says each change of state once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import free_port
from gateway_client import GraphQLClient, gateway
from runcast.engine import Engine, load_workflows
from runcast.upstream.local import LocalUpstream

NAPPER = """
id: napper
nodes:
  - step: a
    action: {return: input}
  - sleep: nap
    duration: 1500ms
  - step: b
    action: {return: input}
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted in ``tmp_path`` (the machine runs the suite as root)."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert mounted.returncode == 0, f"cannot mount a small tmpfs: {mounted.stderr.strip()}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> Path:
    """Write a file until the filesystem is full; returns it."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        with contextlib.suppress(OSError):
            while True:
                out.write(chunk)
        for size in (4096, 512, 1):  # the last partial blocks too
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * size)
    assert os.statvfs(folder).f_bavail == 0
    return filler


def _poll(condition: Callable[[], bool], what: str, *, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {within}s"
        time.sleep(0.05)


def test_a_full_disk_refuses_new_runs_then_resumes_every_run(
    tmp_path: Path, small_disk: Path
) -> None:
    """While the disk is full triggers get 503; after it frees, all runs complete unaided."""
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "napper.yaml").write_text(NAPPER)
    port, log = free_port(), tmp_path / "engine.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCAST_")}
    command = [sys.executable, "-m", "runcast.cli", "engine", "--port", str(port)]
    command += ["--workflows", str(tmp_path / "workflows"), "--db", str(small_disk / "e.db")]
    with log.open("wb") as err:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)
    url = f"http://127.0.0.1:{port}/api/v1/workflows/napper/runs"
    accepted: list[str] = []
    try:
        with httpx.Client(timeout=2) as client:
            _poll(lambda: _answers(client, url), "runcast engine answers")
            for number in range(20):
                accepted.append(_trigger(client, url, f"before{number}"))
            filler = _fill(small_disk)
            refused = _trigger_until_refused(client, url, accepted)
            assert refused["error"]["code"] == "STORAGE_UNAVAILABLE"
            time.sleep(2)  # the sleeping runs' wake time passes while the disk is full
            filler.unlink()
            _poll(lambda: _try(client, url, "after", accepted), "triggers are accepted again")
            for instance_id in accepted:
                _poll(_completes(client, url, instance_id), f"{instance_id} completes")
    finally:
        process.terminate()
        process.wait(timeout=30)
    text = log.read_text()
    assert text.count("commits fail") == 1, text[-3000:]
    assert text.count("commits succeed again") == 1, text[-3000:]
    assert "Traceback" not in text


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.TransportError:
        return False


def _trigger(client: httpx.Client, url: str, instance_id: str) -> str:
    response = client.post(url, json={"instanceId": instance_id, "input": instance_id})
    assert response.status_code == 201, response.text
    return instance_id


def _trigger_until_refused(client: httpx.Client, url: str, accepted: list[str]) -> dict[str, Any]:
    """Trigger runs until one is refused; accepted (or still pending) ones are remembered."""
    for number in range(2000):
        instance_id = f"during{number}"
        try:
            response = client.post(url, json={"instanceId": instance_id, "input": number})
        except httpx.TimeoutException:
            accepted.append(instance_id)  # waiting for its commit: it must not be lost
            continue
        if response.status_code == 503:
            assert response.headers["retry-after"] == "2"
            body: dict[str, Any] = response.json()
            return body
        assert response.status_code == 201, response.text
        accepted.append(instance_id)
    pytest.fail("no trigger was refused while the disk was full")


_tries = iter(range(1_000_000))


def _try(client: httpx.Client, url: str, prefix: str, accepted: list[str]) -> bool:
    instance_id = f"{prefix}{next(_tries)}"
    try:
        response = client.post(url, json={"instanceId": instance_id, "input": 0})
    except httpx.TimeoutException:
        accepted.append(instance_id)
        return False
    if response.status_code == 201:
        accepted.append(instance_id)
        return True
    assert response.status_code == 503, response.text
    return False


def _completes(client: httpx.Client, url: str, instance_id: str) -> Callable[[], bool]:
    def complete() -> bool:
        response = client.get(f"{url}/{instance_id}")
        return response.status_code == 200 and response.json()["status"] == "complete"

    return complete


async def test_the_gateway_says_upstream_unavailable_while_the_disk_is_full(
    small_disk: Path, workflows_dir: Path
) -> None:
    """Through GraphQL a refused trigger is UPSTREAM_UNAVAILABLE; once freed, triggers work."""
    definitions = load_workflows(workflows_dir).definitions
    async with (
        Engine(definitions, db_path=small_disk / "g.db") as engine,
        gateway(LocalUpstream(engine)) as gql,
    ):
        await gql.trigger("three-steps", {"orderId": "first"})
        filler = await asyncio.to_thread(_fill, small_disk)
        pending: list[asyncio.Task[Any]] = []
        code = None
        for number in range(2000):
            call = asyncio.create_task(_graphql_trigger(gql, f"g{number}"))
            done, _ = await asyncio.wait([call], timeout=1)
            if not done:
                pending.append(call)  # accepted, waiting for its commit
                continue
            errors = call.result().get("errors")
            if errors:
                code = errors[0]["extensions"]["code"]
                assert "cannot write its database" in errors[0]["message"]
                break
        assert code == "UPSTREAM_UNAVAILABLE"
        assert engine.storage_failure is not None
        filler.unlink()
        for call in pending:
            assert "errors" not in await call
        async with asyncio.timeout(30):  # the next retry of the commit succeeds
            for attempt in itertools.count():
                if "errors" not in await _graphql_trigger(gql, "again"):
                    break
                await asyncio.sleep(0.05 if attempt < 600 else 1)
        done = await gql.wait_for_status("three-steps", "again", {"COMPLETE"})
        assert done["output"]["orderId"] == "x"
        assert engine.storage_failure is None


async def _graphql_trigger(gql: GraphQLClient, instance_id: str) -> dict[str, Any]:
    response = await gql.http.post(
        "/graphql",
        json={
            "query": 'mutation($i: ID) { triggerRun(workflowId: "three-steps",'
            ' input: {orderId: "x"}, instanceId: $i) { status } }',
            "variables": {"i": instance_id},
        },
    )
    body: dict[str, Any] = response.json()
    return body
