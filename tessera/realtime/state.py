"""Per-visitor session state in Redis: recent views and categories, cart, last activity, visits.

A visitor is `u:<userId>` once known, else `a:<anonymousId>` (an anonymous id an `identify`
joined to a customer resolves to `u:<userId>` through `alias:<anonymousId>`). For each visitor:

    {p}v:<visitor>         hash: first_ts, last_ts, session_id, session_start, visits,
                           visits_since_purchase, last_cart_ts, last_checkout_ts,
                           last_purchase_ts, last_order_products, last_view_product, last_view_ts,
                           device, user_id
    {p}v:<visitor>:views   list: recently viewed product ids, newest first, at most `max_recent`
    {p}v:<visitor>:cats    list: their categories, newest first, at most `max_recent`
    {p}v:<visitor>:cart    hash: product id -> quantity
    {p}alias:<anonymousId> string: the userId an identify joined it to
    {p}idle                sorted set: visitors with a non-empty cart, scored by last cart activity
    {p}done:<group>:<messageId>  string: the event was applied, and the session id it was
                           applied to (at-least-once delivery applies it once, and a
                           redelivery gets the same session id back)

Every key expires `ttl_seconds` (default 30 days) after the visitor's last event. A visit starts
when more than `gap_seconds` (30 min) passed since the visitor's last event; its session id is the
client's (`context.sessionId`) when sent, else derived from the first event's messageId. Each
update is one Lua script, so two consumers never interleave on a visitor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import redis

_RECORD = """
-- KEYS: hash views cats cart idle done ; ARGV: see SessionState.record
local h, views, cats, cart, idle, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local ts = tonumber(ARGV[1]); local gap = tonumber(ARGV[2]); local ttl = tonumber(ARGV[3])
local etype = ARGV[4]; local pid = ARGV[5]; local cat = ARGV[6]; local qty = tonumber(ARGV[7])
local device = ARGV[8]; local hint = ARGV[9]; local maxr = tonumber(ARGV[10])
local visitor = ARGV[11]; local user = ARGV[12]; local fallback_session = ARGV[13]
local done_ttl = tonumber(ARGV[14]); local ordered = ARGV[15]
if redis.call('SET', done, '', 'NX', 'EX', done_ttl) == false then
  -- applied before: the session it was applied to (kept in `done`), so a redelivered event lands
  -- with the same session id as its first delivery even if the visitor moved on since
  local first = redis.call('GET', done)
  if first == false or first == '' then first = redis.call('HGET', h, 'session_id') or '' end
  return {0, first, tonumber(redis.call('HGET', h, 'visits') or '0')}
end
local last = tonumber(redis.call('HGET', h, 'last_ts') or '-1')
local session = redis.call('HGET', h, 'session_id')
if last < 0 or ts - last > gap or session == false or (hint ~= '' and hint ~= session) then
  session = (hint ~= '') and hint or fallback_session
  redis.call('HSET', h, 'session_id', session, 'session_start', ts)
  redis.call('HINCRBY', h, 'visits', 1)
  redis.call('HINCRBY', h, 'visits_since_purchase', 1)
end
if last < 0 then redis.call('HSET', h, 'first_ts', ts) end
if ts > last then redis.call('HSET', h, 'last_ts', ts) end
if device ~= '' then redis.call('HSET', h, 'device', device) end
if user ~= '' then redis.call('HSET', h, 'user_id', user) end
if etype == 'product_view' and pid ~= '' then
  redis.call('LREM', views, 0, pid); redis.call('LPUSH', views, pid); redis.call('LTRIM', views, 0, maxr - 1)
  redis.call('HSET', h, 'last_view_product', pid, 'last_view_ts', ts)
  if cat ~= '' then
    redis.call('LREM', cats, 0, cat); redis.call('LPUSH', cats, cat); redis.call('LTRIM', cats, 0, maxr - 1)
  end
elseif etype == 'add_to_cart' and pid ~= '' then
  redis.call('HINCRBY', cart, pid, math.max(qty, 1))
  redis.call('HSET', h, 'last_cart_ts', ts)
  redis.call('ZADD', idle, ts, visitor)
