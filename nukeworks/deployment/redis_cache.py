"""Django's Redis cache backend, with a `clear()` that deletes only the cache's own keys.

With REDIS_URL set, one Redis database holds every piece of state the app servers share: the
`default` cache, the sign-in rate limits (`ratelimit`), the sessions (`sessions`), the engine
dispose feed and worker tables, the selector's recent paths and the task queue. Django's
`RedisCache.clear()` runs FLUSHDB, which would sign everybody out and drop queued jobs when
only a cache was meant to be emptied; this one deletes the keys under its KEY_PREFIX alone.
Everything else is Django's built-in backend (django.core.cache.backends.redis).
"""

from __future__ import annotations

import re

from django.core.cache.backends.redis import RedisCache

# Keys deleted per UNLINK while clearing (a SCAN batch; UNLINK frees memory in the background).
_BATCH = 500


def glob_escape(text: str) -> str:
    """Return `text` with the characters Redis's MATCH patterns treat specially escaped."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class PrefixedRedisCache(RedisCache):
    """RedisCache whose clear() deletes only the keys under its own KEY_PREFIX."""

    def clear(self) -> bool:
        """Delete every key of this cache (every version), and nothing else in the database."""
        if not self.key_prefix:
            # No prefix: the cache owns the whole database, as Django assumes.
            return super().clear()
        client = self._cache.get_client(None, write=True)
        batch: list[bytes] = []
        for key in client.scan_iter(match=glob_escape(self.key_prefix) + ":*", count=_BATCH):
            batch.append(key)
            if len(batch) >= _BATCH:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)
        return True
