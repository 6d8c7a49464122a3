"""The wire shape of a run in Redis (JSON), described once: writers and readers use it."""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import datetime
from typing import Any, TypedDict, cast, get_args, get_origin, get_type_hints

from runcast.live._change import Observable
from runcast.models import JSON, Run, RunStatus


class StepWire(TypedDict):
    """One step of a run, as kept in Redis."""

    name: str
    type: str
    status: str
    attempts: int
    output: JSON
    error: str | None
    startedAt: str | None
    endedAt: str | None


class WaitWire(TypedDict):
    """What a suspended run waits for, as kept in Redis."""

    reason: str
    eventType: str | None
    until: str | None


class RunWire(TypedDict):
    """A run, as kept in Redis (never any credential)."""

    workflowId: str
    instanceId: str
    status: str
    rawStatus: str
    input: JSON
    output: JSON
    error: str | None
    createdAt: str | None
    startedAt: str | None
    endedAt: str | None
    steps: list[StepWire] | None
    wakeAt: str | None
    workflowVersion: str | None
    wait: WaitWire | None


class ChangeWire(TypedDict):
    """One published change: the run as observed, when, and its epoch and sequence number."""

    by: str
    epoch: str
    seq: int
    observedAt: str
    run: RunWire


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _to_wire(value: Any) -> Any:
    """A model value as JSON-ready values: dataclasses field by field (camelCase keys),
    times as ISO-8601 text, enums as their value, tuples as lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {_camel(f.name): _to_wire(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_to_wire(item) for item in value]
    return value


def _from_wire(cls: Any, wire: Mapping[str, Any]) -> Any:
    """The dataclass ``cls`` instance that :func:`_to_wire` wrote (fields read by type)."""
    hints = _hints(cls)
    # A field the writer did not know (an older replica) reads as None, its default.
    return cls(**{f.name: _field(hints[f.name], wire.get(_camel(f.name))) for f in fields(cls)})


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _field(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    kinds = [kind for kind in get_args(hint) if kind is not type(None)] or [hint]
    kind = kinds[0]
    if kind is datetime:
        return datetime.fromisoformat(value)
    if kind is RunStatus:
        return RunStatus.parse(value)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(value)
    if isinstance(kind, type) and is_dataclass(kind):
        return _from_wire(kind, value)
    if get_origin(kind) is tuple:
        return tuple(_field(get_args(kind)[0], item) for item in value)
    return value


def run_to_wire(run: Run) -> RunWire:
    """``run`` as JSON-ready values (every field of ``Run``)."""
    return cast(RunWire, _to_wire(run))


def run_from_wire(wire: RunWire) -> Run:
    """The run that :func:`run_to_wire` wrote."""
    run: Run = _from_wire(Run, cast(Mapping[str, Any], wire))
    return run


def observable_digest(run: Run) -> str:
    """The part of ``run`` whose change is news (see ``Run.observable``), as one string."""
    status, raw_status, output, error = run.observable()
    return json.dumps([status.value, raw_status, output, error], sort_keys=True, default=str)


def observable_from_digest(digest: str) -> Observable:
    """The ``Run.observable()`` value that :func:`observable_digest` wrote."""
    status, raw_status, output, error = json.loads(digest)
    return (RunStatus.parse(status), raw_status, output, error)