elseif etype == 'remove_from_cart' and pid ~= '' then
  local left = redis.call('HINCRBY', cart, pid, -math.max(qty, 1))
  if left <= 0 then redis.call('HDEL', cart, pid) end
  redis.call('HSET', h, 'last_cart_ts', ts)
  if redis.call('HLEN', cart) == 0 then redis.call('ZREM', idle, visitor) else redis.call('ZADD', idle, ts, visitor) end
elseif etype == 'checkout' then
  redis.call('HSET', h, 'last_checkout_ts', ts)
  redis.call('ZREM', idle, visitor)
elseif etype == 'purchase' then
  -- what was just bought (not to be recommended again): the order's products, else the cart's
  if ordered == '' then ordered = table.concat(redis.call('HKEYS', cart), '\\n') end
  redis.call('HSET', h, 'last_order_products', ordered)
  redis.call('DEL', cart)
  redis.call('ZREM', idle, visitor)
  redis.call('HSET', h, 'last_purchase_ts', ts, 'visits_since_purchase', 0)
end
for _, k in ipairs({h, views, cats, cart}) do redis.call('EXPIRE', k, ttl) end
redis.call('SET', done, session, 'KEEPTTL')
return {1, session, tonumber(redis.call('HGET', h, 'visits'))}
"""

_MERGE = """
-- KEYS: from_hash from_views from_cats from_cart to_hash to_views to_cats to_cart idle alias
-- ARGV: from_visitor to_visitor user ttl maxr
local fh, fv, fc, fcart = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local th, tv, tc, tcart, idle, alias = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local from, to, user, ttl, maxr = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('SET', alias, user, 'EX', ttl)
if redis.call('EXISTS', fh) == 1 then
  local f = redis.call('HGETALL', fh)
  local src = {}
  for i = 1, #f, 2 do src[f[i]] = f[i + 1] end
  for _, k in ipairs({'first_ts'}) do
    local t = redis.call('HGET', th, k)
    if src[k] and (t == false or tonumber(src[k]) < tonumber(t)) then redis.call('HSET', th, k, src[k]) end
  end
  for _, k in ipairs({'last_ts', 'last_cart_ts', 'last_checkout_ts', 'last_purchase_ts', 'last_view_ts'}) do
    local t = redis.call('HGET', th, k)
    if src[k] and (t == false or tonumber(src[k]) > tonumber(t)) then
      redis.call('HSET', th, k, src[k])
      if k == 'last_ts' then
        for _, s in ipairs({'session_id', 'session_start', 'device'}) do
          if src[s] then redis.call('HSET', th, s, src[s]) end
        end
      end
      if k == 'last_view_ts' and src['last_view_product'] then redis.call('HSET', th, 'last_view_product', src['last_view_product']) end
      if k == 'last_purchase_ts' and src['last_order_products'] then
        redis.call('HSET', th, 'last_order_products', src['last_order_products'])
      end
    end
  end
  redis.call('HINCRBY', th, 'visits', tonumber(src['visits'] or '0'))
  if src['last_purchase_ts'] == nil then
    redis.call('HINCRBY', th, 'visits_since_purchase', tonumber(src['visits_since_purchase'] or '0'))
  end
  redis.call('HSET', th, 'user_id', user)
  for _, pair in ipairs({{fv, tv}, {fc, tc}}) do
    local items = redis.call('LRANGE', pair[1], 0, -1)
    for i = #items, 1, -1 do
      redis.call('LREM', pair[2], 0, items[i]); redis.call('LPUSH', pair[2], items[i])
    end
    redis.call('LTRIM', pair[2], 0, maxr - 1)
  end
  local c = redis.call('HGETALL', fcart)
  for i = 1, #c, 2 do redis.call('HINCRBY', tcart, c[i], tonumber(c[i + 1])) end
  local score = redis.call('ZSCORE', idle, from)
  if score then
    redis.call('ZREM', idle, from)
    local t = redis.call('ZSCORE', idle, to)
    if t == false or tonumber(score) > tonumber(t) then redis.call('ZADD', idle, score, to) end
  end
  redis.call('DEL', fh, fv, fc, fcart)
  for _, k in ipairs({th, tv, tc, tcart}) do redis.call('EXPIRE', k, ttl) end
  return 1
