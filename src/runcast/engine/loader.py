"""Load and validate workflow definitions: one YAML or JSON file per workflow or script.

The format is public (design.md section 4). Every problem is found at load
time and reported with the file, the node and what is wrong; a bad file is
skipped and never takes the others down::

    result = load_workflows(Path("workflows"))
    for problem in result.problems:
        print(problem)          # workflows/order.yaml: node 'finish': unknown action 'retrun' ...
    engine = Engine(result.definitions, db_path=...)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, cast, get_args

import jmespath.exceptions
import yaml

from runcast.engine.actions import compile_expression, parse_timestamp
from runcast.engine.definitions import (
    Action,
    Backoff,
    FailAction,
    HttpAction,
    Node,
    PythonAction,
    Retention,
    RetryPolicy,
    ReturnAction,
    SleepNode,
    SleepUntilNode,
    StepNode,
    WaitForEventNode,
    WorkflowDefinition,
)
from runcast.models import WorkflowKind

__all__ = [
    "DEFAULT_MAX_NODES",
    "LoadProblem",
    "LoadResult",
    "demo_workflows_dir",
    "load_workflows",
    "parse_duration",
]

DEFAULT_MAX_NODES = 100
"""The most nodes one workflow may have (the AwaitStep limit of 100 steps)."""

SUFFIXES = (".yaml", ".yml", ".json")
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
RESERVED_NAMES = frozenset({"input"})
NODE_TYPES = ("step", "sleep", "sleep_until", "wait_for_event")
ACTIONS = ("return", "http", "fail", "python")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
PYTHON_TARGET = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")

_NODE_KEYS: dict[str, frozenset[str]] = {
    "step": frozenset({"action", "retries", "timeout"}),
    "sleep": frozenset({"duration"}),
    "sleep_until": frozenset({"until"}),
    "wait_for_event": frozenset({"event_type", "timeout"}),
}
_DEFINITION_KEYS = frozenset({"id", "name", "kind", "nodes", "url", "retention"})
_RETENTION_KEYS = frozenset({"complete", "errored", "terminated"})
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+")


@dataclass(frozen=True, slots=True)
class LoadProblem:
    """Why (part of) a definition file could not be loaded.

    Attributes:
        file: the file (or folder) at fault.
        node: the node's name, or ``None`` for a problem with the file as a whole.
        message: what is wrong, for a person to fix.
    """

    file: Path
    node: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: node {self.node!r}" if self.node is not None else str(self.file)
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The definitions that loaded (by workflow id) and the problems of the files that did not."""

    definitions: dict[str, WorkflowDefinition] = field(default_factory=dict)
    problems: list[LoadProblem] = field(default_factory=list)


def demo_workflows_dir() -> Path:
    """The folder of demo definitions shipped inside the package."""
    return Path(str(resources.files("runcast.engine") / "demo"))


def parse_duration(text: object) -> timedelta:
    """Parse a duration: ``500ms``, ``30s``, ``5m``, ``2h``, ``1d``, or a plain number of seconds.

    Parts may be combined (``1h30m``). Raises ``ValueError`` naming the bad text.
    """
    if isinstance(text, bool) or not isinstance(text, int | float | str):
        raise ValueError(f"{text!r} is not a duration (write e.g. 500ms, 30s, 5m, 2h, 1d)")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        source = text.strip()
        if _NUMBER.fullmatch(source):
            seconds = float(source)
        elif _DURATION.fullmatch(source):
            seconds = sum(
                float(number) * _UNITS[unit] for number, unit in _DURATION_PART.findall(source)
            )
        else:
            raise ValueError(f"{text!r} is not a duration (write e.g. 500ms, 30s, 5m, 2h, 1d)")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{text!r} is not a duration (it must be a finite number >= 0)")
    return timedelta(seconds=seconds)


