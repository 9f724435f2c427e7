"""The read-only serving API (`tessera serve`): recommendations, segments and scores per customer.

It serves the *current* published snapshots (tessera/publish/snapshots.py), never the warehouse: a
storefront keeps working while the pipeline runs, and it only ever sees versions that passed
every publish check. At start, and whenever a `current` pointer moves, DuckDB turns each
snapshot's Parquet into one JSON body per customer; a request is then a dictionary lookup.
That keeps the per-request cost independent of the number of customers, at the price of memory
(about 3 GB for 1,000,000 customers, measured by bench/serving.py) and a load of about 20 s
per million customers (the old index is served meanwhile, so a reload briefly needs twice the
memory). An unknown customer id gets the popular products of the
recommendations snapshot (`known: false`); segments and scores answer 404 for it.

A reload that fails (an unreadable pointer, manifest or Parquet, a refused snapshot) never stops
the watcher: the last good index stays served, /health says "degraded" with the error and since
when, and the next tick tries again. In production mode (TESSERA_MODE) a snapshot is served only
if its manifest says it was published with a deployment's own salt ("pseudonym_salt":
"deployment"); a demo-salted snapshot, or one published before manifests recorded the salt, is
refused: at start `tessera serve` exits, at a reload the last good index stays (docs/privacy.md).

Lists per product (`/v1/products/{product_id}/recommendations`, the product_recommendations
snapshot) are served once published; a publish directory from before them serves everything else
and answers that route with 503 (see "Lists per product" below).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import duckdb
import orjson
from fastapi import FastAPI, Query, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tessera.privacy import pseudonym
from tessera.publish import snapshots
from tessera.settings import load_settings, preflight

if TYPE_CHECKING:
    from tessera.session_serving import SessionServer
    from tessera.settings import RealtimeSettings

log = logging.getLogger("tessera.serving")

RECOMMENDATIONS = "customer_recommendations"
SEGMENTS = "customer_segments"
SCORES = "customer_scores"
SERVED = (RECOMMENDATIONS, SEGMENTS, SCORES)
# served when the release names it (a publish directory from before the lists per product lacks it)
PRODUCT_LISTS = "product_recommendations"
OPTIONAL = (PRODUCT_LISTS,)
MAX_KEY_LENGTH = 128
MAX_LIMIT = 100


# The response shapes: they document the API (OpenAPI) and the contract tests validate every
# body against them. Bodies are built by DuckDB (below), so a column renamed upstream fails those
# tests rather than silently changing the API.
class RecommendedItem(BaseModel):
    rank: int = Field(ge=1)
    product_id: str
    product_name: str | None
    category: str | None
    score: float | None = Field(description="The model's score; null in the popular fallback.")


class Recommendations(BaseModel):
    customer_pkey: str
    known: bool = Field(description="False: the id is not in the published snapshot; items are the popular fallback.")
    source: str = Field(description="personalised, cold_start_features, popularity or popular_fallback")
    model_version: str | None
    items: list[RecommendedItem]


class Segments(BaseModel):
    customer_pkey: str
    rfm_segment: str
    # R, F and M scores are null for prospects (no order yet): docs/rfm.md
    r_score: int | None
    f_score: int | None
    m_score: int | None
    cluster_id: int | None
    cluster_description: str | None
    rule_segment: str | None
    rule_segment_priority: int | None
    rfm_holdout_group: str = Field(description="control or treatment in a campaign on the RFM segment")
    rule_holdout_group: str | None
    as_of_date: str


class Scores(BaseModel):
    customer_pkey: str
    recency_days: int | None
    frequency: int
    monetary: float
    average_order_value: float | None
    tenure_days: int | None
    rfm_score: int | None
    purchase_propensity_30d: float
    purchase_propensity_percentile: float
    churn_risk_30d: float | None
    churn_risk_percentile: float | None
    as_of_date: str


class SnapshotInfo(BaseModel):
    version: str
    published_at: str
    rows: int


class Health(BaseModel):
    status: str = Field(
        description="ok, or degraded while the last reload failed (the versions below are still served)"
    )
    customers: int
    snapshots: dict[str, SnapshotInfo]
    loaded_at: str
    last_reload_error: str | None = Field(description="Why the last reload failed; null once one succeeds.")
    degraded_since: str | None = Field(description="When reloads started failing (UTC); null when ok.")


class NotFound(BaseModel):
    detail: str


BODY_SQL = {
    RECOMMENDATIONS: """
        select customer_pkey, to_json(struct_pack(
            customer_pkey := customer_pkey,
            known := true,
            source := any_value(source),
            model_version := any_value(model_version),
            -- ordered by rank, the first field (as the recommendation feed, tessera/publish/published.py)
            items := list_sort(list(struct_pack(
                rank := rank, product_id := product_id, product_name := product_name,
                category := category, score := score)))
        ))
        from read_parquet(?) group by customer_pkey
    """,
    SEGMENTS: """
        select customer_pkey, to_json(struct_pack(
            customer_pkey := customer_pkey, rfm_segment := rfm_segment,
            r_score := r_score, f_score := f_score, m_score := m_score,
            cluster_id := cluster_id, cluster_description := cluster_description,
            rule_segment := rule_segment, rule_segment_priority := rule_segment_priority,
            rfm_holdout_group := rfm_holdout_group, rule_holdout_group := rule_holdout_group,
            as_of_date := cast(as_of_date as varchar)
        ))
        from read_parquet(?)
    """,
    SCORES: """
        select customer_pkey, to_json(struct_pack(
            customer_pkey := customer_pkey, recency_days := recency_days, frequency := frequency,
            monetary := cast(monetary as double), average_order_value := cast(average_order_value as double),
            tenure_days := tenure_days, rfm_score := rfm_score,
            purchase_propensity_30d := purchase_propensity_30d,
            purchase_propensity_percentile := purchase_propensity_percentile,
            churn_risk_30d := churn_risk_30d, churn_risk_percentile := churn_risk_percentile,
            as_of_date := cast(as_of_date as varchar)
        ))
        from read_parquet(?)
    """,
    # one body per (list, product): the JSON array of its items, ranked (product_list_key)
    PRODUCT_LISTS: """
        select list_name || ':' || product_id, to_json(list_sort(list(struct_pack(
            rank := rank, product_id := recommended_product_id, product_name := product_name,
            category := category, score := score, support := support))))
        from read_parquet(?) group by list_name, product_id
    """,
}


@dataclass
class Index:
    """Every response body of one set of snapshot versions, ready to send."""

    bodies: dict[str, dict[str, bytes]]
    popular: list[dict]
    versions: dict[str, snapshots.Snapshot]
    loaded_at: str
    # the product ids the lists per product know (their product_catalogue export); None: not published
    catalogue: frozenset[str] | None = None

    @property
    def customers(self) -> int:
        return len(self.bodies[SEGMENTS])


class ServingError(RuntimeError):
    """A reason not to serve the current snapshots. Its message names tables, versions and files,
    never a value read from them (it is logged and shown on /health)."""


# what a manifest's "pseudonym_salt" says for keys made with a deployment's own secret salt
# (tessera.privacy.pseudonym.salt_label); anything else is refused in production mode
DEPLOYMENT_SALT = "deployment"
DEMO_SALT_LABEL = pseudonym.salt_label(pseudonym.DEMO_SALT)


def check_servable(current: dict[str, snapshots.Snapshot], mode: str) -> None:
    """Refuse, outside demo mode, snapshots whose keys were not made with a deployment's own salt:
    keys made with the public demo salt can be linked back to customers by anyone."""
    if mode == "demo":
        return
    refused = []
    for name, snap in current.items():
        label = snap.manifest.get("pseudonym_salt")
        if label == DEPLOYMENT_SALT:
            continue
        why = (
            "no pseudonym_salt in its manifest (published before manifests recorded the salt)"
            if label is None
            else f"pseudonym_salt {label!r}" + (" (the public demo salt)" if label == DEMO_SALT_LABEL else "")
        )
        refused.append(f"{name} version {snap.version}: {why}")
    if refused:
        raise ServingError(
            f"TESSERA_MODE={mode} serves only snapshots published with a deployment's own salt; refused: "
            + "; ".join(refused)
            + ". Republish with TESSERA_PSEUDONYM_SALT set, or serve demo data with TESSERA_MODE=demo"
        )


def _stage(what: str, exc: Exception) -> ServingError:
    """A ServingError naming what failed. Only messages that carry no data values are kept: an
    OS error (path and reason), a JSON error's position, our own errors; for any other (a DuckDB
    error may quote a value it could not read) only its type."""
    if isinstance(exc, ServingError):
        return exc
    return ServingError(f"{what}: {_detail(exc)}")


def _detail(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    if isinstance(exc, json.JSONDecodeError):  # orjson's is a subclass
        return f"{type(exc).__name__} at line {exc.lineno}, column {exc.colno}"
    if exc.__cause__ is not None:  # e.g. a ValueError raised from the JSONDecodeError
        return f"{type(exc).__name__} from {_detail(exc.__cause__)}"
    return type(exc).__name__


def _pointers(publish_dir: Path) -> dict[str, str | None]:
    """The current version of each served table (None: never published), all from one read of
    the release, so the served tables are always one published set."""
    try:
        release = snapshots.read_release(publish_dir)
    except Exception as exc:  # any failure: a ServingError naming the release
        raise _stage(f"the release pointer ({snapshots.RELEASE}) under {publish_dir} is unreadable", exc) from exc
    optional = {name: release["current"][name] for name in OPTIONAL if release["current"].get(name)}
    return {name: release["current"].get(name) for name in SERVED} | optional


def _current(publish_dir: Path) -> dict[str, snapshots.Snapshot]:
    """The current snapshot of each served table; raises ServingError naming what is unreadable."""
    current = {}
    for name, version in _pointers(publish_dir).items():
        if version is None:
            raise ServingError(f"{name} has never been published under {publish_dir}")
        try:
            path = publish_dir / name / "versions" / version
            current[name] = snapshots.Snapshot(name, version, path, json.loads((path / snapshots.MANIFEST).read_text()))
        except Exception as exc:
            raise _stage(f"{name} version {version}: its {snapshots.MANIFEST} is unreadable", exc) from exc
    return current


def load_index(publish_dir: Path, mode: str = "production") -> Index:
    """Read the current snapshot of each served table. Raises ServingError if one was never
    published, cannot be read, or may not be served in `mode` (checked before the Parquet is read)."""
    current = _current(publish_dir)
    check_servable(current, mode)
    con = duckdb.connect()
    try:
        bodies = {}
        for name, snap in current.items():
            try:
                rows = con.execute(BODY_SQL[name], [str(snap.parquet)]).fetchall()
            except Exception as exc:
                raise _stage(f"{name} version {snap.version}: {snap.parquet.name} is unreadable", exc) from exc
            bodies[name] = {key: body.encode() for key, body in rows}
    finally:
        con.close()
    popular_file = current[RECOMMENDATIONS].path / "exports" / "popular_products.jsonl"
    if not popular_file.exists():
        raise ServingError(f"{popular_file} missing: republish customer_recommendations")
    try:
        popular = [orjson.loads(line) for line in popular_file.read_bytes().splitlines() if line.strip()]
    except Exception as exc:
        raise _stage(f"{popular_file} is unreadable", exc) from exc
    popular = [
        {
            "rank": p["rank"],
            "product_id": p["product_id"],
            "product_name": p["product_name"],
            "category": p["category"],
            "score": None,
        }
        for p in popular
    ]
    index = Index(bodies, popular, current, datetime.now(UTC).isoformat())
    index.catalogue = load_catalogue(current.get(PRODUCT_LISTS))
    # millions of long-lived bytes objects: take them out of the cyclic collector's scans, or a
    # full collection pauses every request for tens of milliseconds (bench/serving.py's max)
    gc.collect()
    gc.freeze()
    return index


class Server:
    """The index behind the app, swapped whole when a pointer moves (readers never see a mix)."""

    def __init__(self, publish_dir: Path, default_limit: int = 10, mode: str = "production"):
        self.publish_dir = publish_dir
        self.default_limit = default_limit
        self.mode = mode
        self.index = load_index(publish_dir, mode)
        self.last_reload_error: str | None = None
        self.degraded_since: str | None = None
        self._lock = threading.Lock()

    def reload_if_moved(self) -> bool:
        """Load the new versions if any pointer moved. Never raises: on any failure the old index
        stays served and the error is kept for /health until a tick finds the pointers readable
        and the index current again."""
        with self._lock:
            seen = {name: snap.version for name, snap in self.index.versions.items()}
            try:
                if _pointers(self.publish_dir) == seen:
                    self._recovered()
                    return False
                started = time.perf_counter()
                index = load_index(self.publish_dir, self.mode)
            except Exception as exc:  # reported on /health; the previous versions stay served
                self.failed(exc, seen)
                return False
            self.index = index
            self._recovered()
            log.info(
                "loaded snapshots %s in %.1f s",
                {n: s.version for n, s in index.versions.items()},
                time.perf_counter() - started,
            )
            return True

    def failed(self, exc: Exception, serving: dict[str, str]) -> None:
        """Keep the error for /health and log it. The message names files and versions only (see
        _stage), and no traceback is logged: one may quote a value read from a snapshot."""
        self.last_reload_error = f"reload failed: {_stage('unexpected error', exc)}"
        if self.degraded_since is None:
            self.degraded_since = datetime.now(UTC).isoformat()
        log.error("%s; still serving %s (degraded since %s)", self.last_reload_error, serving, self.degraded_since)

    def _recovered(self) -> None:
        if self.degraded_since is not None:
            log.warning("reloads work again (degraded since %s)", self.degraded_since)
        self.last_reload_error = None
        self.degraded_since = None

    def fallback(self, customer_pkey: str, limit: int) -> bytes:
        return orjson.dumps(
            {
                "customer_pkey": customer_pkey,
                "known": False,
                "source": "popular_fallback",
                "model_version": None,
                "items": self.index.popular[:limit],
            }
        )


def _json(body: bytes, version: str) -> Response:
    return Response(content=body, media_type="application/json", headers={"x-tessera-snapshot": version})


async def _watch(server: Server, reload_seconds: float) -> None:
    """Every reload_seconds, reload the snapshots that moved. One tick's failure must never end
    the loop: reload_if_moved reports its own errors, this guard catches anything else (a failed
    thread hand-off) the same way."""
    while True:
        await asyncio.sleep(reload_seconds)
        try:
            await asyncio.to_thread(server.reload_if_moved)
        except Exception as exc:
            server.failed(exc, {n: s.version for n, s in server.index.versions.items()})


async def _watch_sessions(sessions: SessionServer, reload_seconds: float) -> None:
    """Every reload_seconds, load the session index if its version moved (it reports its own errors)."""
    while True:
        await asyncio.sleep(reload_seconds)
        await asyncio.to_thread(sessions.reload_if_moved)


def _lifespan(server: Server, reload_seconds: float, sessions: SessionServer | None = None):
    """The app's lifespan: watches for new snapshots while it serves (not when reload_seconds <= 0)."""

    async def lifespan(app: FastAPI):
        tasks = []
        if reload_seconds > 0:
            tasks.append(asyncio.create_task(_watch(server, reload_seconds)))
            if sessions is not None:
                tasks.append(asyncio.create_task(_watch_sessions(sessions, reload_seconds)))
        yield
        for task in tasks:
            task.cancel()
        recommender = getattr(app.state, "visitor_recommender", None)
        if recommender is not None and recommender.async_client is not None:
            await recommender.async_client.aclose()

    return lifespan


