"""The serving API (tessera/serving.py) against the snapshots the pipeline published.

Contract tests: every response body is validated against the schema the OpenAPI spec declares for
its path and status code, and its content against the published Parquet."""

import hashlib
import json
import shutil
import time
from datetime import UTC, datetime

import duckdb
import jsonschema
import pytest
from fastapi.testclient import TestClient

from tessera.publish import snapshots
from tessera.serving import (
    NEXT_BEST_ACTIONS,
    PRODUCT_LISTS,
    RECOMMENDATIONS,
    SCORES,
    SEGMENTS,
    ServingError,
    create_app,
    serve,
)

PATHS = {
    RECOMMENDATIONS: "/v1/customers/{customer_pkey}/recommendations",
    SEGMENTS: "/v1/customers/{customer_pkey}/segments",
    SCORES: "/v1/customers/{customer_pkey}/scores",
    NEXT_BEST_ACTIONS: "/v1/customers/{customer_pkey}/next-best-action",
}
API_KEY = "test-key-0123456789abcdef"
# well formed (pk_ and 32 hex digits) and published by nobody: the documented fallback, not a 422
UNKNOWN_KEY = "pk_" + "0" * 32


@pytest.fixture(scope="module")
def published(pipeline):
    _, settings = pipeline
    return settings


@pytest.fixture(scope="module")
def client(published):
    with TestClient(create_app(published.publish_dir, reload_seconds=0, mode="demo")) as c:
        yield c


@pytest.fixture(scope="module")
def spec(client):
    return client.get("/openapi.json").json()