def load_workflows(folder: Path | None, *, max_nodes: int = DEFAULT_MAX_NODES) -> LoadResult:
    """Load every ``.yaml``, ``.yml`` and ``.json`` file of ``folder`` (not recursive).

    Args:
        folder: the folder to read; ``None`` loads the demo set shipped in the package.
        max_nodes: the most nodes a workflow may have.

    Returns:
        The valid definitions by id, and one problem per mistake in the files that
        were skipped. A missing folder is a problem too, not an exception.
    """
    folder = demo_workflows_dir() if folder is None else folder
    result = LoadResult()
    if not folder.is_dir():
        result.problems.append(LoadProblem(folder, None, "is not a folder"))
        return result
    files = sorted(
        path
        for path in folder.iterdir()
        if path.suffix.lower() in SUFFIXES and not path.name.startswith(".") and path.is_file()
    )
    for path in files:
        problems: list[LoadProblem] = []
        definition = _load_file(path, max_nodes, problems)
        if definition is not None and definition.id in result.definitions:
            earlier = result.definitions[definition.id].source
            problems.append(
                LoadProblem(
                    path, None, f"workflow id {definition.id!r} is already used by {earlier}"
                )
            )
        if problems:
            result.problems.extend(problems)
        elif definition is not None:
            result.definitions[definition.id] = definition
    return result


def _load_file(
    path: Path, max_nodes: int, problems: list[LoadProblem]
) -> WorkflowDefinition | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(LoadProblem(path, None, f"cannot read the file: {exc}"))
        return None
    try:
        document = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        problems.append(LoadProblem(path, None, f"not valid {kind}: {exc}"))
        return None
    if not isinstance(document, dict):
        problems.append(
            LoadProblem(path, None, "must hold one mapping with an id (see design.md section 4)")
        )
        return None
    return _Parser(path, max_nodes, problems).definition(document)


