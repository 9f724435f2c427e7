"""The read-only serving API (`tessera serve`): recommendations, segments and scores per customer.

It serves the *current* published snapshots (tessera/publish/snapshots.py), never the warehouse: a
storefront keeps working while the pipeline runs, and it only ever sees versions that passed
every publish check. At start, and whenever a `current` pointer moves, DuckDB turns each
snapshot's Parquet into one JSON body per customer; a request is then a dictionary lookup.
That keeps the per-request cost independent of the number of customers, at the price of memory
(about 3 GB for 1,000,000 customers, measured by bench/serving.py) and a load of about 20 s
per million customers (the old index is served meanwhile, so a reload briefly needs twice the
memory). An unknown customer id gets the popular products of the
recommendations snapshot (`known: false`, `fallback: popular`); segments, scores and the next best
action answer 404 for it. A customer_pkey that is not `pk_` + 32 hex digits is a 422 on every
route, never a fallback.

For storefronts (docs/publishing.md): GET /v1/lookup resolves the shop's own ids (CRM customer_id,
cookie anonymous_id, declared ids) through the published customer_identifiers export, which holds
only salted hashes; the customer routes need one of TESSERA_API_KEYS; every request logs one line
with its route template, status and latency (RequestLog); /docs serves a vendored Swagger UI.

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
import hashlib
import hmac
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
from fastapi import Depends, FastAPI, HTTPException, Query, Response, Security
from fastapi import Path as PathParam
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from tessera.privacy import pseudonym
from tessera.publish import snapshots
from tessera.settings import load_settings, preflight

if TYPE_CHECKING:
    from tessera.session_serving import SessionServer
    from tessera.settings import RealtimeSettings

log = logging.getLogger("tessera.serving")
# one line per request: method, route template (never the path with its ids), status, latency
access_log = logging.getLogger("tessera.serving.access")

RECOMMENDATIONS = "customer_recommendations"
SEGMENTS = "customer_segments"
SCORES = "customer_scores"
SERVED = (RECOMMENDATIONS, SEGMENTS, SCORES)
# served when the release names it (a publish directory from before the lists per product lacks it)
PRODUCT_LISTS = "product_recommendations"
NEXT_BEST_ACTIONS = "next_best_actions"
OPTIONAL = (PRODUCT_LISTS, NEXT_BEST_ACTIONS)
# the lookup by a shop's own ids: an export of customer_segments (tessera/publish/published.py)
IDENTIFIERS_EXPORT = "customer_identifiers.csv"
MAX_KEY_LENGTH = 128
MAX_LIMIT = 100
# a published customer_pkey (tessera/privacy/pseudonym.py); anything else is a 422, never a fallback
PKEY_PATTERN = rf"^{pseudonym.PREFIX}[0-9a-f]{{{pseudonym.DIGITS}}}$"
ID_TYPE_PATTERN = r"^[a-z][a-z0-9_]*$"
# the id types of every shop (the CRM id, the cookie); declared ones (login_id...) are the shop's own
BUILT_IN_ID_TYPES = ("customer_id", "anonymous_id")
# Swagger UI's files, vendored from the npm package swagger-ui-dist (its LICENSE beside them), so
# /docs renders with no network
SWAGGER_DIR = Path(__file__).resolve().parent / "static" / "swagger"
SWAGGER_URL = "/docs-static"
MIN_API_KEY_CHARS = 16

SCORE_DESCRIPTION = (
    "The item's score in [0, 1]: the percentile of its raw score among every item the published snapshot "
    "recommends from the same model version and source, i.e. the share of those items whose raw score is at "
    "most this one (cume_dist, rounded to 4 places; the highest published raw score is 1). Monotone in "
    "raw_score, so the list's order is kept and items of two customers compare; not a probability. "
    "Null in the popular fallback."
)


# The response shapes: they document the API (OpenAPI) and the contract tests validate every
# body against them. Bodies are built by DuckDB (below), so a column renamed upstream fails those
# tests rather than silently changing the API.
class RecommendedItem(BaseModel):
    rank: int = Field(ge=1)
    product_id: str
    product_name: str | None
    category: str | None
    score: float | None = Field(description="The model's score; null in the popular fallback.")


class CustomerItem(BaseModel):
    rank: int = Field(ge=1)
    product_id: str
    product_name: str | None
    category: str | None
    score: float | None = Field(ge=0, le=1, description=SCORE_DESCRIPTION)
    raw_score: float | None = Field(
        description="The model's own score (LightFM: an unbounded dot product such as -6.9; a baseline: its "
        "own scale). Only its order within one model means something. Null in the popular fallback."
    )


class Recommendations(BaseModel):
    customer_pkey: str
    known: bool = Field(description="False: the id is not in the published snapshot; items are the popular fallback.")
    fallback: str | None = Field(
        description="popular: the customer_pkey is well formed but not published, the items are the popular "
        "products; null for a published customer."
    )
    source: str = Field(description="personalised, cold_start_features, popularity or popular_fallback")
    model_version: str | None
    items: list[CustomerItem]


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


class NextBestAction(BaseModel):
    channel: str
    action_id: str
    variant_id: str | None = Field(description="The message variant; only a decision to send has one.")
    decision: str = Field(
        description="send: show or send the action; holdout: the customer is in the control group of the "
        "action's campaign, show nothing for it (uplift is measured against them); no_consent: no consent for "
        "the channel; capped: the customer had enough messages. Act on send only."
    )
    decided_by: str = Field(description="explicit_rule or weighted_score (docs/decisioning.md)")
    priority: int | None
    score: float | None = Field(description="The decision's weighted score (docs/decisioning.md).")
    holdout_group: str | None = Field(description="control or treatment in the campaign nba:<action_id>")
    eligible_actions: int | None = Field(description="How many actions of the catalogue the customer was eligible for")
    reason: str = Field(description="Why this action, in words")
    message_id: str | None = Field(description="The message in the campaign outbox, for a decision to send")
    decided_on: str


class NextBestActions(BaseModel):
    customer_pkey: str
    actions: list[NextBestAction] = Field(
        description="One per channel with an eligible action, by channel; empty when none is eligible today."
    )


class Profile(BaseModel):
    customer_pkey: str = Field(description="The published key the id resolved to: use it on the other routes.")
    id_type: str
    segments: Segments | None
    scores: Scores | None
    recommendations: Recommendations
    next_best_actions: list[NextBestAction] | None = Field(
        description="As GET /v1/customers/{customer_pkey}/next-best-action; null until next_best_actions is published."
    )


BODY_SQL = {
    # score: the raw score's percentile within its model version and source (SCORE_DESCRIPTION)
    RECOMMENDATIONS: """
        with scored as (
            select *, case when score is not null then round(cume_dist() over (
                partition by model_version, source, score is null order by score), 4) end as score_01
            from read_parquet(?)
        )
        select customer_pkey, to_json(struct_pack(
            customer_pkey := customer_pkey,
            known := true,
            fallback := null,
            source := any_value(source),
            model_version := any_value(model_version),
            -- ordered by rank, the first field (as the recommendation feed, tessera/publish/published.py)
            items := list_sort(list(struct_pack(
                rank := rank, product_id := product_id, product_name := product_name,
                category := category, score := score_01, raw_score := score)))
        ))
        from scored group by customer_pkey
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
    # one body per customer: the JSON array of their decisions, one per channel
    NEXT_BEST_ACTIONS: """
        select customer_pkey, to_json(list(struct_pack(
            channel := channel, action_id := action_id, variant_id := variant_id, decision := decision,
            decided_by := decided_by, priority := priority, score := score, holdout_group := holdout_group,
            eligible_actions := eligible_actions, reason := reason, message_id := message_id,
            decided_on := cast(decided_on as varchar)) order by channel))
        from read_parquet(?) group by customer_pkey
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
    # the lookup: id_type -> sha256(salt:id) digest -> customer_pkey; None: not servable (lookup_error says why)
    identifiers: dict[str, dict[bytes, str]] | None = None
    lookup_error: str | None = None

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


def load_identifiers(
    snap: snapshots.Snapshot, salt: str | None, customers: dict[str, bytes] | None = None
) -> tuple[dict[str, dict[bytes, str]] | None, str | None]:
    """The lookup of the customer_segments snapshot's customer_identifiers export, or None and why
    it cannot be served: not published (a publish from before it), no salt, or a salt other than
    the one it was hashed with (the manifest's salt_check). Raises ServingError if it is unreadable."""
    path = snap.path / "exports" / IDENTIFIERS_EXPORT
    if not path.exists():
        return (
            None,
            f"{SEGMENTS} version {snap.version} has no exports/{IDENTIFIERS_EXPORT}: republish to serve lookups",
        )
    if salt is None:
        return None, "no pseudonym salt was given to the server"
    expected = snap.manifest.get("salt_check")
    if expected is None or expected != pseudonym.salt_check(salt):
        return None, (
            f"TESSERA_PSEUDONYM_SALT is not the salt {SEGMENTS} version {snap.version} was published with "
            "(its manifest's salt_check differs): set the deployment's salt to serve lookups"
        )
    # each customer_pkey as the one string object the customer's bodies are keyed by (`customers`):
    # at 1M customers with two ids each, 2M separate copies would hold about 170 MB more
    same = {key: key for key in customers} if customers is not None else {}
    identifiers: dict[str, dict[bytes, str]] = {}
    con = duckdb.connect()
    try:
        cursor = con.execute(
            "select id_type, unhex(id_hash), customer_pkey from read_csv(?, header = true, "
            "columns = {'id_type': 'VARCHAR', 'id_hash': 'VARCHAR', 'customer_pkey': 'VARCHAR'})",
            [str(path)],
        )
        # in batches: 2M rows at once as Python tuples would raise the peak by an estimated 0.4 GB
        while rows := cursor.fetchmany(100_000):
            for id_type, digest, customer_pkey in rows:
                identifiers.setdefault(id_type, {})[digest] = same.get(customer_pkey, customer_pkey)
    except Exception as exc:
        raise _stage(f"{path} is unreadable", exc) from exc
    finally:
        con.close()
    del same
    return identifiers, None


def load_index(publish_dir: Path, mode: str = "production", salt: str | None = None) -> Index:
    """Read the current snapshot of each served table. Raises ServingError if one was never
    published, cannot be read, or may not be served in `mode` (checked before the Parquet is read).
    `salt` (the pseudonym salt) is what the lookup by a shop's own ids hashes them with."""
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
            "raw_score": None,
        }
        for p in popular
    ]
    index = Index(bodies, popular, current, datetime.now(UTC).isoformat())
    index.catalogue = load_catalogue(current.get(PRODUCT_LISTS))
    index.identifiers, index.lookup_error = load_identifiers(current[SEGMENTS], salt, bodies[SEGMENTS])
    # millions of long-lived bytes objects: take them out of the cyclic collector's scans, or a
    # full collection pauses every request for tens of milliseconds (bench/serving.py's max)
    gc.collect()
    gc.freeze()
    return index


