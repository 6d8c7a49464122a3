"""What a JSON Schema cannot check in a workflow file: expressions, names, cron, input schemas.

Each check yields one-line messages; the loader adds the file and the node.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import jmespath.exceptions
import jsonschema
import jsonschema.exceptions
import jsonschema.validators
from croniter import croniter

from runcast.engine import format as fmt
from runcast.engine.actions import compile_expression, parse_timestamp, template_expressions
from runcast.engine.definitions import reference
from runcast.models import JSON

__all__ = ["RESERVED_NAMES", "NodeChecks", "file_problems", "input_problem"]

RESERVED_NAMES = frozenset({"input", "secrets"})
"""Context keys that are not node results."""


def file_problems(model: fmt.WorkflowFile) -> Iterator[str]:
    """Problems of the workflow-wide keys: ``input_schema``, ``schedule``, ``schedule_input``."""
    schema = model.input_schema
    if schema is not None:
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.exceptions.SchemaError as exc:
            yield f"bad 'input_schema': {_one_line(exc.message)} at {json_path(exc.path)}"
            schema = None
    if model.schedule is not None:
        if not croniter.is_valid(model.schedule):
            example = "'*/5 * * * *'"
            yield f"bad 'schedule': {model.schedule!r} is not a cron expression (e.g. {example})"
        elif schema is not None:
            problem = input_problem(schema, model.schedule_input)
            if problem:
                yield f"bad 'schedule_input': {problem}"
    elif model.schedule_input is not None:
        yield "'schedule_input' needs a 'schedule'"


def input_problem(schema: Mapping[str, Any], value: JSON) -> str | None:
    """Why ``value`` does not match the JSON Schema ``schema`` (its first failure), or ``None``."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(value), key=lambda error: list(error.absolute_path))
    if not errors:
        return None
    first = errors[0]
    return f"{json_path(first.absolute_path)}: {_one_line(first.message)}"


def json_path(path: Any) -> str:
    """``$.items[0].sku``: where in a JSON value a schema failure is."""
    text = "$"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _one_line(text: str) -> str:
    return " ".join(text.split())


