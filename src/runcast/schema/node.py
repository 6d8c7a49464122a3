"""The ``Node`` interface of Relay's global object identification."""

from __future__ import annotations

import strawberry


@strawberry.interface(
    description="An object with a global id: node(id:) fetches it again, and normalized "
    "client caches key on it."
)
class Node:
    id: strawberry.ID = strawberry.field(
        description="Opaque and stable: the same object always has the same id."
    )


__all__ = ["Node"]