class Server:
    """The index behind the app, swapped whole when a pointer moves (readers never see a mix)."""

    def __init__(self, publish_dir: Path, default_limit: int = 10, mode: str = "production", salt: str | None = None):
        self.publish_dir = publish_dir
        self.default_limit = default_limit
        self.mode = mode
        # the pseudonym salt, held only to hash the ids a lookup names (docs/privacy.md)
        self.salt = salt
        self.index = load_index(publish_dir, mode, salt)
        self.last_reload_error: str | None = None
        self.degraded_since: str | None = None
        self._lock = threading.Lock()
        self._report_lookup(None)

    def _report_lookup(self, before: str | None) -> None:
        """Log, once per change, why lookups by a shop's own ids cannot be served."""
        if self.index.lookup_error is not None and self.index.lookup_error != before:
            log.warning("GET /v1/lookup answers 503: %s", self.index.lookup_error)

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
                index = load_index(self.publish_dir, self.mode, self.salt)
            except Exception as exc:  # reported on /health; the previous versions stay served
                self.failed(exc, seen)
                return False
            before, self.index = self.index.lookup_error, index
            self._report_lookup(before)
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
                "fallback": "popular",
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


def _recommendation_body(server: Server, index: Index, customer_pkey: str, limit: int | None) -> bytes:
    """The customer's published recommendations (the first `limit`), or the popular fallback."""
    body = index.bodies[RECOMMENDATIONS].get(customer_pkey)
    if body is None:
        return server.fallback(customer_pkey, limit or server.default_limit)
    if limit is not None:
        parsed = orjson.loads(body)
        if len(parsed["items"]) > limit:
            parsed["items"] = parsed["items"][:limit]
            body = orjson.dumps(parsed)
    return body


