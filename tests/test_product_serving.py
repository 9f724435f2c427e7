"""GET /v1/products/{product_id}/recommendations (tessera/serving.py, "lists per product") on small
snapshots written here: the default list and its fallback order, an asked-for list, the limit,
unknown products, and a publish directory from before the lists."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import jsonschema
import pytest
from fastapi.testclient import TestClient

from tessera.publish import snapshots
from tessera.serving import PRODUCT_LISTS, create_app
from tests.test_serving import publish_tiny, tiny_key

PATH = "/v1/products/{product_id}/recommendations"

# p1 has all three lists, p2 only viewed_together and similar, p3 only similar, p4 none (known),
# p5 is inactive but known
LISTS = """
    select * from (values
        ('p1', 'bought_together', 1, 'p2', 'Product 2', 'cat', 0.9, 5),
        ('p1', 'bought_together', 2, 'p3', 'Product 3', 'cat', 0.5, 3),
        ('p1', 'bought_together', 3, 'p4', 'Product 4', 'cat', 0.25, 2),
        ('p1', 'viewed_together', 1, 'p3', 'Product 3', 'cat', 0.7, 9),
        ('p1', 'similar', 1, 'p4', 'Product 4', 'cat', 0.6, 2),
        ('p2', 'viewed_together', 1, 'p1', 'Product 1', 'cat', 0.8, 4),
        ('p2', 'similar', 1, 'p3', 'Product 3', 'cat', 0.4, 1),
        ('p3', 'similar', 1, 'p2', 'Product 2', 'cat', 0.4, 1)
    ) as t(product_id, list_name, rank, recommended_product_id, product_name, category, score, support)
"""
CATALOGUE = [("p1", True), ("p2", True), ("p3", True), ("p4", True), ("p5", False)]


def publish_lists(publish_dir, version: str = "v1") -> None:
    con = duckdb.connect()
    try:
        con.execute(f"create table t as {LISTS}")
        snap = snapshots.write_snapshot(
            con, publish_dir, PRODUCT_LISTS, "t", version, published_at=datetime.now(UTC), run_id="test", checks=[]
        )
    finally:
        con.close()
    (snap.path / "exports").mkdir(exist_ok=True)
    (snap.path / "exports" / "product_catalogue.jsonl").write_text(
        "".join(json.dumps({"product_id": p, "is_active": a}) + "\n" for p, a in CATALOGUE)
    )
    snapshots.set_current(publish_dir, PRODUCT_LISTS, version)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    publish_dir = tmp_path_factory.mktemp("publish")
    publish_tiny(publish_dir, "v1", "demo")
    publish_lists(publish_dir)
    with TestClient(create_app(publish_dir, reload_seconds=0, mode="demo")) as c:
        yield c


@pytest.fixture(scope="module")
def spec(client):
    return client.get("/openapi.json").json()


def get(client, product_id: str, **params):
    return client.get(PATH.format(product_id=product_id), params=params)


def conforms(spec, response) -> None:
    """The body validates against the schema the spec declares for the path and status code."""
    declared = spec["paths"][PATH]["get"]["responses"]
    assert str(response.status_code) in declared, f"answered {response.status_code}, not in the spec"
    schema = declared[str(response.status_code)]["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), {**schema, "components": spec["components"]})


def test_a_product_gets_its_bought_together_list_by_default_with_scores_and_support(client, spec):
    response = get(client, "p1")
    conforms(spec, response)
    assert response.headers["x-tessera-snapshot"] == "v1"
    assert response.json() == {
        "product_id": "p1",
        "list_name": "bought_together",
        "fallback": False,
        "items": [
            {"rank": 1, "product_id": "p2", "product_name": "Product 2", "category": "cat", "score": 0.9, "support": 5},
            {"rank": 2, "product_id": "p3", "product_name": "Product 3", "category": "cat", "score": 0.5, "support": 3},
            {
                "rank": 3,
                "product_id": "p4",
                "product_name": "Product 4",
                "category": "cat",
                "score": 0.25,
                "support": 2,
            },
        ],
    }


def test_the_default_falls_back_to_viewed_together_then_similar(client, spec):
    p2 = get(client, "p2")
    conforms(spec, p2)
    assert (p2.json()["list_name"], p2.json()["fallback"]) == ("viewed_together", True)
    assert [i["product_id"] for i in p2.json()["items"]] == ["p1"]
    p3 = get(client, "p3").json()
    assert (p3["list_name"], p3["fallback"], [i["product_id"] for i in p3["items"]]) == ("similar", True, ["p2"])


def test_an_asked_for_list_is_served_without_fallback_even_when_empty(client, spec):
    similar = get(client, "p1", list="similar").json()
    assert (similar["list_name"], similar["fallback"], [i["product_id"] for i in similar["items"]]) == (
        "similar",
        False,
        ["p4"],
    )
    empty = get(client, "p3", list="bought_together")
    conforms(spec, empty)
    assert empty.json() == {"product_id": "p3", "list_name": None, "fallback": False, "items": []}


def test_a_known_product_without_any_list_gets_an_empty_one_not_a_404(client, spec):
    for product in ("p4", "p5"):  # p5 is inactive: known, no list
        response = get(client, product)
        conforms(spec, response)
        assert response.json() == {"product_id": product, "list_name": None, "fallback": False, "items": []}


def test_the_limit_cuts_the_list_and_out_of_range_values_are_refused(client, spec):
    assert [i["rank"] for i in get(client, "p1", limit=2).json()["items"]] == [1, 2]
    for limit in (0, 101):
        refused = get(client, "p1", limit=limit)
        assert refused.status_code == 422
        conforms(spec, refused)
    assert get(client, "p1", list="bestsellers").status_code == 422


def test_an_unknown_product_is_a_404_naming_it(client, spec):
    response = get(client, "no-such-product")
    conforms(spec, response)
    assert response.status_code == 404
    assert response.json() == {"detail": "product 'no-such-product' is not in the published product catalogue"}


def test_the_spec_declares_the_product_route_with_its_list_parameter(spec):
    operation = spec["paths"][PATH]["get"]
    assert set(operation["responses"]) >= {"200", "404", "422", "503"}
    (param,) = [p for p in operation["parameters"] if p["name"] == "list"]
    assert "ProductList" in json.dumps(param["schema"])
    assert spec["components"]["schemas"]["ProductList"]["enum"] == ["bought_together", "viewed_together", "similar"]
    assert "ProductRecommendations" in spec["components"]["schemas"]


def test_before_the_lists_are_published_the_route_answers_503_and_the_rest_is_served(tmp_path):
    publish_tiny(tmp_path, "v1", "demo")
    with TestClient(create_app(tmp_path, reload_seconds=0, mode="demo")) as c:
        response = get(c, "p1")
        assert response.status_code == 503
        assert "product_recommendations has never been published" in response.json()["detail"]
        assert c.get(f"/v1/customers/{tiny_key(0)}/segments").status_code == 200
        assert set(c.get("/health").json()["snapshots"]) == {
            "customer_recommendations",
            "customer_segments",
            "customer_scores",
        }


def test_lists_published_later_are_picked_up_by_a_reload(tmp_path):
    publish_tiny(tmp_path, "v1", "demo")
    app = create_app(tmp_path, reload_seconds=0, mode="demo")
    with TestClient(app) as c:
        assert get(c, "p1").status_code == 503
        publish_lists(tmp_path, "v2")
        assert app.state.server.reload_if_moved() is True
        response = get(c, "p1")
        assert response.status_code == 200 and response.headers["x-tessera-snapshot"] == "v2"
        assert app.state.server.reload_if_moved() is False  # nothing moved since
