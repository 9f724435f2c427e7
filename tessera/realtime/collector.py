"""The event collector: `POST /v1/events` on the serving API, Segment's batch format in.

The body is what Segment's HTTP tracking API takes at `/v1/batch`, `{"batch": [message, ...],
"sentAt": ...}`, or one message object on its own, so a shop's tracking can point here. At most
MAX_BATCH_EVENTS messages and MAX_BODY_BYTES (as Segment's limits); more is a 413.

**All or nothing.** Every message is normalised first (tessera.realtime.events.normalise). If any
is invalid, the answer is 400 with one error per invalid message (its index in the batch, its
messageId when it has one, and the problem naming the field and the value), and *none* is
accepted: the client fixes the batch and sends it again whole, and since the valid messages were
not stored there is nothing to reconcile. Had the valid part been accepted, the resend would
still be safe (messageId makes it idempotent), but a client that drops a batch on a 400 would then
have lost only some of it, silently; this way a 400 always means "nothing of this was stored".

**Then, per message, in order:**

1. Erased people (the suppression list) are dropped: `suppressed`.
2. A "Segment Consent Preference Updated" event with the configured category
   (TESSERA_CONSENT_CATEGORY, default analytics) false revokes the visitor's consent: its
   userId, anonymousId and the customer an identify joined it to are recorded as revoked, the
   visitor's session state is deleted at once, and the event is appended (the state worker
   deletes again what it applied from earlier events meanwhile, and never lands it). With the
   category true, it lifts a revoke.
3. An event whose own `context.consent.categoryPreferences` has the category false, or of a
   visitor whose consent is revoked: `suppressed`.
4. The rest are appended to the stream, each atomically with the mark of its messageId (kept
   TESSERA_DEDUP_TTL_DAYS): a messageId seen before is a `duplicate`, counted, not appended again.

The 200 answer comes after the append returned, and Redis runs with `appendfsync always`
(tessera/realtime/redis_server.py): an event acknowledged to a client is on disk. When Redis does
not answer: 503, nothing acknowledged, the client retries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import redis
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tessera.realtime.events import MAX_BATCH_EVENTS, normalise, received_now
from tessera.realtime.privacy import consent_change, consented, forget_visitors, ids_with_aliases
from tessera.realtime.store import OnlineStore

log = logging.getLogger("tessera.realtime.collector")

MAX_BODY_BYTES = 500 * 1024
EVENTS_PATH = "/v1/events"


class Accepted(BaseModel):
    accepted: int = Field(description="Events appended to the stream now.")
    duplicates: int = Field(description="Events whose messageId was already received: counted, not appended again.")
    suppressed: int = Field(description="Events not tracked: consent not given or revoked, or an erased person.")


class EventError(BaseModel):
    index: int = Field(description="The message's position in the batch (0-based).")
    messageId: str | None = Field(description="The message's messageId, when it has one.")
    message: str = Field(description="What is wrong, naming the field and its value.")


class Rejected(BaseModel):
    detail: str
    errors: list[EventError] = Field(default_factory=list)


@dataclass
class CollectorError(Exception):
    status: int
    detail: str
    errors: list[dict] = field(default_factory=list)


def messages_of(payload: Any) -> list[Any]:
    """The messages of a batch body, or of a single message; CollectorError (400/413) otherwise."""
    if isinstance(payload, dict) and "batch" in payload:
        batch = payload["batch"]
        if not isinstance(batch, list):
            raise CollectorError(400, f"batch must be a list of messages, got {type(batch).__name__}")
        sent_at = payload.get("sentAt")
        messages = [
            {**m, "sentAt": sent_at} if sent_at is not None and isinstance(m, dict) and "sentAt" not in m else m
            for m in batch
        ]
    elif isinstance(payload, dict) and "type" in payload:
        messages = [payload]
    else:
        raise CollectorError(
            400, 'the body must be a batch {"batch": [message, ...], "sentAt": ...} or one message with a type'
        )
    if not messages:
        raise CollectorError(400, "batch is empty")
    if len(messages) > MAX_BATCH_EVENTS:
        raise CollectorError(413, f"a batch holds at most {MAX_BATCH_EVENTS} messages, got {len(messages)}")
    return messages


def _message_id(raw: Any) -> str | None:
    value = raw.get("messageId") if isinstance(raw, dict) else None
    return str(value)[:128] if isinstance(value, str | int) and not isinstance(value, bool) else None


class Collector:
    def __init__(self, store: OnlineStore):
        self.store = store
        self.category = store.settings.consent_category
        self.dedup_ttl = store.settings.dedup_ttl_seconds
        self.seen_prefix = f"{store.settings.realtime_prefix}seen:"

    def validate(self, payload: Any, received_at: datetime) -> list[dict]:
        """Every message normalised, or CollectorError 400 with one error per invalid message."""
        messages = messages_of(payload)
        events, errors = [], []
        for index, raw in enumerate(messages):
            try:
                events.append(normalise(raw, received_at))
            except ValueError as exc:
                errors.append({"index": index, "messageId": _message_id(raw), "message": str(exc)})
        if errors:
            raise CollectorError(
                400,
                f"{len(errors)} of {len(messages)} messages are invalid; none was accepted: "
                "fix them and send the batch again (messageId makes the resend safe)",
                errors,
            )
        return events

    def collect(self, payload: Any, received_at: datetime | None = None) -> Accepted:
        events = self.validate(payload, received_at or received_now())
        store = self.store
        ids = ids_with_aliases(store.state, events)
        hashed = [store.suppression.hashes(i) for i in ids]
        erased, revoked = store.suppression.lookup(h for hs in hashed for h in hs)
        changes = [consent_change(e, self.category) for e in events]
        # a consent change resent (a retried batch) must not undo a later one: only new ones count
        new = [True] * len(events)
        if any(c is not None for c in changes):
            pipe = store.client.pipeline(transaction=False)
            changed = [i for i, c in enumerate(changes) if c is not None]
            for i in changed:
                pipe.exists(self.seen_prefix + events[i]["message_id"])
            for i, seen in zip(changed, pipe.execute(), strict=True):
                new[i] = not seen
        revoked_now: dict[str, bool] = {}  # hash -> revoked (True) or granted (False) by this batch
        forget: list[str] = []
        append: list[int] = []
        suppressed = 0
        for i, event in enumerate(events):
            hs = hashed[i]
            if any(h in erased for h in hs):
                suppressed += 1
                continue
            if changes[i] is False:
                if new[i]:
                    revoked.update(hs)
                    revoked_now.update(dict.fromkeys(hs, True))
                    forget += ids[i]
                append.append(i)
                continue
            if changes[i] is True and new[i]:
                revoked.difference_update(hs)
                revoked_now.update(dict.fromkeys(hs, False))
            if not consented(event, self.category) or any(h in revoked for h in hs):
                suppressed += 1
                continue
            append.append(i)
        if revoked_now:
            pipe = store.client.pipeline(transaction=True)
            now_revoked = [h for h, r in revoked_now.items() if r]
            now_granted = [h for h, r in revoked_now.items() if not r]
            if now_revoked:
                pipe.sadd(store.suppression.revoked_key, *now_revoked)
            if now_granted:
                pipe.srem(store.suppression.revoked_key, *now_granted)
            pipe.execute()
        if forget:
            forget_visitors(store.state, forget)
        appended = store.stream.append_unique(
            [events[i] for i in append], [self.seen_prefix + events[i]["message_id"] for i in append], self.dedup_ttl
        )
        accepted = sum(appended)
        return Accepted(accepted=accepted, duplicates=len(appended) - accepted, suppressed=suppressed)


def _unavailable(exc: Exception) -> bool:
    """Redis does not answer, or answers that it cannot write now (loading, read-only, disk)."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | redis.ReadOnlyError):
        return True
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(("MISCONF", "LOADING", "BUSY"))


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise CollectorError(413, f"the body may hold at most {MAX_BODY_BYTES:,} bytes, got {int(declared):,}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise CollectorError(413, f"the body may hold at most {MAX_BODY_BYTES:,} bytes")
    return bytes(body)


def add_collector_routes(app: FastAPI, store: OnlineStore) -> Collector:
    """Mount `POST /v1/events` on the app, over the store's stream; returns the collector."""
    collector = Collector(store)

    @app.post(
        EVENTS_PATH,
        response_model=Accepted,
        responses={
            400: {"model": Rejected, "description": "Invalid messages (one error each); none was accepted."},
            413: {"model": Rejected, "description": "More than 500 messages or 500 KB."},
            503: {"model": Rejected, "description": "The event stream is unavailable; nothing was accepted."},
        },
        tags=["events"],
        summary="Track events (Segment batch format)",
    )
    async def events(request: Request) -> JSONResponse:
        received_at = received_now()
        try:
            body = await _read_body(request)
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise CollectorError(400, f"the body is not JSON: {exc}") from None
            result = await run_in_threadpool(collector.collect, payload, received_at)
        except CollectorError as exc:
            return JSONResponse({"detail": exc.detail, "errors": exc.errors}, status_code=exc.status)
        except redis.RedisError as exc:
            if not _unavailable(exc):
                raise
            log.warning("event stream unavailable: %s", type(exc).__name__)
            return JSONResponse(
                {
                    "detail": f"the event stream (Redis at {store.location}) is unavailable: "
                    "nothing was accepted; send the batch again later",
                    "errors": [],
                },
                status_code=503,
                headers={"Retry-After": "1"},
            )
        return JSONResponse(result.model_dump())

    return collector
