"""Automatic persisted queries shared by the replicas of a cluster, in its Redis.

One hash holds the queries by their SHA-256, a sorted set their recency (a Redis
counter, not a clock, so replicas agree), and a counter their total bytes; one
script stores a query and evicts the least recently used ones until both bounds
hold. While Redis is gone, ``get`` finds nothing and ``put`` keeps nothing: clients
then send the full query (Apollo's link does so by itself), which still runs.
"""

from __future__ import annotations

from typing import cast

from runcast.live.cluster import ClusterUnavailable, RedisLink

_PUT = """
local old = redis.call('HSTRLEN', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local total = redis.call('INCRBY', KEYS[3], string.len(ARGV[2]) - old)
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[1])
while redis.call('ZCARD', KEYS[2]) > tonumber(ARGV[3]) or total > tonumber(ARGV[4]) do
  local popped = redis.call('ZPOPMIN', KEYS[2])
  if #popped == 0 then break end
  total = redis.call('INCRBY', KEYS[3], -redis.call('HSTRLEN', KEYS[1], popped[1]))
  redis.call('HDEL', KEYS[1], popped[1])
end
return total
"""
_GET = """
local query = redis.call('HGET', KEYS[1], ARGV[1])
if query then redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[1]) end
return query
"""


class RedisPersistedQueryStore:
    """A :class:`~runcast.documents.PersistedQueryStore` in the cluster's Redis, bounded LRU.

    Args:
        link: the replica's Redis link (its lifetime stays with the caller).
        max_entries: the most queries kept.
        max_bytes: the most bytes of query text kept; a longer query is not kept.
    """

    def __init__(self, link: RedisLink, *, max_entries: int, max_bytes: int) -> None:
        self.link = link
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        prefix = f"{link.keys.prefix}:apq"
        self._keys = [f"{prefix}:queries", f"{prefix}:recency", f"{prefix}:bytes", f"{prefix}:tick"]
        self._put = link.client.register_script(_PUT)
        self._get = link.client.register_script(_GET)

    async def get(self, sha256_hash: str) -> str | None:
        try:
            found = await self.link.call(
                "apq_get", lambda: self._get(keys=self._keys, args=[sha256_hash])
            )
        except ClusterUnavailable:
            return None
        return None if found is None else cast(bytes, found).decode()

    async def put(self, sha256_hash: str, query: str) -> None:
        encoded = query.encode()
        if len(encoded) > self.max_bytes or self.max_entries <= 0:
            return
        args: list[bytes | str | int] = [sha256_hash, encoded, self.max_entries, self.max_bytes]
        try:
            await self.link.call("apq_put", lambda: self._put(keys=self._keys, args=args))
        except ClusterUnavailable:
            return


__all__ = ["RedisPersistedQueryStore"]
