"""Load and validate workflow definitions: one YAML or JSON file per workflow or script.

The format is defined once, in ``runcast.engine.format``; this module reads
files, validates them with it, checks what a schema cannot (expressions and the
names they read, cron expressions, input schemas) and builds the frozen
definitions the engine runs. Every problem is one line, ``file: node 'name':
what is wrong``; a bad file is skipped and never takes the others down::

    result = load_workflows(Path("workflows"))
    for problem in result.problems:
        print(problem)          # workflows/order.yaml: node 'finish': unknown action ...
    engine = Engine(result.definitions, db_path=...)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from runcast.engine import format as fmt
from runcast.engine._checks import NodeChecks, file_problems
from runcast.engine.definitions import (
    Action,
    FailAction,
    HttpAction,
    Node,
    PythonAction,
    Retention,
    RetryOn,
    RetryPolicy,
    ReturnAction,
    Secret,
    SleepNode,
    SleepUntilNode,
    StepNode,
    WaitForEventNode,
    WorkflowDefinition,
)
from runcast.engine.format import WorkflowFile
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
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_NODE: TypeAdapter[fmt.NodeModelType] = TypeAdapter(fmt.NodeModel)


@dataclass(frozen=True, slots=True)
class LoadProblem:
    """Why (part of) a definition file could not be loaded.

    Attributes:
        file: the file (or folder) at fault.
        node: the node's name, or ``None`` for a problem with the file as a whole.
        message: what is wrong, for a person to fix (one line).
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
    files: int = 0
    """How many definition files the folder holds (loaded or not)."""


def demo_workflows_dir() -> Path:
    """The folder of demo definitions shipped inside the package."""
    return Path(str(resources.files("runcast.engine") / "demo"))


def parse_duration(text: object) -> timedelta:
    """Parse a duration with its unit: ``500ms``, ``30s``, ``5m``, ``2h``, ``1d`` (or ``1h30m``).

    Raises ``ValueError`` naming the bad text; a plain number is refused (no unit).
    """
    checked = fmt.check_duration(text)
    seconds = sum(
        float(number) * fmt.DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(checked)
    )
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is not a duration (it must be finite)")
    return timedelta(seconds=seconds)


def definition_files(folder: Path) -> list[Path]:
    """The ``.yaml``, ``.yml`` and ``.json`` files of ``folder`` that are loaded, by name.

    Hidden files and ``*.schema.json`` (the editor schema kept beside the workflows) are not.
    """
    return sorted(
        path
        for path in folder.iterdir()
        if path.suffix.lower() in SUFFIXES
        and not path.name.startswith(".")
        and not path.name.lower().endswith(".schema.json")
        and path.is_file()
    )


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
    if not folder.is_dir():
        return LoadResult(problems=[LoadProblem(folder, None, "is not a folder")])
    files = definition_files(folder)
    result = LoadResult(files=len(files))
    for path in files:
        problems: list[LoadProblem] = []
        definition = load_file(path, max_nodes, problems)
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


def load_file(path: Path, max_nodes: int, problems: list[LoadProblem]) -> WorkflowDefinition | None:
    """One file's definition, or ``None`` with its mistakes added to ``problems``."""
    document = _read(path, problems)
    if document is None:
        return None
    labels = _node_labels(document.get("nodes"))
    before = len(problems)
    problems.extend(_order_problems(path, document.get("nodes"), labels))
    try:
        model = WorkflowFile.model_validate(document)
    except ValidationError as exc:
        problems.extend(_validation_problems(path, exc, labels))
        problems.extend(_problems_of_valid_nodes(path, document, exc, labels))
        return None
    if len(problems) > before:
        return None
    return _Builder(path, max_nodes, problems).definition(model)


