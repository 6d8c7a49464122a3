"""Hints for JSON Schema generators, carried in ``Annotated`` metadata of the wire shapes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SchemaHint:
    """Keywords a string or array field adds to its JSON Schema (``format``, ``minItems``).

    Pydantic's generator (the tests' ``TypeAdapter(shape).json_schema()``) reads them
    through ``__get_pydantic_json_schema__``; nothing at run time depends on them.
    """

    keywords: dict[str, object] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.keywords.items())))

    def __get_pydantic_json_schema__(
        self, core_schema: object, handler: Callable[[object], dict[str, Any]]
    ) -> dict[str, Any]:
        return {**handler(core_schema), **self.keywords}


DATE_TIME = SchemaHint({"format": "date-time"})
UUID = SchemaHint({"format": "uuid"})
NOT_EMPTY = SchemaHint({"minItems": 1})
