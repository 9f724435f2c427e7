"""Realtime triggers: the catalogue's `realtime:` actions, decided per event by a worker.

config/actions.yml's realtime actions (tessera/decisioning/catalogue.py RealtimeTrigger) fire on
what a visitor does now, not on yesterday's warehouse:

- `idle_minutes: N`: the cart was last touched N minutes ago, is not empty, and no checkout or
  purchase came since. Polled every `poll_seconds` from the session state's idle carts
  (tessera.realtime.state `{p}idle`), looking back `idle_lookback_minutes` past the threshold.
- `dwell_seconds: N`: one product viewed at least N seconds: the time from a product_view to the
  visitor's next event, or a track event carrying `properties.dwell_seconds` with its product
  (the storefront snippet's, normalised as event["dwell_seconds"]). Once per product and visit.
- `visits_without_purchase: N`: the visitor's N-th visit since the last purchase (or ever, for a
  visitor who never bought). Once per purchase-free streak.

The worker reads the event stream as its own consumer group "triggers" (every event, acknowledged
after its decisions are committed). An event is evaluated once the state worker (group "state")
has applied it (its `{p}done:state:<messageId>` key), or `state_wait_seconds` after it was received,
so the visit count it reads includes the event; events are evaluated in stream order.

Each candidate goes through the batch decisions' rules (tessera/decisioning/decide.py), for the
customer the visitor id belongs to in the trigger audience (tessera/realtime/audience.py):

1. unknown visitors (no customer in the audience: anonymous, or erased) get nothing, as in batch;
   so do suppressed visitors: the visitor's id or any CRM id of the customer is on the online
   store's suppression list (erased) or has its tracking consent revoked, both kept as salted
   hashes by the collector and the erasure (tessera.realtime.privacy.Suppression), and customers
   the channel cannot reach (decide.REACH, as exported);
2. frequency cap: sends of the action's cap key (its cap group, else itself) in the last 7 days,
   realtime ones (`tessera:rt:sent:<customer_pkey>:<cap key>`) and the batch ones of the current
   published campaign_outbox (seeded into the same key) -> decision `capped`;
3. consent: the channel's consent (catalogue.CHANNELS, from marts.customer_consents) -> `no_consent`;
4. holdout: the customer's group in campaign `nba:<action id>` (tessera/publish/holdout.py, the
   same hash split) -> `holdout`;
5. otherwise `send`: the variant by the batch's hashed Thompson draw (no realtime outcome is
   counted yet, so each variant's posterior is Beta(1, 1)), rendered by the catalogue's templates
   with the live cart (cart_items), the customer's recommendations (with personalisation consent,
   else the popular products; for dwell triggers the viewed product's bought-together list first).

Each decision, with its reason in words, is committed once per (visitor, action, occurrence) by
one Lua script: the mark in `tessera:rt:decided:<customer_pkey>`, the cap count and the journal
entry (tessera/realtime/outbox.py), which the worker then mirrors to the outbox files. A restarted
worker, or a redelivered event, finds the mark and decides nothing twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import orjson
import polars as pl
import redis
from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tessera.config_files import checked
from tessera.decisioning import bandit
from tessera.decisioning.catalogue import Action, Catalogue
from tessera.decisioning.mailing import mailing_for
from tessera.decisioning.render import CONTENT_TYPES, PERSONALISATION, static_context
from tessera.publish import holdout, snapshots
from tessera.realtime import outbox
from tessera.realtime.audience import Audience, Customer
from tessera.realtime.audience import current_version as current_audience
from tessera.realtime.privacy import Suppression
from tessera.realtime.state import SessionState, VisitorState
from tessera.realtime.stream import Entry, RedisEventStream
from tessera.settings import ConfigurationError

log = logging.getLogger(__name__)

GROUP = "triggers"
STATE_GROUP = "state"
WEEK = 7 * 86400

Positive = Annotated[float, checked(lambda v: v > 0, "must be a number above 0")]


class TriggerSettings(BaseSettings):
    """The trigger worker's environment (TESSERA_TRIGGERS_<FIELD>)."""

    model_config = SettingsConfigDict(
        env_prefix="TESSERA_TRIGGERS_", frozen=True, extra="ignore", populate_by_name=True
    )

    # the Redis of the stream and the session state (TESSERA_REDIS_URL, shared with the collector)
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", validation_alias=AliasChoices("TESSERA_TRIGGERS_REDIS_URL", "TESSERA_REDIS_URL")
    )
    stream_key: str = "tessera:events"
    # replaces every idle_minutes of the catalogue (tests and demos: 0.1 fires after 6 seconds)
    idle_minutes: Positive | None = None
    poll_seconds: Positive = 1.0
    # carts idle longer than threshold + this when the worker first sees them are not reminded
    idle_lookback_minutes: Positive = 60
    # how long an event waits for the state worker to apply it before it is evaluated anyway
    state_wait_seconds: Annotated[float, checked(lambda v: v >= 0, "must not be negative")] = 5.0
    batch: Annotated[int, checked(lambda v: v >= 1, "must be at least 1")] = 500
    # events another consumer left pending this long are taken over
    reclaim_idle_ms: Annotated[int, checked(lambda v: v >= 0, "must not be negative")] = 30_000
    # the trigger audience folder (default $TESSERA_DATA_DIR/realtime/trigger_audience)
    audience_dir: Path | None = None
    # how often the worker looks for a new audience export and a new published campaign_outbox
    refresh_seconds: Positive = 10
    # how long an occurrence's decision is remembered (the session state's TTL)
    decided_ttl_days: Positive = 30
    consumer: str = Field(default_factory=lambda: f"triggers-{socket.gethostname()}-{os.getpid()}")


