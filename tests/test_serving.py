"""The serving API (tessera/serving.py) against the snapshots the pipeline published.

Contract tests: every response body is validated against the schema the OpenAPI spec declares for
its path and status code, and its content against the published Parquet."""

import json
import shutil
from datetime import UTC, datetime

import duckdb
import jsonschema
import pytest
from fastapi.testclient import TestClient

from tessera import snapshots
from tessera.serving import RECOMMENDATIONS, SCORES, SEGMENTS, create_app

PATHS = {
    RECOMMENDATIONS: "/v1/customers/{customer_pkey}/recommendations",
    SEGMENTS: "/v1/customers/{customer_pkey}/segments",
    SCORES: "/v1/customers/{customer_pkey}/scores",
}


@pytest.fixture(scope="module")
def published(pipeline):
    _, settings = pipeline
    return settings


@pytest.fixture(scope="module")
def client(published):
    with TestClient(create_app(published.publish_dir, reload_seconds=0)) as c:
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
    assert set(spec["paths"]) == {"/health", *PATHS.values()}
    for path in PATHS.values():
        assert "200" in spec["paths"][path]["get"]["responses"]
    for name in ("Recommendations", "Segments", "Scores", "Health", "RecommendedItem"):
        assert name in spec["components"]["schemas"]


def test_every_response_conforms_to_the_spec(client, spec, published):
    keys = sample_keys(published.publish_dir)
    assert len(keys) >= 4
    for key in [*keys, "no-such-customer"]:
        for path in PATHS.values():
            response = client.get(path.format(customer_pkey=key))
            conforms(spec, path, response)
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
    assert [i["score"] for i in body["items"]] == pytest.approx([r["score"] for r in expected])
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
    body = client.get(PATHS[RECOMMENDATIONS].format(customer_pkey="someone-new"), params={"limit": 5}).json()
    assert body == {
        "customer_pkey": "someone-new",
        "known": False,
        "source": "popular_fallback",
        "model_version": None,
        "items": [
            {
                "rank": p["rank"],
                "product_id": p["product_id"],
                "product_name": p["product_name"],
                "category": p["category"],
                "score": None,
            }
            for p in popular[:5]
        ],
    }
    assert client.get(PATHS[SEGMENTS].format(customer_pkey="someone-new")).status_code == 404
    assert client.get(PATHS[SCORES].format(customer_pkey="someone-new")).status_code == 404


def test_a_new_published_version_is_picked_up_and_a_broken_one_is_not(published, tmp_path):
    publish_dir = tmp_path / "publish"
    shutil.copytree(published.publish_dir, publish_dir)
    app = create_app(publish_dir, reload_seconds=0)
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