def _health(server: Server) -> Health:
    index = server.index
    return Health(
        status="ok" if server.last_reload_error is None else "degraded",
        customers=index.customers,
        snapshots={
            name: SnapshotInfo(version=s.version, published_at=s.manifest["published_at"], rows=s.manifest["rows"])
            for name, s in index.versions.items()
        },
        loaded_at=index.loaded_at,
        last_reload_error=server.last_reload_error,
        degraded_since=server.degraded_since,
    )


def _recommendations(server: Server, customer_pkey: str, limit: int | None) -> Response:
    """The customer's published recommendations (the first `limit`), or the popular fallback."""
    index = server.index
    version = index.versions[RECOMMENDATIONS].version
    body = index.bodies[RECOMMENDATIONS].get(customer_pkey)
    if body is None:
        return _json(server.fallback(customer_pkey, limit or server.default_limit), version)
    if limit is not None:
        parsed = orjson.loads(body)
        if len(parsed["items"]) > limit:
            parsed["items"] = parsed["items"][:limit]
            body = orjson.dumps(parsed)
    return _json(body, version)


def _lookup(server: Server, name: str, customer_pkey: str) -> Response:
    """The customer's row of the published snapshot `name`, or 404."""
    index = server.index
    body = index.bodies[name].get(customer_pkey)
    if body is None:
        return JSONResponse({"detail": f"customer {customer_pkey!r} is not in the published {name}"}, 404)
    return _json(body, index.versions[name].version)