def rows(publish_dir, name, sql="select * from t"):
    con = duckdb.connect()
    try:
        path = snapshots.current_snapshot(publish_dir, name).parquet
        con.execute(f"create view t as select * from read_parquet('{path}')")
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def conforms(spec, path: str, response) -> None:
    """The body validates against the schema the spec declares for this path and status code."""
    declared = spec["paths"][path]["get"]["responses"]
    assert str(response.status_code) in declared, f"{path} answered {response.status_code}, not in the spec"
    schema = declared[str(response.status_code)]["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), {**schema, "components": spec["components"]})


def sample_keys(publish_dir) -> list[str]:
    # customers of every recommendation source, with and without a rule segment and a churn risk
    keys = set()
    for name, column in ((RECOMMENDATIONS, "source"), (SEGMENTS, "rule_segment"), (SCORES, "churn_risk_30d is null")):
        for r in rows(publish_dir, name, f"select {column} as v, min(customer_pkey) as k from t group by 1"):
            keys.add(r["k"])
    return sorted(keys)


def test_the_spec_declares_every_endpoint_with_its_response_schema(spec):
    # the session recommendations' POST endpoint: tests/test_session_serving.py; the lists per
    # product: tests/test_product_serving.py
    assert set(spec["paths"]) == {
        "/health",
        *PATHS.values(),
        "/v1/sessions/recommendations",
        "/v1/products/{product_id}/recommendations",
        "/v1/lookup",
    }
    for path in PATHS.values():
        assert {"200", "401", "422"} <= set(spec["paths"][path]["get"]["responses"])
    for name in ("Recommendations", "Segments", "Scores", "Health", "CustomerItem", "NextBestActions", "Profile"):
        assert name in spec["components"]["schemas"]
    # the normalised score is documented where an integrator reads it
    item = spec["components"]["schemas"]["CustomerItem"]["properties"]
    assert "percentile" in item["score"]["description"] and "raw_score" in item


def test_every_response_conforms_to_the_spec(client, spec, published):
    keys = sample_keys(published.publish_dir)
    assert len(keys) >= 4
    for key in [*keys, UNKNOWN_KEY, "no-such-customer", "C0000123", "hello world", "tc_0123456789abcdef"]:
        for path in PATHS.values():
            response = client.get(path.format(customer_pkey=key))
            conforms(spec, path, response)
            # a malformed key is a 422 on every route, never the fallback (issue 39)
            assert (response.status_code == 422) == (not key.startswith("pk_")), (path, key)
    conforms(spec, "/health", client.get("/health"))
    # a limit out of range is refused with the declared validation error
    bad = client.get(PATHS[RECOMMENDATIONS].format(customer_pkey=keys[0]), params={"limit": 0})
    assert bad.status_code == 422
    conforms(spec, PATHS[RECOMMENDATIONS], bad)


def test_a_known_customer_gets_the_published_rows(client, published):
    key = sample_keys(published.publish_dir)[0]
    expected = rows(
        published.publish_dir, RECOMMENDATIONS, f"select * from t where customer_pkey = '{key}' order by rank"
    )
    body = client.get(PATHS[RECOMMENDATIONS].format(customer_pkey=key)).json()
    assert body["known"] is True and body["source"] == expected[0]["source"]
    assert [i["product_id"] for i in body["items"]] == [r["product_id"] for r in expected]
    assert [i["raw_score"] for i in body["items"]] == pytest.approx([r["score"] for r in expected])
    # the normalised score: in [0, 1] and in the list's order (docs/publishing.md, "Scores")
    normalised = [i["score"] for i in body["items"]]
    assert all(0 <= v <= 1 for v in normalised) and normalised == sorted(normalised, reverse=True)
    assert body["model_version"] == expected[0]["model_version"]
    assert len(client.get(PATHS[RECOMMENDATIONS].format(customer_pkey=key), params={"limit": 2}).json()["items"]) == 2

    segment = rows(published.publish_dir, SEGMENTS, f"select * from t where customer_pkey = '{key}'")[0]
    got = client.get(PATHS[SEGMENTS].format(customer_pkey=key))
    assert got.headers["x-tessera-snapshot"] == snapshots.current_version(published.publish_dir, SEGMENTS)
    got = got.json()
    for column in ("rfm_segment", "r_score", "cluster_id", "rule_segment", "rfm_holdout_group", "rule_holdout_group"):
        assert got[column] == segment[column]
    assert got["as_of_date"] == segment["as_of_date"].isoformat()

    score = rows(published.publish_dir, SCORES, f"select * from t where customer_pkey = '{key}'")[0]
    got = client.get(PATHS[SCORES].format(customer_pkey=key)).json()
    assert got["purchase_propensity_30d"] == pytest.approx(score["purchase_propensity_30d"])
    assert got["monetary"] == pytest.approx(float(score["monetary"]))


def test_an_unknown_customer_gets_the_popular_products_and_404_elsewhere(client, published):
    snap = snapshots.current_snapshot(published.publish_dir, RECOMMENDATIONS)
    popular = [json.loads(line) for line in (snap.path / "exports" / "popular_products.jsonl").read_text().splitlines()]
    body = client.get(PATHS[RECOMMENDATIONS].format(customer_pkey=UNKNOWN_KEY), params={"limit": 5}).json()
    assert body == {
        "customer_pkey": UNKNOWN_KEY,
        "known": False,
        "fallback": "popular",
        "source": "popular_fallback",
        "model_version": None,
        "items": [
            {
                "rank": p["rank"],
                "product_id": p["product_id"],
                "product_name": p["product_name"],
                "category": p["category"],
                "score": None,
                "raw_score": None,
            }
            for p in popular[:5]
        ],
    }
    for name in (SEGMENTS, SCORES, NEXT_BEST_ACTIONS):
        assert client.get(PATHS[name].format(customer_pkey=UNKNOWN_KEY)).status_code == 404


def test_an_anonymous_session_gets_recommendations_from_the_published_session_index(client, spec, published):
    # the demo's latest session with at least three products, as the pipeline published it
    [latest] = rows(
        published.publish_dir,
        "session_index",
        "select list(product_id order by position) as items from t group by session_number "
        "having count(*) >= 3 order by session_number desc limit 1",
    )
    items = latest["items"]
    response = client.post("/v1/sessions/recommendations", json={"items": [*items, "no-such-product"], "limit": 5})
    declared = spec["paths"]["/v1/sessions/recommendations"]["post"]["responses"]["200"]
    jsonschema.validate(
        response.json(), {**declared["content"]["application/json"]["schema"], "components": spec["components"]}
    )
    body = response.json()
    assert body["source"] == "session_knn"
    assert (body["known_items"], body["unknown_items"]) == (items, ["no-such-product"])
    assert len(body["items"]) == 5
    assert not {i["product_id"] for i in body["items"]} & set(items)  # nothing the visitor has seen
    assert body["index_version"] == snapshots.current_version(published.publish_dir, "session_index")


def test_the_pipeline_publishes_every_list_per_product_and_the_api_serves_them_as_published(client, published):
    counts = rows(
        published.publish_dir, PRODUCT_LISTS, "select list_name, count(distinct product_id) as n from t group by 1"
    )
    assert {r["list_name"] for r in counts} == {"bought_together", "viewed_together", "similar"}
    (product,) = rows(
        published.publish_dir, PRODUCT_LISTS, "select min(product_id) as p from t where list_name = 'bought_together'"
    )
    expected = rows(
        published.publish_dir,
        PRODUCT_LISTS,
        f"select * from t where product_id = '{product['p']}' and list_name = 'bought_together' order by rank",
    )
    body = client.get(f"/v1/products/{product['p']}/recommendations", params={"limit": 100}).json()
    assert (body["list_name"], body["fallback"]) == ("bought_together", False)
    assert [(i["rank"], i["product_id"], i["support"]) for i in body["items"]] == [
        (r["rank"], r["recommended_product_id"], r["support"]) for r in expected
    ]
    assert [i["score"] for i in body["items"]] == pytest.approx([r["score"] for r in expected])


def test_a_new_published_version_is_picked_up_and_a_broken_one_is_not(published, tmp_path):
    publish_dir = tmp_path / "publish"
    shutil.copytree(published.publish_dir, publish_dir)
    app = create_app(publish_dir, reload_seconds=0, mode="demo")
    server = app.state.server
    with TestClient(app) as c:
        key, gone = sample_keys(publish_dir)[:2]
        before = c.get(PATHS[SEGMENTS].format(customer_pkey=key)).json()
        assert c.get(PATHS[SEGMENTS].format(customer_pkey=gone)).status_code == 200
        assert server.reload_if_moved() is False  # nothing moved

        con = duckdb.connect()
        current = snapshots.current_snapshot(publish_dir, SEGMENTS).parquet
        con.execute(
            f"create table t as select * replace (case when customer_pkey = '{key}' then 'Reloaded' else rfm_segment end as rfm_segment) "
            f"from read_parquet('{current}') where customer_pkey <> '{gone}'"
        )
        now = datetime.now(UTC)
        snapshots.write_snapshot(
            con, publish_dir, SEGMENTS, "t", "v-reloaded", published_at=now, run_id="test", checks=[]
        )
        con.close()
        snapshots.set_current(publish_dir, SEGMENTS, "v-reloaded")
        assert server.reload_if_moved() is True
        after = c.get(PATHS[SEGMENTS].format(customer_pkey=key))
        assert after.json()["rfm_segment"] == "Reloaded" != before["rfm_segment"]
        assert after.headers["x-tessera-snapshot"] == "v-reloaded"
        assert c.get(PATHS[SEGMENTS].format(customer_pkey=gone)).status_code == 404

        # a version whose Parquet is unreadable: the last good index stays, and /health says why
        broken = publish_dir / SEGMENTS / "versions" / "v-broken"
        shutil.copytree(publish_dir / SEGMENTS / "versions" / "v-reloaded", broken)
        (broken / f"{SEGMENTS}.parquet").write_bytes(b"not parquet")
        snapshots.set_current(publish_dir, SEGMENTS, "v-broken")
        assert server.reload_if_moved() is False
        assert c.get(PATHS[SEGMENTS].format(customer_pkey=key)).json()["rfm_segment"] == "Reloaded"
        health = c.get("/health").json()
        assert health["snapshots"][SEGMENTS]["version"] == "v-reloaded"
        assert "v-broken" in health["last_reload_error"] or "parquet" in health["last_reload_error"].lower()


# --- the watcher and the salt refusal, on small snapshots written here (no pipeline run) ---------

TINY_TABLES = {
    RECOMMENDATIONS: """
        select 'pk_' || md5('tiny' || i) as customer_pkey, r as rank, 'p' || r as product_id, 'Product ' || r as product_name,
            'cat' as category, 1.0 / r as score, 'personalised' as source, '{version}' as model_version
        from range(3) t(i), range(1, 4) u(r)
    """,
    SEGMENTS: """
        select 'pk_' || md5('tiny' || i) as customer_pkey, '{version}' as rfm_segment, 3 as r_score, 2 as f_score,
            1 as m_score, 0 as cluster_id, 'c' as cluster_description, null::varchar as rule_segment,
            null::integer as rule_segment_priority, 'treatment' as rfm_holdout_group,
            null::varchar as rule_holdout_group, date '2026-10-31' as as_of_date
        from range(3) t(i)
    """,
    SCORES: """
        select 'pk_' || md5('tiny' || i) as customer_pkey, 5 as recency_days, 2 as frequency, {monetary} as monetary,
            10.0 as average_order_value, 100 as tenure_days, 321 as rfm_score,
            0.5 as purchase_propensity_30d, 0.5 as purchase_propensity_percentile,
            0.1 as churn_risk_30d, 0.2 as churn_risk_percentile, date '2026-10-31' as as_of_date
        from range(3) t(i)
    """,
}


def tiny_key(i: int) -> str:
    """The customer_pkey of the i-th customer of TINY_TABLES."""
    return "pk_" + hashlib.md5(f"tiny{i}".encode()).hexdigest()


def publish_tiny(publish_dir, version: str, salt_label: str | None, names=None, monetary="20.0"):
    """Publish `version` of the served tables (all, or `names`) and make it current; the manifest
    records `salt_label` as "pseudonym_salt" (None: a manifest from before the field)."""
    con = duckdb.connect()
    try:
        for name in names or TINY_TABLES:
            con.execute(f"create or replace table t as {TINY_TABLES[name].format(version=version, monetary=monetary)}")
            snap = snapshots.write_snapshot(
                con, publish_dir, name, "t", version, published_at=datetime.now(UTC), run_id="test", checks=[]
            )
            manifest = json.loads((snap.path / snapshots.MANIFEST).read_text())
            manifest.pop("pseudonym_salt", None)
            if salt_label is not None:
                manifest["pseudonym_salt"] = salt_label
            (snap.path / snapshots.MANIFEST).write_text(json.dumps(manifest))
            if name == RECOMMENDATIONS:
                (snap.path / "exports").mkdir(exist_ok=True)
                (snap.path / "exports" / "popular_products.jsonl").write_text(
                    '{"rank": 1, "product_id": "p1", "product_name": "Product 1", "category": "cat"}\n'
                )
            snapshots.set_current(publish_dir, name, version)
    finally:
        con.close()


def pointer_file(publish_dir):
    """The file naming the current versions: one release file, or (older layout) a pointer per table."""
    release = publish_dir / "release.json"
    return release if release.exists() else publish_dir / SEGMENTS / snapshots.POINTER


def wait_for(client, predicate, seconds: float = 10.0) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        health = client.get("/health").json()
        if predicate(health) or time.monotonic() > deadline:
            return health
        time.sleep(0.02)


def test_the_watcher_outlives_an_unreadable_pointer_and_health_says_degraded_until_a_good_reload(tmp_path, caplog):
    # issue 33: one unreadable `current` pointer killed the reload task for good, while /health
    # kept saying "ok"
    publish_dir = tmp_path / "publish"
    publish_tiny(publish_dir, "v1", "demo")
    with TestClient(create_app(publish_dir, reload_seconds=0.05, mode="demo")) as c:
        assert c.get("/health").json()["status"] == "ok"
        pointer = pointer_file(publish_dir)
        good = pointer.read_bytes()
        pointer.write_text('{"version": "jane.doe@example.com"')  # truncated JSON with a personal value

        health = wait_for(c, lambda h: h["status"] == "degraded")
        assert health["status"] == "degraded"
        assert "pointer" in health["last_reload_error"] and "JSONDecodeError" in health["last_reload_error"]
        since = health["degraded_since"]
        assert since is not None
        # the last good index is still served, and several failed ticks later the state holds
        assert c.get(PATHS[SEGMENTS].format(customer_pkey=tiny_key(1))).json()["rfm_segment"] == "v1"
        time.sleep(0.3)
        health = c.get("/health").json()
        assert health["status"] == "degraded" and health["degraded_since"] == since
        assert health["snapshots"][SEGMENTS]["version"] == "v1"

        # the pointer is readable again and a new version is published: the same watcher loads it
        pointer.write_bytes(good)
        publish_tiny(publish_dir, "v2", "demo")
        health = wait_for(c, lambda h: {s["version"] for s in h["snapshots"].values()} == {"v2"})
        assert health["status"] == "ok"
        assert health["last_reload_error"] is None and health["degraded_since"] is None
        assert {s["version"] for s in health["snapshots"].values()} == {"v2"}
        assert c.get(PATHS[SEGMENTS].format(customer_pkey=tiny_key(1))).json()["rfm_segment"] == "v2"
    assert "jane.doe@example.com" not in caplog.text
    assert any("reload failed" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


def test_a_failed_reload_reports_no_value_read_from_the_snapshot(tmp_path, caplog):
    publish_dir = tmp_path / "publish"
    publish_tiny(publish_dir, "v1", "demo")
    app = create_app(publish_dir, reload_seconds=0, mode="demo")
    server = app.state.server
    # a scores version whose money column holds text: DuckDB's error would quote the value
    publish_tiny(publish_dir, "v2", "demo", names=[SCORES], monetary="'jane.doe@example.com'")
    with TestClient(app) as c:
        assert server.reload_if_moved() is False
        health = c.get("/health").json()
    assert health["status"] == "degraded"
    assert f"{SCORES} version v2: {SCORES}.parquet is unreadable" in health["last_reload_error"]
    assert "jane.doe" not in health["last_reload_error"] and "jane.doe" not in caplog.text
    assert health["snapshots"][SCORES]["version"] == "v1"


@pytest.mark.parametrize(
    ("label", "mode", "refused"),
    [
        ("demo", "production", "the public demo salt"),
        (None, "production", "no pseudonym_salt in its manifest"),
        ("deployment", "production", None),
        ("demo", "demo", None),
        (None, "demo", None),
    ],
)
def test_production_mode_serves_only_snapshots_published_with_a_deployment_salt(tmp_path, label, mode, refused):
    publish_dir = tmp_path / "publish"
    publish_tiny(publish_dir, "v1", label)
    if refused is None:
        with TestClient(create_app(publish_dir, reload_seconds=0, mode=mode, api_keys=API_KEY)) as c:
            got = c.get(PATHS[SEGMENTS].format(customer_pkey=tiny_key(0)), headers={"X-API-Key": API_KEY})
            assert got.json()["rfm_segment"] == "v1"
        return
    with pytest.raises(ServingError) as err:
        create_app(publish_dir, reload_seconds=0, mode=mode, api_keys=API_KEY)
    assert refused in str(err.value)
    assert all(f"{name} version v1" in str(err.value) for name in (RECOMMENDATIONS, SEGMENTS, SCORES))


def test_tessera_serve_exits_with_a_clear_error_on_demo_salted_snapshots_in_production(tmp_path, monkeypatch):
    publish_dir = tmp_path / "publish"
    publish_tiny(publish_dir, "v1", "demo")
    monkeypatch.setenv("TESSERA_MODE", "production")
    monkeypatch.setenv("TESSERA_API_KEYS", API_KEY)
    monkeypatch.delenv("TESSERA_PSEUDONYM_SALT", raising=False)  # serving never needs the salt
    with pytest.raises(SystemExit) as exit_:
        serve(publish_dir, "127.0.0.1", 0, 0)
    message = str(exit_.value.code)
    assert message.startswith("tessera serve: TESSERA_MODE=production serves only snapshots published with")
    assert "the public demo salt" in message and "TESSERA_MODE=demo" in message
    # and a publish directory that does not exist is named before anything is loaded
    with pytest.raises(SystemExit) as exit_:
        serve(tmp_path / "nowhere", "127.0.0.1", 0, 0)
    assert "tessera cannot serve" in str(exit_.value.code) and str(tmp_path / "nowhere") in str(exit_.value.code)


def test_in_production_a_reload_to_a_demo_salted_version_keeps_the_last_good_index(tmp_path):
    publish_dir = tmp_path / "publish"
    publish_tiny(publish_dir, "v1", "deployment")
    app = create_app(publish_dir, reload_seconds=0, mode="production", api_keys=API_KEY)
    server = app.state.server
    with TestClient(app, headers={"X-API-Key": API_KEY}) as c:
        publish_tiny(publish_dir, "v2", "demo", names=[SEGMENTS])
        assert server.reload_if_moved() is False
        health = c.get("/health").json()
        assert health["status"] == "degraded"
        assert f"{SEGMENTS} version v2: pseudonym_salt 'demo' (the public demo salt)" in health["last_reload_error"]
        assert c.get(PATHS[SEGMENTS].format(customer_pkey=tiny_key(0))).json()["rfm_segment"] == "v1"

        publish_tiny(publish_dir, "v3", "deployment", names=[SEGMENTS])
        assert server.reload_if_moved() is True
        health = c.get("/health").json()
        assert (health["status"], health["last_reload_error"]) == ("ok", None)
        assert c.get(PATHS[SEGMENTS].format(customer_pkey=tiny_key(0))).json()["rfm_segment"] == "v3"


def test_the_pipelines_lookup_finds_published_customers_by_crm_id_and_cookie(client, published):
    # issue 39: a storefront knows its own ids, not customer_pkey; the identity graph knows both
    from tessera.privacy import pseudonym

    con = duckdb.connect(str(published.duckdb_path), read_only=True)
    try:
        nodes = con.execute(
            """
            select case node_type when 'crm' then 'customer_id' when 'cookie' then 'anonymous_id'
                       else split_part(node_key, ':', 2) end as id_type,
                   node_value, customer_key
            from intermediate.int_identities_resolved
            where node_type in ('crm', 'cookie', 'declared')
              and customer_key in (select customer_key from audiences.active_customers)
            order by node_key
            """
        ).fetchall()
    finally:
        con.close()
    published_keys = {r["customer_pkey"] for r in rows(published.publish_dir, SEGMENTS)}
    by_type: dict[str, list] = {}
    for id_type, value, customer_key in nodes:
        by_type.setdefault(id_type, []).append((value, customer_key))
    assert {"customer_id", "anonymous_id"} <= set(by_type)
    for id_type, found in by_type.items():
        for value, customer_key in found[:: max(1, len(found) // 15)]:
            body = client.get("/v1/lookup", params={"id_type": id_type, "id": value}).json()
            expected = pseudonym.pseudonym(published.pseudonym_salt, customer_key)
            assert body["customer_pkey"] == expected and expected in published_keys, (id_type, value)
            assert body["segments"]["customer_pkey"] == expected
    # the export holds hashes and keys, never an id
    snap = snapshots.current_snapshot(published.publish_dir, SEGMENTS)
    text = (snap.path / "exports" / "customer_identifiers.csv").read_text()
    assert all(value not in text for _, values in by_type.items() for value, _ in values[:50])
