"""GET /v1/visitors/{visitor_id}/recommendations (tessera/realtime/visitor_recs.py, the blend in
tessera/realtime/blend.py) on tiny snapshots written here and a session state seeded in the test's
Redis: what the widget shows for a new visitor, a browsing one, a cart, an order, a known customer,
bad ids, and Redis gone."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import duckdb
import pytest
from fastapi.testclient import TestClient

from tessera.publish import snapshots
from tessera.realtime.blend import BlendWeights, Ranked, blend, category_affinity, complement_list
from tessera.realtime.events import normalise
from tessera.realtime.redis_server import free_port
from tessera.realtime.state import SessionState
from tessera.realtime.visitor_recs import IdType, VisitorRecommendations
from tessera.serving import PRODUCT_LISTS, RECOMMENDATIONS, SCORES, SEGMENTS, create_app
from tessera.settings import RealtimeSettings

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
PATH = "/v1/visitors/{}/recommendations"
KNOWN = "pk_" + "a" * 32  # a customer in the published snapshot
UNPUBLISHED = "pk_" + "b" * 32  # a well-formed key nobody was published under
SALT = "test-salt-0123456789"

PRODUCTS = {
    "m1": ("Blue mug", "mugs"), "m2": ("Red mug", "mugs"), "m3": ("Tall mug", "mugs"),
    "t1": ("Green tea", "tea"), "t2": ("Black tea", "tea"),
    "l1": ("Desk lamp", "lamps"), "l2": ("Floor lamp", "lamps"),
    "x1": ("Gift card", "gifts"),
}  # fmt: skip
# the session index: each session's products in first-touch order
SESSIONS = [["m1", "m2", "t1"], ["m1", "m3"], ["l1", "l2"], ["m2", "m3", "t2"], ["x1", "l1"], ["x1", "m1"]]
# bought together: m1 -> t2 (0.9), t1 (0.4); l1 -> l2
BOUGHT_TOGETHER = [("m1", 1, "t2", 0.9), ("m1", 2, "t1", 0.4), ("l1", 1, "l2", 0.8)]
POPULAR = ["x1", "l1", "m1", "t1", "l2"]
CUSTOMER_LIST = ["l2", "x1", "m3"]


def _values(rows: list[tuple]) -> str:
    return ", ".join("(" + ", ".join(repr(v) for v in row) + ")" for row in rows)


def publish(publish_dir, salt: str | None = None) -> None:
    """One version of every table the API reads, written as a publish would."""
    tables = {
        RECOMMENDATIONS: "select * from (values "
        + _values([(KNOWN, r, p, *PRODUCTS[p], 1.0 / r, "personalised", "m-1") for r, p in enumerate(CUSTOMER_LIST, 1)])
        + ") t(customer_pkey, rank, product_id, product_name, category, score, source, model_version)",
        SEGMENTS: f"""select '{KNOWN}' as customer_pkey, 'Champions' as rfm_segment, 3 as r_score, 2 as f_score,
            1 as m_score, 0 as cluster_id, 'c' as cluster_description, null::varchar as rule_segment,
            null::integer as rule_segment_priority, 'treatment' as rfm_holdout_group,
            null::varchar as rule_holdout_group, date '2026-10-31' as as_of_date""",
        SCORES: f"""select '{KNOWN}' as customer_pkey, 5 as recency_days, 2 as frequency, 20.0 as monetary,
            10.0 as average_order_value, 100 as tenure_days, 321 as rfm_score,
            0.5 as purchase_propensity_30d, 0.5 as purchase_propensity_percentile,
            0.1 as churn_risk_30d, 0.2 as churn_risk_percentile, date '2026-10-31' as as_of_date""",
        PRODUCT_LISTS: "select * from (values "
        + _values([(p, "bought_together", r, q, *PRODUCTS[q], s, 3) for p, r, q, s in BOUGHT_TOGETHER])
        + ") t(product_id, list_name, rank, recommended_product_id, product_name, category, score, support)",
        "session_index": "select * from (values "
        + _values(
            [
                (n, p, pos, f"2026-12-0{n} 09:00:00")
                for n, session in enumerate(SESSIONS, 1)
                for pos, p in enumerate(session, 1)
            ]
        )
        + ") t(session_number, product_id, position, session_start)",
    }
    exports = {
        RECOMMENDATIONS: (
            "popular_products.jsonl",
            [{"rank": r, "product_id": p, "product_name": PRODUCTS[p][0], "category": PRODUCTS[p][1]} for r, p in enumerate(POPULAR, 1)],
        ),
        PRODUCT_LISTS: ("product_catalogue.jsonl", [{"product_id": p, "is_active": True} for p in PRODUCTS]),
        "session_index": (
            "session_products.jsonl",
            [{"product_id": p, "product_name": n, "category": c, "sessions": 1} for p, (n, c) in PRODUCTS.items()],
        ),
    }  # fmt: skip
    con = duckdb.connect()
    try:
        for name, sql in tables.items():
            con.execute(f"create or replace table t as {sql}")
            if name == "session_index":
                con.execute(
                    "create or replace table t as select * replace (cast(session_start as timestamp) as session_start) from t"
                )
            snap = snapshots.write_snapshot(
                con, publish_dir, name, "t", "v1", published_at=T0, run_id="test", checks=[], pseudonym_salt=salt
            )
            if name in exports:
                file, rows = exports[name]
                (snap.path / "exports").mkdir(exist_ok=True)
                (snap.path / "exports" / file).write_text("".join(json.dumps(r) + "\n" for r in rows))
        snapshots.release(publish_dir, dict.fromkeys(tables, "v1"))
    finally:
        con.close()


@pytest.fixture(scope="module")
def publish_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("publish")
    publish(path)
    return path


def realtime(url: str) -> RealtimeSettings:
    return RealtimeSettings(redis_url=url)


@pytest.fixture
def client(publish_dir, redis_server, redis_client):
    app = create_app(publish_dir, reload_seconds=0, mode="demo", realtime=realtime(redis_server.url), salt=SALT)
    with TestClient(app) as c:
        yield c


@pytest.fixture
def state(client) -> SessionState:
    """The session state the app reads (the online store's), as the state worker writes it."""
    return client.app.state.realtime.state


def event(n: int, minutes: float, *, kind: str = "track", name: str | None = None, anon="cookie-1", user=None, **props):
    message = {
        "type": kind,
        "messageId": f"m{n}",
        "anonymousId": anon,
        "timestamp": (T0 + timedelta(minutes=minutes)).isoformat(),
        "properties": props,
    }
    if user:
        message["userId"] = user
    if name:
        message["event"] = name
    return normalise(message, received_at=T0 + timedelta(minutes=minutes, seconds=1))


def view(state, n, product, minutes=None, **kw):
    return state.record(event(n, n if minutes is None else minutes, name="Product Viewed", product_id=product,
                              category=PRODUCTS[product][1], **kw))  # fmt: skip


def get(client, visitor_id: str, **params) -> dict:
    response = client.get(PATH.format(visitor_id), params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    VisitorRecommendations.model_validate(body)  # the documented shape
    return body


def ids(body: dict) -> list[str]:
    return [i["product_id"] for i in body["items"]]


def kinds(item: dict) -> list[str]:
    return [r["kind"] for r in item["reasons"]]


# --- the blend itself -------------------------------------------------------------------------


def test_one_list_without_boosts_keeps_its_order_and_the_fill_takes_the_places_left():
    items = blend(
        [Ranked("session_knn", 1.0, [{"product_id": p} for p in ("b", "a", "c")])],
        exclude={"c"},
        affinity={},
        lift=None,
        weights=BlendWeights(0, 0, 0),
        limit=4,
        fill=[{"product_id": p} for p in ("a", "c", "d", "e")],
    )
    assert [(i["product_id"], i["source"]) for i in items] == [
        ("b", "session_knn"),
        ("a", "session_knn"),
        ("d", "popular"),
        ("e", "popular"),
    ]
    assert items[2]["score"] is None and items[0]["score"] == pytest.approx(1 / 11, abs=1e-6)


def test_an_item_on_two_lists_outranks_one_on_a_single_list_and_names_both():
    knn = [{"product_id": p} for p in ("a", "b")]
    complements = [{"product_id": "b", "via": ["cart-1"]}]
    items = blend(
        [Ranked("session_knn", 1.0, knn), Ranked("cart_complement", 1.0, complements)],
        exclude=set(),
        affinity={},
        lift=None,
        weights=BlendWeights(1.0, 0, 0),
        limit=2,
    )
    assert ids({"items": items}) == ["b", "a"]
    assert items[0]["score"] == pytest.approx(1 / 12 + 1 / 11, abs=1e-6)
    assert items[0]["reasons"] == [{"kind": "session_knn"}, {"kind": "cart_complement", "product_ids": ["cart-1"]}]
    assert items[0]["source"] == "cart_complement"  # rank 1 there counts more than rank 2


def test_the_category_boost_lifts_the_recent_category_in_proportion_to_its_affinity():
    assert category_affinity(["mugs", "tea", "mugs", "lamps"]) == {
        "mugs": 1.0,
        "tea": pytest.approx(0.5 / (1 + 1 / 3)),
        "lamps": pytest.approx(0.25 / (1 + 1 / 3)),
    }
    knn = [{"product_id": "l", "category": "lamps"}, {"product_id": "m", "category": "mugs"}]
    items = blend(
        [Ranked("session_knn", 1.0, knn)],
        exclude=set(),
        affinity={"mugs": 1.0},
        lift=None,
        weights=BlendWeights(0, 0.25, 0),
        limit=2,
    )
    # l: 1/11 = 0.0909; m: 1/12 * 1.25 = 0.1042
    assert ids({"items": items}) == ["m", "l"]
    assert items[0]["reasons"][-1] == {"kind": "category", "category": "mugs"}


def test_cart_complements_sum_over_the_cart_and_say_which_cart_products_brought_them():
    lists = {
        "a": [{"product_id": "x", "score": 0.5}, {"product_id": "y", "score": 0.9}],
        "b": [{"product_id": "x", "score": 0.6}],
    }
    merged = complement_list(["b", "a", "c"], lists.get)
    assert [(m["product_id"], round(m["score"], 6), m["via"]) for m in merged] == [
        ("x", 1.1, ["a", "b"]),
        ("y", 0.9, ["a"]),
    ]


@pytest.mark.parametrize(
    "field, value",
    [("complement", -1.0), ("category", float("nan")), ("rrf_k", 0.0)],
    ids=["negative", "nan", "zero_k"],
)
def test_blend_weights_refuse_bad_values_by_name(field, value):
    with pytest.raises(ValueError, match=f"BlendWeights.{field}"):
        BlendWeights(**{field: value})


# --- the endpoint -------------------------------------------------------------------------------


def test_an_unknown_visitor_without_state_gets_the_popular_products_marked_as_the_fallback(client):
    body = get(client, "never-seen")
    assert (body["source"], body["state"], body["known"], body["session"]) == ("popular_fallback", "none", False, None)
    assert ids(body) == POPULAR
    assert {i["source"] for i in body["items"]} == {"popular"} and body["items"][0]["score"] is None
    assert body["versions"] == {RECOMMENDATIONS: "v1", "session_index": "v1", PRODUCT_LISTS: "v1"}


def test_a_browsing_visitor_gets_products_of_similar_sessions_boosted_to_the_viewed_category(client, state):
    view(state, 1, "m1")
    body = get(client, "cookie-1")
    assert (body["source"], body["state"], body["identified"]) == ("session_blend", "live", False)
    assert body["session"] == {"views": 1, "cart": 0, "last_event_at": (T0 + timedelta(minutes=1)).timestamp()}
    # the sessions holding m1 are 1, 2 and 6: their other products, mugs first (the viewed category)
    knn = [i for i in body["items"] if i["source"] == "session_knn"]
    assert {i["product_id"] for i in knn} == {"m2", "m3", "t1", "x1"}
    assert [i["product_id"] for i in knn[:2]] == ["m2", "m3"]
    assert all("category" in kinds(i) for i in knn if i["category"] == "mugs")
    assert "m1" not in ids(body)  # what the visitor is looking at is never recommended
    assert [(i["product_id"], i["source"]) for i in body["items"][4:]] == [("l1", "popular"), ("l2", "popular")]


def test_adding_to_the_cart_brings_its_complements_and_the_widget_changes(client, state):
    view(state, 1, "m1")
    before = get(client, "cookie-1")
    state.record(event(2, 2, name="Product Added", product_id="m1"))
    after = get(client, "cookie-1")
    # t2 is bought with m1 and in no session with it: it comes with the cart only
    assert "t2" not in ids(before)
    t2 = next(i for i in after["items"] if i["product_id"] == "t2")
    assert t2["source"] == "cart_complement" and t2["reasons"] == [{"kind": "cart_complement", "product_ids": ["m1"]}]
    # t1 is on both lists (a session with m1, and bought with m1): it rises to the top
    assert ids(before).index("t1") > 0
    assert after["items"][0]["product_id"] == "t1" and kinds(after["items"][0]) == ["session_knn", "cart_complement"]
    assert after["session"]["cart"] == 1 and "m1" not in ids(after)


def test_what_is_in_the_cart_or_was_just_bought_is_not_recommended(client, state):
    view(state, 1, "l1")
    state.record(event(2, 2, name="Product Added", product_id="l2"))
    assert "l2" not in ids(get(client, "cookie-1"))
    order = event(3, 3, name="Order Completed", order_id="o1", products=[{"product_id": "l2"}, {"product_id": "x1"}])
    state.record(order)
    assert state.get("a:cookie-1").last_order_products == ["l2", "x1"]
    body = get(client, "cookie-1")
    assert body["session"]["cart"] == 0
    assert not {"l1", "l2", "x1"} & set(ids(body))


def test_an_order_without_products_counts_the_cart_as_just_bought(state):
    state.record(event(1, 1, name="Product Added", product_id="t1"))
    state.record(event(2, 2, name="Order Completed", order_id="o1"))
    assert state.get("a:cookie-1").last_order_products == ["t1"]


def test_a_known_customer_gets_the_published_list_blended_with_the_session(client, state):
    alone = get(client, "never-seen", customer_pkey=KNOWN)
    assert (alone["known"], alone["published_list"], alone["source"], alone["state"]) == (
        True,
        "used",
        "session_blend",
        "none",
    )
    assert ids(alone)[:3] == CUSTOMER_LIST and all(i["source"] == "published" for i in alone["items"][:3])
    view(state, 1, "m1", user="shop-42")
    body = get(client, "shop-42", id_type="user", customer_pkey=KNOWN)
    assert body["identified"] and body["known"]
    sources = {i["product_id"]: kinds(i) for i in body["items"]}
    assert sources["m3"][:2] == ["published", "session_knn"]  # on both lists
    assert ids(body)[0] == "m3"


def test_a_customer_pkey_not_in_the_snapshot_and_a_user_without_one_are_served_from_the_session(client, state):
    view(state, 1, "m1", user="shop-42")
    unpublished = get(client, "shop-42", id_type="user", customer_pkey=UNPUBLISHED)
    without = get(client, "shop-42", id_type="user")
    assert (unpublished["known"], unpublished["published_list"]) == (False, "not_in_snapshot")
    assert (without["known"], without["published_list"]) == (False, "no_customer_pkey")
    assert ids(unpublished) == ids(without) and without["source"] == "session_blend"


def test_asking_with_the_cookie_after_identify_reads_the_customers_state(client, state):
    view(state, 1, "m1")
    state.record(event(2, 2, kind="identify", user="shop-42"))
    state.record(event(3, 3, name="Product Added", product_id="l1", user="shop-42"))
    body = get(client, "cookie-1")
    assert body["identified"] and body["session"] == {
        "views": 1,
        "cart": 1,
        "last_event_at": (T0 + timedelta(minutes=3)).timestamp(),
    }
    assert ids(body)[0] == "l2"  # bought with the cart's l1, added after the login


def test_the_one_round_trip_read_matches_the_states_own(client, state):
    view(state, 1, "m1")
    state.record(event(2, 2, name="Product Added", product_id="t1"))
    state.record(event(3, 3, kind="identify", user="shop-42"))
    recommender = client.app.state.visitor_recommender

    assert recommender.read("cookie-1", IdType.anonymous) == state.get("u:shop-42")
    assert recommender.read("shop-42", IdType.user) == state.get("u:shop-42")
    assert recommender.read("nobody", IdType.anonymous) is None
    # the route reads with the asyncio client (in the app's event loop): the same state
    assert recommender.async_client is not None
    assert client.portal.call(recommender.read_async, "cookie-1", IdType.anonymous) == state.get("u:shop-42")
    assert client.portal.call(recommender.read_async, "nobody", IdType.anonymous) is None
    # the script answers in JSON (Redis's cjson): ids with quotes, slashes, backslashes and
    # non-ASCII characters come back as written; an empty cart and category list as empty
    odd = 'tasse "émaillée" 1/2 \\ ☕'
    state.record(event(4, 4, name="Product Viewed", anon="cookie-é/2", product_id=odd))
    read = recommender.read("cookie-é/2", IdType.anonymous)
    assert read == state.get("a:cookie-é/2") and (read.views, read.cart, read.categories) == ([odd], {}, [])


@pytest.mark.parametrize(
    "path, params, field",
    [
        ("%20cookie", {}, "visitor_id"),  # a leading blank
        ("cookie%01", {}, "visitor_id"),  # a control character
        ("c" * 129, {}, "visitor_id"),
        ("cookie-1", {"id_type": "email"}, "id_type"),
        ("cookie-1", {"customer_pkey": "pk_NOTHEX"}, "customer_pkey"),
        ("cookie-1", {"customer_pkey": "crm-123"}, "customer_pkey"),
        ("cookie-1", {"limit": 0}, "limit"),
        ("cookie-1", {"limit": 101}, "limit"),
    ],
)
def test_malformed_ids_and_parameters_answer_422_naming_the_field(client, path, params, field):
    response = client.get(f"/v1/visitors/{path}/recommendations", params=params)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert [e["loc"][-1] for e in errors] == [field]


def test_with_redis_gone_the_answer_says_unavailable_and_falls_back(publish_dir, caplog):
    gone = realtime(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    with TestClient(create_app(publish_dir, reload_seconds=0, mode="demo", realtime=gone, salt=SALT)) as c:
        body = get(c, "cookie-1")
        assert (body["state"], body["source"], ids(body)) == ("unavailable", "popular_fallback", POPULAR)
        known = get(c, "cookie-1", customer_pkey=KNOWN)
        assert (known["state"], ids(known)[:3]) == ("unavailable", CUSTOMER_LIST)
    assert "visitor state unavailable (ConnectionError)" in caplog.text
    assert "cookie-1" not in caplog.text


def test_the_snippet_is_served_and_the_demo_shop_only_in_demo_mode(client, publish_dir, tmp_path, redis_server):
    js = client.get("/static/tessera.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "sendBeacon" in js.text and "/v1/events" in js.text
    page = client.get("/demo/")
    assert page.status_code == 200 and "/static/tessera.js" in page.text
    shelf = client.get("/demo/products.json").json()["products"]
    # the session index's most touched products first, with their published names
    assert shelf[0] == {"product_id": "m1", "product_name": "Blue mug", "category": "mugs"}
    assert len(shelf) == len(PRODUCTS)
    production = tmp_path / "publish"
    publish(production, salt="deployment")
    app = create_app(
        production,
        reload_seconds=0,
        mode="production",
        realtime=realtime(redis_server.url),
        salt=SALT,
        api_keys="test-key-0123456789abcdef",  # production refuses to serve without keys
    )
    with TestClient(app) as c:
        assert c.get("/static/tessera.js").status_code == 200
        assert c.get("/demo/").status_code == 404


def test_without_the_realtime_side_the_visitor_route_is_not_served(publish_dir):
    with TestClient(create_app(publish_dir, reload_seconds=0, mode="demo")) as c:
        assert c.get(PATH.format("cookie-1")).status_code == 404
        assert PATH.format("{visitor_id}") not in c.get("/openapi.json").json()["paths"]


def test_the_session_models_answer_is_reused_until_the_state_changes(client, state):
    recommender = client.app.state.visitor_recommender
    view(state, 1, "m1")
    first, again = get(client, "cookie-1"), get(client, "cookie-1")
    assert ids(first) == ids(again) and (recommender.cache_hits, recommender.cache_misses) == (1, 1)
    view(state, 2, "t1")
    get(client, "cookie-1")
    assert (recommender.cache_hits, recommender.cache_misses) == (1, 2)


def test_the_routes_session_model_path_answers_as_the_models_reference_recommend(client, state, monkeypatch):
    # the route asks VSKNN.recommend_positive (ml/sessions.py's fast path); with the reference
    # (recommend(), keeping the positive scores) every answer is the same, item for item
    from ml.sessions import SessionModel

    view(state, 1, "m1")
    view(state, 2, "x1")
    state.record(event(3, 3, name="Product Added", product_id="l1"))
    state.record(event(4, 4, kind="identify", user="shop-7"))
    view(state, 5, "t2", anon="cookie-2")
    asks = [("cookie-1", {}), ("shop-7", {"id_type": "user", "customer_pkey": KNOWN}), ("cookie-2", {"limit": 3})]
    fast = [get(client, visitor, **params) for visitor, params in asks]
    model = client.app.state.sessions.index.model
    monkeypatch.setattr(
        model, "recommend_positive", lambda items, limit: SessionModel.recommend_positive(model, items, limit)
    )
    client.app.state.visitor_recommender._cache.clear()
    assert [get(client, visitor, **params) for visitor, params in asks] == fast
    # and the route's asynchronous read answers as the synchronous recommend()
    recommender = client.app.state.visitor_recommender
    for (visitor, params), body in zip(asks, fast, strict=True):
        kind = IdType(params.get("id_type", "anonymous"))
        assert recommender.recommend(visitor, kind, params.get("customer_pkey"), params.get("limit", 10)) == body
    assert {i["source"] for body in fast for i in body["items"]} >= {"session_knn", "published", "cart_complement"}
