"""Trusted documents: only a manifest's operations run, and `runcast documents check`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_client import gateway
from runcast.app import create_app
from runcast.engine import Engine
from runcast.errors import ConfigurationError
from runcast.settings import Settings
from runcast.upstream.local import LocalUpstream

LISTED = "query Workflows { workflows { id } }"
LISTED_SUBSCRIPTION = (
    'subscription Follow($i: ID!) { runStatus(workflowId: "three-steps", instanceId: $i)'
    " { status } }"
)
START = 'mutation Start { triggerRun(workflowId: "three-steps", input: {}) { instanceId } }'
UNLISTED = "{ workflows { name } }"
INTROSPECTION = "query Probe { __schema { queryType { name } } }"


def sha256(text: str) -> str:
    """The hex SHA-256 of ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()


def apollo_manifest(*bodies: str) -> dict[str, Any]:
    """An Apollo persisted query manifest of ``bodies``."""
    return {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [
            {"id": sha256(body), "name": f"Op{index}", "type": "query", "body": body}
            for index, body in enumerate(bodies)
        ],
    }


def write(path: Path, manifest: object) -> Path:
    """Write ``manifest`` as JSON to ``path``; return ``path``."""
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return path


async def post(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """POST ``body`` to /graphql (application/json); the decoded answer."""
    response = await http.post("/graphql", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def code(answer: dict[str, Any]) -> str | None:
    """The code of the first error of ``answer``, or None when it has none."""
    errors = answer.get("errors") or [{}]
    found: str | None = errors[0].get("extensions", {}).get("code")
    return found


def by_hash(sha256_hash: str) -> dict[str, Any]:
    """A hash-only request body."""
    return {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256_hash}}}


async def test_only_listed_documents_run_by_hash_or_exact_text(
    engine: Engine, tmp_path: Path
) -> None:
    """With an Apollo manifest, listed operations run by hash or text; others are refused."""
    manifest = write(tmp_path / "manifest.json", apollo_manifest(LISTED))
    settings = Settings(trusted_documents=manifest)
    async with gateway(LocalUpstream(engine), settings) as client:
        hashed = await post(client.http, by_hash(sha256(LISTED)))
        text = await post(client.http, {"query": LISTED})
        refused = await post(client.http, {"query": UNLISTED})
        unknown = await post(client.http, by_hash(sha256(UNLISTED)))
        registered = await post(client.http, {"query": UNLISTED, **by_hash(sha256(UNLISTED))})
    assert hashed == text
    assert code(hashed) is None
    assert code(refused) == "OPERATION_NOT_TRUSTED"
    assert "trusted documents" in refused["errors"][0]["message"]
    assert code(unknown) == "PERSISTED_QUERY_NOT_FOUND", "APQ clients then send the text"
    assert code(registered) == "OPERATION_NOT_TRUSTED", "and APQ cannot register new ones"


async def test_codegen_persisted_documents_run_by_their_keys(
    engine: Engine, tmp_path: Path
) -> None:
    """GraphQL Codegen's {hash: document} file works, whatever hash its keys use (here sha1)."""
    key = hashlib.sha1(LISTED.encode()).hexdigest()
    manifest = write(tmp_path / "persisted-documents.json", {key: LISTED})
    async with gateway(LocalUpstream(engine), Settings(trusted_documents=manifest)) as client:
        answer = await post(client.http, by_hash(key))
        refused = await post(client.http, {"query": UNLISTED})
    assert code(answer) is None
    assert "workflows" in answer["data"]
    assert code(refused) == "OPERATION_NOT_TRUSTED"