class _Parser:
    """Turns one file's document into a definition, collecting every problem it finds."""

    def __init__(self, path: Path, max_nodes: int, problems: list[LoadProblem]) -> None:
        self.path = path
        self.max_nodes = max_nodes
        self.problems = problems

    def report(self, node: str | None, message: str) -> None:
        self.problems.append(LoadProblem(self.path, node, message))

    def definition(self, document: dict[Any, Any]) -> WorkflowDefinition | None:
        workflow_id = document.get("id")
        if workflow_id is None:
            self.report(None, "missing 'id'")
        elif not isinstance(workflow_id, str) or not NAME_PATTERN.fullmatch(workflow_id):
            self.report(
                None, f"id {workflow_id!r} is invalid: use letters, digits, '-' and '_' only"
            )
        name = document.get("name", workflow_id)
        if "name" in document and (not isinstance(name, str) or not name.strip()):
            self.report(None, "'name' must be a non-empty string")
        raw_kind = document.get("kind", WorkflowKind.WORKFLOW.value)
        try:
            kind = WorkflowKind(raw_kind)
        except (ValueError, TypeError):
            self.report(None, f"'kind' must be 'workflow' or 'script', not {raw_kind!r}")
            return None
        self.unknown_keys(None, document, _DEFINITION_KEYS, "a definition")
        if kind is WorkflowKind.WORKFLOW and "url" in document:
            self.report(None, "only a script has a 'url' (add 'kind: script', or remove it)")
        if kind is WorkflowKind.SCRIPT:
            url = self.script_url(document)
            nodes: tuple[Node, ...] = ()
        else:
            url = None
            nodes = self.nodes(document.get("nodes"))
        retention = self.retention(document.get("retention"))
        if self.problems:
            return None
        return WorkflowDefinition(
            id=cast(str, workflow_id),
            name=cast(str, name),
            kind=kind,
            url=url,
            nodes=nodes,
            source=self.path,
            retention=retention,
        )

    def retention(self, raw: object) -> Retention | None:
        """``retention: {complete: 1d, errored: 30d, terminated: 30d}`` (each optional)."""
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.report(None, "'retention' must be a mapping such as {complete: 7d, errored: 30d}")
            return None
        self.unknown_keys(None, raw, _RETENTION_KEYS, "'retention'")
        periods = {
            key: self.duration("retention", key, raw.get(key), positive=True)
            for key in sorted(_RETENTION_KEYS)
        }
        return Retention(**periods)

    def unknown_keys(
        self, node: str | None, mapping: Mapping[Any, Any], allowed: frozenset[str], what: str
    ) -> None:
        unknown = [key for key in mapping if key not in allowed]
        if unknown:
            keys = ", ".join(repr(key) for key in unknown)
            expected = ", ".join(sorted(allowed))
            self.report(node, f"unknown key {keys} for {what} (expected: {expected})")

    def script_url(self, document: Mapping[Any, Any]) -> str | None:
        if "nodes" in document:
            self.report(None, "a script has no nodes: it is called by its 'url'")
        url = document.get("url")
        if url is None:
            self.report(None, "a script needs a 'url' (the deployed Worker to call)")
            return None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            self.report(None, f"'url' must be an http:// or https:// URL, not {url!r}")
            return None
        return url

    def nodes(self, raw: object) -> tuple[Node, ...]:
        if raw is None or raw == []:
            self.report(None, "a workflow needs at least one node under 'nodes'")
            return ()
        if not isinstance(raw, list):
            self.report(None, "'nodes' must be a list")
            return ()
        if len(raw) > self.max_nodes:
            self.report(None, f"{len(raw)} nodes is more than the limit of {self.max_nodes}")
            return ()
        nodes: list[Node] = []
        earlier: set[str] = set()
        names: list[str] = [_node_name(item) or "" for item in raw]
        for position, item in enumerate(raw, start=1):
            node = self.node(position, item, earlier, names)
            if node is None:
                continue
            if node.name in earlier:
                self.report(node.name, "duplicate node name: node names must be unique")
            earlier.add(node.name)
            nodes.append(node)
        return tuple(nodes)

    def node(self, position: int, raw: object, earlier: set[str], names: list[str]) -> Node | None:
        label = f"#{position}"
        if not isinstance(raw, dict) or not raw:
            self.report(label, "a node must be a mapping like {step: NAME, action: ...}")
            return None
        node_type, name = next(iter(raw.items()))
        later = [key for key in raw if key in NODE_TYPES]
        if node_type not in NODE_TYPES and later:
            named = raw[later[0]]
            self.report(
                named if isinstance(named, str) else label,
                f"the node type must be the first key: put '{later[0]}' before {node_type!r}",
            )
            return None
        if node_type not in NODE_TYPES:
            self.report(
                label if not isinstance(name, str) else name,
                f"unknown node type {node_type!r} (expected one of: {', '.join(NODE_TYPES)})",
            )
            return None
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            self.report(
                label,
                f"{node_type} name {name!r} is invalid: use letters, digits, '-' and '_' only",
            )
            return None
        if name in RESERVED_NAMES:
            self.report(name, f"{name!r} is reserved for the run's input; choose another name")
            return None
        body = {key: value for key, value in raw.items() if key != node_type}
        self.unknown_keys(name, body, _NODE_KEYS[node_type], f"a {node_type} node")
        references = _References(frozenset(earlier), tuple(names))
        if node_type == "step":
            return self.step(name, body, references)
        if node_type == "sleep":
            duration = self.duration(name, "duration", body.get("duration"), required=True)
            return SleepNode(name=name, duration=duration or timedelta())
        if node_type == "sleep_until":
            return self.sleep_until(name, body.get("until"), references)
        return self.wait_for_event(name, body)

    def step(self, name: str, body: Mapping[str, Any], references: _References) -> StepNode | None:
        action = self.action(name, body.get("action"), references)
        retries = self.retries(name, body.get("retries"))
        timeout = self.duration(name, "timeout", body.get("timeout"), positive=True)
        if action is None:
            return None
        return StepNode(name=name, action=action, retries=retries, timeout=timeout)

    def sleep_until(
        self, name: str, until: object, references: _References
    ) -> SleepUntilNode | None:
        if isinstance(until, datetime | date):
            # YAML reads an unquoted timestamp as a datetime (or a date) already.
            if not isinstance(until, datetime):
                until = datetime(until.year, until.month, until.day)
            until = until.isoformat()
        if not isinstance(until, str) or not until.strip():
            self.report(name, "'until' must be an ISO-8601 timestamp or an expression giving one")
            return None
        if parse_timestamp(until) is None:
            self.expression(name, "'until'", until, references)
        return SleepUntilNode(name=name, until=until)

    def wait_for_event(self, name: str, body: Mapping[str, Any]) -> WaitForEventNode | None:
        event_type = body.get("event_type")
        timeout = self.duration(name, "timeout", body.get("timeout"), positive=True)
        if not isinstance(event_type, str) or not event_type.strip():
            self.report(name, "'event_type' must be a non-empty string")
            return None
        return WaitForEventNode(name=name, event_type=event_type, timeout=timeout)

    def duration(
        self,
        node: str,
        key: str,
        raw: object,
        *,
        required: bool = False,
        positive: bool = False,
    ) -> timedelta | None:
        if raw is None:
            if required:
                self.report(node, f"missing '{key}' (a duration such as 30s)")
            return None
        try:
            value = parse_duration(raw)
        except ValueError as exc:
            self.report(node, f"bad '{key}': {exc}")
            return None
        if positive and not value:
            self.report(node, f"bad '{key}': it must be longer than zero")
            return None
        return value

    def retries(self, node: str, raw: object) -> RetryPolicy:
        if raw is None:
            return RetryPolicy()
        if not isinstance(raw, dict):
            self.report(node, "bad 'retries': write {limit: 3, delay: 1s, backoff: exponential}")
            return RetryPolicy()
        self.unknown_keys(node, raw, frozenset({"limit", "delay", "backoff"}), "'retries'")
        limit = raw.get("limit", 0)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            self.report(node, f"bad 'retries': 'limit' must be a whole number >= 0, not {limit!r}")
            limit = 0
        backoff = raw.get("backoff", "constant")
        if backoff not in get_args(Backoff):
            choices = " | ".join(get_args(Backoff))
            self.report(node, f"bad 'retries': 'backoff' must be {choices}, not {backoff!r}")
            backoff = "constant"
        delay = self.duration(node, "retries.delay", raw.get("delay"))
        if delay is None:
            return RetryPolicy(limit=limit, backoff=cast(Backoff, backoff))
        return RetryPolicy(limit=limit, delay=delay, backoff=cast(Backoff, backoff))

    def action(self, node: str, raw: object, references: _References) -> Action | None:
        if raw is None:
            self.report(node, "a step needs an 'action' (one of: " + ", ".join(ACTIONS) + ")")
            return None
        if not isinstance(raw, dict) or len(raw) != 1:
            self.report(node, "'action' must be a mapping with one key: " + ", ".join(ACTIONS))
            return None
        kind, value = next(iter(raw.items()))
        if kind == "return":
            self.return_value(node, value, references)
            return ReturnAction(value=value)
        if kind == "http":
            return self.http(node, value)
        if kind == "fail":
            return self.fail(node, value)
        if kind == "python":
            if not isinstance(value, str) or not PYTHON_TARGET.fullmatch(value):
                self.report(node, f"bad 'python' action {value!r}: write module.path:function")
                return None
            return PythonAction(target=value)
        self.report(node, f"unknown action {kind!r} (expected one of: {', '.join(ACTIONS)})")
        return None

    def return_value(self, node: str, value: object, references: _References) -> None:
        for expression in self.expressions(node, value):
            self.expression(node, "'return'", expression, references)

    def expressions(self, node: str, value: object) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    self.report(node, f"'return' keys must be strings, not {key!r}")
                yield from self.expressions(node, item)
        elif isinstance(value, list):
            for item in value:
                yield from self.expressions(node, item)
        elif not _is_json(value):
            self.report(node, f"'return' holds {value!r}, which is not JSON (quote it as a string)")

    def expression(self, node: str, where: str, expression: str, references: _References) -> None:
        try:
            parsed = compile_expression(expression)
        except jmespath.exceptions.JMESPathError as exc:
            self.report(node, f"{where}: {expression!r} is not a valid JMESPath expression: {exc}")
            return
        for name in _root_fields(parsed.parsed):
            problem = references.check(name)
            if problem:
                self.report(node, f"{where}: {expression!r} {problem}")

    def http(self, node: str, raw: object) -> HttpAction | None:
        if not isinstance(raw, dict):
            self.report(node, "bad 'http' action: write {method: GET, url: https://...}")
            return None
        self.unknown_keys(node, raw, frozenset({"method", "url", "headers", "json"}), "'http'")
        method = raw.get("method", "GET")
        url = raw.get("url")
        headers = raw.get("headers") or {}
        ok = True
        if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
            self.report(node, f"bad 'http' method {method!r}")
            ok = False
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            self.report(node, f"bad 'http' url {url!r}: it must start with http:// or https://")
            ok = False
        if not isinstance(headers, dict) or not all(
            isinstance(key, str) and isinstance(value, str | int | float)
            for key, value in headers.items()
        ):
            self.report(node, "bad 'http' headers: write a mapping of names to strings")
            ok = False
        body = raw.get("json")
        if not _is_json(body):
            self.report(node, "bad 'http' json: it must be JSON")
            ok = False
        if not ok:
            return None
        return HttpAction(
            method=cast(str, method).upper(),
            url=cast(str, url),
            headers=tuple(
                (key, str(value)) for key, value in cast(dict[str, Any], headers).items()
            ),
            json=body,
        )

    def fail(self, node: str, raw: object) -> FailAction | None:
        if isinstance(raw, str):
            raw = {"message": raw}
        if not isinstance(raw, dict):
            self.report(node, "bad 'fail' action: write {message: ..., times: N}")
            return None
        self.unknown_keys(node, raw, frozenset({"message", "times"}), "'fail'")
        message = raw.get("message")
        times = raw.get("times")
        if not isinstance(message, str) or not message:
            self.report(node, "bad 'fail' action: 'message' must be a non-empty string")
            return None
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 1
        ):
            self.report(
                node, f"bad 'fail' action: 'times' must be a whole number >= 1, not {times!r}"
            )
            return None
        return FailAction(message=message, times=times)


