"""Privacy in the online store: consent revokes, the suppression list of erased people, erasure.

Two Redis sets hold salted hashes, never an id: `sha256(salt:value)` in hex, the same digest as
the batch suppression list (privacy.erased_identifiers, tessera/privacy/erasure.py), with the
pseudonym salt (TESSERA_PSEUDONYM_SALT):

    {p}suppressed        the identifiers of erased people (CRM ids, cookies, emails...): every
                         event naming one is dropped by the collector and by the state worker
    {p}consent:revoked   the userIds and anonymousIds whose consent for the tracking category
                         was revoked (a "Segment Consent Preference Updated" event with the
                         category false); a later event with the category true lifts it

The collector checks both for every event (a userId, an anonymousId, and the customer an
anonymousId was joined to by an identify), and so does the state worker for events appended
before the revoke or erasure and not yet processed. Neither set expires: a revoke lasts until
the person grants consent again, an erasure forever.

`forget_people` is the erasure's step for the online store (tessera/privacy/erasure_run.py calls
it when TESSERA_REDIS_URL is set): the people's session state, aliases and idle carts deleted, their
events removed from the stream, their identifiers added to the suppression list, and Redis's
append-only file rewritten so that no file on disk still holds them (the bytes proof of the
erasure reads the data directory, where `make serve`'s Redis keeps its files).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import orjson
import redis

from tessera.realtime.state import SessionState
from tessera.realtime.stream import FIELD
from tessera.settings import RealtimeSettings

CONSENT_EVENT = "Segment Consent Preference Updated"
# XRANGE page size when the stream is searched for an erased person's events
_SCAN_PAGE = 1000


def identifier_hash(salt: str, value: str) -> str:
    """sha256(salt:value) in hex: DuckDB's sha256(salt || ':' || value) in the batch suppression list."""
    return hashlib.sha256(f"{salt}:{value}".encode()).hexdigest()


def consent_change(event: dict, category: str) -> bool | None:
    """For a consent preference event naming `category`: False (revoked) or True (granted); else None."""
    if event.get("event") != CONSENT_EVENT or not event.get("consent"):
        return None
    return event["consent"].get(category)


def consented(event: dict, category: str) -> bool:
    """False when the event itself says the category is not consented to (it is not tracked)."""
    return (event.get("consent") or {}).get(category) is not False


def event_ids(event: dict, alias_user: str | None = None) -> list[str]:
    """The ids an event names: its userId, its anonymousId, and the customer an identify joined
    that anonymousId to."""
    return [i for i in (event.get("user_id"), event.get("anonymous_id"), alias_user) if i]


class Suppression:
    """The two sets above, read per batch of events with one round trip."""

    def __init__(self, client: redis.Redis, salt: str, prefix: str = "tessera:"):
        self.client = client
        self.salt = salt
        self.suppressed_key = f"{prefix}suppressed"
        self.revoked_key = f"{prefix}consent:revoked"

    def hashes(self, ids: Iterable[str]) -> list[str]:
        return [identifier_hash(self.salt, i) for i in ids]

    def lookup(self, hashes: Iterable[str]) -> tuple[set[str], set[str]]:
        """Of these hashes: (those erased, those whose consent is revoked), in one round trip."""
        flat = sorted(set(hashes))
        if not flat:
            return set(), set()
        pipe = self.client.pipeline(transaction=False)
        pipe.smismember(self.suppressed_key, flat)
        pipe.smismember(self.revoked_key, flat)
        erased, revoked = pipe.execute()
        return (
            {h for h, hit in zip(flat, erased, strict=True) if hit},
            {h for h, hit in zip(flat, revoked, strict=True) if hit},
        )

    def blocked(self, ids_per_event: list[list[str]]) -> list[bool]:
        """For each event's ids: whether any is erased or has its consent revoked."""
        hashed = [self.hashes(ids) for ids in ids_per_event]
        erased, revoked = self.lookup(h for hs in hashed for h in hs)
        hit = erased | revoked
        return [any(h in hit for h in hs) for hs in hashed]

    def revoke(self, ids: Iterable[str]) -> None:
        hashes = self.hashes(ids)
        if hashes:
            self.client.sadd(self.revoked_key, *hashes)

    def grant(self, ids: Iterable[str]) -> None:
        hashes = self.hashes(ids)
        if hashes:
            self.client.srem(self.revoked_key, *hashes)

    def suppress_hashes(self, hashes: Iterable[str]) -> int:
        """Add already-hashed identifiers (the batch suppression list's value_hash); returns how many were new."""
        hashes = list(hashes)
        added = 0
        for start in range(0, len(hashes), 10_000):
            added += int(self.client.sadd(self.suppressed_key, *hashes[start : start + 10_000]))
        return added


def ids_with_aliases(state: SessionState, events: list[dict]) -> list[list[str]]:
    """Each event's ids (event_ids), with the customer an identify joined its anonymousId to:
    one MGET for the batch."""
    anonymous = sorted({e["anonymous_id"] for e in events if e.get("anonymous_id")})
    users = state.client.mget([state.alias_key(a) for a in anonymous]) if anonymous else []
    joined = {a: u.decode() for a, u in zip(anonymous, users, strict=True) if u}
    return [event_ids(e, joined.get(e.get("anonymous_id") or "")) for e in events]


def forget_visitors(state: SessionState, ids: Iterable[str]) -> int:
    """Delete the session state of every visitor an id may name (`u:<id>`, `a:<id>`) and the
    aliases of those ids; returns the keys deleted."""
    deleted = 0
    for value in dict.fromkeys(ids):
        deleted += state.forget(f"u:{value}", anonymous_ids=[value])
        deleted += state.forget(f"a:{value}")
    return deleted