def load_trigger_settings() -> TriggerSettings:
    """The settings, or ConfigurationError naming each variable that cannot be used and its value."""
    try:
        return TriggerSettings()
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            name = f"TESSERA_TRIGGERS_{str(e['loc'][0]).upper()}" if e["loc"] else "the environment"
            if e["type"] == "value_error":  # checked(): the message names the value
                problems.append(f"{name} {e['ctx']['error']}")
            else:
                problems.append(f"{name}: {e['msg']}, got {e.get('input')!r}")
        raise ConfigurationError("\n".join(problems)) from None


# --- Redis: the commit of one decision -------------------------------------------------------------

_COMMIT = """
-- KEYS: decided hash, sent zset, journal stream
-- ARGV: field, now, window_start, cap, message_id, entry, capped_entry, decided_ttl, sent_ttl, decision
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return {0, redis.call('HGET', KEYS[1], ARGV[1]), ''}
end
local sent = redis.call('ZCOUNT', KEYS[2], ARGV[3], '+inf')
local decision, entry = ARGV[10], ARGV[6]
if sent >= tonumber(ARGV[4]) then
  decision = 'capped'
  entry = string.gsub(ARGV[7], '__SENT__', tostring(sent))
end
if decision == 'send' then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[9])
end
redis.call('HSET', KEYS[1], ARGV[1], decision)
redis.call('EXPIRE', KEYS[1], ARGV[8])
local id = redis.call('XADD', KEYS[3], '*', 'e', entry)
return {1, decision, id}
"""

# the product a visitor viewed last, swapped by each of its events (never older ones)
_LAST_VIEW = """
-- KEYS: last view hash ; ARGV: ts, is_view, product, session, ttl
local prev = tonumber(redis.call('HGET', KEYS[1], 'ts') or '-1')
if tonumber(ARGV[1]) < prev then return 0 end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'ts', ARGV[1], 'product', ARGV[3], 'session', ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
else
  redis.call('DEL', KEYS[1])
end
return 1
"""


def decided_key(customer_pkey: str) -> str:
    return f"tessera:rt:decided:{customer_pkey}"


