"""The state worker: stream → session state and micro-batch landing files, acknowledged after both.

One consumer of the group "state" (several may run: each event goes to one of them):

1. **Read** new events (XREADGROUP); at start first the events this consumer (by name) was
   holding when it died; every `reclaim_idle_ms / 2` also the events another consumer has held
   unacknowledged for `reclaim_idle_ms` (XAUTOCLAIM: that consumer died).
2. **Privacy.** An event of an erased person (the suppression list) or of a visitor whose consent
   was revoked (tessera/realtime/privacy.py) is dropped, and that visitor's session state deleted;
   a consent revoke event itself deletes it. The check runs again after the state update, so a
   revoke or erasure landing meanwhile still removes what this batch wrote.
3. **Session state**: SessionState.record_many (Lua, idempotent on messageId: a redelivered event
   is applied once, and keeps the session id of its first delivery).
4. **Landing rows** (tessera/realtime/landing_files.py) are buffered; when the buffer holds
   `flush_max_events` events or its oldest is `flush_max_seconds` old, they are written as one
   file: staged and fsynced, every event's messageId marked `{p}landed:<messageId>` = the file's
   name, renamed into `events/`, and only then are the events acknowledged on the stream.
   Then the stream drops the events every group acknowledged (`trim_groups`, and every other
   group that exists on the stream).

**Exactly once in the landing files.** A killed worker's events are delivered again. Before a
file is written, the events whose `landed` mark names a file that exists in `events/` are left out:
a worker killed after its rename and before its acknowledgement writes nothing twice. A worker
killed before its rename leaves a mark naming a file that never appeared, so the events are
written again. The one way to a second row is two live workers holding the same event (one of them
stalled longer than `reclaim_idle_ms`, then both wrote it); dbt's staging flags an event_id
delivered again as a duplicate (stg_events, `duplicate event_id`), so it still counts once.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis

from tessera.realtime import landing_files
from tessera.realtime.privacy import Suppression, consent_change, forget_visitors, ids_with_aliases
from tessera.realtime.state import SessionState
from tessera.realtime.stream import Entry, EventStream

log = logging.getLogger("tessera.realtime.worker")

GROUP = "state"


@dataclass
class WorkerStats:
    read: int = 0  # stream entries processed (new, own pending, reclaimed)
    reclaimed: int = 0  # of them, taken over from another consumer or from this one's last life
    applied: int = 0  # applied to the session state now
    redelivered: int = 0  # already applied before (at-least-once redelivery)
    suppressed: int = 0  # dropped: erased person, revoked consent, or a revoke event
    rows: int = 0  # landing rows written
    rows_already_landed: int = 0  # rows of redelivered events found in an existing file
    not_landed_without_anonymous_id: int = 0
    files: int = 0
    acked: int = 0
    trimmed: int = 0
    forgotten_keys: int = 0


@dataclass
class _Pending:
    entry_id: str
    message_id: str
    rows: list[dict] = field(default_factory=list)


def default_consumer() -> str:
    """The host's name: stable across restarts, so a restarted worker finds what it was holding."""
    return f"state-{socket.gethostname()}"


