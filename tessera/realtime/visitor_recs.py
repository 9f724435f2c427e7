"""Session-aware recommendations for a storefront visitor: GET /v1/visitors/{visitor_id}/recommendations.

    GET /v1/visitors/{visitor_id}/recommendations?id_type=anonymous&customer_pkey=pk_...&limit=10

- `visitor_id`: the id the storefront knows. With `id_type=anonymous` (the default) it is the
  Segment anonymousId (tessera.js's cookie); an `identify` that joined it to a customer is followed
  (the state's alias), so a storefront can always ask with its cookie. With `id_type=user` it is the
  shop's own userId.
- `customer_pkey` (optional): the customer's published key. The serving API holds no mapping from
  a shop's userId to the pseudonymous customer_pkey (the salt stays with the pipeline, and no alias
  table is published yet: docs/privacy.md, "Not built yet"), so a known customer's published list
  is used only when the storefront passes the key it holds (e.g. rendered into the page by the shop's
  backend). Without it, a logged-in visitor is served like an anonymous one, from the live session,
  and the response says so (`published_list: "no_customer_pkey"`).
- `limit`: 1 to 100 (default: the server's, 10).

A request reads the visitor's state in one Redis round trip (a read-only Lua script: the alias,
then the hash, recent views, categories and cart) and computes everything else from the serving
process's memory: the published lists (tessera/serving.py), the session model
(tessera/session_serving.py), the bought-together lists. No DuckDB, no file. The blend is
tessera/realtime/blend.py.

- state found: the blend of the published list (with a customer_pkey found in the snapshot) and/or
  the session recommendations (V-SKNN over the recent views and cart), the cart complements and the
  category boost; products in the cart, just bought or recently viewed are left out; popular
  products fill the places left (`source: "session_blend"`);
- no state (a new visitor, or state expired), no published list: the popular products
  (`source: "popular_fallback"`, `state: "none"`);
- Redis unreachable: served as without state (`state: "unavailable"`), logged; never a 500 for it.

Malformed ids answer 422 naming the field and value (FastAPI's validation error).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import redis
import redis.asyncio
from fastapi import FastAPI, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from tessera.realtime.blend import (
    CART_COMPLEMENT,
    DEFAULT_WEIGHTS,
    PUBLISHED,
    SESSION_KNN,
    BlendWeights,
    Ranked,
    blend,
    category_affinity,
    complement_list,
)
from tessera.realtime.state import SessionState, VisitorState, parse_state
from tessera.serving import MAX_LIMIT, PRODUCT_LISTS, RECOMMENDATIONS, Server, product_list_key

if TYPE_CHECKING:
    from tessera.session_serving import SessionServer

log = logging.getLogger("tessera.realtime.visitor_recs")

STATIC = Path(__file__).resolve().parent / "static"
MAX_ID_LENGTH = 128
# an id as the collector keeps it (tessera.realtime.events): no surrounding blanks, no control
# characters, at most MAX_ID_LENGTH characters
ID_PATTERN = r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$"
PKEY_PATTERN = r"^pk_[0-9a-f]{32}$"
# how many of the session model's products the blend considers
POOL = 50
# the session model's answers kept per (index version, query): the snippet asks again after each
# event (three refreshes while the worker applies it), mostly for a state that has not changed
KNN_CACHE = 10_000
DEMO_PRODUCTS = 24

# One round trip: the alias (anonymous ids an identify joined to a customer), then the visitor's
# four keys as tessera.realtime.state names them. The keys of an aliased visitor are known only
# inside the script, so it reads keys it was not given: fine on one Redis, not on a Redis Cluster.
# The replies come back as one JSON string (Redis's own cjson): redis-py's reply parser is pure
# Python, and reading some thirty nested replies cost it about twice the CPU of one string and
# orjson (bench/visitor_recs.py). cjson writes an empty reply as {}; parse_state reads it as empty.
_READ = """
-- ARGV: alias key ('' for a userId), the visitor's hash key, the hash key prefix of customers ('{p}v:u:')
local base = ARGV[2]
local visitor = ''
if ARGV[1] ~= '' then
  local user = redis.call('GET', ARGV[1])
  if user then base = ARGV[3] .. user; visitor = 'u:' .. user end