def _recommendations(server: Server, customer_pkey: str, limit: int | None) -> Response:
    index = server.index
    return _json(_recommendation_body(server, index, customer_pkey, limit), index.versions[RECOMMENDATIONS].version)


def _next_best_actions(server: Server, customer_pkey: str) -> Response:
    """The customer's published decisions, one per channel; 404 for a customer not published, 503
    until next_best_actions is."""
    index = server.index
    if NEXT_BEST_ACTIONS not in index.versions:
        detail = f"{NEXT_BEST_ACTIONS} has never been published under {server.publish_dir}"
        return JSONResponse({"detail": detail}, 503)
    actions = index.bodies[NEXT_BEST_ACTIONS].get(customer_pkey)
    if actions is None and customer_pkey not in index.bodies[SEGMENTS]:
        return JSONResponse({"detail": f"customer {customer_pkey!r} is not in the published {SEGMENTS}"}, 404)
    body = b'{"customer_pkey":' + orjson.dumps(customer_pkey) + b',"actions":' + (actions or b"[]") + b"}"
    return _json(body, index.versions[NEXT_BEST_ACTIONS].version)


def _profile(server: Server, id_type: str, id_value: str, limit: int | None) -> Response:
    """Everything published about the customer a shop's own id names (GET /v1/lookup)."""
    index = server.index
    if index.identifiers is None:
        return JSONResponse({"detail": f"lookups are not served: {index.lookup_error}"}, 503)
    table = index.identifiers.get(id_type)
    if table is None and id_type in BUILT_IN_ID_TYPES:
        table = {}  # none published today (no cookie joined to a login yet): unknown, not malformed
    if table is None:
        published = ", ".join(sorted({*BUILT_IN_ID_TYPES, *index.identifiers}))
        # shaped as FastAPI's own validation errors (the 422 the spec declares)
        error = {
            "type": "value_error",
            "loc": ["query", "id_type"],
            "msg": f"id_type {id_type!r} is not published; published id types: {published}",
            "input": id_type,
        }
        return JSONResponse({"detail": [error]}, 422)
    value = id_value.strip()
    customer_pkey = table.get(hashlib.sha256(f"{server.salt}:{value}".encode()).digest())
    if customer_pkey is None:
        # the id is not echoed: it is the shop's, personal, and may end up in a client's logs
        return JSONResponse({"detail": f"no published customer has this {id_type}"}, 404)
    nba = None
    if NEXT_BEST_ACTIONS in index.versions:
        nba = index.bodies[NEXT_BEST_ACTIONS].get(customer_pkey) or b"[]"
    body = b"".join(
        (
            b'{"customer_pkey":',
            orjson.dumps(customer_pkey),
            b',"id_type":',
            orjson.dumps(id_type),
            b',"segments":',
            index.bodies[SEGMENTS].get(customer_pkey) or b"null",
            b',"scores":',
            index.bodies[SCORES].get(customer_pkey) or b"null",
            b',"recommendations":',
            _recommendation_body(server, index, customer_pkey, limit),
            b',"next_best_actions":',
            nba or b"null",
            b"}",
        )
    )
    return _json(body, index.versions[SEGMENTS].version)


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