def _read(path: Path, problems: list[LoadProblem]) -> dict[Any, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(LoadProblem(path, None, f"cannot read the file: {_one_line(str(exc))}"))
        return None
    try:
        document = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        problems.append(LoadProblem(path, None, f"not valid JSON at {where}: {exc.msg}"))
        return None
    except yaml.YAMLError as exc:
        problems.append(LoadProblem(path, None, _yaml_message(exc)))
        return None
    if not isinstance(document, dict):
        problems.append(LoadProblem(path, None, "must hold one mapping with an 'id'"))
        return None
    return document


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = exc.problem or exc.context or "cannot be parsed"
        return f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
    return f"not valid YAML: {_one_line(str(exc))}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _node_labels(raw: object) -> list[str]:
    """How problems name each node: its name, or ``#position`` when it has none."""
    if not isinstance(raw, list):
        return []
    labels: list[str] = []
    for position, item in enumerate(raw, start=1):
        name = None
        if isinstance(item, dict):
            typed = [item[key] for key in item if key in fmt.NODE_TYPES]
            name = typed[0] if typed else next(iter(item.values()), None)
        labels.append(name if isinstance(name, str) and name else f"#{position}")
    return labels


def _order_problems(path: Path, raw: object, labels: list[str]) -> Iterable[LoadProblem]:
    if not isinstance(raw, list):
        return
    for label, item in zip(labels, raw, strict=True):
        if not isinstance(item, dict) or not item:
            continue
        first = next(iter(item))
        later = [key for key in item if key in fmt.NODE_TYPES]
        if first not in fmt.NODE_TYPES and later:
            yield LoadProblem(
                path,
                label,
                f"the node type must be the first key: put '{later[0]}' before {first!r}",
            )


def _validation_problems(path: Path, exc: ValidationError, labels: list[str]) -> list[LoadProblem]:
    problems: dict[tuple[str | None, str], LoadProblem] = {}
    for error in exc.errors():
        node, where = _location(error["loc"], labels)
        key = (node, ".".join(str(part) for part in where))
        if key not in problems:
            problems[key] = LoadProblem(path, node, fmt.describe_error(error, where))
    return list(problems.values())


def _problems_of_valid_nodes(
    path: Path, document: dict[Any, Any], exc: ValidationError, labels: list[str]
) -> Iterable[LoadProblem]:
    """The expression problems of the nodes that are valid in a file that is not."""
    raw = document.get("nodes")
    if not isinstance(raw, list):
        return
    invalid = {
        error["loc"][1]
        for error in exc.errors()
        if len(error["loc"]) > 1 and error["loc"][0] == "nodes"
    }
    secrets = document.get("secrets")
    declared = {str(key) for key in secrets} if isinstance(secrets, dict) else set()
    checks = NodeChecks(labels, declared)
    for index, (label, item) in enumerate(zip(labels, raw, strict=True)):
        if index in invalid:
            checks.passed(label)
            continue
        node = _NODE.validate_python(item)
        for message in checks.check(node):
            yield LoadProblem(path, label, message)


def _location(
    loc: tuple[int | str, ...], labels: list[str]
) -> tuple[str | None, tuple[int | str, ...]]:
    """The node an error is in, and the error's path inside it without union tags."""
    parts = list(loc)
    node = None
    if len(parts) >= 2 and parts[0] == "nodes" and isinstance(parts[1], int):
        index = parts[1]
        node = labels[index] if index < len(labels) else f"#{index + 1}"
        parts = parts[3:] if len(parts) > 2 else []
    if len(parts) > 2 and parts[0] == "action":
        parts = parts[2:]  # ('action', TAG, TAG, ...): the action's own key comes next
    return node, tuple(parts)


class _Builder:
    """Turns one validated file into a definition, collecting what the schema cannot check."""

    def __init__(self, path: Path, max_nodes: int, problems: list[LoadProblem]) -> None:
        self.path = path
        self.max_nodes = max_nodes
        self.problems = problems

    def report(self, node: str | None, message: str) -> None:
        self.problems.append(LoadProblem(self.path, node, message))

    def definition(self, model: WorkflowFile) -> WorkflowDefinition | None:
        kind = WorkflowKind(model.kind)
        before = len(self.problems)
        secrets = tuple(
            Secret(name, env.removeprefix("env.")) for name, env in (model.secrets or {}).items()
        )
        if kind is WorkflowKind.SCRIPT:
            self.script(model)
            nodes: tuple[Node, ...] = ()
        else:
            if model.url is not None:
                self.report(None, "only a script has a 'url' (add 'kind: script', or remove it)")
            nodes = self.nodes(model, secrets)
        for message in file_problems(model):
            self.report(None, message)
        if len(self.problems) > before:
            return None
        return WorkflowDefinition(
            id=model.id,
            name=model.name or model.id,
            kind=kind,
            url=model.url,
            nodes=nodes,
            source=self.path,
            secrets=secrets,
            input_schema=model.input_schema,
            schedule=model.schedule,
            schedule_input=model.schedule_input,
            retention=_retention(model.retention),
        )

    def script(self, model: WorkflowFile) -> None:
        if model.url is None:
            self.report(None, "a script needs a 'url' (the deployed Worker to call)")
        for key in ("nodes", "secrets", "input_schema", "schedule"):
            if getattr(model, key) is not None:
                self.report(None, f"a script has no '{key}': it is called by its 'url'")

    def nodes(self, model: WorkflowFile, secrets: tuple[Secret, ...]) -> tuple[Node, ...]:
        raw = model.nodes or []
        if not raw:
            self.report(None, "a workflow needs at least one node under 'nodes'")
            return ()
        if len(raw) > self.max_nodes:
            self.report(None, f"{len(raw)} nodes is more than the limit of {self.max_nodes}")
            return ()
        checks = NodeChecks([_name_of(item) for item in raw], {s.name for s in secrets})
        nodes: list[Node] = []
        for item in raw:
            name = _name_of(item)
            for message in checks.check(item):
                self.report(name, message)
            nodes.append(_node(item, secrets))
        return tuple(nodes)


def _name_of(model: fmt.NodeModelType) -> str:
    if isinstance(model, fmt.StepModel):
        return model.step
    if isinstance(model, fmt.SleepModel):
        return model.sleep
    if isinstance(model, fmt.SleepUntilModel):
        return model.sleep_until
    return model.wait_for_event


def _node(model: fmt.NodeModelType, secrets: tuple[Secret, ...]) -> Node:
    if isinstance(model, fmt.StepModel):
        retries = model.retries or fmt.RetriesModel.model_validate({})
        return StepNode(
            name=model.step,
            action=_action(model.action, secrets),
            retries=RetryPolicy(
                limit=retries.limit, delay=parse_duration(retries.delay), backoff=retries.backoff
            ),
            timeout=None if model.timeout is None else parse_duration(model.timeout),
            when=model.when,
        )
    if isinstance(model, fmt.SleepModel):
        return SleepNode(model.sleep, parse_duration(model.duration), when=model.when)
    if isinstance(model, fmt.SleepUntilModel):
        return SleepUntilNode(model.sleep_until, model.until, when=model.when)
    timeout = None if model.timeout is None else parse_duration(model.timeout)
    return WaitForEventNode(model.wait_for_event, model.event_type, timeout, when=model.when)


def _action(model: fmt.ActionType, secrets: tuple[Secret, ...]) -> Action:
    if isinstance(model, fmt.ReturnAction):
        return ReturnAction(value=model.return_value)
    if isinstance(model, fmt.FailAction):
        body = model.fail
        return FailAction(message=body.message, times=body.times, retry=body.retry)
    if isinstance(model, fmt.PythonAction):
        return PythonAction(target=model.python)
    http = model.http
    return HttpAction(
        method=http.method,
        url=http.url,
        headers=tuple((http.headers or {}).items()),
        json=http.json_body,
        query=tuple((http.query or {}).items()),
        result=http.result,
        retry_on=_retry_on(http.retry_on),
        secrets=secrets,
    )


def _retry_on(items: list[int | str] | None) -> RetryOn:
    if items is None:
        return RetryOn()
    return RetryOn(
        statuses=frozenset(item for item in items if isinstance(item, int)),
        classes=frozenset(int(item[0]) for item in items if item in ("4xx", "5xx")),
        connection="connection" in items,
    )


def _retention(model: fmt.RetentionModel | None) -> Retention | None:
    """A workflow's ``retention: {complete, errored, terminated}`` (each optional)."""
    if model is None:
        return None

    def period(text: str | None) -> timedelta | None:
        return None if text is None else parse_duration(text)

    return Retention(
        complete=period(model.complete),
        errored=period(model.errored),
        terminated=period(model.terminated),
    )
