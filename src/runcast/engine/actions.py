"""Execute a step's action against the run context, and resolve ``sleep_until`` timestamps.

The run context is ``{"input": <run input>, <node name>: <node result>, ...}``.
Every failure a workflow author can cause (a bad expression result, a non-2xx
response, a callable that raises) becomes one ``ActionFailed`` with a message
for the run's ``error``; the engine decides whether to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import importlib
import inspect
import json
import threading
import warnings
from collections.abc import Callable, Mapping
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
    SleepUntilNode,
)
from runcast.models import JSON

__all__ = [
    "ActionFailed",
    "compile_expression",
    "parse_timestamp",
    "resolve_until",
    "run_action",
]

HTTP_TIMEOUT_SECONDS = 30.0
"""Timeout of the client made for an ``http`` action when the engine gives none."""

# One interpreter for every search: it holds no per-search state, and building one
# per evaluation is a measurable share of a 3-step run.
_INTERPRETER = jmespath.visitor.TreeInterpreter()


class ActionFailed(Exception):
    """An attempt of a step failed; ``message`` goes to the step's and run's ``error``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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


def _search(expression: str, context: Mapping[str, JSON]) -> JSON:
    try:
        parsed = compile_expression(expression)
        return _INTERPRETER.visit(parsed.parsed, context)
    except jmespath.exceptions.JMESPathError as exc:
        raise ActionFailed(f"expression {expression!r} failed: {exc}") from exc


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
    http_client: httpx.AsyncClient | None,
) -> JSON:
    """Run one attempt of ``action`` and return its JSON result.

    Args:
        action: the step's action, as loaded.
        context: the run context (``input`` and each earlier node's result by name);
            not modified.
        attempt: the attempt number, 1 for the first try (``fail`` with ``times`` uses it).
        http_client: the pooled client for ``http`` actions; ``None`` makes a
            short-lived client for this request.

    Returns:
        The action's result (JSON-serialisable).

    Raises:
        ActionFailed: the attempt failed; the message says why.
    """
    if isinstance(action, ReturnAction):
        return _evaluate(action.value, context)
    if isinstance(action, FailAction):
        if action.times is None or attempt <= action.times:
            raise ActionFailed(action.message)
        return None
    if isinstance(action, HttpAction):
        if http_client is None:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as client:
                return await _request(action, client)
        return await _request(action, http_client)
    return await _call(action, context)


async def _request(action: HttpAction, client: httpx.AsyncClient) -> JSON:
    where = f"{action.method} {_without_secrets(action.url)}"
    kwargs: dict[str, Any] = {"headers": list(action.headers)}
    if action.json is not None:
        kwargs["json"] = action.json
    try:
        response = await client.request(action.method, action.url, **kwargs)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        detail = str(exc) or type(exc).__name__
        raise ActionFailed(f"{where} failed: {detail}") from exc
    if not response.is_success:
        reason = f" {response.reason_phrase}" if response.reason_phrase else ""
        raise ActionFailed(f"{where} returned HTTP {response.status_code}{reason}")
    if not response.content:
        return None
    if "json" in response.headers.get("content-type", ""):
        try:
            return response.json()
        except ValueError:
            return response.text
    return response.text


def _without_secrets(url: str) -> str:
    # Query strings and user:password@ often carry keys; the step's error is shown to every viewer.
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return "the URL"


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
    try:
        if inspect.iscoroutinefunction(function):
            result = await function(context)
        else:
            result = await _in_own_thread(function, context)
            if inspect.isawaitable(result):
                result = await result
    except ActionFailed:
        raise
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
