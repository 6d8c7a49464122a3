"""Persisted queries shared by replicas through the cluster's Redis (a real redis-server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry

from gateway_client import gateway
from redis_support import RedisServer
from runcast._persisted_redis import RedisPersistedQueryStore
from runcast.documents import query_hash
from runcast.engine import Engine
from runcast.live.cluster import ClusterKeys, ClusterMetrics, RedisLink
from runcast.settings import Settings
from runcast.upstream.local import LocalUpstream


@asynccontextmanager
async def store(
    server: RedisServer, *, max_entries: int = 10, max_bytes: int = 1000
) -> AsyncIterator[RedisPersistedQueryStore]:
    """A store on its own RedisLink (one replica) to ``server``."""
    async with RedisLink(
        server.url, keys=ClusterKeys("t"), metrics=ClusterMetrics(CollectorRegistry())
    ) as link:
        yield RedisPersistedQueryStore(link, max_entries=max_entries, max_bytes=max_bytes)


async def test_a_query_stored_by_one_replica_is_found_by_another(
    redis_server: RedisServer,
) -> None:
    """What one replica stores, another finds; unknown hashes are None."""
    async with store(redis_server) as one, store(redis_server) as two:
        await one.put("h1", "{ workflows { id } }")
        assert await two.get("h1") == "{ workflows { id } }"
        assert await two.get("h2") is None


async def test_the_redis_store_evicts_the_least_recently_used(redis_server: RedisServer) -> None:
    """Past max_entries or max_bytes the least recently used go; oversized queries never stay."""
    async with store(redis_server, max_entries=2, max_bytes=12) as lru:
        await lru.put("a", "aaaa")
        await lru.put("b", "bbbb")
        assert await lru.get("a") == "aaaa"  # b is now the least recently used
        await lru.put("c", "cccc")
        assert [await lru.get(k) for k in "abc"] == ["aaaa", None, "cccc"]
        await lru.put("d", "dddddddddd")  # 10 bytes: a and c must go to fit in 12
        assert [await lru.get(k) for k in "acd"] == [None, None, "dddddddddd"]
        await lru.put("e", "e" * 13)
        assert await lru.get("e") is None


async def test_without_redis_the_store_finds_and_keeps_nothing(redis_server: RedisServer) -> None:
    """While Redis is gone, get is None and put does not fail (clients then send the query)."""
    async with store(redis_server) as gone:
        await gone.put("h", "{ workflows { id } }")
        await redis_server.kill()
        assert await gone.get("h") is None
        await gone.put("h2", "{ workflows { name } }")


async def test_replicas_in_cluster_mode_share_persisted_queries(
    redis_server: RedisServer, engine: Engine
) -> None:
    """A query registered on one replica runs by its hash alone on another (RUNCAST_REDIS_URL)."""
    settings = Settings(redis_url=redis_server.url, cluster_secret="apq-test-secret")
    query = "{ workflows { id } }"
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": query_hash(query)}}
    async with (
        gateway(LocalUpstream(engine), settings) as one,
        gateway(LocalUpstream(engine), settings) as two,
    ):
        registered = await one.http.post(
            "/graphql", json={"query": query, "extensions": extensions}
        )
        by_hash = await two.http.post("/graphql", json={"extensions": extensions})
    assert "errors" not in registered.json()
    assert by_hash.json() == registered.json()