# --------------------------------------------------------------------------- API keys
# The customer routes (/v1/customers/..., /v1/lookup) answer only a caller that sends one of the
# configured keys (TESSERA_API_KEYS) in X-API-Key or Authorization: Bearer. The server keeps only
# their sha256 digests. With none configured, production mode refuses to start and demo mode
# serves them to anyone, with a warning at start. /health, /docs, the product and session routes
# and the storefront's browser routes carry nobody's data and stay open.


class ApiKeys:
    """The configured keys, as sha256 digests; `open`: none configured (demo mode only)."""

    def __init__(self, configured: str, mode: str):
        self.digests: list[bytes] = []
        for position, entry in enumerate((e.strip() for e in configured.split(",")), start=1):
            if not entry:
                continue
            if entry.startswith("sha256:"):
                digest = entry.removeprefix("sha256:").lower()
                if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                    raise ServingError(f"TESSERA_API_KEYS entry {position}: sha256: must be followed by 64 hex digits")
                self.digests.append(bytes.fromhex(digest))
            elif len(entry) < MIN_API_KEY_CHARS:
                raise ServingError(
                    f"TESSERA_API_KEYS entry {position} is shorter than {MIN_API_KEY_CHARS} characters: "
                    "use a long random key (python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
            else:
                self.digests.append(hashlib.sha256(entry.encode()).digest())
        self.open = not self.digests
        if self.open and mode != "demo":
            raise ServingError(
                f"TESSERA_MODE={mode} serves the customer routes only behind API keys: set TESSERA_API_KEYS "
                "(comma separated keys, or sha256:<hex digest> of each), or TESSERA_MODE=demo for demo data"
            )

    def allows(self, presented: str | None) -> bool:
        if self.open:
            return True
        if not presented:
            return False
        digest = hashlib.sha256(presented.encode()).digest()
        # every key compared, in constant time each: the answer's time says nothing of which matched
        return sum(hmac.compare_digest(digest, d) for d in self.digests) > 0


# the two ways a caller sends its key (stateless: shared by every app)
_KEY_HEADER = Security(APIKeyHeader(name="X-API-Key", auto_error=False, description="One of TESSERA_API_KEYS"))
_KEY_BEARER = Security(HTTPBearer(auto_error=False, description="One of TESSERA_API_KEYS, as a bearer token"))


def _key_dependency(keys: ApiKeys):
    """A FastAPI dependency refusing (401) a request without a configured key."""

    async def require_key(
        x_api_key: str | None = _KEY_HEADER,
        authorization: HTTPAuthorizationCredentials | None = _KEY_BEARER,
    ) -> None:
        presented = x_api_key or (authorization.credentials if authorization is not None else None)
        if not keys.allows(presented):
            detail = (
                "a valid API key is required: X-API-Key or Authorization: Bearer"
                if presented is None
                else ("the API key is not valid")
            )
            raise HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})

    return require_key