def _row_endpoint(server: Server, name: str, customer_pkey_param):
    async def endpoint(customer_pkey: str = customer_pkey_param) -> Response:
        return _lookup(server, name, customer_pkey)

    endpoint.__name__ = name.removeprefix("customer_")
    return endpoint


# --------------------------------------------------------------------------- lists per product
# GET /v1/products/{product_id}/recommendations: the published lists of one product
# (ml/product_lists.py). Without `list` the default is bought_together and, when the product has
# none, the next of PRODUCT_FALLBACK that it has: what was bought with it, else what was viewed
# with it, else what resembles it (behaviour first: it says more than the catalogue's text).
# With `list` that list only, empty or not: the caller asked for that one. A product outside the
# published catalogue is unknown (404); a known product without any list gets an empty one.


class ProductList(StrEnum):
    bought_together = "bought_together"
    viewed_together = "viewed_together"
    similar = "similar"


PRODUCT_FALLBACK = (ProductList.bought_together, ProductList.viewed_together, ProductList.similar)


class ProductItem(BaseModel):
    rank: int = Field(ge=1)
    product_id: str
    product_name: str | None
    category: str | None
    score: float = Field(description="Cosine co-occurrence (bought/viewed together) or content similarity, in [0, 1].")
    support: int = Field(
        description="Baskets (orders or sessions) with both products; for similar, name words in common."
    )