def delete_stream_events(client: redis.Redis, stream_key: str, values: set[str]) -> int:
    """XDEL every stream entry whose event names one of `values` (userId or anonymousId); returns
    how many. The stream is short (trimmed once every group acknowledged), so it is read whole."""
    deleted = 0
    start = "-"
    while True:
        page = client.xrange(stream_key, min=start, max="+", count=_SCAN_PAGE)
        if not page:
            return deleted
        doomed = []
        for entry_id, fields in page:
            event = orjson.loads(fields[FIELD])
            if event.get("user_id") in values or event.get("anonymous_id") in values:
                doomed.append(entry_id)
        if doomed:
            deleted += int(client.xdel(stream_key, *doomed))
        if len(page) < _SCAN_PAGE:
            return deleted
        start = "(" + page[-1][0].decode()


def rewrite_append_only_file(client: redis.Redis, timeout_seconds: float = 120.0) -> bool:
    """BGREWRITEAOF and wait for it: the new file holds only the live keys, and Redis deletes the
    old ones (which still held every command, the erased ids among them). Returns False when
    the server keeps no append-only file (nothing on disk to rewrite). A server with
    aof-use-rdb-preamble yes is switched to no first (CONFIG SET, for good)."""
    if client.config_get("appendonly").get("appendonly") != "yes":
        return False
    # as commands: an RDB image would copy the stream's nodes whole, XDELed entries included
    # (the project's Redis runs so already: tessera/realtime/redis_server.py)
    if client.config_get("aof-use-rdb-preamble").get("aof-use-rdb-preamble") != "no":
        client.config_set("aof-use-rdb-preamble", "no")
    before = int(client.info("persistence").get("aof_rewrites", 0))
    client.bgrewriteaof()
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        info = client.info("persistence")
        done = int(info.get("aof_rewrites", 0)) > before
        if done and not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
            if info.get("aof_last_bgrewrite_status") != "ok":
                raise RuntimeError(
                    f"Redis could not rewrite its append-only file: {info.get('aof_last_bgrewrite_status')}"
                )
            return True
        time.sleep(0.05)
    raise TimeoutError(f"Redis did not finish rewriting its append-only file within {timeout_seconds:.0f} s")


def erasure_step(settings: RealtimeSettings, salt: str) -> Callable[[list[str]], dict]:
    """forget_people as one of the erasure's file steps (tessera/privacy/erasure_run.py): given
    the erased values, it connects, forgets, and fails loudly when Redis does not answer (the
    erasure's journal keeps the values, and the next run does the step again)."""

    def step(values: list[str]) -> dict:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=60, socket_connect_timeout=5)
        try:
            return forget_people(client, values, salt, settings.realtime_prefix, settings.realtime_stream_key)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RuntimeError(
                f"the erasure cannot reach the online store (Redis at {redis_location(settings.redis_url)}, "
                f"TESSERA_REDIS_URL): {type(exc).__name__}; the next run does this step again"
            ) from None
        finally:
            client.close()

    return step


def sync_suppression(settings: RealtimeSettings, hashes: list[str]) -> dict:
    """Add the batch suppression list's hashes (privacy.erased_identifiers) to the online one: it
    then holds people erased before real time was turned on too. Returns counts, or the error
    when Redis does not answer (reported in the erasure's metadata; the next run tries again)."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=60, socket_connect_timeout=5)
    try:
        added = Suppression(client, "", settings.realtime_prefix).suppress_hashes(hashes)
        return {"hashes": len(hashes), "newly_suppressed": added}
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        return {"hashes": len(hashes), "error": f"Redis at {redis_location(settings.redis_url)}: {type(exc).__name__}"}
    finally:
        client.close()


def redis_location(url: str) -> str:
    """host:port/db of a Redis URL, without its password (for messages and logs)."""
    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}{parts.path or '/0'}"


def joined_cookies(client: redis.Redis, prefix: str, user_ids: set[str]) -> set[str]:
    """The anonymousIds an identify joined to one of `user_ids` (their alias keys name the user):
    cookies only the live site saw, which the warehouse's identity graph may not know yet. One
    SCAN over the alias keys, so an erasure costs a pass over them (a second per million or so)."""
    found: set[str] = set()
    pattern = f"{prefix}alias:*"
    batch: list[bytes] = []

    def check(keys: list[bytes]) -> None:
        for key, user in zip(keys, client.mget(keys), strict=True):
            if user is not None and user.decode() in user_ids:
                found.add(key.decode().removeprefix(f"{prefix}alias:"))

    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            check(batch)
            batch = []
    if batch:
        check(batch)
    return found


def forget_people(
    client: redis.Redis,
    values: Iterable[str],
    salt: str,
    prefix: str = "tessera:",
    stream_key: str = "tessera:events",
    rewrite: bool = True,
) -> dict:
    """The erasure's step for the online store, given every erased identifier value (CRM ids,
    cookies, emails, keys: they are tried as userIds and as anonymousIds alike), and the cookies
    an identify joined to one of them. Idempotent: an erasure resumed after a crash runs it again.
    Returns counts, never a value."""
    values = sorted({v for v in values if v} | joined_cookies(client, prefix, {v for v in values if v}))
    suppression = Suppression(client, salt, prefix)
    # first: from here on neither the collector nor the worker lets their events in
    suppressed = suppression.suppress_hashes(suppression.hashes(values))
    state = SessionState(client, prefix=prefix)
    keys_deleted = forget_visitors(state, values)
    stream_events = delete_stream_events(client, stream_key, set(values))
    rewritten = rewrite_append_only_file(client) if rewrite and values else False
    return {
        "identifiers": len(values),
        "newly_suppressed": suppressed,
        "keys_deleted": keys_deleted,
        "stream_events_deleted": stream_events,
        "append_only_file_rewritten": rewritten,
    }