# --------------------------------------------------------------------------- request log


class RequestLog:
    """ASGI middleware: one line per request on tessera.serving.access at INFO: method, the route's
    template (/v1/customers/{customer_pkey}/scores, never the path with its ids, nor the query),
    status and latency in ms, from the request's arrival to its last byte handed to the server."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not access_log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before any answer: the server answers 500

        async def noting_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            access_log.info(
                "%s %s %d %.2f ms",
                scope["method"],
                route_template(scope),
                status,
                1000 * (time.perf_counter() - started),
            )


def route_template(scope) -> str:
    """The template of the route that answered (set in the scope by the router), the mount's path
    for static files, or "(unmatched)" for a 404 no route matched (one word: log lines split on blanks)."""
    route = scope.get("route")
    if route is not None and getattr(route, "path", None):
        return route.path
    if "app_root_path" in scope:  # a Mount (static files): its path, not the file asked for
        return scope.get("root_path", "") + "/{path}"
    return "(unmatched)"


def configure_logging(level: str) -> None:
    """tessera.serving's loggers to stderr at `level` (TESSERA_SERVE_LOG_LEVEL): info logs every
    request; warning only reload failures and warnings."""
    logger = logging.getLogger("tessera.serving")
    if not any(getattr(h, "_tessera_serving", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._tessera_serving = True
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())


# --------------------------------------------------------------------------- API docs, offline


def _add_docs(app: FastAPI) -> None:
    """/docs from the vendored Swagger UI files (no CDN): the page works with no network. ReDoc,
    which has no vendored copy, is not served."""
    app.mount(SWAGGER_URL, StaticFiles(directory=SWAGGER_DIR), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - docs",
            swagger_js_url=f"{SWAGGER_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_URL}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_URL}/favicon-32x32.png",
            # no validator badge: it would send the spec to validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None},
        )


def _add_routes(app: FastAPI, server: Server, keys: ApiKeys) -> None:
    """The API: /health, and per customer (behind the API keys) their recommendations, segments,
    scores and next best actions, and the lookup by a shop's own ids."""
    customer_pkey = PathParam(
        pattern=PKEY_PATTERN,
        max_length=MAX_KEY_LENGTH,
        description="The published customer_pkey: pk_ and 32 lower-case hex digits. Anything else is a 422 "
        "(a CRM id: resolve it with GET /v1/lookup first).",
        examples=["pk_0123456789abcdef0123456789abcdef"],
    )
    not_found = {404: {"model": NotFound, "description": "The customer is not in the published snapshot"}}
    guarded = {401: {"model": NotFound, "description": "No API key, or not a configured one"}}
    key = [Depends(_key_dependency(keys))]

    @app.get("/health", response_model=Health, tags=["operations"])
    async def health() -> Health:
        return _health(server)

    @app.get(
        "/v1/customers/{customer_pkey}/recommendations",
        response_model=Recommendations,
        responses=guarded,
        dependencies=key,
        tags=["customers"],
    )
    async def recommendations(
        customer_pkey: str = customer_pkey,
        limit: int | None = Query(None, ge=1, le=MAX_LIMIT, description="At most this many items"),
    ) -> Response:
        """The customer's published list. A well-formed customer_pkey that is not published gets the popular
        products (`known: false`, `fallback: popular`)."""
        return _recommendations(server, customer_pkey, limit)

    for name, model in ((SEGMENTS, Segments), (SCORES, Scores)):
        app.add_api_route(
            f"/v1/customers/{{customer_pkey}}/{name.removeprefix('customer_')}",
            _row_endpoint(server, name, customer_pkey),
            methods=["GET"],
            response_model=model,
            responses={**not_found, **guarded},
            dependencies=key,
            tags=["customers"],
        )

    @app.get(
        "/v1/customers/{customer_pkey}/next-best-action",
        response_model=NextBestActions,
        responses={
            **not_found,
            **guarded,
            503: {"model": NotFound, "description": "next_best_actions has never been published"},
        },
        dependencies=key,
        tags=["customers"],
    )
    async def next_best_action(customer_pkey: str = customer_pkey) -> Response:
        """The customer's published decision per channel (docs/decisioning.md). Show or send only those with
        `decision: send`."""
        return _next_best_actions(server, customer_pkey)

    @app.get(
        "/v1/lookup",
        response_model=Profile,
        responses={
            404: {"model": NotFound, "description": "No published customer has this id"},
            **guarded,
            503: {"model": NotFound, "description": "Lookups are not served (detail says why)"},
        },
        dependencies=key,
        tags=["customers"],
    )
    async def lookup(
        id_type: Annotated[
            str,
            Query(
                pattern=ID_TYPE_PATTERN,
                max_length=64,
                description="customer_id (the shop's CRM id), anonymous_id (a cookie whose logins are one "
                "customer's) or a declared identifier's type (login_id, ...; landing source identifiers).",
            ),
        ],
        id: Annotated[
            str,
            Query(
                min_length=1,
                max_length=MAX_KEY_LENGTH,
                pattern=r"\S",
                description="The id as the shop delivered it (surrounding blanks ignored).",
            ),
        ],
        limit: int | None = Query(None, ge=1, le=MAX_LIMIT, description="At most this many recommended items"),
    ) -> Response:
        """Everything published about the customer one of the shop's own ids names: the id is hashed with the
        deployment's salt and looked up in the published customer_identifiers export; the id itself is
        neither stored nor logged."""
        return _profile(server, id_type, id, limit)


