"""The event stream behind one small interface: append, read as a group, acknowledge, reclaim.

Everything real-time goes through :class:`EventStream`; only :class:`RedisEventStream` knows Redis.
The semantics are those of Redis Streams consumer groups (and of Kafka's consumer groups, so a
deployment can swap the implementation; docs/realtime.md, "Swapping Redis Streams for Kafka"):

- every consumer group sees every event; within a group each event goes to one consumer;
- an event stays *pending* for its group until acknowledged, and a consumer acknowledges only after
  the event's effects are durable (session state written, landing file renamed into place);
- events a dead consumer left pending are reclaimed by another after `min_idle_ms`, so delivery is
  at least once, and every effect is idempotent on the event's `messageId`.

Events are JSON objects (the collector's normalised events, tessera.realtime.events), stored as
one field per stream entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import orjson
import redis

FIELD = b"e"


@dataclass(frozen=True)
class Entry:
    id: str  # the stream's own id: ordered, "<ms>-<seq>" in Redis
    event: dict


class EventStream(Protocol):
    def append(self, events: list[dict]) -> list[str]:
        """Append events in order; returns their ids. Durable when it returns (see redis_server)."""

    def append_unique(self, events: list[dict], keys: list[str], ttl_seconds: int) -> list[bool]:
        """Append each event whose key (its messageId) was not appended within `ttl_seconds`,
        atomically with marking the key: True for each appended, False for a duplicate. Durable
        when it returns. What the collector uses: a retried batch appends nothing twice, and a
        crash between marking and appending cannot turn an event into a "duplicate" never stored."""

    def ensure_group(self, group: str, start: str = "0") -> None:
        """Create the consumer group if missing; a new group starts at `start` ("0": every event)."""

    def read(self, group: str, consumer: str, count: int, block_ms: int) -> list[Entry]:
        """Events never delivered to this group, at most `count`, waiting up to `block_ms` (0: not at all)."""

    def read_own_pending(self, group: str, consumer: str, count: int, after: str = "0") -> list[Entry]:
        """Events delivered to this consumer (by name) and not acknowledged, after the id `after`:
        what a restarted consumer of the same name processes first (it died holding them)."""

    def groups(self) -> list[str]:
        """The consumer groups that exist on the stream."""

    def ack(self, group: str, ids: Iterable[str]) -> int:
        """Acknowledge processed events; returns how many were pending."""

    def reclaim(self, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over events pending longer than `min_idle_ms` in the group (a consumer died)."""

    def pending(self, group: str) -> int:
        """Events delivered to the group and not yet acknowledged."""

    def length(self) -> int:
        """Events held by the stream (acknowledged ones are trimmed by `trim_acknowledged`)."""

    def trim_acknowledged(self, groups: Iterable[str]) -> int:
        """Drop events every named group has acknowledged; returns how many were dropped."""


def _entries(raw) -> list[Entry]:
    out = []
    for entry_id, fields in raw:
        # deleted while pending: XREADGROUP 0 returns it without fields (redis-py: {} or None),
        # XAUTOCLAIM in its own list; nothing to process
        if not fields:
            continue
        out.append(Entry(entry_id.decode(), orjson.loads(fields[FIELD])))
    return out


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


_APPEND_UNIQUE = """
-- KEYS[1]: the stream; KEYS[2..]: each event's idempotency key. ARGV[1]: their TTL in seconds;
-- ARGV[2..]: each event's JSON. One script: the mark and the append are one write in the AOF.
local out = {}
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then
    redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""


class RedisEventStream:
    """Redis Streams: XADD, XREADGROUP, XACK, XAUTOCLAIM on one stream key."""

    def __init__(self, client: redis.Redis, key: str = "tessera:events"):
        self.client = client
        self.key = key
        self._append_unique = client.register_script(_APPEND_UNIQUE)

    def append_unique(self, events: list[dict], keys: list[str], ttl_seconds: int) -> list[bool]:
        if len(events) != len(keys):
            raise ValueError(f"append_unique needs one key per event, got {len(keys)} keys for {len(events)} events")
        if not events:
            return []
        appended = self._append_unique(
            keys=[self.key, *keys], args=[max(1, int(ttl_seconds)), *(orjson.dumps(e) for e in events)]
        )
        return [bool(a) for a in appended]

    def append(self, events: list[dict]) -> list[str]:
        if not events:
            return []
        pipe = self.client.pipeline(transaction=True)
        for event in events:
            pipe.xadd(self.key, {FIELD: orjson.dumps(event)})
        return [i.decode() for i in pipe.execute()]

    def ensure_group(self, group: str, start: str = "0") -> None:
        try:
            self.client.xgroup_create(self.key, group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, group: str, consumer: str, count: int, block_ms: int | None) -> list[Entry]:
        # XREADGROUP BLOCK 0 waits forever: no BLOCK at all is what 0 (or None) means here
        block = block_ms if block_ms is not None and block_ms > 0 else None
        raw = self.client.xreadgroup(group, consumer, {self.key: ">"}, count=count, block=block)
        return _entries(raw[0][1]) if raw else []

    def read_own_pending(self, group: str, consumer: str, count: int, after: str = "0") -> list[Entry]:
        while True:
            raw = self.client.xreadgroup(group, consumer, {self.key: after}, count=count)
            raw = raw[0][1] if raw else []
            # entries deleted while pending (an erasure's XDEL) come back without fields: nothing
            # to process, and left pending they would hold back trim_acknowledged forever
            gone = [entry_id for entry_id, fields in raw if not fields]
            if gone:
                self.client.xack(self.key, group, *gone)
            entries = _entries(raw)
            if entries or not gone:
                return entries
            after = gone[-1].decode() if isinstance(gone[-1], bytes) else gone[-1]

    def groups(self) -> list[str]:
        try:
            return [g["name"].decode() for g in self.client.xinfo_groups(self.key)]
        except redis.ResponseError as exc:
            if "no such key" in str(exc).lower():
                return []
            raise

    def ack(self, group: str, ids: Iterable[str]) -> int:
        ids = list(ids)
        return int(self.client.xack(self.key, group, *ids)) if ids else 0

    def reclaim(self, group: str, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        result = self.client.xautoclaim(
            self.key, group, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count
        )
        return _entries(result[1])

    def pending(self, group: str) -> int:
        return int(self.client.xpending(self.key, group)["pending"])

    def length(self) -> int:
        return int(self.client.xlen(self.key))

    def trim_acknowledged(self, groups: Iterable[str]) -> int:
        """XTRIM MINID to the oldest event some group still needs (pending, or not yet delivered)."""
        floor: tuple[int, int] | None = None
        try:
            infos = {g["name"].decode(): g for g in self.client.xinfo_groups(self.key)}
        except redis.ResponseError as exc:
            if "no such key" in str(exc).lower():
                return 0  # no stream yet: nothing to drop
            raise
        for group in groups:
            info = infos.get(group)
            if info is None:  # a group that does not exist yet needs everything
                return 0
            summary = self.client.xpending(self.key, group)
            needed = summary["min"].decode() if summary["pending"] else None
            delivered = info["last-delivered-id"].decode()
            # not yet delivered: everything after last-delivered-id; the first such id is above it
            ms, seq = _id_tuple(delivered)
            oldest = min(_id_tuple(needed), (ms, seq + 1)) if needed else (ms, seq + 1)
            floor = oldest if floor is None else min(floor, oldest)
        if floor is None:
            return 0
        return int(self.client.xtrim(self.key, minid=f"{floor[0]}-{floor[1]}", approximate=False))