class StateWorker:
    def __init__(
        self,
        stream: EventStream,
        state: SessionState,
        suppression: Suppression,
        landing_dir: Path,
        *,
        group: str = GROUP,
        consumer: str | None = None,
        consent_category: str = "analytics",
        flush_max_events: int = 2000,
        flush_max_seconds: float = 2.0,
        reclaim_idle_ms: int = 60_000,
        trim_groups: tuple[str, ...] = (GROUP,),
        landed_ttl_seconds: int = 7 * 86400,
        read_count: int = 500,
        clock=time.monotonic,
    ):
        self.stream = stream
        self.state = state
        self.client: redis.Redis = state.client
        self.suppression = suppression
        self.landing_dir = Path(landing_dir)
        self.group = group
        self.consumer = consumer or default_consumer()
        self.consent_category = consent_category
        self.flush_max_events = flush_max_events
        self.flush_max_seconds = flush_max_seconds
        self.reclaim_idle_ms = reclaim_idle_ms
        self.trim_groups = tuple(trim_groups)
        self.landed_ttl_seconds = landed_ttl_seconds
        self.read_count = read_count
        self.clock = clock
        self.stats = WorkerStats()
        self._buffer: dict[str, _Pending] = {}  # by stream entry id, in read order
        self._oldest: float | None = None
        self._next_reclaim = 0.0
        self._started = False
        self._recover = False  # a batch failed half-way (Redis went away): read own pending again

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the group if missing, drop this consumer's half-written files, and process the
        events it held when it last died (they are still pending under its name)."""
        self.stream.ensure_group(self.group)
        landing_files.remove_leftovers(self.landing_dir, self.consumer)
        while True:
            entries = self.stream.read_own_pending(self.group, self.consumer, self.read_count)
            if not entries:
                break
            self.stats.reclaimed += len(entries)
            self._process(entries)
            self.flush()
        self._started = True

    def poll(self, block_ms: int = 200) -> int:
        """One round: reclaim when due, read new events (waiting at most until the next flush is
        due), process them, flush when due. Returns the entries processed."""
        if not self._started:
            self.start()
        processed = 0
        if self._recover:
            processed += self._recover_own_pending()
        now = self.clock()
        if now >= self._next_reclaim:
            self._next_reclaim = now + self.reclaim_idle_ms / 2000
            reclaimed = [
                e
                for e in self.stream.reclaim(self.group, self.consumer, self.reclaim_idle_ms, self.read_count)
                if e.id not in self._buffer
            ]
            self.stats.reclaimed += len(reclaimed)
            processed += self._process(reclaimed)
        wait = block_ms
        if self._oldest is not None:
            wait = max(0, min(wait, int((self._oldest + self.flush_max_seconds - self.clock()) * 1000)))
        processed += self._process(self.stream.read(self.group, self.consumer, self.read_count, wait))
        if self.due():
            self.flush()
        return processed

    def _recover_own_pending(self) -> int:
        """After a batch failed half-way (Redis went away mid-update), the events this consumer
        holds and has not buffered: processed now rather than after `reclaim_idle_ms`."""
        processed, after = 0, "0"
        while True:
            page = self.stream.read_own_pending(self.group, self.consumer, self.read_count, after)
            if not page:
                break
            after = page[-1].id
            fresh = [e for e in page if e.id not in self._buffer]
            self.stats.reclaimed += len(fresh)
            processed += self._process(fresh)
        self._recover = False
        return processed

    def due(self) -> bool:
        return bool(self._buffer) and (
            len(self._buffer) >= self.flush_max_events
            or (self._oldest is not None and self.clock() - self._oldest >= self.flush_max_seconds)
        )

    def run(self, stop: threading.Event, block_ms: int = 200, retry_seconds: float = 1.0) -> WorkerStats:
        """Poll until `stop` is set, then write what is buffered. Redis going away (restarting) is
        waited out: the buffered events stay pending on the stream, and are written once it answers."""
        while not stop.is_set():
            try:
                self.poll(block_ms)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("Redis unavailable (%s); retrying in %.1f s", type(exc).__name__, retry_seconds)
                self._recover = True
                stop.wait(retry_seconds)
        try:
            self.flush()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # nothing is lost: unacknowledged events are delivered again to the next worker
            log.warning("stopping with %d events unwritten (%s): they stay pending", len(self._buffer), exc)
        return self.stats

    # --- one batch --------------------------------------------------------------------------------
    def _process(self, entries: list[Entry]) -> int:
        if not entries:
            return 0
        self.stats.read += len(entries)
        events = [e.event for e in entries]
        ids = ids_with_aliases(self.state, events)
        blocked = self.suppression.blocked(ids)
        forget: list[str] = []
        keep: list[int] = []
        for i, event in enumerate(events):
            if blocked[i] or consent_change(event, self.consent_category) is False:
                forget += ids[i]
            else:
                keep.append(i)
        results = self.state.record_many([events[i] for i in keep], self.group)
        # a revoke or an erasure that arrived while the batch was applied: undo what it wrote
        late = self.suppression.blocked([ids[i] for i in keep])
        landed = []
        for i, result, now_blocked in zip(keep, results, late, strict=True):
            if now_blocked:
                forget += ids[i]
                continue
            landed.append(i)
            if result["applied"]:
                self.stats.applied += 1
            else:
                self.stats.redelivered += 1
            rows = landing_files.landing_rows(events[i], result["session_id"])
            if not rows and events[i].get("event_type") and not events[i].get("anonymous_id"):
                self.stats.not_landed_without_anonymous_id += 1
            self._buffer[entries[i].id] = _Pending(entries[i].id, events[i]["message_id"], rows)
        landed_set = set(landed)
        suppressed = [i for i in range(len(entries)) if i not in landed_set]
        for i in suppressed:  # nothing to write: acknowledged with the next file
            self._buffer[entries[i].id] = _Pending(entries[i].id, events[i]["message_id"])
        self.stats.suppressed += len(suppressed)
        if forget:
            self.stats.forgotten_keys += forget_visitors(self.state, forget)
        if self._buffer and self._oldest is None:
            self._oldest = self.clock()
        return len(entries)

    # --- the landing file -------------------------------------------------------------------------
    def _landed_key(self, message_id: str) -> str:
        return f"{self.state.prefix}landed:{message_id}"

    def flush(self) -> Path | None:
        """Write the buffered rows as one landing file, then acknowledge their events; returns the
        file (None when no row was left to write)."""
        if not self._buffer:
            return None
        pending = list(self._buffer.values())
        with_rows = [p for p in pending if p.rows]
        marks = self.client.mget([self._landed_key(p.message_id) for p in with_rows]) if with_rows else []
        events_dir = self.landing_dir / landing_files.SOURCE
        fresh, seen = [], set()
        for p, mark in zip(with_rows, marks, strict=True):
            if (mark and (events_dir / mark.decode()).exists()) or p.message_id in seen:
                self.stats.rows_already_landed += len(p.rows)
            else:
                fresh.append(p)
                seen.add(p.message_id)
        path = None
        if fresh:
            written_at = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            name = landing_files.file_name(fresh[0].entry_id, self.consumer, written_at)
            part = landing_files.stage(self.landing_dir, name, [row for p in fresh for row in p.rows])
            try:
                pipe = self.client.pipeline(transaction=False)
                for p in fresh:
                    pipe.set(self._landed_key(p.message_id), name, ex=self.landed_ttl_seconds)
                pipe.execute()
                path = landing_files.publish(self.landing_dir, part)
            except BaseException:
                part.unlink(missing_ok=True)  # the next flush stages the rows again under a new name
                raise
            self.stats.files += 1
            self.stats.rows += sum(len(p.rows) for p in fresh)
        self.stats.acked += self.stream.ack(self.group, [p.entry_id for p in pending])
        self._buffer.clear()
        self._oldest = None
        self.stats.trimmed += self.stream.trim_acknowledged(sorted({*self.trim_groups, *self.stream.groups()}))
        return path

    def summary(self) -> dict:
        return asdict(self.stats)