@dataclass(frozen=True, slots=True)
class _References:
    """The names an expression of one node may read: ``input`` and the earlier nodes."""

    earlier: frozenset[str]
    names: tuple[str, ...]

    def check(self, name: str) -> str | None:
        if name in RESERVED_NAMES or name in self.earlier:
            return None
        if name in self.names:
            return f"refers to node {name!r}, which does not come before this node"
        hint = ""
        if name.isidentifier():
            hint = f" (a literal string is written '{name}' or `\"{name}\"`)"
        return f"refers to unknown node {name!r}{hint}"


def _node_name(raw: object) -> str | None:
    if isinstance(raw, dict) and raw:
        name = next(iter(raw.values()))
        if isinstance(name, str):
            return name
    return None


def _root_fields(ast: Mapping[str, Any]) -> Iterator[str]:
    """Yield the names an expression reads from the top level of the context."""
    kind = ast["type"]
    children = ast.get("children", [])
    if kind == "field":
        yield ast["value"]
    elif kind in {
        "subexpression",
        "index_expression",
        "projection",
        "value_projection",
        "filter_projection",
        "flatten",
        "pipe",
    }:
        # Everything right of the first child is evaluated against its result.
        yield from _root_fields(children[0])
    elif kind == "expref":
        # &expr is applied to the elements a function is given, not the context.
        return
    else:
        for child in children:
            if isinstance(child, dict):
                yield from _root_fields(child)


def _is_json(value: object) -> bool:
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_json(item) for key, item in value.items())
    return False
