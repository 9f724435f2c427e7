"""Session recommendations for anonymous visitors in the serving API (tessera/serving.py):
POST /v1/sessions/recommendations with the product ids a visitor touched, most recent last.

The current session_index snapshot (tessera/publish/sessions.py) is read once per version and a
model (ml/sessions.py; V-SKNN, tessera/publish/sessions.py SERVED_PARAMS) fitted on it; a request is
then one scoring of the session (VSKNN.recommend_positive: about 0.35 ms on Online Retail's index).
Unknown product ids are ignored and named in the response; a session with no known product gets the
index's most touched products (`source: popular_fallback`). When the session model finds fewer than
`limit` products, the list is filled up with the most touched ones the session has not seen, without
a score.

A reload that fails keeps the last good index (as the customer index does); until a first
version is published the endpoint answers 503.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import polars as pl
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ml.rec_metrics import top_k
from ml.sessions import SessionModel, make_model
from tessera.publish import snapshots
from tessera.publish.sessions import NAME, SERVED_METHOD, SERVED_PARAMS, sessions_from_index
from tessera.serving import RecommendedItem

log = logging.getLogger("tessera.serving.sessions")

MAX_ITEMS = 100
MAX_LIMIT = 100
MAX_ID_LENGTH = 128


class SessionRequest(BaseModel):
    items: list[str] = Field(
        max_length=MAX_ITEMS, description="Product ids the visitor touched in this session, most recent last."
    )
    limit: int = Field(10, ge=1, le=MAX_LIMIT, description="At most this many products.")


class SessionRecommendations(BaseModel):
    source: str = Field(description="session_knn, or popular_fallback when no product of the session is known")
    model: str | None = Field(description="The session model and its parameters; null in the popular fallback.")
    index_version: str
    known_items: list[str] = Field(description="The request's products the index knows, in the order used.")
    unknown_items: list[str] = Field(description="The request's products the index does not know (ignored).")
    items: list[RecommendedItem] = Field(description="score: the session model's; null for popular products.")


@dataclass
class SessionIndex:
    version: str
    model: SessionModel
    items: np.ndarray  # product id per column
    column: dict[str, int]
    products: list[dict]  # per column: product_id, product_name, category
    popular: np.ndarray  # columns, most touched first

    def recommend(self, product_ids: list[str], limit: int) -> dict:
        known = [p for p in product_ids if p in self.column]
        unknown = [p for p in product_ids if p not in self.column]
        columns = [self.column[p] for p in known]
        if not columns:
            return self._body("popular_fallback", None, known, unknown, self.popular[:limit], None)
        top, scores = self.model.recommend_positive(columns, limit)
        if len(top) < limit:  # fill up with popular products the session has not seen
            seen = np.concatenate([top, np.asarray(columns, dtype=np.int64)])
            fill = self.popular[~np.isin(self.popular, seen)][: limit - len(top)]
            scores = np.concatenate([scores, np.full(len(fill), np.nan)])
            top = np.concatenate([top, fill])
        label = f"{self.model.name} {orjson.dumps(self.model.params()).decode()}"
        return self._body("session_knn", label, known, unknown, top, scores)

    def _body(self, source, model, known, unknown, columns, scores) -> dict:
        items = [
            {
                "rank": rank,
                **self.products[int(c)],
                "score": None if scores is None or np.isnan(scores[rank - 1]) else float(scores[rank - 1]),
            }
            for rank, c in enumerate(columns, start=1)
        ]
        return {
            "source": source,
            "model": model,
            "index_version": self.version,
            "known_items": known,
            "unknown_items": unknown,
            "items": items,
        }


def load_session_index(
    snapshot: snapshots.Snapshot, method: str = SERVED_METHOD, params: dict | None = None
) -> SessionIndex:
    """Fit the served model on one version of the session index."""
    frame = pl.read_parquet(snapshot.parquet)
    sessions = sessions_from_index(frame)
    model = make_model(method, **(params if params is not None else SERVED_PARAMS)).fit(sessions)
    products_file = snapshot.path / "exports" / "session_products.jsonl"
    names = (
        pl.read_ndjson(
            products_file, schema={"product_id": pl.String, "product_name": pl.String, "category": pl.String}
        )
        if products_file.exists() and products_file.stat().st_size
        else pl.DataFrame(schema={"product_id": pl.String, "product_name": pl.String, "category": pl.String})
    )
    products = (
        pl.DataFrame({"product_id": pl.Series(sessions.items, dtype=pl.String)})
        .join(names.unique("product_id"), on="product_id", how="left", maintain_order="left")
        .to_dicts()
    )
    counts = np.asarray(sessions.binary().sum(axis=0)).ravel()
    popular = top_k(counts[None, :], max(sessions.n_items, 1))[0] if sessions.n_items else np.empty(0, np.int64)
    popular = popular[popular >= 0]
    column = {p: i for i, p in enumerate(sessions.items.tolist())}
    return SessionIndex(snapshot.version, model, sessions.items, column, products, popular)


class SessionServer:
    """The session index behind the endpoint, replaced whole when its release pointer moves."""

    def __init__(self, publish_dir: Path, method: str = SERVED_METHOD, params: dict | None = None):
        self.publish_dir = publish_dir
        self.method, self.params = method, params
        self.index: SessionIndex | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self.reload_if_moved()

    def reload_if_moved(self) -> bool:
        """Load the current version if it is not the one served. Never raises: the last good index
        stays, the error is kept (and logged without values read from the snapshot)."""
        with self._lock:
            try:
                version = snapshots.current_version(self.publish_dir, NAME)
                if version is None or (self.index is not None and self.index.version == version):
                    return False
                self.index = load_session_index(
                    snapshots.current_snapshot(self.publish_dir, NAME), self.method, self.params
                )
                self.last_error = None
                log.info("loaded %s version %s", NAME, version)
                return True
            except Exception as exc:  # the previous index stays served
                self.last_error = f"{NAME} reload failed: {type(exc).__name__}"
                log.error("%s; still serving %s", self.last_error, self.index.version if self.index else "nothing")
                return False


def add_session_routes(app: FastAPI, server: SessionServer) -> None:
    unavailable = {503: {"description": f"No {NAME} has been published yet"}}

    @app.post(
        "/v1/sessions/recommendations",
        response_model=SessionRecommendations,
        responses=unavailable,
        tags=["sessions"],
    )
    async def session_recommendations(request: SessionRequest):
        index = server.index
        if index is None:
            return JSONResponse({"detail": f"no {NAME} has been published under {server.publish_dir}"}, 503)
        too_long = [p for p in request.items if len(p) > MAX_ID_LENGTH]
        if too_long:
            return JSONResponse({"detail": f"product ids are at most {MAX_ID_LENGTH} characters"}, 422)
        return JSONResponse(index.recommend(request.items, request.limit))