def create_app(
    publish_dir: Path,
    reload_seconds: float = 60.0,
    default_limit: int = 10,
    mode: str = "production",
    realtime: RealtimeSettings | None = None,
    salt: str | None = None,
    api_keys: str | None = None,
) -> FastAPI:
    """The app over the current snapshots. `mode` is TESSERA_MODE: anything but "demo" refuses
    snapshots not published with a deployment's salt (the default refuses, so a caller that
    forgets the mode fails closed), and refuses to serve without API keys. Raises ServingError
    when the snapshots cannot be served or the keys are unusable.

    `api_keys` (default TESSERA_API_KEYS): comma separated keys or sha256:<hex digest>; the
    customer routes answer only callers sending one. `salt` is the pseudonym salt (default:
    TESSERA_PSEUDONYM_SALT): the lookup by a shop's own ids hashes them with it, and the real-time
    suppression lists are hashed with it.

    With `realtime` (settings.realtime_configured(): TESSERA_REDIS_URL set) the app also collects
    events, `POST /v1/events` (tessera/realtime/collector.py), and `app.state.realtime` is the
    online store (tessera/realtime/store.py) the real-time routes read. It also serves
    the visitors' session-aware recommendations, GET /v1/visitors/{visitor_id}/recommendations
    (tessera/realtime/visitor_recs.py), the storefront snippet /static/tessera.js and, in demo
    mode, the demo shop at /demo/ (docs/realtime_storefront.md). Without it the API is exactly the
    read-only one, and nothing connects to Redis."""
    # session recommendations for anonymous visitors: their own index (it imports this module's models)
    from tessera.session_serving import SessionServer, add_session_routes

    if salt is None or api_keys is None:
        settings = load_settings()
        salt = settings.pseudonym_salt if salt is None else salt
        api_keys = settings.api_keys if api_keys is None else api_keys
    keys = ApiKeys(api_keys, mode)  # checked before the snapshots are loaded (seconds per million customers)
    if keys.open:
        log.warning(
            "no TESSERA_API_KEYS: the customer routes answer anyone (TESSERA_MODE=demo); production mode refuses this"
        )
    server = Server(publish_dir, default_limit, mode, salt)
    sessions = SessionServer(publish_dir)
    app = FastAPI(
        title="tessera serving API",
        version="1",
        description="Read-only: the current published snapshots of recommendations, segments, scores and next "
        "best actions, by customer_pkey or by the shop's own ids (GET /v1/lookup). The customer routes need an "
        "API key (X-API-Key or Authorization: Bearer).",
        lifespan=_lifespan(server, reload_seconds, sessions),
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(RequestLog)
    app.state.server = server
    app.state.sessions = sessions
    app.state.api_keys = keys
    _add_docs(app)
    _add_routes(app, server, keys)
    add_session_routes(app, sessions)
    _add_product_routes(app, server)
    app.state.realtime = None
    if realtime is not None:
        from tessera.realtime.collector import add_collector_routes
        from tessera.realtime.store import connect, connect_async
        from tessera.realtime.visitor_recs import add_storefront_routes, add_visitor_routes

        store = connect(realtime, salt)
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
        configure_logging(settings.serve_log_level)
        realtime = realtime_configured()
        app = create_app(
            publish_dir,
            reload_seconds,
            mode=settings.mode if mode is None else mode,
            realtime=realtime,
            salt=settings.pseudonym_salt,
            api_keys=settings.api_keys,
        )
    except (ServingError, ValueError) as exc:  # ValueError: settings.ConfigurationError, a refused variable
        raise SystemExit(f"tessera serve: {exc}") from None
    server: Server = app.state.server
    print(
        f"loaded {server.index.customers:,} customers from {publish_dir} in {time.perf_counter() - started:.1f} s; "
        f"serving on http://{host}:{port} (OpenAPI: /docs, /openapi.json)",
        flush=True,
    )
    keys: ApiKeys = app.state.api_keys
    guard = "open to anyone (demo mode, no TESSERA_API_KEYS)" if keys.open else f"{len(keys.digests)} API key(s)"
    lookup = "served" if server.index.lookup_error is None else f"503 ({server.index.lookup_error})"
    print(f"customer routes: {guard}; GET /v1/lookup: {lookup}", flush=True)
    if app.state.realtime is not None:
        print(f"collecting events: POST /v1/events into Redis at {app.state.realtime.location}", flush=True)
        print(
            "visitor recommendations: GET /v1/visitors/{visitor_id}/recommendations; snippet /static/tessera.js",
            flush=True,
        )
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")
