"""Execute a step's action against the run context, and resolve ``sleep_until`` timestamps.

The run context is ``{"input": <run input>, <node name>: <node result>, ...}``.
Every failure a workflow author can cause (a bad expression result, a non-2xx
response, a callable that raises) becomes one ``ActionFailed`` with a message
for the run's ``error``; the engine retries it unless it is not ``retryable``
(``fail`` with ``retry: false``, a ``python`` step raising ``NonRetryableError``,
an http failure that ``retry_on`` does not name).

Secrets (``secrets: {NAME: env.VARIABLE}``) are read from the environment when
an http step runs, put into that request's context only, and masked (``***``)
in its result and error, so they never reach the database, a step output, an
error message or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import functools
import importlib
import inspect
import json
import logging
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import jmespath
import jmespath.exceptions
import jmespath.parser
import jmespath.visitor

from runcast.engine.definitions import (
    Action,
    FailAction,
    HttpAction,
    PythonAction,
    ReturnAction,
    Secret,
    SleepUntilNode,
)
from runcast.models import JSON

__all__ = [
    "ActionFailed",
    "NonRetryableError",
    "compile_expression",
    "evaluate_expression",
    "is_true",
    "parse_timestamp",
    "render_template",
    "resolve_until",
    "run_action",
    "template_expressions",
]

SECRET_MASK = "***"
"""What a secret's value is replaced by in a step's result and error."""

# One interpreter for every search: it holds no per-search state, and building one
# per evaluation is a measurable share of a 3-step run.
_INTERPRETER = jmespath.visitor.TreeInterpreter()


class ActionFailed(Exception):
    """An attempt of a step failed; ``message`` goes to the step's and run's ``error``.

    ``retryable`` is false for a failure that another attempt cannot fix: the run
    errors at once, whatever its retry limit.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class NonRetryableError(Exception):
    """Raise it from a ``python`` step to end the run at once, without its retries.

    Like Cloudflare Workflows' ``NonRetryableError``: the message becomes the
    step's and the run's ``error``::

        from runcast.engine import NonRetryableError

        def charge(context):
            if context["input"]["amount"] <= 0:
                raise NonRetryableError("amount must be positive")
    """


