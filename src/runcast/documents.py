"""Which GraphQL document an operation runs: persisted queries and trusted documents.

*Automatic persisted queries* (Apollo's protocol): a request whose
``extensions.persistedQuery`` is ``{"version": 1, "sha256Hash": HASH}`` may leave
out the query. The gateway answers an unknown hash with ``PersistedQueryNotFound``
(code ``PERSISTED_QUERY_NOT_FOUND``); the client then sends the query with its
hash, which must be the SHA-256 of the query (else ``BAD_USER_INPUT``), and the
gateway keeps it in a :class:`PersistedQueryStore` for the next hash-only request.

*Trusted documents* (``RUNCAST_TRUSTED_DOCUMENTS=FILE``): only the operations of a
manifest run, named by their hash or sent as their exact text; anything else is
refused with ``OPERATION_NOT_TRUSTED``. Introspection-only operations follow the
``introspection`` setting, so GraphiQL and codegen keep working where it is on.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from graphql import GraphQLError, parse
from graphql.language import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from runcast.errors import (
    BadUserInput,
    OperationNotTrusted,
    PersistedQueryNotFound,
    PersistedQueryNotSupported,
)
from runcast.settings import Settings
from runcast.trusted_documents import TrustedDocuments, load_trusted_documents

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_HASH_KEY = re.compile(r"[0-9a-zA-Z_:.-]{1,200}")


class PersistedQueryStore(Protocol):
    """Keeps query texts by their SHA-256 hash, forgetting the least recently used first.

    The gateway's default is :class:`MemoryPersistedQueryStore` (one process); a
    store shared by several replicas (Redis) implements the same two methods.
    """

    async def get(self, sha256_hash: str) -> str | None:
        """The query stored under ``sha256_hash``, or ``None``."""
        ...

    async def put(self, sha256_hash: str, query: str) -> None:
        """Store ``query`` under its hash ``sha256_hash`` (evicting older entries if full)."""
        ...


class MemoryPersistedQueryStore:
    """An in-process LRU of persisted queries, bounded by entries and by total characters.

    Args:
        max_entries: the most queries kept.
        max_chars: the most characters kept in all; a longer query is not kept at all.
    """

    def __init__(self, *, max_entries: int, max_chars: int) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._queries: OrderedDict[str, str] = OrderedDict()
        self._chars = 0

    def __len__(self) -> int:
        return len(self._queries)

    async def get(self, sha256_hash: str) -> str | None:
        query = self._queries.get(sha256_hash)
        if query is not None:
            self._queries.move_to_end(sha256_hash)
        return query

    async def put(self, sha256_hash: str, query: str) -> None:
        if len(query) > self.max_chars or self.max_entries <= 0:
            return
        previous = self._queries.pop(sha256_hash, None)
        if previous is not None:
            self._chars -= len(previous)
        self._queries[sha256_hash] = query
        self._chars += len(query)
        while len(self._queries) > self.max_entries or self._chars > self.max_chars:
            _, evicted = self._queries.popitem(last=False)
            self._chars -= len(evicted)


def query_hash(query: str) -> str:
    """The APQ hash of ``query``: the lower-case hex SHA-256 of its UTF-8 text."""
    return hashlib.sha256(query.encode()).hexdigest()


def persisted_query_hash(extensions: Mapping[str, object] | None) -> str | None:
    """The hash ``extensions.persistedQuery`` names, or ``None`` when there is none.

    Raises:
        BadUserInput: ``persistedQuery`` is not ``{"version": 1, "sha256Hash": HASH}``.
    """
    persisted = (extensions or {}).get("persistedQuery")
    if persisted is None:
        return None
    if not isinstance(persisted, Mapping) or persisted.get("version") != 1:
        raise BadUserInput('extensions.persistedQuery must be {"version": 1, "sha256Hash": ...}')
    sha256_hash = persisted.get("sha256Hash")
    if not isinstance(sha256_hash, str) or not _HASH_KEY.fullmatch(sha256_hash):
        raise BadUserInput("extensions.persistedQuery.sha256Hash must be a hex SHA-256 hash")
    return sha256_hash


class OperationDocuments:
    """Turns what a request sent (query text, persisted-query hash) into the query to run.

    Args:
        store: where automatic persisted queries are kept; ``None`` turns them off.
        trusted: the only documents that may run, or ``None`` for any document.
        introspection: whether introspection-only operations run despite ``trusted``.
        max_tokens: the token limit for parsing an untrusted document's text.
    """

    def __init__(
        self,
        *,
        store: PersistedQueryStore | None,
        trusted: TrustedDocuments | None = None,
        introspection: bool = True,
        max_tokens: int = 2000,
    ) -> None:
        self.store = store
        self.trusted = trusted
        self.introspection = introspection
        self.max_tokens = max_tokens

    @classmethod
    def from_settings(
        cls, settings: Settings, *, store: PersistedQueryStore | None = None
    ) -> OperationDocuments:
        """Documents as ``settings`` say; ``store`` replaces the in-process APQ store.

        With ``trusted_documents`` set, nothing is trusted until :meth:`load_trusted`
        has read the manifest: the gateway fails closed.
        """
        if store is None and settings.persisted_queries_cache_size > 0:
            store = MemoryPersistedQueryStore(
                max_entries=settings.persisted_queries_cache_size,
                max_chars=settings.persisted_queries_cache_bytes,
            )
        return cls(
            store=store,
            trusted=None if settings.trusted_documents is None else TrustedDocuments.of(()),
            introspection=settings.introspection,
            max_tokens=settings.max_query_tokens,
        )

    async def load_trusted(self, path: Path | None) -> None:
        """Read the manifest at ``path`` (in a thread), trusting only its documents from now.

        Raises:
            BadUserInput: the manifest cannot be read or is neither format.
        """
        if path is not None:
            self.trusted = await asyncio.to_thread(load_trusted_documents, path)

    async def resolve(
        self, query: str | None, extensions: Mapping[str, object] | None
    ) -> str | None:
        """The query text to execute (``None`` when the request has none at all).

        Raises:
            PersistedQueryNotFound: a hash-only request with a hash not stored.
            PersistedQueryNotSupported: a hash-only request while APQ is off.
            BadUserInput: a malformed ``persistedQuery``, or a hash that is not the query's.
            OperationNotTrusted: trusted documents are on and this is not one.
        """
        sha256_hash = persisted_query_hash(extensions)
        if sha256_hash is not None:
            query = await self._by_hash(sha256_hash, query)
        if self.trusted is not None and query is not None:
            self._check_trusted(query)
        return query

    async def _by_hash(self, sha256_hash: str, query: str | None) -> str:
        if query is None:
            listed = self.trusted.by_hash.get(sha256_hash) if self.trusted else None
            if listed is not None:
                return listed
            if self.store is None and self.trusted is None:
                raise PersistedQueryNotSupported
            stored = None if self.store is None else await self.store.get(sha256_hash.lower())
            if stored is None:
                raise PersistedQueryNotFound(sha256_hash)
            return stored
        if self.trusted is not None and self.trusted.by_hash.get(sha256_hash) == query:
            return query
        if not _SHA256_HEX.fullmatch(sha256_hash) or query_hash(query) != sha256_hash.lower():
            raise BadUserInput(
                "extensions.persistedQuery.sha256Hash is not the SHA-256 hash of the query"
            )
        if self.store is not None and (self.trusted is None or query in self.trusted.texts):
            await self.store.put(sha256_hash.lower(), query)
        return query

    def _check_trusted(self, query: str) -> None:
        assert self.trusted is not None
        if query in self.trusted.texts:
            return
        if self.introspection and _is_introspection_only(query, self.max_tokens):
            return
        raise OperationNotTrusted(
            "This operation is not one of the server's trusted documents: send a document "
            "from its manifest (RUNCAST_TRUSTED_DOCUMENTS), by its hash or as its exact text"
        )


def _is_introspection_only(query: str, max_tokens: int) -> bool:
    """Whether every operation of ``query`` selects only meta fields (``__schema`` and kin)."""
    try:
        document = parse(query, max_tokens=max_tokens, no_location=True)
    except GraphQLError:
        return False
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return bool(operations) and all(
        _meta_fields_only(operation.selection_set, fragments, frozenset())
        for operation in operations
    )


def _meta_fields_only(
    selection_set: SelectionSetNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    seen: frozenset[str],
) -> bool:
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if not selection.name.value.startswith("__"):
                return False
        elif isinstance(selection, InlineFragmentNode):
            if not _meta_fields_only(selection.selection_set, fragments, seen):
                return False
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            fragment = fragments.get(selection.name.value)
            if fragment is None or not _meta_fields_only(
                fragment.selection_set, fragments, seen | {selection.name.value}
            ):
                return False
    return True


__all__ = [
    "MemoryPersistedQueryStore",
    "OperationDocuments",
    "PersistedQueryStore",
    "persisted_query_hash",
    "query_hash",
]
