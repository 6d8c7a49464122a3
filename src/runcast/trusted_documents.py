"""Trusted-document manifests: reading them, and checking them against the schema.

Two formats are read, told apart by their shape:

- Apollo's persisted query manifest (``generate-persisted-query-manifest``)::

      {"format": "apollo-persisted-query-manifest", "version": 1,
       "operations": [{"id": SHA256, "name": "Runs", "type": "query", "body": "query Runs ..."}]}

- GraphQL Codegen's client-preset ``persisted-documents.json``: ``{HASH: DOCUMENT, ...}``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from graphql import GraphQLError, GraphQLSchema, parse, validate

from runcast.errors import BadUserInput

APOLLO_FORMAT = "apollo-persisted-query-manifest"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One document of a manifest: its hash (the key clients send), text and name."""

    hash: str
    body: str
    name: str | None = None
    hash_is_sha256: bool = False


@dataclass(frozen=True)
class TrustedDocuments:
    """The documents a manifest trusts: each text by its hash, and the set of exact texts."""

    entries: tuple[ManifestEntry, ...]
    by_hash: Mapping[str, str]
    texts: frozenset[str]

    @classmethod
    def of(cls, entries: tuple[ManifestEntry, ...]) -> TrustedDocuments:
        """The trusted documents of ``entries``."""
        return cls(entries, {e.hash: e.body for e in entries}, frozenset(e.body for e in entries))


def parse_manifest(data: object, *, source: str) -> TrustedDocuments:
    """The trusted documents of a decoded manifest (either format).

    Raises:
        BadUserInput: ``data`` is neither format; the message names ``source``.
    """
    if isinstance(data, dict) and data.get("format") == APOLLO_FORMAT:
        return TrustedDocuments.of(_apollo_entries(data, source))
    if (
        isinstance(data, dict)
        and data
        and all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())
    ):
        return TrustedDocuments.of(tuple(ManifestEntry(k, v) for k, v in data.items()))
    raise BadUserInput(
        f"{source} is not a trusted-documents manifest: expected Apollo's persisted query "
        'manifest ({"format": "apollo-persisted-query-manifest", ...}) or GraphQL Codegen\'s '
        "persisted-documents.json ({hash: document})"
    )


def _apollo_entries(data: Mapping[str, object], source: str) -> tuple[ManifestEntry, ...]:
    operations = data.get("operations")
    if data.get("version") != 1 or not isinstance(operations, list):
        raise BadUserInput(f"{source}: an Apollo manifest needs version 1 and an operations list")
    entries = []
    for index, operation in enumerate(operations):
        if not (
            isinstance(operation, dict)
            and isinstance(operation.get("id"), str)
            and isinstance(operation.get("body"), str)
        ):
            raise BadUserInput(f"{source}: operations[{index}] needs a string id and body")
        name = operation.get("name")
        entries.append(
            ManifestEntry(
                operation["id"],
                operation["body"],
                name if isinstance(name, str) else None,
                hash_is_sha256=True,
            )
        )
    return tuple(entries)


def load_trusted_documents(path: Path) -> TrustedDocuments:
    """Read the manifest at ``path`` (blocking: call it in a thread from async code).

    Raises:
        BadUserInput: the file cannot be read, is not JSON, or is neither format.
    """
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise BadUserInput(f"cannot read trusted documents {str(path)!r}: {exc.strerror}") from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise BadUserInput(f"{path} is over {MAX_MANIFEST_BYTES} bytes")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise BadUserInput(f"{path} is not JSON: {exc}") from exc
    return parse_manifest(data, source=str(path))


def check_documents(documents: TrustedDocuments, schema: GraphQLSchema) -> list[str]:
    """What is wrong with each document (parse, validation against ``schema``, hash)."""
    problems: list[str] = []
    for entry in documents.entries:
        label = entry.hash if entry.name is None else f"{entry.hash} ({entry.name})"
        if entry.hash_is_sha256 and hashlib.sha256(entry.body.encode()).hexdigest() != entry.hash:
            problems.append(f"{label}: the id is not the SHA-256 hash of the body")
        try:
            errors = validate(schema, parse(entry.body))
        except GraphQLError as error:
            errors = [error]
        problems.extend(f"{label}: {error.message}" for error in errors)
    return problems


__all__ = [
    "ManifestEntry",
    "TrustedDocuments",
    "check_documents",
    "load_trusted_documents",
    "parse_manifest",
]