def sent_key(customer_pkey: str, cap_key: str) -> str:
    return f"tessera:rt:sent:{customer_pkey}:{cap_key}"


def last_view_key(visitor: str) -> str:
    return f"tessera:rt:lastview:{visitor}"


SEEDED_KEY = "tessera:rt:seeded"  # the campaign_outbox version whose sends were seeded


def forget(client: redis.Redis, customer_pkeys: list[str], visitors: list[str], catalogue: Catalogue) -> int:
    """Erase what the trigger worker keeps of people: their decision marks, cap counts and last
    views (the outbox files are erased by outbox.erase). Returns the keys deleted."""
    cap_keys = sorted(set(catalogue.cap_keys().values()))
    keys = [decided_key(p) for p in customer_pkeys] + [sent_key(p, k) for p in customer_pkeys for k in cap_keys]
    keys += [last_view_key(v) for v in visitors]
    return int(client.delete(*keys)) if keys else 0


# --- the worker ----------------------------------------------------------------------------------


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _uniform(message_id: str, seed: int, k: int) -> float:
    """The batch's hashed uniform (decide.decide) for bandit state version 0: md5_number of
    "<message_id>:<seed>:0:<k>" modulo 2^53, over 2^53."""
    digest = hashlib.md5(f"{message_id}:{int(seed)}:0:{k}".encode()).digest()
    return (int.from_bytes(digest, "little") % bandit.UNIFORM_BUCKETS) / bandit.UNIFORM_BUCKETS


@dataclass
class Candidate:
    """One trigger occurrence for one visitor."""

    action: Action
    visitor: str
    occurrence: str  # what makes it this occurrence: the cart's last activity, the visit and product...
    why: str  # the trigger in words, for the reason
    # when it became due (epoch seconds): the cart's last activity + the threshold; the event's time
    due: float
    cart: dict[str, int] = field(default_factory=dict)
    product_id: str | None = None  # dwell: the product viewed


@dataclass
class Stats:
    events: int = 0
    candidates: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    already_decided: int = 0
    unknown_visitor: int = 0
    suppressed: int = 0
    unreachable: int = 0
    waited_for_state: int = 0

    def as_dict(self) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}