@pytest.mark.parametrize(
    ("introspection", "expected"), [(True, None), (False, "OPERATION_NOT_TRUSTED")]
)
async def test_introspection_follows_the_introspection_setting(
    engine: Engine, tmp_path: Path, introspection: bool, expected: str | None
) -> None:
    """Unlisted introspection-only operations run exactly when introspection is on."""
    manifest = write(tmp_path / "manifest.json", apollo_manifest(LISTED))
    settings = Settings(trusted_documents=manifest, introspection=introspection)
    async with gateway(LocalUpstream(engine), settings) as client:
        answer = await post(client.http, {"query": INTROSPECTION})
        mixed = await post(client.http, {"query": "{ __typename workflows { name } }"})
    assert code(answer) == expected
    assert code(mixed) == "OPERATION_NOT_TRUSTED"


async def test_subscriptions_are_held_to_the_manifest_too(engine: Engine, tmp_path: Path) -> None:
    """Over SSE an unlisted subscription is refused and a listed one streams."""
    manifest = write(tmp_path / "manifest.json", apollo_manifest(START, LISTED_SUBSCRIPTION))
    settings = Settings(trusted_documents=manifest, poll_min_interval=0.05)
    async with gateway(LocalUpstream(engine), settings) as client:
        run = (await post(client.http, {"query": START}))["data"]["triggerRun"]
        streams = []
        for query in (LISTED_SUBSCRIPTION, LISTED_SUBSCRIPTION.replace("status", "isTerminal")):
            response = await client.http.post(
                "/graphql",
                json={"query": query, "variables": {"i": run["instanceId"]}},
                headers={"accept": "text/event-stream"},
            )
            streams.append(response.text)
    assert '"status":"COMPLETE"' in streams[0]
    assert "OPERATION_NOT_TRUSTED" in streams[1]


async def test_an_unreadable_manifest_stops_the_gateway_from_starting(
    engine: Engine, tmp_path: Path
) -> None:
    """A manifest that is not JSON fails the lifespan with a ConfigurationError naming it."""
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    app = create_app(Settings(trusted_documents=bad), upstream=LocalUpstream(engine))
    with pytest.raises(ConfigurationError, match=r"bad\.json"):
        async with app.router.lifespan_context(app):
            pass


def documents_check(path: Path) -> subprocess.CompletedProcess[str]:
    """Run `runcast documents check PATH`."""
    return subprocess.run(
        [sys.executable, "-m", "runcast.cli", "documents", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_documents_check_accepts_a_valid_manifest(tmp_path: Path) -> None:
    """`runcast documents check` exits 0 and says how many documents it checked."""
    manifest = write(tmp_path / "ok.json", apollo_manifest(LISTED, LISTED_SUBSCRIPTION))
    done = documents_check(manifest)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 documents, all valid against the schema" in done.stdout


def test_documents_check_names_every_problem(tmp_path: Path) -> None:
    """Unknown fields, syntax errors and an id that is not the body's hash are each reported."""
    manifest = apollo_manifest("{ workflows { nope } }", "{ workflows {")
    manifest["operations"].append({"id": "0" * 64, "name": "Stale", "body": LISTED})
    done = documents_check(write(tmp_path / "bad.json", manifest))
    assert done.returncode == 1
    assert "Cannot query field 'nope'" in done.stdout
    assert "Syntax Error" in done.stdout
    assert "(Stale): the id is not the SHA-256 hash of the body" in done.stdout
    assert "3 problem(s) in 3 documents" in done.stdout


def test_documents_check_refuses_a_file_of_neither_format(tmp_path: Path) -> None:
    """A JSON file that is no manifest exits 2 with a message naming both formats."""
    done = documents_check(write(tmp_path / "list.json", [1, 2]))
    assert done.returncode == 2
    assert "persisted-documents.json" in done.stderr


def test_runcast_serve_refuses_an_unusable_manifest(tmp_path: Path) -> None:
    """`runcast serve` with RUNCAST_TRUSTED_DOCUMENTS naming a missing file exits 2 at once."""
    missing = tmp_path / "missing.json"
    done = subprocess.run(
        [sys.executable, "-m", "runcast.cli", "serve", "--db", str(tmp_path / "r.db")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RUNCAST_TRUSTED_DOCUMENTS": str(missing)},
    )
    assert done.returncode == 2
    assert "missing.json" in done.stderr