class ProductRecommendations(BaseModel):
    product_id: str
    list_name: ProductList | None = Field(
        description="The list served; null when the product has none of those asked for."
    )
    fallback: bool = Field(
        description="True: no list was asked for, the product has no bought_together list, and a later list "
        "of the fallback order (viewed_together, then similar) is served."
    )
    items: list[ProductItem]


def product_list_key(list_name: str, product_id: str) -> str:
    """The key of one list's body in Index.bodies[PRODUCT_LISTS] (BODY_SQL)."""
    return f"{list_name}:{product_id}"


def load_catalogue(snap: snapshots.Snapshot | None) -> frozenset[str] | None:
    """The product ids of the snapshot's product_catalogue export; None when it is not published."""
    if snap is None:
        return None
    path = snap.path / "exports" / "product_catalogue.jsonl"
    if not path.exists():
        raise ServingError(f"{path} missing: republish {PRODUCT_LISTS}")
    try:
        return frozenset(orjson.loads(line)["product_id"] for line in path.read_bytes().splitlines() if line.strip())
    except Exception as exc:
        raise _stage(f"{path} is unreadable", exc) from exc


def _product_recommendations(server: Server, product_id: str, wanted: ProductList | None, limit: int) -> Response:
    """The product's list (`wanted`, else the first of PRODUCT_FALLBACK it has), first `limit` items."""
    index = server.index
    if index.catalogue is None:
        detail = f"{PRODUCT_LISTS} has never been published under {server.publish_dir}: no lists per product yet"
        return JSONResponse({"detail": detail}, 503)
    if product_id not in index.catalogue:
        return JSONResponse({"detail": f"product {product_id!r} is not in the published product catalogue"}, 404)
    bodies = index.bodies[PRODUCT_LISTS]
    order = PRODUCT_FALLBACK if wanted is None else (wanted,)
    served = next((name for name in order if product_list_key(name, product_id) in bodies), None)
    items = [] if served is None else orjson.loads(bodies[product_list_key(served, product_id)])[:limit]
    body = {
        "product_id": product_id,
        "list_name": served,
        "fallback": wanted is None and served not in (None, order[0]),
    }
    return _json(orjson.dumps({**body, "items": items}), index.versions[PRODUCT_LISTS].version)