class NodeChecks:
    """Checks the nodes of one workflow in order: names, and the expressions that read them.

    Args:
        names: every node's name, in order.
        secrets: the secret names the workflow declares.
    """

    def __init__(self, names: list[str], secrets: set[str]) -> None:
        self._names = names
        self._secrets = secrets
        self._earlier: set[str] = set()

    def passed(self, name: str) -> None:
        """Count a node that was not checked (it is invalid) as seen, for later references."""
        self._earlier.add(name)

    def check(self, node: fmt.NodeModelType) -> Iterator[str]:
        """The problems of ``node``; call once per node, in order."""
        name = _name(node)
        if name in RESERVED_NAMES:
            yield f"{name!r} is reserved for the run's {name}; choose another name"
        elif name in self._earlier:
            yield "duplicate node name: node names must be unique"
        if node.when is not None:
            yield from self.expression("'when'", node.when)
        if isinstance(node, fmt.StepModel):
            yield from self.action(node.action)
        elif isinstance(node, fmt.SleepUntilModel) and parse_timestamp(node.until) is None:
            yield from self.expression("'until'", node.until)
        self._earlier.add(name)

    def action(self, action: fmt.ActionType) -> Iterator[str]:
        if isinstance(action, fmt.ReturnAction):
            yield from self.value("'return'", action.return_value, secrets=False)
        elif isinstance(action, fmt.HttpAction):
            yield from self.http(action.http)

    def http(self, body: fmt.HttpBody) -> Iterator[str]:
        if not body.url.lstrip().startswith(("http://", "https://", "${")):
            yield f"bad 'http.url' {body.url!r}: it must start with http:// or https://"
        templates = [("'http.url'", body.url)]
        templates += [
            (f"'http.headers.{key}'", value) for key, value in (body.headers or {}).items()
        ]
        templates += [(f"'http.query.{key}'", value) for key, value in (body.query or {}).items()]
        for where, template in templates:
            for expression in template_expressions(template):
                yield from self.expression(where, expression, secrets=True)
        yield from self.value("'http.json'", body.json_body, secrets=True)

    def value(self, where: str, value: object, *, secrets: bool) -> Iterator[str]:
        """Check every string in a JSON value as an expression."""
        if isinstance(value, str):
            yield from self.expression(where, value, secrets=secrets)
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    yield f"{where} keys must be strings, not {key!r}"
                yield from self.value(where, item, secrets=secrets)
        elif isinstance(value, list):
            for item in value:
                yield from self.value(where, item, secrets=secrets)
        elif not _is_json_scalar(value):
            yield f"{where} holds {value!r}, which is not JSON (quote it as a string)"

    def expression(self, where: str, expression: str, *, secrets: bool = False) -> Iterator[str]:
        try:
            parsed = compile_expression(expression)
        except jmespath.exceptions.JMESPathError as exc:
            reason = _jmespath_reason(exc)
            hints = "".join(f"; {hint}" for hint in self._quoting_hints(expression))
            yield f"{where}: {expression!r} is not a valid JMESPath expression: {reason}{hints}"
            return
        for name in root_fields(parsed.parsed):
            problem = self._reference_problem(name, secrets, bare=expression.strip() == name)
            if problem:
                yield f"{where}: {expression!r} {problem}"
        if secrets:
            for secret in secret_fields(parsed.parsed):
                if secret not in self._secrets:
                    declared = ", ".join(sorted(self._secrets)) or "none"
                    yield f"{where}: unknown secret {secret!r} (declared: {declared})"

    def _reference_problem(self, name: str, secrets: bool, *, bare: bool) -> str | None:
        if name == "secrets":
            if secrets:
                return None
            return "reads secrets, which only an http step's url, headers, query and json may"
        if name == "input" or name in self._earlier:
            return None
        if name in self._names:
            return f"refers to node {name!r}, which does not come before this node"
        hint = f" (a literal string is written `{name}` in backticks)" if bare else ""
        return f"refers to unknown node {name!r}{hint}"

    def _quoting_hints(self, expression: str) -> Iterator[str]:
        for name in self._names:
            quoted = reference(name)
            if quoted != name and name in expression and quoted not in expression:
                yield f"a name with '-' or a leading digit is quoted: {quoted}"


def _is_json_scalar(value: object) -> bool:
    if value is None or isinstance(value, str | bool | int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _name(node: fmt.NodeModelType) -> str:
    for key in fmt.NODE_TYPES:
        value = getattr(node, key, None)
        if isinstance(value, str):
            return value
    raise AssertionError(node)


def _jmespath_reason(exc: jmespath.exceptions.JMESPathError) -> str:
    if isinstance(exc, jmespath.exceptions.LexerError):
        return f"{exc.message} at column {exc.lexer_position + 1}"
    if isinstance(exc, jmespath.exceptions.ParseError):
        token = "the end" if exc.token_value is None else repr(exc.token_value)
        return f"{exc.msg.lower()} at column {exc.lex_position + 1} ({token})"
    return _one_line(str(exc))


_SCOPED = {
    "subexpression",
    "index_expression",
    "projection",
    "value_projection",
    "filter_projection",
    "flatten",
    "pipe",
}


def root_fields(ast: Mapping[str, Any]) -> Iterator[str]:
    """Yield the names an expression reads from the top level of the context."""
    kind = ast["type"]
    children = ast.get("children", [])
    if kind == "field":
        yield ast["value"]
    elif kind in _SCOPED:
        # Everything right of the first child is evaluated against its result.
        yield from root_fields(children[0])
    elif kind == "expref":
        # &expr is applied to the elements a function is given, not the context.
        return
    else:
        for child in children:
            if isinstance(child, dict):
                yield from root_fields(child)


def secret_fields(ast: Mapping[str, Any]) -> Iterator[str]:
    """Yield ``NAME`` of every ``secrets.NAME`` an expression reads."""
    children = [child for child in ast.get("children", []) if isinstance(child, dict)]
    if ast["type"] == "subexpression" and len(children) == 2:
        left, right = children
        if left == {"type": "field", "children": [], "value": "secrets"}:
            if right["type"] == "field":
                yield right["value"]
            return
    for child in children:
        yield from secret_fields(child)