@functools.lru_cache(maxsize=4096)
def compile_expression(expression: str) -> jmespath.parser.ParsedResult:
    """Parse a JMESPath expression once; raises ``jmespath.exceptions.ParseError``.

    Backtick literals that are not JSON (`` `yes` ``) are accepted as strings
    without jmespath's deprecation warning: the format documents backticks as
    the way to write a literal string.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return jmespath.compile(expression)


def evaluate_expression(expression: str, context: Mapping[str, JSON]) -> JSON:
    """The value of one JMESPath expression over ``context``; raises ``ActionFailed``."""
    return _search(expression, context)


def _search(expression: str, context: Mapping[str, JSON]) -> JSON:
    try:
        parsed = compile_expression(expression)
        return _INTERPRETER.visit(parsed.parsed, context)
    except jmespath.exceptions.JMESPathError as exc:
        raise ActionFailed(f"expression {expression!r} failed: {exc}") from exc


def is_true(value: JSON) -> bool:
    """JMESPath truth: false, null, and empty strings, lists and objects are false."""
    return not (value is None or value is False or value in ("", [], {}))


_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


def template_expressions(template: str) -> list[str]:
    """The expressions of the ``${expression}`` parts of ``template``, in order."""
    return [match.group(1).strip() for match in _PLACEHOLDER.finditer(template)]


def render_template(template: str, context: Mapping[str, JSON]) -> str:
    """``template`` with each ``${expression}`` replaced by its value (strings as they are)."""

    def text(match: re.Match[str]) -> str:
        value = _search(match.group(1).strip(), context)
        if isinstance(value, str):
            return value
        return "" if value is None else json.dumps(value, separators=(",", ":"))

    return _PLACEHOLDER.sub(text, template)


def _evaluate(value: JSON, context: Mapping[str, JSON]) -> JSON:
    if isinstance(value, str):
        return _search(value, context)
    if isinstance(value, dict):
        return {key: _evaluate(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [_evaluate(item, context) for item in value]
    return value


async def run_action(
    action: Action,
    context: Mapping[str, JSON],
    *,
    attempt: int,
    http_client: httpx.AsyncClient,
) -> JSON:
    """Run one attempt of ``action`` and return its JSON result.

    Args:
        action: the step's action, as loaded.
        context: the run context (``input`` and each earlier node's result by name);
            not modified.
        attempt: the attempt number, 1 for the first try (``fail`` with ``times`` uses it).
        http_client: the pooled client that sends ``http`` actions (the engine's own).

    Returns:
        The action's result (JSON-serialisable).

    Raises:
        ActionFailed: the attempt failed; the message says why.
    """
    if isinstance(action, ReturnAction):
        return _evaluate(action.value, context)
    if isinstance(action, FailAction):
        if action.times is None or attempt <= action.times:
            raise ActionFailed(action.message, retryable=action.retry)
        return None
    if isinstance(action, HttpAction):
        return await http_step(action, context, http_client)
    return await _call(action, context)


async def http_step(
    action: HttpAction, context: Mapping[str, JSON], client: httpx.AsyncClient
) -> JSON:
    """One attempt of an ``http`` step; its result (or error) never holds a secret's value.

    Runs without a timeout of its own: the step's timeout covers the whole request
    (connecting, sending, every byte of the answer).
    """
    values = _read_secrets(action.secrets)
    with _masking(values) as mask:
        try:
            result = await _exchange(action, {**context, "secrets": values}, client)
        except ActionFailed as exc:
            raise ActionFailed(mask(exc.message), retryable=exc.retryable) from None
        except Exception as exc:
            # Anything unforeseen: say what kind of failure, never its text (it may hold a URL).
            raise ActionFailed(f"{action.method} request failed: {type(exc).__name__}") from None
        return _mask_value(result, mask)


def _read_secrets(secrets: tuple[Secret, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for secret in secrets:
        value = os.environ.get(secret.env)
        if value is None:
            raise ActionFailed(
                f"secret {secret.name!r} reads the environment variable {secret.env},"
                " which is not set",
                retryable=False,
            )
        values[secret.name] = value
    return values


async def _exchange(
    action: HttpAction, context: Mapping[str, JSON], client: httpx.AsyncClient
) -> JSON:
    url = render_template(action.url, context)
    where = f"{action.method} {_without_query(url)}"
    kwargs: dict[str, Any] = {
        "headers": [(name, render_template(value, context)) for name, value in action.headers],
        "timeout": None,
    }
    if action.query:  # httpx would drop the URL's own query for an empty list
        kwargs["params"] = [(name, render_template(value, context)) for name, value in action.query]
    if action.json is not None:
        kwargs["json"] = _evaluate(action.json, context)
    try:
        response = await client.request(action.method, url, **kwargs)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise ActionFailed(f"{where} failed: {exc}", retryable=False) from exc
    except httpx.HTTPError as exc:
        detail = str(exc) or type(exc).__name__
        raise ActionFailed(
            f"{where} failed: {detail}", retryable=action.retry_on.connection
        ) from exc
    if not response.is_success:
        reason = f" {response.reason_phrase}" if response.reason_phrase else ""
        raise ActionFailed(
            f"{where} returned HTTP {response.status_code}{reason}",
            retryable=action.retry_on.retries_status(response.status_code),
        )
    body = _body(response)
    if action.result == "body":
        return body
    headers: dict[str, str] = {}
    for name, value in response.headers.multi_items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return {"status": response.status_code, "headers": headers, "body": body}


def _body(response: httpx.Response) -> JSON:
    if not response.content:
        return None
    if "json" in response.headers.get("content-type", ""):
        try:
            return response.json()
        except ValueError:
            return response.text
    return response.text


def _without_query(url: str) -> str:
    # Query strings and user:password@ often carry keys; the step's error is shown to every viewer.
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return "the URL"


_active_secrets: dict[str, int] = {}
"""Secret values of the http steps in progress (with a count), masked in library log lines."""


@contextlib.contextmanager
def _masking(values: Mapping[str, str]) -> Iterator[Callable[[str], str]]:
    secrets = sorted({value for value in values.values() if value}, key=len, reverse=True)
    for secret in secrets:
        _active_secrets[secret] = _active_secrets.get(secret, 0) + 1

    def mask(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, SECRET_MASK)
        return text

    try:
        yield mask
    finally:
        for secret in secrets:
            count = _active_secrets.pop(secret) - 1
            if count:
                _active_secrets[secret] = count


def _mask_value(value: JSON, mask: Callable[[str], str]) -> JSON:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {mask(key): _mask_value(item, mask) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask_value(item, mask) for item in value]
    return value


class _SecretFilter(logging.Filter):
    """Masks the secrets of running http steps in the HTTP libraries' own log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _active_secrets:
            return True
        message = record.getMessage()
        masked = message
        for secret in sorted(_active_secrets, key=len, reverse=True):
            masked = masked.replace(secret, SECRET_MASK)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


for _name in ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2"):
    logging.getLogger(_name).addFilter(_SecretFilter())


_callables: dict[str, Callable[..., Any]] = {}


def _import_target(target: str) -> Callable[..., Any]:
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ActionFailed(f"cannot import {module_name!r}: {exc}") from exc
    function: Any = module
    for part in attribute.split("."):
        try:
            function = getattr(function, part)
        except AttributeError as exc:
            raise ActionFailed(f"{module_name!r} has no attribute {attribute!r}") from exc
    if not callable(function):
        raise ActionFailed(f"{target!r} is not callable")
    return function  # type: ignore[no-any-return]


async def _resolve(target: str) -> Callable[..., Any]:
    function = _callables.get(target)
    if function is None:
        # A first import reads files: keep it off the event loop.
        function = await asyncio.to_thread(_import_target, target)
        _callables[target] = function
    return function


async def _in_own_thread(function: Callable[[Any], Any], argument: Any) -> Any:
    """``function(argument)`` in a new daemon thread, awaited without blocking the loop.

    Not in the loop's default executor: a sync action that hangs past its timeout
    would keep one of its few workers for good (starving ``asyncio.to_thread``
    everywhere once a handful hang) and would keep the process from exiting.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def work() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (context.run(function, argument), None)
        except BaseException as exc:
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, future, outcome)

    threading.Thread(target=work, name="runcast-action", daemon=True).start()
    return await future


def _settle(future: asyncio.Future[Any], outcome: tuple[Any, BaseException | None]) -> None:
    if future.done():
        return  # the attempt timed out or was cancelled; its late result is dropped
    value, error = outcome
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


async def _call(action: PythonAction, context: Mapping[str, JSON]) -> JSON:
    function = await _resolve(action.target)
    # Its own copy: a callable that changes what it was given changes no later step.
    context = copy.deepcopy(dict(context))
    try:
        if inspect.iscoroutinefunction(function):
            result = await function(context)
        else:
            result = await _in_own_thread(function, context)
            if inspect.isawaitable(result):
                result = await result
    except ActionFailed:
        raise
    except NonRetryableError as exc:
        raise ActionFailed(
            f"{action.target} raised NonRetryableError: {exc}", retryable=False
        ) from exc
    except Exception as exc:
        raise ActionFailed(f"{action.target} raised {type(exc).__name__}: {exc}") from exc
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ActionFailed(
            f"{action.target} returned a value that is not JSON-serialisable: {exc}"
        ) from exc
    return result


def parse_timestamp(text: str) -> datetime | None:
    """The aware UTC datetime an ISO-8601 string names (naive means UTC), or ``None``."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def resolve_until(node: SleepUntilNode, context: Mapping[str, JSON]) -> datetime:
    """The moment a ``sleep_until`` node wakes, as an aware UTC datetime.

    ``node.until`` is either a literal ISO-8601 timestamp or a JMESPath
    expression over the run context that gives one.

    Raises:
        ActionFailed: the expression fails or does not give an ISO-8601 timestamp.
    """
    literal = parse_timestamp(node.until)
    if literal is not None:
        return literal
    value = _search(node.until, context)
    moment = parse_timestamp(value) if isinstance(value, str) else None
    if moment is None:
        raise ActionFailed(
            f"sleep_until {node.name!r}: {node.until!r} gave {json.dumps(value, default=str)},"
            " not an ISO-8601 timestamp"
        )
    return moment