def _add_product_routes(app: FastAPI, server: Server) -> None:
    """GET /v1/products/{product_id}/recommendations."""
    responses = {
        404: {"model": NotFound, "description": "The product is not in the published product catalogue"},
        503: {"model": NotFound, "description": "The lists per product have never been published"},
    }

    @app.get(
        "/v1/products/{product_id}/recommendations",
        response_model=ProductRecommendations,
        responses=responses,
        tags=["products"],
    )
    async def product_recommendations(
        product_id: str = PathParam(
            min_length=1, max_length=MAX_KEY_LENGTH, description="A product_id of dim_products"
        ),
        wanted: Annotated[
            ProductList | None,
            Query(
                alias="list",
                description="bought_together, viewed_together or similar. Default: bought_together, falling "
                "back to viewed_together, then similar, when the product has no such list.",
            ),
        ] = None,
        limit: int | None = Query(None, ge=1, le=MAX_LIMIT, description="At most this many items"),
    ) -> Response:
        return _product_recommendations(server, product_id, wanted, limit or server.default_limit)


def _add_routes(app: FastAPI, server: Server) -> None:
    """The API: /health, and per customer their recommendations, segments and scores."""
    customer_pkey = PathParam(min_length=1, max_length=MAX_KEY_LENGTH, description="The published customer_pkey")
    not_found = {404: {"model": NotFound, "description": "The customer is not in the published snapshot"}}

    @app.get("/health", response_model=Health, tags=["operations"])
    async def health() -> Health:
        return _health(server)

    @app.get("/v1/customers/{customer_pkey}/recommendations", response_model=Recommendations, tags=["customers"])
    async def recommendations(
        customer_pkey: str = customer_pkey,
        limit: int | None = Query(None, ge=1, le=MAX_LIMIT, description="At most this many items"),
    ) -> Response:
        return _recommendations(server, customer_pkey, limit)

    for name, model in ((SEGMENTS, Segments), (SCORES, Scores)):
        app.add_api_route(
            f"/v1/customers/{{customer_pkey}}/{name.removeprefix('customer_')}",
            _row_endpoint(server, name, customer_pkey),
            methods=["GET"],
            response_model=model,
            responses=not_found,
            tags=["customers"],
        )


