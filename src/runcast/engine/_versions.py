"""Workflow versions: a definition's content hash, and its JSON form kept in the database.

Every distinct definition is a version, named by the hash of its canonical JSON
form (the file it came from is not part of it). The engine stores each version's
JSON when it first sees it, so a run keeps executing the definition it was
triggered on after its file is edited or removed.

The JSON form is generic over the frozen dataclasses of ``definitions``: a
dataclass is ``{"$dc": class name, "f": fields}``, and tuples, frozensets,
durations, enums and mappings are tagged too, so a value reads back exactly as it was written.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from runcast.engine import definitions as _definitions
from runcast.engine.definitions import WorkflowDefinition
from runcast.models import WorkflowKind

__all__ = ["VersionBook", "definition_from_json", "definition_to_json", "version_of"]

VERSION_LENGTH = 16
"""Hex digits of the SHA-256 that name a version (64 bits: collisions are not a concern)."""

_ENUMS: dict[str, type[enum.Enum]] = {"WorkflowKind": WorkflowKind}
_SKIPPED_FIELDS = frozenset({"source"})


def definition_to_json(definition: WorkflowDefinition) -> str:
    """The canonical JSON text of ``definition`` (without the file it came from)."""
    return json.dumps(_dump(definition), sort_keys=True, separators=(",", ":"))


def version_of(definition_json: str) -> str:
    """The version name of a definition, from its ``definition_to_json`` text."""
    return hashlib.sha256(definition_json.encode()).hexdigest()[:VERSION_LENGTH]


def definition_from_json(text: str) -> WorkflowDefinition:
    """The definition ``definition_to_json`` wrote; raises ``ValueError`` if it cannot be read."""
    try:
        value = _load(json.loads(text))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"a stored workflow version cannot be read: {exc}") from exc
    if not isinstance(value, WorkflowDefinition):
        raise ValueError("a stored workflow version is not a workflow definition")
    return value


def _dump(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: _dump(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in _SKIPPED_FIELDS
        }
        return {"$dc": type(value).__name__, "f": fields}
    if isinstance(value, enum.Enum):
        return {"$e": [type(value).__name__, value.value]}
    if isinstance(value, timedelta):
        return {"$td": value.total_seconds()}
    if isinstance(value, tuple):
        return {"$t": [_dump(item) for item in value]}
    if isinstance(value, frozenset):
        items = [_dump(item) for item in value]
        return {"$fs": sorted(items, key=lambda item: json.dumps(item, sort_keys=True))}
    if isinstance(value, list):
        return [_dump(item) for item in value]
    if isinstance(value, dict):
        return {"$d": {str(key): _dump(item) for key, item in value.items()}}
    return value


def _load(value: Any) -> Any:
    if isinstance(value, list):
        return [_load(item) for item in value]
    if not isinstance(value, dict):
        return value
    if "$dc" in value:
        cls = getattr(_definitions, value["$dc"])
        return cls(**{key: _load(item) for key, item in value["f"].items()})
    if "$e" in value:
        name, raw = value["$e"]
        return _ENUMS[name](raw)
    if "$td" in value:
        return timedelta(seconds=value["$td"])
    if "$t" in value:
        return tuple(_load(item) for item in value["$t"])
    if "$fs" in value:
        return frozenset(_load(item) for item in value["$fs"])
    return {key: _load(item) for key, item in value["$d"].items()}


class VersionBook:
    """The current version of each loaded workflow, and the definitions of known versions.

    Args:
        definitions: the loaded definitions by workflow id; each is its workflow's current
            version.
    """

    def __init__(self, definitions: Mapping[str, WorkflowDefinition]) -> None:
        self._current: dict[str, str] = {}
        self._texts: dict[str, str] = {}
        self._known: dict[tuple[str, str], WorkflowDefinition] = {}
        self.load(definitions)

    def load(self, definitions: Mapping[str, WorkflowDefinition]) -> None:
        """Make ``definitions`` the current versions (a reload); known versions stay known."""
        self._current = {}
        self._texts = {}
        for workflow_id, definition in definitions.items():
            text = definition_to_json(definition)
            version = version_of(text)
            self._current[workflow_id] = version
            self._texts[workflow_id] = text
            self._known[(workflow_id, version)] = definition

    def current(self, workflow_id: str) -> str | None:
        """The version of the loaded definition of ``workflow_id`` (``None`` if not loaded)."""
        return self._current.get(workflow_id)

    def loaded(self) -> list[tuple[str, str, str]]:
        """``(workflow_id, version, definition_json)`` of every loaded definition."""
        return [(key, version, self._texts[key]) for key, version in self._current.items()]

    def known(self, workflow_id: str, version: str) -> WorkflowDefinition | None:
        """The definition of a version already in memory."""
        return self._known.get((workflow_id, version))

    def remember(self, workflow_id: str, version: str, text: str) -> WorkflowDefinition:
        """Read a stored version's definition and keep it; raises ``ValueError``."""
        definition = definition_from_json(text)
        self._known[(workflow_id, version)] = definition
        return definition