class TriggerWorker:
    """Evaluates the catalogue's realtime actions; `tick()` does one round (read events, poll idle
    carts, mirror the outbox), `run()` ticks until stopped. The clock is injectable for tests."""

    def __init__(
        self,
        client: redis.Redis,
        catalogue: Catalogue,
        settings: TriggerSettings,
        audience_dir: Path,
        publish_dir: Path,
        *,
        holdout_share: float,
        seed: int,
        retention_days: float | None = None,
        clock: Callable[[], float] = time.time,
        state: SessionState | None = None,
        salt: str,
    ):
        self.client = client
        # the collector's suppression list and consent revokes (salted hashes of ids)
        self.suppression = Suppression(client, salt)
        # the sender and the emails' unsubscribe links, signed with the pseudonym salt (mailing.py)
        self.mailing = mailing_for(salt)
        self.catalogue = catalogue
        self.settings = settings
        self.audience_dir = Path(audience_dir)
        self.publish_dir = Path(publish_dir)
        self.holdout_share = holdout_share
        self.seed = seed
        self.retention_days = retention_days  # outbox day files older than this are removed (None: kept)
        self._pruned_on: str | None = None
        self.clock = clock
        self.state = state or SessionState(client)
        self.stream = RedisEventStream(client, settings.stream_key)
        self.mirror = outbox.Mirror(client, publish_dir)
        self.stats = Stats()
        self.audience: Audience | None = None
        self._next_refresh = 0.0
        self._warned = False
        self._pending: deque[Entry] = deque()
        self._pending_ids: set[str] = set()
        self._idle_seen: dict[tuple[str, str, float], float] = {}
        self._commit = client.register_script(_COMMIT)
        self._last_view = client.register_script(_LAST_VIEW)
        actions = catalogue.realtime_actions
        self.idle_actions = [a for a in actions if a.trigger["signal"] == "idle_minutes"]
        self.dwell_actions = [a for a in actions if a.trigger["signal"] == "dwell_seconds"]
        self.visit_actions = [a for a in actions if a.trigger["signal"] == "visits_without_purchase"]
        self.realtime_cap_keys = {a.cap_key for a in actions}
        self.stream.ensure_group(GROUP)

    # --- thresholds -------------------------------------------------------------------------------
    def idle_seconds(self, action: Action) -> float:
        minutes = self.settings.idle_minutes if self.settings.idle_minutes is not None else action.trigger["threshold"]
        return float(minutes) * 60

    # --- the loop ---------------------------------------------------------------------------------
    def run(self, stop: Callable[[], bool] = lambda: False) -> None:
        while not stop():
            started = time.monotonic()
            self.tick()
            # sleep what is left of the poll interval (events wait at most that long)
            time.sleep(max(0.0, self.settings.poll_seconds - (time.monotonic() - started)))

    def tick(self) -> dict:
        """One round: refresh the audience and the batch sends when due, evaluate the stream's new
        events, poll the idle carts, mirror the journal into the outbox files."""
        now = self.clock()
        if now >= self._next_refresh:
            self.refresh()
            self._next_refresh = now + self.settings.refresh_seconds
        self.read_events(now)
        self.poll_idle(now)
        self.mirror.flush()
        return self.stats.as_dict()

    def refresh(self) -> None:
        """Load a newer trigger audience, seed the cap counts from a newer published outbox, and
        (once a day) remove outbox day files past the retention."""
        version = current_audience(self.audience_dir)
        if version is not None and (self.audience is None or self.audience.version != version):
            try:
                self.audience = Audience.load(self.audience_dir)
                log.info("trigger audience %s loaded: %s", version, self.audience.manifest.get("rows"))
            except FileNotFoundError as exc:  # replaced while being read: the next refresh loads the new one
                log.warning("trigger audience %s could not be read (%s); keeping the one loaded", version, exc)
        elif version is None and self.audience is None and not self._warned:
            log.warning(
                "no trigger audience in %s yet (tessera realtime audience): every visitor is unknown", self.audience_dir
            )
            self._warned = True
        self.seed_batch_sends()
        today = datetime.fromtimestamp(self.clock(), UTC).date()
        if self.retention_days is not None and self._pruned_on != today.isoformat():
            removed = outbox.prune(self.publish_dir, self.retention_days, today)
            if removed:
                log.info("removed %d realtime outbox day files older than %g days", len(removed), self.retention_days)
            self._pruned_on = today.isoformat()

    def seed_batch_sends(self) -> int:
        """Add the current published campaign_outbox's sends of actions sharing a cap key with a
        realtime action to the cap counts (once per published version). Returns the sends added."""
        try:
            snap = snapshots.current_snapshot(self.publish_dir, "campaign_outbox")
        except FileNotFoundError:
            return 0
        if (self.client.get(SEEDED_KEY) or b"").decode() == snap.version:
            return 0
        keys = self.catalogue.cap_keys()
        shared = [a for a, k in keys.items() if k in self.realtime_cap_keys]
        rows = (
            pl.read_parquet(snap.parquet, columns=["message_id", "customer_pkey", "action_id", "decided_on"])
            .filter(pl.col("action_id").is_in(shared))
            .to_dicts()
        )
        now = self.clock()
        pipe = self.client.pipeline(transaction=False)
        added = 0
        for row in rows:
            at = datetime.combine(row["decided_on"], datetime.min.time(), UTC).timestamp()
            if at <= now - WEEK:
                continue
            key = sent_key(row["customer_pkey"], keys[row["action_id"]])
            pipe.zadd(key, {row["message_id"]: at})  # the message id as member: seeding twice adds nothing
            pipe.expire(key, WEEK + 86400)
            added += 1
            if added % 10_000 == 0:
                pipe.execute()
        pipe.set(SEEDED_KEY, snap.version)
        pipe.execute()
        log.info("seeded %d batch sends of campaign_outbox %s into the cap counts", added, snap.version)
        return added

    # --- events: dwell and visits -----------------------------------------------------------------
    @property
    def per_event(self) -> bool:
        """Whether events are evaluated at all (dwell or visit triggers in the catalogue)."""
        return bool(self.dwell_actions or self.visit_actions)

    def read_events(self, now: float) -> None:
        """Evaluate the stream's new events in order, `batch` at a time, until none is left, the head
        waits for the state worker, or most of the poll interval is used (the idle carts are polled
        next: a backlog of events never holds them up longer than that). Each batch costs a fixed
        number of Redis round trips (pipelines), not a few per event."""
        budget = time.monotonic() + 0.8 * self.settings.poll_seconds
        fresh = self.stream.reclaim(GROUP, self.settings.consumer, self.settings.reclaim_idle_ms, self.settings.batch)
        while True:
            if len(self._pending) < self.settings.batch:
                fresh += self.stream.read(GROUP, self.settings.consumer, self.settings.batch, None)
            for entry in fresh:
                if entry.id not in self._pending_ids:
                    self._pending.append(entry)
                    self._pending_ids.add(entry.id)
            ready = self._ready(now)
            if ready:
                self.evaluate_events([e.event for e in ready])
                for entry in ready:
                    self._pending.popleft()
                    self._pending_ids.discard(entry.id)
                self.stream.ack(GROUP, [e.id for e in ready])
            waiting = len(self._pending) > 0 and len(ready) < self.settings.batch
            if not fresh or waiting or time.monotonic() >= budget:
                return
            fresh = []

    def _ready(self, now: float) -> list[Entry]:
        """The head of the pending events the state worker has applied (its done key), or that waited
        state_wait_seconds; stops at the first that must wait, so events are evaluated in order."""
        head = list(self._pending)[: self.settings.batch]
        if not self.per_event:
            return head  # nothing is evaluated per event: no need to wait for the state
        pipe = self.client.pipeline(transaction=False)
        for entry in head:
            pipe.exists(f"{self.state.prefix}done:{STATE_GROUP}:{entry.event['message_id']}")
        ready = []
        for entry, applied in zip(head, pipe.execute(), strict=True):
            if not applied and now - _epoch(entry.event["received_at"]) < self.settings.state_wait_seconds:
                self.stats.waited_for_state += 1
                break  # in stream order: later events wait behind it (at most state_wait_seconds)
            ready.append(entry)
        return ready

    def _visitors(self, events: list[dict]) -> list[str]:
        """SessionState.visitor_id of each event, the anonymous ids' aliases read in one pipeline."""
        pipe = self.client.pipeline(transaction=False)
        for e in events:
            if not e.get("user_id"):
                pipe.get(self.state.alias_key(e["anonymous_id"]))
        aliases = iter(pipe.execute())
        out = []
        for e in events:
            if e.get("user_id"):
                out.append(f"u:{e['user_id']}")
            else:
                user = next(aliases)
                out.append(f"u:{user.decode()}" if user else f"a:{e['anonymous_id']}")
        return out

    def _states(self, visitors: list[str]) -> dict[str, tuple[VisitorState | None, dict]]:
        """Each visitor's session state (as SessionState.get reads it) and last product view, in one pipeline."""
        pipe = self.client.pipeline(transaction=False)
        for v in visitors:
            h, _, _, cart = self.state.keys(v)
            pipe.hgetall(h)
            pipe.hgetall(cart)
            pipe.hgetall(last_view_key(v))
        raw = pipe.execute()
        out = {}
        for i, v in enumerate(visitors):
            values, cart, last = raw[3 * i], raw[3 * i + 1], raw[3 * i + 2]
            state = None
            if values:
                fields = {k.decode(): x.decode() for k, x in values.items()}
                state = VisitorState(
                    visitor=v,
                    session_id=fields.get("session_id"),
                    visits_since_purchase=int(fields.get("visits_since_purchase", 0)),
                    last_purchase_ts=float(fields["last_purchase_ts"]) if "last_purchase_ts" in fields else None,
                    cart={k.decode(): int(x) for k, x in cart.items()},
                )
            view = {k.decode(): x.decode() for k, x in last.items()}
            out[v] = (
                state,
                {"ts": float(view["ts"]), "product": view["product"], "session": view["session"]} if view else {},
            )
        return out

    def evaluate_events(self, events: list[dict]) -> None:
        """The dwell and visit triggers of a batch of events, in order; then each visitor's last
        product view is stored (after the decisions: a redelivered batch measures the same dwell)."""
        self.stats.events += len(events)
        events = [e for e in events if e["type"] != "identify"]
        if not self.per_event or not events:
            return
        visitors = self._visitors(events)
        states = self._states(sorted(set(visitors)))
        views = {v: dict(states[v][1]) for v in states}
        latest: dict[str, float] = {}
        for event, visitor in zip(events, visitors, strict=True):
            state = states[visitor][0]
            ts = _epoch(event["ts"])
            session = event.get("session_id") or (state.session_id if state else None) or "none"
            product = (
                (event.get("products") or [{}])[0].get("product_id") if event.get("event_type") != "purchase" else None
            )
            # dwell reported by the storefront
            if event.get("dwell_seconds") is not None and product:
                self._dwell(visitor, product, session, float(event["dwell_seconds"]), ts, "reported by the storefront")
            # dwell measured: from the visitor's last product view to this event
            last = views[visitor]
            if last and ts < last["ts"]:
                continue  # older than the last view (out of order): neither a dwell nor a new view
            if last:
                self._dwell(visitor, last["product"], last["session"], ts - last["ts"], ts,
                            "until the visitor's next event")  # fmt: skip
            is_view = event.get("event_type") == "product_view" and product
            views[visitor] = {"ts": ts, "product": product, "session": session} if is_view else {}
            latest[visitor] = ts
        # visits: the state already counts every event of the batch (the state worker applied them)
        for visitor, ts in latest.items():
            state = states[visitor][0]
            if state is None:
                continue
            for action in self.visit_actions:
                n = action.trigger["threshold"]
                if state.visits_since_purchase >= n:
                    since = (
                        f"since the last purchase ({_iso(state.last_purchase_ts)})"
                        if state.last_purchase_ts
                        else "and no purchase on record"
                    )
                    self.consider(Candidate(
                        action, visitor, f"visits:{state.last_purchase_ts or 'none'}",
                        f"{state.visits_since_purchase} visits {since} (threshold {n})", ts, dict(state.cart),
                    ))  # fmt: skip
        ttl = int(self.settings.decided_ttl_days * 86400)
        pipe = self.client.pipeline(transaction=False)
        for visitor in latest:
            view = views[visitor]
            args = [view["ts"], 1, view["product"], view["session"], ttl] if view else [latest[visitor], 0, "", "", ttl]
            self._last_view(keys=[last_view_key(visitor)], args=args, client=pipe)
        pipe.execute()

    def _dwell(self, visitor: str, product: str, session: str, seconds: float, ts: float, how: str) -> None:
        for action in self.dwell_actions:
            n = action.trigger["threshold"]
            if seconds >= n:
                self.consider(Candidate(
                    action, visitor, f"dwell:{session}:{product}",
                    f"product {product} viewed for {seconds:.0f} seconds, {how} (threshold {n})", ts,
                    product_id=product,
                ))  # fmt: skip

    # --- idle carts -------------------------------------------------------------------------------
    def poll_idle(self, now: float) -> None:
        lookback = self.settings.idle_lookback_minutes * 60
        for action in self.idle_actions:
            threshold = self.idle_seconds(action)
            due_before = now - threshold
            rows = self.client.zrangebyscore(self.state.idle_key, due_before - lookback, due_before, withscores=True)
            for raw, score in rows:
                visitor = raw.decode()
                memo = (action.id, visitor, score)
                if memo in self._idle_seen:
                    continue
                self._idle_seen[memo] = score
                state = self.state.get(visitor)
                if not self._cart_idle(state, score):
                    continue
                minutes = f"{threshold / 60:g} minutes"
                if self.settings.idle_minutes is not None:
                    minutes += f", shortened from {action.trigger['threshold']} by TESSERA_TRIGGERS_IDLE_MINUTES,"
                self.consider(Candidate(
                    action, visitor, f"idle:{score!r}",
                    f"cart untouched for {minutes} (last cart activity {_iso(score)}, "
                    f"{len(state.cart)} product(s) in the cart) and no checkout or purchase since",
                    score + threshold, dict(state.cart),
                ))  # fmt: skip
            # forget what fell out of the look-back window
            floor = due_before - lookback
            for memo in [m for m, s in self._idle_seen.items() if m[0] == action.id and s < floor]:
                del self._idle_seen[memo]

    @staticmethod
    def _cart_idle(state: VisitorState | None, score: float) -> bool:
        if state is None or not state.cart or state.last_cart_ts is None:
            return False
        if state.last_cart_ts > score:  # touched again since the poll read the score
            return False
        return not any(t is not None and t >= score for t in (state.last_checkout_ts, state.last_purchase_ts))

    # --- deciding ---------------------------------------------------------------------------------
    def consider(self, c: Candidate) -> str | None:
        """Decide one candidate (the batch's rules, in its order) and commit it once; returns the
        decision, or None when nothing is recorded (unknown, suppressed, unreachable, decided before)."""
        self.stats.candidates += 1
        customer = self.audience.customer(c.visitor) if self.audience else None
        if customer is None:
            self.stats.unknown_visitor += 1
            return None
        if self._suppressed(c.visitor, customer):
            self.stats.suppressed += 1
            return None
        action = c.action
        if not customer.reach.get(action.channel, False):
            self.stats.unreachable += 1
            return None
        now = self.clock()
        message_id = hashlib.md5(
            f"{customer.customer_pkey}:{action.id}:{c.visitor}:{c.occurrence}".encode()
        ).hexdigest()
        consent_channel, purpose = action.consent
        group = holdout.group(f"nba:{action.id}", customer.customer_key, self.holdout_share)
        base = f"realtime trigger {action.id} (priority {action.priority}): {c.why}"
        decided_on = datetime.fromtimestamp(now, UTC).date().isoformat()
        trigger = f"{action.trigger['signal']} {action.trigger['threshold']}"
        decision_row = {
            "customer_pkey": customer.customer_pkey, "channel": action.channel, "action_id": action.id,
            "variant_id": None, "decision": None, "decided_by": "realtime_trigger", "priority": action.priority,
            "score": None, "holdout_group": group, "eligible_actions": 1, "reason": None, "message_id": None,
            "bandit_state_version": None, "decided_on": decided_on, "decided_at": _iso(now), "trigger": trigger,
            "due_at": _iso(c.due),
        }  # fmt: skip
        message = None
        if not customer.consented(consent_channel, purpose):
            decision, reason = "no_consent", f"{base}; not sent: no {consent_channel} {purpose} consent"
        elif group == "control":
            decision, reason = "holdout", f"{base}; not sent: control group of campaign nba:{action.id}"
        else:
            decision = "send"
            message, variant_reason = self._message(c, customer, message_id, decision_row)
            reason = base + variant_reason
            message["reason"] = reason
            decision_row["variant_id"] = message["variant_id"]
            decision_row["message_id"] = message_id
        entry = {"decision": {**decision_row, "decision": decision, "reason": reason}, "message": message}
        group_said = f" in cap group {action.cap_group}" if action.cap_group else ""
        capped_reason = (
            f"{base}; not sent: at its frequency cap (__SENT__ sent in 7 days{group_said}, "
            f"cap {action.frequency_cap_per_week})"
        )
        capped = {
            "decision": {**decision_row, "decision": "capped", "reason": capped_reason},
            "message": None,
        }
        committed, final, _ = self._commit(
            keys=[decided_key(customer.customer_pkey), sent_key(customer.customer_pkey, action.cap_key),
                  outbox.JOURNAL_KEY],
            args=["|".join((action.id, c.visitor, c.occurrence)), now, now - WEEK, action.frequency_cap_per_week,
                  message_id, orjson.dumps(entry), orjson.dumps(capped), int(self.settings.decided_ttl_days * 86400),
                  WEEK + 86400, decision],
        )  # fmt: skip
        final = final.decode() if isinstance(final, bytes) else final
        if not committed:
            self.stats.already_decided += 1
            return None
        self.stats.decisions[final] = self.stats.decisions.get(final, 0) + 1
        return final

    def _suppressed(self, visitor: str, customer: Customer) -> bool:
        _, _, ident = visitor.partition(":")
        return self.suppression.blocked([[ident, *customer.user_ids]])[0]

    def _message(self, c: Candidate, customer: Customer, message_id: str, row: dict) -> tuple[dict, str]:
        """The rendered message of a send (the outbox's columns) and the variant's reason."""
        action = c.action
        names = [v.id for v in action.variants]
        if len(names) == 1:
            pick, said = 0, f"; variant {names[0]} (the only one)"
        else:
            u = np.array([[_uniform(message_id, self.seed, k) for k in range(len(names))]])
            pick = int(bandit.assign(bandit.empty(tuple(names)), u)[0])
            said = (
                f"; variant {names[pick]} by Thompson sampling (no realtime outcome counted yet: "
                f"Beta(1, 1) for {', '.join(names)})"
            )
        variant = action.variants[pick]
        # the customer's own list only with the channel's personalisation consent (as render.py)
        # first of: the viewed product's bought-together list (dwell), the customer's own list (with
        # the channel's personalisation consent, as render.py), the popular products; what is in the
        # cart already is not recommended again
        lists = []
        if c.product_id and self.audience is not None:
            lists.append((self.audience.product(c.product_id) or {}).get("related") or [])
        if customer.consented(PERSONALISATION[action.channel], "personalization"):
            lists.append(customer.recommendations)
        lists.append(self.audience.popular if self.audience else [])
        recommendations = next(
            (kept for kept in ([r for r in x if r["product_id"] not in c.cart] for x in lists) if kept), []
        )
        recommendations = [{**r, "rank": i} for i, r in enumerate(recommendations, 1)]
        cart = self.audience.products(sorted(c.cart)) if self.audience else []
        context = {
            **static_context(action, variant, self.mailing),
            "customer": customer.fields,
            "recommendations": recommendations,
            "cart_items": cart,
            "unsubscribe": self.mailing.unsubscribe(action.channel, customer_pkey=customer.customer_pkey)
            if action.channel == "email"
            else None,
        }
        body = variant.template.render(context)
        message = {
            "message_id": message_id,
            "customer_pkey": customer.customer_pkey,
            "channel": action.channel,
            "action_id": action.id,
            "variant_id": variant.id,
            "subject": variant.subject.render(context) if variant.subject else None,
            "body_ref": "sha256:" + hashlib.sha256(body.encode()).hexdigest(),
            "content_type": CONTENT_TYPES[variant.template.kind],
            "decided_on": row["decided_on"],
            "decided_at": row["decided_at"],
            "trigger": row["trigger"],
            "reason": None,
            "body": body,
        }
        return message, said