def create_app(
    publish_dir: Path,
    reload_seconds: float = 60.0,
    default_limit: int = 10,
    mode: str = "production",
    realtime: RealtimeSettings | None = None,
    salt: str | None = None,
) -> FastAPI:
    """The app over the current snapshots. `mode` is TESSERA_MODE: anything but "demo" refuses
    snapshots not published with a deployment's salt (the default refuses, so a caller that
    forgets the mode fails closed). Raises ServingError when the snapshots cannot be served.

    With `realtime` (settings.realtime_configured(): TESSERA_REDIS_URL set) the app also collects
    events, `POST /v1/events` (tessera/realtime/collector.py), and `app.state.realtime` is the
    online store (tessera/realtime/store.py) the real-time routes read; `salt` is the pseudonym
    salt the suppression lists are hashed with (default: TESSERA_PSEUDONYM_SALT). It also serves
    the visitors' session-aware recommendations, GET /v1/visitors/{visitor_id}/recommendations
    (tessera/realtime/visitor_recs.py), the storefront snippet /static/tessera.js and, in demo
    mode, the demo shop at /demo/ (docs/realtime_storefront.md). Without it the API is exactly the
    read-only one, and nothing connects to Redis."""
    # session recommendations for anonymous visitors: their own index (it imports this module's models)
    from tessera.session_serving import SessionServer, add_session_routes

    server = Server(publish_dir, default_limit, mode)
    sessions = SessionServer(publish_dir)
    app = FastAPI(
        title="tessera serving API",
        version="1",
        description="Read-only: the current published snapshots of recommendations, segments and scores.",
        lifespan=_lifespan(server, reload_seconds, sessions),
    )
    app.state.server = server
    app.state.sessions = sessions
    _add_routes(app, server)
    add_session_routes(app, sessions)
    _add_product_routes(app, server)
    app.state.realtime = None
    if realtime is not None:
        from tessera.realtime.collector import add_collector_routes
        from tessera.realtime.store import connect, connect_async
        from tessera.realtime.visitor_recs import add_storefront_routes, add_visitor_routes

        store = connect(realtime, salt if salt is not None else load_settings().pseudonym_salt)
        app.state.realtime = store
        add_collector_routes(app, store)
        add_visitor_routes(app, store.state, server, sessions, async_client=connect_async(realtime))
        add_storefront_routes(app, server, sessions, demo=mode == "demo")
    return app