end
return 0
"""


def _joins(event: dict) -> bool:
    """An identify naming both ids: it joins the anonymous visitor to the customer."""
    return event["type"] == "identify" and bool(event.get("anonymous_id")) and bool(event.get("user_id"))


def _result(visitor: str, raw: list) -> dict:
    applied, session, visits = raw
    return {
        "visitor": visitor,
        "applied": bool(applied),
        "session_id": session.decode() if isinstance(session, bytes) else session,
        "visits": int(visits or 0),
    }


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass
class VisitorState:
    visitor: str
    user_id: str | None = None
    session_id: str | None = None
    session_start: float | None = None
    first_ts: float | None = None
    last_ts: float | None = None
    visits: int = 0
    visits_since_purchase: int = 0
    last_cart_ts: float | None = None
    last_checkout_ts: float | None = None
    last_purchase_ts: float | None = None
    last_view_product: str | None = None
    last_view_ts: float | None = None
    device: str | None = None
    last_order_products: list[str] = field(default_factory=list)  # the last order's, just bought
    views: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    cart: dict[str, int] = field(default_factory=dict)


_FLOATS = (
    "session_start",
    "first_ts",
    "last_ts",
    "last_cart_ts",
    "last_checkout_ts",
    "last_purchase_ts",
    "last_view_ts",
)
_INTS = ("visits", "visits_since_purchase")
_TEXTS = ("user_id", "session_id", "last_view_product", "device")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(raw) -> dict[str, str]:
    """A hash as HGETALL answers it: a dict (redis-py) or a flat list (a Lua script's reply)."""
    if isinstance(raw, dict):
        return {_text(k): _text(v) for k, v in raw.items()}
    return {_text(raw[i]): _text(raw[i + 1]) for i in range(0, len(raw), 2)}


def parse_state(visitor: str, raw, view_list, cat_list, cart_map) -> VisitorState | None:
    """A visitor's state from the replies for its four keys (hash, views, categories, cart);
    None when the hash is empty (no state, or it expired)."""
    values = _pairs(raw)
    if not values:
        return None
    state = VisitorState(visitor=visitor)
    for name in _FLOATS:
        if name in values:
            setattr(state, name, float(values[name]))
    for name in _INTS:
        setattr(state, name, int(values.get(name, 0)))
    for name in _TEXTS:
        setattr(state, name, values.get(name))
    state.last_order_products = [p for p in values.get("last_order_products", "").split("\n") if p]
    state.views = [_text(v) for v in view_list]
    state.categories = [_text(c) for c in cat_list]
    state.cart = {k: int(v) for k, v in _pairs(cart_map).items()}
    return state


class SessionState:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "tessera:",
        gap_seconds: float = 1800,
        ttl_seconds: int = 30 * 86400,
        max_recent: int = 20,
        done_ttl_seconds: int = 7 * 86400,
    ):
        self.client = client
        self.prefix = prefix
        self.gap_seconds = gap_seconds
        self.ttl_seconds = ttl_seconds
        self.max_recent = max_recent
        self.done_ttl_seconds = done_ttl_seconds
        self._record = client.register_script(_RECORD)
        self._merge = client.register_script(_MERGE)

    # --- keys -----------------------------------------------------------------------------------
    def keys(self, visitor: str) -> list[str]:
        base = f"{self.prefix}v:{visitor}"
        return [base, f"{base}:views", f"{base}:cats", f"{base}:cart"]

    @property
    def idle_key(self) -> str:
        return f"{self.prefix}idle"

    def alias_key(self, anonymous_id: str) -> str:
        return f"{self.prefix}alias:{anonymous_id}"

    def visitor_id(self, user_id: str | None, anonymous_id: str | None) -> str:
        if user_id:
            return f"u:{user_id}"
        if anonymous_id is None:
            raise ValueError("an event needs a userId or an anonymousId")
        user = self.client.get(self.alias_key(anonymous_id))
        return f"u:{user.decode()}" if user else f"a:{anonymous_id}"

    # --- updates --------------------------------------------------------------------------------
    def record(self, event: dict, group: str = "state") -> dict:
        """Apply one normalised event (tessera.realtime.events); idempotent on its messageId.

        Returns the visitor, the session id the event belongs to (for a redelivered event: the one
        it was first applied to), the visit number, and whether it was applied now (False:
        already applied, a redelivery)."""
        if _joins(event):
            self.identify(event["anonymous_id"], event["user_id"])
        visitor = self.visitor_id(event.get("user_id"), event.get("anonymous_id"))
        return _result(visitor, self._record(**self._call(event, visitor, group)))

    def record_many(self, events: list[dict], group: str = "state") -> list[dict]:
        """record() for each event in order, with two round trips per run of events between
        identifies (the aliases read at once, then every update pipelined) instead of two per
        event: what lets one worker keep up with the collector (bench/realtime.py). An identify is
        applied on its own, so the events after it resolve to the customer."""
        results: list[dict] = []
        start = 0
        while start < len(events):
            if _joins(events[start]):
                results.append(self.record(events[start], group))
                start += 1
                continue
            end = start
            while end < len(events) and not _joins(events[end]):
                end += 1
            run = events[start:end]
            anonymous = sorted({e["anonymous_id"] for e in run if not e.get("user_id") and e.get("anonymous_id")})
            joined = dict(zip(anonymous, self.client.mget([self.alias_key(a) for a in anonymous]), strict=True))
            pipe = self.client.pipeline(transaction=False)
            visitors = []
            for event in run:
                if event.get("user_id"):
                    visitor = f"u:{event['user_id']}"
                elif event.get("anonymous_id"):
                    user = joined[event["anonymous_id"]]
                    visitor = f"u:{user.decode()}" if user else f"a:{event['anonymous_id']}"
                else:
                    raise ValueError("an event needs a userId or an anonymousId")
                visitors.append(visitor)
                self._record(**self._call(event, visitor, group), client=pipe)
            results += [_result(v, r) for v, r in zip(visitors, pipe.execute(), strict=True)]
            start = end
        return results

    def _call(self, event: dict, visitor: str, group: str) -> dict:
        product = (event.get("products") or [{}])[0] if event.get("event_type") != "purchase" else {}
        return {
            "keys": [*self.keys(visitor), self.idle_key, f"{self.prefix}done:{group}:{event['message_id']}"],
            "args": [
                _epoch(event["ts"]),
                self.gap_seconds,
                self.ttl_seconds,
                event.get("event_type") or "",
                product.get("product_id") or "",
                product.get("category") or "",
                product.get("quantity") or 1,
                event.get("device") or "",
                event.get("session_id") or "",
                self.max_recent,
                visitor,
                event.get("user_id") or "",
                f"s-{event['message_id']}"[:64],
                self.done_ttl_seconds,
                "\n".join(p["product_id"] for p in event.get("products") or [])
                if event.get("event_type") == "purchase"
                else "",
            ],
        }

    def identify(self, anonymous_id: str, user_id: str) -> bool:
        """Join an anonymous visitor to the customer: its views, cart and visits move over."""
        source, target = f"a:{anonymous_id}", f"u:{user_id}"
        moved = self._merge(
            keys=[*self.keys(source), *self.keys(target), self.idle_key, self.alias_key(anonymous_id)],
            args=[source, target, user_id, self.ttl_seconds, self.max_recent],
        )
        return bool(moved)

    def forget(self, visitor: str, anonymous_ids: list[str] = ()) -> int:
        """Erase a visitor's state, its aliases and its place among idle carts; returns keys deleted."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(*self.keys(visitor), *(self.alias_key(a) for a in anonymous_ids))
        pipe.zrem(self.idle_key, visitor)
        return int(pipe.execute()[0])

    # --- reads ----------------------------------------------------------------------------------
    def get(self, visitor: str) -> VisitorState | None:
        h, views, cats, cart = self.keys(visitor)
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(h)
        pipe.lrange(views, 0, -1)
        pipe.lrange(cats, 0, -1)
        pipe.hgetall(cart)
        return parse_state(visitor, *pipe.execute())

    def idle_carts(self, last_activity_before: float, limit: int = 1000) -> list[tuple[str, float]]:
        """Visitors whose cart has been untouched since before the given epoch second, oldest first."""
        rows = self.client.zrangebyscore(
            self.idle_key, "-inf", f"({last_activity_before}", start=0, num=limit, withscores=True
        )
        return [(v.decode(), float(s)) for v, s in rows]