end
return cjson.encode({visitor, redis.call('HGETALL', base), redis.call('LRANGE', base .. ':views', 0, -1),
                     redis.call('LRANGE', base .. ':cats', 0, -1), redis.call('HGETALL', base .. ':cart')})
"""


class IdType(StrEnum):
    anonymous = "anonymous"
    user = "user"


class Reason(BaseModel):
    kind: str = Field(
        description="published (the customer's list), session_knn (products of similar sessions), cart_complement "
        "(bought together with products in the cart: product_ids), category (a category viewed recently), "
        "popular (filling up)"
    )
    product_ids: list[str] | None = Field(None, description="cart_complement: the cart's products it goes with")
    category: str | None = Field(None, description="category: the recently viewed category")


class VisitorItem(BaseModel):
    rank: int = Field(ge=1)
    product_id: str
    product_name: str | None
    category: str | None
    score: float | None = Field(description="The blended score (tessera/realtime/blend.py); null for popular fill.")
    source: str = Field(description="The list that counted most: published, session_knn, cart_complement or popular")
    reasons: list[Reason]


class SessionSummary(BaseModel):
    views: int = Field(description="Recently viewed products held for the visitor")
    cart: int = Field(description="Products in the cart")
    last_event_at: float | None = Field(description="The visitor's last event (epoch seconds), as the state holds it")


class VisitorRecommendations(BaseModel):
    visitor_id: str
    id_type: IdType
    identified: bool = Field(description="The state is a customer's (a userId, or an anonymousId an identify joined)")
    state: str = Field(description="live (the visitor's session state was read), none, or unavailable (Redis)")
    known: bool = Field(description="The customer's published list was used")
    published_list: str = Field(
        description="used, not_in_snapshot (the customer_pkey is not published), or no_customer_pkey"
    )
    source: str = Field(description="session_blend, or popular_fallback (no state and no published list)")
    session: SessionSummary | None
    versions: dict[str, str | None] = Field(description="The snapshot versions the answer was computed from")
    items: list[VisitorItem]


def _product(entry: dict) -> dict:
    return {
        "product_id": entry["product_id"],
        "product_name": entry.get("product_name"),
        "category": entry.get("category"),
    }


class VisitorRecommender:
    """Reads a visitor's state and blends; holds no data of its own (the indexes are the servers')."""

    def __init__(
        self,
        state: SessionState,
        server: Server,
        sessions: SessionServer,
        weights: BlendWeights = DEFAULT_WEIGHTS,
        knn_cache: int = KNN_CACHE,
        async_client: redis.asyncio.Redis | None = None,
    ):
        self.state = state
        self.server = server
        self.sessions = sessions
        self.weights = weights
        self._read = state.client.register_script(_READ)
        # the route's reads: the event loop serves other requests while Redis answers
        self.async_client = async_client
        self._read_async = async_client.register_script(_READ) if async_client is not None else None
        self.knn_cache = knn_cache
        self._cache: OrderedDict[tuple, tuple[list[dict], list[str]]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.cache_hits = self.cache_misses = 0

    # --- the state, in one round trip --------------------------------------------------------
    def _read_args(self, visitor_id: str, id_type: IdType) -> tuple[str, list[str]]:
        if id_type is IdType.user:
            visitor, alias = f"u:{visitor_id}", ""
        else:
            visitor, alias = f"a:{visitor_id}", self.state.alias_key(visitor_id)
        return visitor, [alias, self.state.keys(visitor)[0], self.state.keys("u:")[0]]

    def read(self, visitor_id: str, id_type: IdType) -> VisitorState | None:
        visitor, args = self._read_args(visitor_id, id_type)
        resolved, *replies = orjson.loads(self._read(args=args))
        return parse_state(resolved or visitor, *replies)

    async def read_async(self, visitor_id: str, id_type: IdType) -> VisitorState | None:
        """read() with the asyncio client (the synchronous one without it)."""
        if self._read_async is None:
            return self.read(visitor_id, id_type)
        visitor, args = self._read_args(visitor_id, id_type)
        resolved, *replies = orjson.loads(await self._read_async(args=args))
        return parse_state(resolved or visitor, *replies)

    # --- the lists -----------------------------------------------------------------------------
    def _published(self, customer_pkey: str | None) -> tuple[list[dict] | None, str]:
        if customer_pkey is None:
            return None, "no_customer_pkey"
        body = self.server.index.bodies[RECOMMENDATIONS].get(customer_pkey)
        if body is None:
            return None, "not_in_snapshot"
        return [_product(i) for i in orjson.loads(body)["items"]], "used"

    def _bought_together(self, product_id: str) -> list[dict] | None:
        bodies = self.server.index.bodies.get(PRODUCT_LISTS)
        body = bodies.get(product_list_key("bought_together", product_id)) if bodies else None
        return orjson.loads(body) if body is not None else None

    def _session_knn(self, query: list[str], limit: int) -> tuple[list[dict], list[str]]:
        """The session model's products for the query (oldest first), and the query's categories
        (newest first); from the cache when the same index answered the same query lately."""
        index = self.sessions.index
        if index is None:
            return [], []
        key = (index.version, id(index), tuple(query), max(POOL, 2 * limit))
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.cache_hits += 1
                return hit
            self.cache_misses += 1
        columns = [index.column[p] for p in query if p in index.column]
        categories = [index.products[c]["category"] for c in reversed(columns)]
        knn: list[dict] = []
        if columns:
            top, _ = index.model.recommend_positive(columns, key[-1])
            knn = [index.products[c] for c in top.tolist()]
        if self.knn_cache:
            with self._cache_lock:
                self._cache[key] = (knn, categories)
                if len(self._cache) > self.knn_cache:
                    self._cache.popitem(last=False)
        return knn, categories

    # --- the answer ----------------------------------------------------------------------------
    def recommend(self, visitor_id: str, id_type: IdType, customer_pkey: str | None, limit: int) -> dict:
        """The answer, the state read with the synchronous client."""
        try:
            visitor, state_label = self.read(visitor_id, id_type), "live"
        except redis.RedisError as exc:
            visitor, state_label = _unavailable(exc)
        return self.answer(visitor_id, id_type, visitor, state_label, customer_pkey, limit)

    async def recommend_async(self, visitor_id: str, id_type: IdType, customer_pkey: str | None, limit: int) -> dict:
        """recommend(), the state read with the asyncio client (the route's)."""
        try:
            visitor, state_label = await self.read_async(visitor_id, id_type), "live"
        except redis.RedisError as exc:
            visitor, state_label = _unavailable(exc)
        return self.answer(visitor_id, id_type, visitor, state_label, customer_pkey, limit)

    def answer(
        self,
        visitor_id: str,
        id_type: IdType,
        visitor: VisitorState | None,
        state_label: str,
        customer_pkey: str | None,
        limit: int,
    ) -> dict:
        """The body for a visitor whose state was read (`state_label` live, or unavailable)."""
        index = self.server.index
        if visitor is None and state_label == "live":
            state_label = "none"
        published, published_list = self._published(customer_pkey)
        versions = {
            RECOMMENDATIONS: index.versions[RECOMMENDATIONS].version,
            "session_index": self.sessions.index.version if self.sessions.index is not None else None,
            PRODUCT_LISTS: index.versions[PRODUCT_LISTS].version if PRODUCT_LISTS in index.versions else None,
        }
        body = {
            "visitor_id": visitor_id,
            "id_type": id_type.value,
            "identified": visitor is not None and visitor.visitor.startswith("u:"),
            "state": state_label,
            "known": published is not None,
            "published_list": published_list,
            "versions": versions,
        }
        if visitor is None and published is None:
            items = blend(
                [], exclude=set(), affinity={}, lift=None, weights=self.weights, limit=limit, fill=index.popular
            )
            return {**body, "source": "popular_fallback", "session": None, "items": items}
        lists, exclude, categories = [], set(), []
        if published is not None:
            lists.append(Ranked(PUBLISHED, 1.0, published))
        if visitor is not None:
            # the session model's query: recent views oldest first, then cart products not viewed
            query = list(reversed(visitor.views)) + sorted(p for p in visitor.cart if p not in visitor.views)
            knn, query_categories = self._session_knn(query, limit)
            lists.append(Ranked(SESSION_KNN, 1.0, knn))
            lists.append(
                Ranked(CART_COMPLEMENT, self.weights.complement, complement_list(visitor.cart, self._bought_together))
            )
            exclude = set(visitor.views) | set(visitor.cart) | set(visitor.last_order_products)
            categories = visitor.categories or query_categories
        items = blend(
            lists,
            exclude=exclude,
            affinity=category_affinity(categories),
            lift=None,  # the time-of-day prior is not used (tessera/realtime/blend.py)
            weights=self.weights,
            limit=limit,
            fill=index.popular,
        )
        session = (
            {"views": len(visitor.views), "cart": len(visitor.cart), "last_event_at": visitor.last_ts}
            if visitor is not None
            else None
        )
        return {**body, "source": "session_blend", "session": session, "items": items}


def _unavailable(exc: redis.RedisError) -> tuple[None, str]:
    """Redis failed: served without the session, and said so in the answer."""
    log.warning("visitor state unavailable (%s): serving without the session", type(exc).__name__)
    return None, "unavailable"


def add_visitor_routes(
    app: FastAPI,
    state: SessionState,
    server: Server,
    sessions: SessionServer,
    weights: BlendWeights = DEFAULT_WEIGHTS,
    async_client: redis.asyncio.Redis | None = None,
) -> VisitorRecommender:
    """GET /v1/visitors/{visitor_id}/recommendations on `app` (create_app, when real time is on).
    With `async_client` (create_app passes one to the same Redis) the state is read without holding
    the event loop: a synchronous read stops every request while Redis answers, which on a loaded
    machine took longer than the read's own CPU; the app's lifespan closes it."""
    recommender = VisitorRecommender(state, server, sessions, weights, async_client=async_client)
    app.state.visitor_recommender = recommender

    @app.get(
        "/v1/visitors/{visitor_id}/recommendations",
        response_model=VisitorRecommendations,
        tags=["visitors"],
        summary="Recommendations for a storefront visitor, blended with the live session",
    )
    async def visitor_recommendations(
        visitor_id: str = PathParam(
            min_length=1,
            max_length=MAX_ID_LENGTH,
            pattern=ID_PATTERN,
            description="The visitor's Segment anonymousId (id_type=anonymous) or the shop's userId (id_type=user)",
        ),
        id_type: Annotated[IdType, Query(description="What visitor_id is")] = IdType.anonymous,
        customer_pkey: str | None = Query(
            None, pattern=PKEY_PATTERN, description="The customer's published key, when the storefront holds it"
        ),
        limit: int | None = Query(None, ge=1, le=MAX_LIMIT, description="At most this many items"),
    ) -> Response:
        answer = await recommender.recommend_async(visitor_id, id_type, customer_pkey, limit or server.default_limit)
        return Response(orjson.dumps(answer), media_type="application/json", headers={"cache-control": "no-store"})

    return recommender


def demo_products(server: Server, sessions: SessionServer, n: int = DEMO_PRODUCTS) -> list[dict]:
    """The demo shop's shelf: the session index's most touched products, else the popular ones."""
    index = sessions.index
    if index is not None and len(index.popular):
        return [_product(index.products[int(c)]) for c in index.popular[:n]]
    return [_product(p) for p in server.index.popular[:n]]


def add_storefront_routes(app: FastAPI, server: Server, sessions: SessionServer, demo: bool) -> None:
    """The storefront snippet at /static/tessera.js; with `demo`, the demo shop at /demo/ and its
    shelf at /demo/products.json (products and names from the published snapshots only)."""

    @app.get("/static/tessera.js", include_in_schema=False)
    async def snippet() -> FileResponse:
        return FileResponse(STATIC / "tessera.js", media_type="text/javascript")

    if not demo:
        return

    @app.get("/demo/", include_in_schema=False)
    async def demo_shop() -> FileResponse:
        return FileResponse(STATIC / "demo_shop.html", media_type="text/html")

    @app.get("/demo/products.json", include_in_schema=False)
    async def demo_shelf() -> JSONResponse:
        return JSONResponse({"products": demo_products(server, sessions)})
