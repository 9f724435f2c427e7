"""The session index (tessera/publish/sessions.py) built from a hand-made warehouse, published as a
snapshot, and served by POST /v1/sessions/recommendations (tessera/session_serving.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tessera.publish import outputs, snapshots
from tessera.publish.sessions import NAME, SERVED_PARAMS, SESSION_INDEX, build_candidate, holdout_quality
from tessera.session_serving import SessionServer, add_session_routes

PATH = "/v1/sessions/recommendations"
PRODUCTS = [("pA", "Alpha", "toys", True), ("pB", "Beta", "toys", True), ("pC", "Gamma", "home", True)]
PRODUCTS += [("pD", "Delta", "home", True), ("pX", "Gone", "home", False)]
# per session: its start, then one event a minute, "type:product" (no product after the colon: none).
# w1 and w3 are anonymous, w2 logged in, "old" is long ago
SESSIONS = {
    "w1": ("2026-01-01 10:00", ["page_view:", "product_view:pA", "product_view:pB", "product_view:pA",
                                "add_to_cart:pB", "product_view:pX"]),
    "w2": ("2026-01-02 09:00", ["product_view:pB", "product_view:pC"]),
    "w3": ("2026-01-03 08:00", ["product_view:pA", "product_view:pC", "product_view:pD", "remove_from_cart:pB"]),
    "old": ("2025-10-01 08:00", ["product_view:pD", "product_view:pA"]),
}  # fmt: skip


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute(
        "create table marts.dim_products (product_id varchar, product_name varchar, category varchar, is_active boolean)"
    )
    con.executemany("insert into marts.dim_products values (?, ?, ?, ?)", PRODUCTS)
    con.execute(
        "create table marts.fct_events (event_id varchar, event_type varchar, event_at timestamptz, session_id varchar,"
        " identified_by varchar, product_id varchar)"
    )
    rows = [
        (session, minute, *event.split(":"), start)
        for session, (start, events) in SESSIONS.items()
        for minute, event in enumerate(events)
    ]
    con.executemany(
        "insert into marts.fct_events values (?, ?, cast(? as timestamptz) + to_minutes(?), ?, ?, nullif(?, ''))",
        [
            (f"e{i:02d}", kind, start + "+00", minute, session, "login" if session == "w2" else "anonymous", product)
            for i, (session, minute, kind, product, start) in enumerate(rows)
        ],
    )
    yield con
    con.close()


def index_rows(con, table: str) -> list[tuple]:
    return con.execute(f"select session_number, product_id, position from {table} order by 1, 3").fetchall()


def publish(con, publish_dir, version: str, **knobs) -> str:
    candidate = build_candidate(con, **knobs)
    snapshots.write_snapshot(
        con,
        publish_dir,
        NAME,
        candidate,
        version,
        published_at=datetime(2026, 1, 4, tzinfo=UTC),
        run_id="test",
        checks=[],
        exports=SESSION_INDEX.exports,
    )
    snapshots.release(publish_dir, {NAME: version})
    return candidate


# the literature's V-SKNN without IDF, so the scores below are the hand-computed ones
PLAIN_VSKNN = {"k": 100, "sample_size": 500, "idf_weight": 0.0}


@pytest.fixture
def served(con, tmp_path):
    publish(con, tmp_path, "v1")
    server = SessionServer(tmp_path, "vsknn", PLAIN_VSKNN)
    app = FastAPI()
    add_session_routes(app, server)
    with TestClient(app) as client:
        yield client, server


def test_the_index_keeps_recent_sessions_anonymous_ones_included_in_first_touch_order(con):
    candidate = build_candidate(con, lookback_days=30)
    # w1: pA then pB (repeats keep their first touch; the inactive pX is left out); "old" is
    # outside the 30 days; the cart removal in w3 is not a touch
    assert index_rows(con, candidate) == [
        (1, "pA", 1),
        (1, "pB", 2),
        (2, "pB", 1),
        (2, "pC", 2),
        (3, "pA", 1),
        (3, "pC", 2),
        (3, "pD", 3),
    ]
    assert [n for _, n in outputs.run_validations(con, SESSION_INDEX, candidate)] == [0, 0]


def test_the_index_keeps_at_most_max_sessions_of_the_most_recent(con):
    candidate = build_candidate(con, lookback_days=365, max_sessions=2)
    assert [r[:2] for r in index_rows(con, candidate)] == [(1, "pB"), (1, "pC"), (2, "pA"), (2, "pC"), (2, "pD")]


def test_the_validations_count_broken_sessions_and_inactive_products(con):
    # session 1 skips position 2; session 2 names the inactive pX
    rows = "(1, 'pA', 1), (1, 'pB', 3), (2, 'pX', 1)"
    con.execute(f"create table bad as select * from (values {rows}) t(session_number, product_id, position)")
    assert [n for _, n in outputs.run_validations(con, SESSION_INDEX, "bad")] == [1, 1]


@pytest.mark.parametrize("knobs", [{"lookback_days": 0}, {"max_sessions": -5}, {"max_sessions": True}])
def test_the_index_knobs_must_be_positive_integers(con, knobs):
    with pytest.raises(ValueError, match="must be a positive integer"):
        build_candidate(con, **knobs)


def test_a_session_gets_vsknn_recommendations_with_names_and_exact_scores(served):
    client, _ = served
    body = client.post(PATH, json={"items": ["pC", "pA"], "limit": 2}).json()
    # weights pC 1/2, pA 1: w3 (pA, pC) 0.75; w1 (pA) 0.5; w2 shares only pC, one step back: 0.25 / 2
    assert body["source"] == "session_knn"
    assert body["model"].startswith("vsknn ")
    assert body["known_items"] == ["pC", "pA"] and body["unknown_items"] == []
    assert [(i["rank"], i["product_id"], i["product_name"], i["category"]) for i in body["items"]] == [
        (1, "pD", "Delta", "home"),
        (2, "pB", "Beta", "toys"),
    ]
    assert [i["score"] for i in body["items"]] == pytest.approx([0.75, 0.5 + 0.125])
    assert body["index_version"] == "v1"


def test_a_short_list_is_filled_with_popular_products_without_a_score(served):
    client, _ = served
    body = client.post(PATH, json={"items": ["pB"], "limit": 3}).json()
    # pA (w1) and pC (w2) score 1 each, tie by product order; pD fills the list
    assert [(i["product_id"], i["score"]) for i in body["items"]] == [("pA", 1.0), ("pC", 1.0), ("pD", None)]


def test_unknown_ids_are_ignored_and_reported(served):
    client, _ = served
    body = client.post(PATH, json={"items": ["nope", "pB", "pX"], "limit": 2}).json()
    assert body["unknown_items"] == ["nope", "pX"]
    assert body["known_items"] == ["pB"]
    assert [i["product_id"] for i in body["items"]] == ["pA", "pC"]


@pytest.mark.parametrize("items", [[], ["nope"]])
def test_an_empty_or_unknown_session_gets_the_most_touched_products(served, items):
    client, _ = served
    body = client.post(PATH, json={"items": items}).json()
    assert body["source"] == "popular_fallback"
    assert body["model"] is None
    # pA, pB, pC in two sessions each (ties by product order), pD in one
    assert [i["product_id"] for i in body["items"]] == ["pA", "pB", "pC", "pD"]
    assert {i["score"] for i in body["items"]} == {None}


@pytest.mark.parametrize(
    "payload",
    [{"items": ["pA"], "limit": 0}, {"items": ["pA"], "limit": 101}, {"items": ["p"] * 101}, {"limit": 3}],
)
def test_bad_requests_are_refused(served, payload):
    client, _ = served
    assert client.post(PATH, json=payload).status_code == 422


def test_the_index_is_reloaded_when_a_new_version_is_released(con, served, tmp_path):
    client, server = served
    assert server.reload_if_moved() is False  # same version: nothing loaded
    publish(con, tmp_path, "v2", lookback_days=365, max_sessions=2)
    assert server.reload_if_moved() is True
    body = client.post(PATH, json={"items": ["pB"], "limit": 5}).json()
    # w1 (pA, pB) is no longer in the index: pB's only neighbour is w2
    assert body["index_version"] == "v2"
    assert [(i["product_id"], i["score"]) for i in body["items"]] == [("pC", 1.0), ("pA", None), ("pD", None)]


def test_the_served_model_is_the_tuned_vsknn_by_default(con, tmp_path):
    publish(con, tmp_path, "v1")
    model = SessionServer(tmp_path).index.model
    assert (model.name, model.params()) == ("vsknn", {**SERVED_PARAMS, "weighting": "div"})


def test_before_any_index_is_published_the_endpoint_answers_503(tmp_path):
    app = FastAPI()
    add_session_routes(app, SessionServer(tmp_path))
    with TestClient(app) as client:
        response = client.post(PATH, json={"items": ["pA"]})
    assert response.status_code == 503
    assert NAME in response.json()["detail"]


def test_the_spec_declares_the_session_endpoint_and_its_response(served):
    client, _ = served
    spec = client.get("/openapi.json").json()
    declared = spec["paths"][PATH]["post"]
    assert declared["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "SessionRecommendations"
    )
    assert {"SessionRequest", "SessionRecommendations", "RecommendedItem"} <= set(spec["components"]["schemas"])


def test_the_holdout_quality_compares_the_served_models_with_item_item_on_the_index(con):
    # 40 sessions alternating [pA, pB] and [pC, pD], one a minute: the last 4 are held out and
    # every model finds the other product of the pair first
    rows = [(n + 1, ("pA", "pC")[n % 2], 1) for n in range(40)] + [(n + 1, ("pB", "pD")[n % 2], 2) for n in range(40)]
    con.execute(
        "create table idx (session_number bigint, product_id varchar, position integer, session_start timestamp)"
    )
    con.executemany(
        "insert into idx values (?, ?, ?, timestamp '2026-01-01' + to_minutes(?))", [(*r, r[0]) for r in rows]
    )
    quality = holdout_quality(con, "idx")
    assert quality["holdout_cases"] == 4
    for label in ("item_item", "sknn", "served"):
        assert quality[f"{label}_recall_at_10"] == 1.0
        assert quality[f"{label}_mrr_at_10"] == 1.0


def test_the_holdout_quality_is_empty_on_too_few_sessions(con):
    assert holdout_quality(con, build_candidate(con)) == {}
