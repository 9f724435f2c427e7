"""The online store: one Redis and what the real-time side keeps in it, built from the settings.

    store = connect(load_realtime_settings(), salt=load_settings().pseudonym_salt)
    store.stream        the event stream (tessera.realtime.stream.RedisEventStream)
    store.state         per-visitor session state (tessera.realtime.state.SessionState)
    store.suppression   erased people and consent revokes (tessera.realtime.privacy.Suppression)

The collector, the state worker, the trigger worker and the session-aware recommendations all
take what they need from here, so every one of them reads the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
import redis.asyncio

from tessera.realtime.privacy import Suppression, redis_location
from tessera.realtime.state import SessionState
from tessera.realtime.stream import RedisEventStream
from tessera.settings import RealtimeSettings


@dataclass
class OnlineStore:
    client: redis.Redis
    stream: RedisEventStream
    state: SessionState
    suppression: Suppression
    settings: RealtimeSettings

    @property
    def location(self) -> str:
        return redis_location(self.settings.redis_url)


def connect(
    settings: RealtimeSettings, salt: str, socket_timeout: float | None = 5.0, connect_timeout: float = 2.0
) -> OnlineStore:
    """A client (no connection is made until the first command) and the store's parts over it.
    `socket_timeout` must exceed any blocking read's wait (the worker passes None)."""
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout
    )
    state = SessionState(
        client,
        prefix=settings.realtime_prefix,
        gap_seconds=settings.session_gap_seconds,
        ttl_seconds=settings.state_ttl_seconds,
        done_ttl_seconds=settings.dedup_ttl_seconds,
    )
    return OnlineStore(
        client=client,
        stream=RedisEventStream(client, settings.realtime_stream_key),
        state=state,
        suppression=Suppression(client, salt, settings.realtime_prefix),
        settings=settings,
    )


def connect_async(
    settings: RealtimeSettings, socket_timeout: float | None = 5.0, connect_timeout: float = 2.0
) -> redis.asyncio.Redis:
    """An asyncio client to the same Redis as connect()'s, for a route that must not hold the
    event loop while Redis answers (the visitors' recommendations). No connection until used."""
    return redis.asyncio.Redis.from_url(
        settings.redis_url, socket_timeout=socket_timeout, socket_connect_timeout=connect_timeout
    )