def serve(publish_dir: Path, host: str, port: int, reload_seconds: float, mode: str | None = None) -> None:
    """`tessera serve`. Exits with a clear error, before listening, when the configuration is
    unusable (settings.preflight) or the current snapshots cannot be served in this mode. With
    TESSERA_REDIS_URL set it also collects events (POST /v1/events; docs/realtime.md)."""
    import uvicorn

    from tessera.settings import realtime_configured

    started = time.perf_counter()
    try:
        settings = load_settings()
        preflight(settings, purpose="serve", publish_dir=publish_dir)
        realtime = realtime_configured()
        app = create_app(
            publish_dir,
            reload_seconds,
            mode=settings.mode if mode is None else mode,
            realtime=realtime,
            salt=settings.pseudonym_salt,
        )
    except (ServingError, ValueError) as exc:  # ValueError: settings.ConfigurationError, a refused variable
        raise SystemExit(f"tessera serve: {exc}") from None
    server: Server = app.state.server
    print(
        f"loaded {server.index.customers:,} customers from {publish_dir} in {time.perf_counter() - started:.1f} s; "
        f"serving on http://{host}:{port} (OpenAPI: /docs, /openapi.json)",
        flush=True,
    )
    if app.state.realtime is not None:
        print(f"collecting events: POST /v1/events into Redis at {app.state.realtime.location}", flush=True)
        print(
            "visitor recommendations: GET /v1/visitors/{visitor_id}/recommendations; snippet /static/tessera.js",
            flush=True,
        )
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")
