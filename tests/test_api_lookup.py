"""The storefront's side of the serving API (issue 39): the lookup by a shop's own ids, API keys,
422 for malformed keys, the next best action route, normalised scores, the request log and the
offline /docs page. On small snapshots written here; the pipeline's own published lookup is
checked in tests/test_serving.py."""

import json
import logging
import re
from datetime import UTC, datetime

import duckdb
import jsonschema
import pytest
from fastapi.testclient import TestClient

from tessera.privacy import erasure, pseudonym
from tessera.publish import snapshots
from tessera.publish.published import CUSTOMER_IDENTIFIERS
from tessera.serving import (
    IDENTIFIERS_EXPORT,
    NEXT_BEST_ACTIONS,
    SEGMENTS,
    SWAGGER_DIR,
    ServingError,
    create_app,
    route_template,
)
from tests.test_serving import publish_tiny, tiny_key

SALT = "a-deployment-salt-0123456789"
KEY = "storefront-key-0123456789abcdef"
OTHER_KEY = "another-key-0123456789abcdefgh"
UNKNOWN = "pk_" + "0" * 32

# the shop's ids of the tiny customers: CRM id, login id (declared), cookie
IDS = {
    ("customer_id", "C0000123"): 0,
    ("customer_id", "C0000124"): 1,
    ("login_id", "jane@login"): 0,
    ("anonymous_id", "3f2a-cookie"): 1,
}


def write_identifiers(publish_dir, salt: str = SALT, ids=None) -> None:
    """Add the customer_identifiers export (hashed as the publish step does) to the current
    customer_segments version, and its manifest's salt_check."""
    snap = snapshots.current_snapshot(publish_dir, SEGMENTS)
    rows = [
        {"id_type": t, "id_hash": pseudonym.id_hash(salt, v), "customer_pkey": tiny_key(i)}
        for (t, v), i in (IDS if ids is None else ids).items()
    ]
    lines = ["id_type,id_hash,customer_pkey", *(f"{r['id_type']},{r['id_hash']},{r['customer_pkey']}" for r in rows)]
    (snap.path / "exports").mkdir(exist_ok=True)
    (snap.path / "exports" / IDENTIFIERS_EXPORT).write_text("\n".join(lines) + "\n")
    manifest = json.loads((snap.path / snapshots.MANIFEST).read_text())
    manifest["salt_check"] = pseudonym.salt_check(salt)
    manifest["files"].append({"path": f"exports/{IDENTIFIERS_EXPORT}", "format": "csv", "rows": len(rows), "pii": []})
    (snap.path / snapshots.MANIFEST).write_text(json.dumps(manifest))


NBA_SQL = """
    select * from (values
        ('{k0}', 'web_banner', 'favourite_category_banner', 'top_pick', 'send', 'weighted_score', 2, 0.61,
         'treatment', 3::bigint, 'favourite category: Tea', 'm-1', 1, date '2026-11-01'),
        ('{k0}', 'email', 'recommendations_email', null, 'holdout', 'weighted_score', 1, 0.4,
         'control', 2::bigint, 'control group of nba:recommendations_email', null, 1, date '2026-11-01')
    ) as t (customer_pkey, channel, action_id, variant_id, decision, decided_by, priority, score,
            holdout_group, eligible_actions, reason, message_id, bandit_state_version, decided_on)
"""


def publish_nba(publish_dir, version: str = "v1") -> None:
    con = duckdb.connect()
    try:
        con.execute(f"create table t as {NBA_SQL.format(k0=tiny_key(0))}")
        snapshots.write_snapshot(
            con,
            publish_dir,
            NEXT_BEST_ACTIONS,
            "t",
            version,
            published_at=datetime.now(UTC),
            run_id="t",
            checks=[],
            pseudonym_salt="deployment",
        )
        snapshots.set_current(publish_dir, NEXT_BEST_ACTIONS, version)
    finally:
        con.close()


@pytest.fixture
def publish_dir(tmp_path):
    publish_tiny(tmp_path, "v1", "deployment")
    write_identifiers(tmp_path)
    publish_nba(tmp_path)
    return tmp_path


@pytest.fixture
def client(publish_dir):
    app = create_app(publish_dir, reload_seconds=0, mode="production", salt=SALT, api_keys=f"{KEY},{OTHER_KEY}")
    with TestClient(app, headers={"X-API-Key": KEY}) as c:
        yield c


def lookup(client, id_type: str, value: str, **kw):
    return client.get("/v1/lookup", params={"id_type": id_type, "id": value}, **kw)


# --------------------------------------------------------------------------- the lookup


@pytest.mark.parametrize(("id_type", "value"), list(IDS))
def test_a_crm_id_a_login_id_and_a_cookie_each_find_their_customers_profile(client, id_type, value):
    body = lookup(client, id_type, value).json()
    key = tiny_key(IDS[(id_type, value)])
    assert body["customer_pkey"] == key and body["id_type"] == id_type
    assert body["segments"] == client.get(f"/v1/customers/{key}/segments").json()
    assert body["scores"] == client.get(f"/v1/customers/{key}/scores").json()
    assert body["recommendations"] == client.get(f"/v1/customers/{key}/recommendations").json()
    assert body["recommendations"]["known"] is True and len(body["recommendations"]["items"]) == 3
    # customer 0 has two published decisions, customer 1 none
    assert [a["channel"] for a in body["next_best_actions"]] == (["email", "web_banner"] if key == tiny_key(0) else [])


def test_an_id_is_matched_as_delivered_apart_from_surrounding_blanks(client):
    assert lookup(client, "customer_id", "  C0000123 ").json()["customer_pkey"] == tiny_key(0)
    # ids are not case-folded: a CRM id in another case is another id
    assert lookup(client, "customer_id", "c0000123").status_code == 404


def test_an_unknown_id_is_a_404_that_does_not_echo_it(client):
    response = lookup(client, "customer_id", "C9999999")
    assert response.status_code == 404
    assert response.json() == {"detail": "no published customer has this customer_id"}


def test_an_id_type_nobody_published_is_a_422_naming_the_published_ones(client):
    response = lookup(client, "email", "jane@example.com")
    assert response.status_code == 422
    # shaped as every other 422 (FastAPI's HTTPValidationError, what the spec declares)
    assert response.json() == {
        "detail": [
            {
                "type": "value_error",
                "loc": ["query", "id_type"],
                "msg": "id_type 'email' is not published; published id types: anonymous_id, customer_id, login_id",
                "input": "email",
            }
        ]
    }
    spec = client.get("/openapi.json").json()
    declared = spec["paths"]["/v1/lookup"]["get"]["responses"]["422"]["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), {**declared, "components": spec["components"]})


@pytest.mark.parametrize(
    "params",
    [
        {"id_type": "customer_id", "id": ""},
        {"id_type": "customer_id", "id": "   "},
        {"id_type": "customer_id", "id": "C" * 129},
        {"id_type": "Customer ID", "id": "C0000123"},
        {"id_type": "customer_id"},
        {"id": "C0000123"},
    ],
)
def test_a_malformed_lookup_is_a_422(client, params):
    assert client.get("/v1/lookup", params=params).status_code == 422


def test_the_lookup_answers_503_when_the_server_holds_another_salt(publish_dir):
    app = create_app(publish_dir, reload_seconds=0, mode="demo", salt="not-the-publishing-salt", api_keys="")
    with TestClient(app) as c:
        response = lookup(c, "customer_id", "C0000123")
        assert response.status_code == 503
        assert (
            "TESSERA_PSEUDONYM_SALT is not the salt customer_segments version v1 was published with"
            in (response.json()["detail"])
        )
        # the rest is served
        assert c.get(f"/v1/customers/{tiny_key(0)}/segments").status_code == 200


def test_the_lookup_answers_503_for_a_publish_from_before_it(tmp_path):
    publish_tiny(tmp_path, "v1", "demo")
    with TestClient(create_app(tmp_path, reload_seconds=0, mode="demo", api_keys="")) as c:
        response = lookup(c, "customer_id", "C0000123")
        assert response.status_code == 503
        assert "has no exports/customer_identifiers.csv: republish" in response.json()["detail"]


def test_an_id_removed_from_the_lookup_by_a_republish_is_unknown_after_the_reload(publish_dir):
    app = create_app(publish_dir, reload_seconds=0, mode="production", salt=SALT, api_keys=KEY)
    with TestClient(app, headers={"X-API-Key": KEY}) as c:
        assert lookup(c, "customer_id", "C0000124").status_code == 200
        publish_tiny(publish_dir, "v2", "deployment", names=[SEGMENTS])
        write_identifiers(publish_dir, ids={k: i for k, i in IDS.items() if i == 0})
        assert app.state.server.reload_if_moved() is True
        assert lookup(c, "customer_id", "C0000124").status_code == 404
        assert lookup(c, "anonymous_id", "3f2a-cookie").status_code == 404
        assert lookup(c, "customer_id", "C0000123").json()["customer_pkey"] == tiny_key(0)


# --------------------------------------------------------------------------- the published export


def test_the_export_hashes_crm_ids_cookies_and_declared_ids_and_drops_ids_of_two_customers():
    con = duckdb.connect()
    try:
        pseudonym.install(con, SALT)
        con.execute("create schema intermediate")
        con.execute(
            """
            create table intermediate.int_identities_resolved as select * from (values
                ('crm:C1', 'crm', 'C1', 'tc_a'),
                ('cookie:ck1', 'cookie', 'ck1', 'tc_a'),
                ('declared:login_id:u1', 'declared', 'u1', 'tc_a'),
                ('email:a@x.example', 'email', 'a@x.example', 'tc_a'),
                ('pos:R1', 'pos', 'R1', 'tc_a'),
                ('crm:C2', 'crm', 'C2', 'tc_b'),
                ('declared:person_id:u1', 'declared', 'u1', 'tc_b'),
                ('declared:member_no:9', 'declared', '9', 'tc_b'),
                ('declared:member_no:9x', 'declared', '9x', 'tc_erased')
            ) as t (node_key, node_type, node_value, customer_key)
            """
        )
        # the published customers ({table}): tc_erased is not published (an erasure request)
        con.execute(
            "create table segments as select customer_pkey(k) as customer_pkey from (values ('tc_a'), ('tc_b')) t(k)"
        )
        got = con.execute(CUSTOMER_IDENTIFIERS.sql.format(table="segments")).fetchall()
    finally:
        con.close()
    a, b = pseudonym.pseudonym(SALT, "tc_a"), pseudonym.pseudonym(SALT, "tc_b")
    expected = [
        ("anonymous_id", pseudonym.id_hash(SALT, "ck1"), a),
        ("customer_id", pseudonym.id_hash(SALT, "C1"), a),
        ("customer_id", pseudonym.id_hash(SALT, "C2"), b),
        ("login_id", pseudonym.id_hash(SALT, "u1"), a),
        ("member_no", pseudonym.id_hash(SALT, "9"), b),
        ("person_id", pseudonym.id_hash(SALT, "u1"), b),
    ]
    assert sorted(got) == sorted(expected)
    assert not CUSTOMER_IDENTIFIERS.pii  # hashes and keys only: no id leaves in clear


def test_the_erasure_residue_check_finds_an_erased_id_left_in_the_lookup(tmp_path):
    # the lookup hashes ids as the suppression list does, so an erased id is found by equality
    publish_tiny(tmp_path, "v1", "deployment")
    write_identifiers(tmp_path)
    con = duckdb.connect()
    try:
        con.execute("create schema privacy")
        erasure.ensure_tables(con)
        assert erasure.hashed_id_residue(con, tmp_path) == {}
        con.execute(
            "insert into privacy.erased_identifiers values ('r1', 'crm', ?), ('r1', 'cookie', ?)",
            [pseudonym.id_hash(SALT, "C0000124"), pseudonym.id_hash(SALT, "3f2a-cookie")],
        )
        found = erasure.hashed_id_residue(con, tmp_path)
    finally:
        con.close()
    assert found == {f"{SEGMENTS}/v1/exports/{IDENTIFIERS_EXPORT}:id_hash": 2}


def test_the_published_hash_is_the_suppression_lists_hash_of_the_same_value():
    con = duckdb.connect()
    try:
        pseudonym.install(con, SALT)
        (in_sql,) = con.execute(
            f"select sha256(getvariable('{pseudonym.SALT_VARIABLE}') || ':' || 'C0000123')"
        ).fetchone()
    finally:
        con.close()
    assert in_sql == pseudonym.id_hash(SALT, "C0000123")


# --------------------------------------------------------------------------- API keys

CUSTOMER_ROUTES = [
    "/v1/customers/{k}/recommendations",
    "/v1/customers/{k}/segments",
    "/v1/customers/{k}/scores",
    "/v1/customers/{k}/next-best-action",
    "/v1/lookup?id_type=customer_id&id=C0000123",
]


@pytest.mark.parametrize("route", CUSTOMER_ROUTES)
def test_every_customer_route_refuses_a_request_without_a_configured_key(publish_dir, route):
    app = create_app(publish_dir, reload_seconds=0, mode="production", salt=SALT, api_keys=KEY)
    path = route.format(k=tiny_key(0))
    with TestClient(app) as c:
        missing = c.get(path)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert "X-API-Key or Authorization: Bearer" in missing.json()["detail"]
        wrong = c.get(path, headers={"X-API-Key": "not-" + KEY})
        assert (wrong.status_code, wrong.json()["detail"]) == (401, "the API key is not valid")
        assert c.get(path, headers={"X-API-Key": KEY}).status_code == 200
        assert c.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        # a malformed id without a key: 401 first, nothing about the id is answered
        assert c.get(route.format(k="hello"), headers={}).status_code == 401


def test_a_key_configured_as_its_sha256_digest_is_accepted(publish_dir):
    digest = pseudonym.hashlib.sha256(KEY.encode()).hexdigest()
    app = create_app(publish_dir, reload_seconds=0, mode="production", salt=SALT, api_keys=f"sha256:{digest}")
    with TestClient(app) as c:
        assert c.get(f"/v1/customers/{tiny_key(0)}/scores", headers={"X-API-Key": KEY}).status_code == 200
        assert c.get(f"/v1/customers/{tiny_key(0)}/scores", headers={"X-API-Key": digest}).status_code == 401


def test_health_docs_and_product_routes_need_no_key(client):
    bare = {"X-API-Key": ""}
    assert client.get("/health", headers=bare).status_code == 200
    assert client.get("/docs", headers=bare).status_code == 200
    assert client.get("/openapi.json", headers=bare).status_code == 200
    assert client.get("/v1/products/p1/recommendations", headers=bare).status_code == 503  # no lists published


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("", "TESSERA_MODE=production serves the customer routes only behind API keys: set TESSERA_API_KEYS"),
        (" , ", "TESSERA_MODE=production serves the customer routes only behind API keys: set TESSERA_API_KEYS"),
        (f"{KEY},short", "TESSERA_API_KEYS entry 2 is shorter than 16 characters"),
        ("sha256:abc", "TESSERA_API_KEYS entry 1: sha256: must be followed by 64 hex digits"),
    ],
)
def test_production_mode_refuses_to_start_without_usable_keys(publish_dir, keys, message):
    with pytest.raises(ServingError) as err:
        create_app(publish_dir, reload_seconds=0, mode="production", salt=SALT, api_keys=keys)
    assert message in str(err.value)
    assert "short" not in str(err.value).replace("shorter", "")  # the key itself is never quoted


def test_demo_mode_without_keys_serves_anyone_and_says_so_at_start(publish_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="tessera.serving"):
        app = create_app(publish_dir, reload_seconds=0, mode="demo", salt=SALT, api_keys="")
    assert any("no TESSERA_API_KEYS: the customer routes answer anyone" in r.getMessage() for r in caplog.records)
    with TestClient(app) as c:
        assert c.get(f"/v1/customers/{tiny_key(0)}/scores").status_code == 200


# --------------------------------------------------------------------------- 422 and fallbacks

MALFORMED = [
    "C0000123",
    "hello world",
    "tc_0123456789abcdef",
    "pk_XYZ",
    "PK_" + "a" * 32,
    "pk_" + "a" * 31,
    "pk_" + "A" * 32,
]


@pytest.mark.parametrize("key", MALFORMED)
@pytest.mark.parametrize("route", CUSTOMER_ROUTES[:4])
def test_a_malformed_customer_pkey_is_a_422_on_every_route(client, route, key):
    # issue 39: any of these got 200 with the popular products, so a first integration silently
    # showed generic items
    response = client.get(route.format(k=key))
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["path", "customer_pkey"] and error["type"] == "string_pattern_mismatch"


def test_a_well_formed_unknown_key_keeps_the_fallback_and_says_so(client):
    body = client.get(f"/v1/customers/{UNKNOWN}/recommendations", params={"limit": 1}).json()
    assert body == {
        "customer_pkey": UNKNOWN,
        "known": False,
        "fallback": "popular",
        "source": "popular_fallback",
        "model_version": None,
        "items": [
            {
                "rank": 1,
                "product_id": "p1",
                "product_name": "Product 1",
                "category": "cat",
                "score": None,
                "raw_score": None,
            }
        ],
    }
    known = client.get(f"/v1/customers/{tiny_key(0)}/recommendations").json()
    assert known["known"] is True and known["fallback"] is None
    for route in CUSTOMER_ROUTES[1:4]:
        assert client.get(route.format(k=UNKNOWN)).status_code == 404


# --------------------------------------------------------------------------- next best action


def test_the_next_best_action_route_serves_the_published_decisions_per_channel(client):
    body = client.get(f"/v1/customers/{tiny_key(0)}/next-best-action").json()
    assert body["customer_pkey"] == tiny_key(0)
    assert [(a["channel"], a["action_id"], a["decision"], a["variant_id"]) for a in body["actions"]] == [
        ("email", "recommendations_email", "holdout", None),
        ("web_banner", "favourite_category_banner", "send", "top_pick"),
    ]
    banner = body["actions"][1]
    assert banner == {
        "channel": "web_banner",
        "action_id": "favourite_category_banner",
        "variant_id": "top_pick",
        "decision": "send",
        "decided_by": "weighted_score",
        "priority": 2,
        "score": 0.61,
        "holdout_group": "treatment",
        "eligible_actions": 3,
        "reason": "favourite category: Tea",
        "message_id": "m-1",
        "decided_on": "2026-11-01",
    }
    # a published customer with no eligible action today: an empty list, not a 404
    assert client.get(f"/v1/customers/{tiny_key(1)}/next-best-action").json() == {
        "customer_pkey": tiny_key(1),
        "actions": [],
    }


def test_the_next_best_action_route_answers_503_until_decisions_are_published(tmp_path):
    publish_tiny(tmp_path, "v1", "demo")
    with TestClient(create_app(tmp_path, reload_seconds=0, mode="demo", api_keys="")) as c:
        response = c.get(f"/v1/customers/{tiny_key(0)}/next-best-action")
        assert response.status_code == 503
        assert "next_best_actions has never been published" in response.json()["detail"]
        assert lookup(c, "customer_id", "C0000123").status_code == 503  # no lookup export either


# --------------------------------------------------------------------------- normalised scores


def test_scores_are_the_raw_scores_percentile_within_the_model_and_source(client):
    # TINY_TABLES: every customer's raw scores are 1, 1/2, 1/3 (9 items of one model and source):
    # the share of items with a raw score at most each one is 9/9, 6/9, 3/9
    items = client.get(f"/v1/customers/{tiny_key(2)}/recommendations").json()["items"]
    assert [i["raw_score"] for i in items] == pytest.approx([1.0, 0.5, 1 / 3])
    assert [i["score"] for i in items] == [1.0, 0.6667, 0.3333]


# --------------------------------------------------------------------------- request log


def test_each_request_logs_one_line_with_its_route_template_status_and_latency(client, caplog):
    with caplog.at_level(logging.INFO, logger="tessera.serving.access"):
        client.get(f"/v1/customers/{tiny_key(0)}/scores")
        client.get("/v1/customers/hello/scores")
        lookup(client, "customer_id", "C0000123")
        client.get(f"/v1/customers/{tiny_key(0)}/scores", headers={"X-API-Key": "wrong-key-0123456789"})
        client.get("/nowhere")
        client.get("/docs-static/swagger-ui.css")
    lines = [r.getMessage() for r in caplog.records if r.name == "tessera.serving.access"]
    pattern = re.compile(r"^GET (\S+) (\d{3}) \d+\.\d\d ms$")
    parsed = [pattern.match(line).groups() for line in lines]
    assert parsed == [
        ("/v1/customers/{customer_pkey}/scores", "200"),
        ("/v1/customers/{customer_pkey}/scores", "422"),
        ("/v1/lookup", "200"),
        ("/v1/customers/{customer_pkey}/scores", "401"),
        ("(unmatched)", "404"),
        ("/docs-static/{path}", "200"),
    ]
    text = "\n".join(lines)
    assert tiny_key(0) not in text and "C0000123" not in text and "hello" not in text and KEY not in text


def test_the_request_log_is_silent_above_info(client, caplog):
    with caplog.at_level(logging.WARNING, logger="tessera.serving.access"):
        client.get(f"/v1/customers/{tiny_key(0)}/scores")
    assert not [r for r in caplog.records if r.name == "tessera.serving.access"]


def test_a_scope_without_a_route_is_logged_without_its_path():
    assert route_template({"path": "/v1/customers/pk_x/scores"}) == "(unmatched)"


# --------------------------------------------------------------------------- /docs offline


def test_the_docs_page_references_only_local_assets_that_are_served(client):
    html = client.get("/docs").text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html) + re.findall(r"url: '([^']+)'", html)
    assert sorted(urls) == [
        "/docs-static/favicon-32x32.png",
        "/docs-static/swagger-ui-bundle.js",
        "/docs-static/swagger-ui.css",
        "/openapi.json",
    ]
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assert '"validatorUrl": null' in html  # no badge fetched from validator.swagger.io
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200 and len(response.content) > 500
    assert "SwaggerUIBundle" in client.get("/docs-static/swagger-ui-bundle.js").text
    assert client.get("/redoc").status_code == 404  # no vendored ReDoc: not served rather than blank
    assert "Apache License" in (SWAGGER_DIR / "LICENSE").read_text()


def test_the_spec_declares_the_key_on_the_customer_routes_only(client):
    spec = client.get("/openapi.json").json()
    assert set(spec["components"]["securitySchemes"]) == {"APIKeyHeader", "HTTPBearer"}
    for path, ops in spec["paths"].items():
        secured = "security" in ops["get"] if "get" in ops else False
        assert secured == (path.startswith("/v1/customers/") or path == "/v1/lookup"), path
    lookup_params = {p["name"] for p in spec["paths"]["/v1/lookup"]["get"]["parameters"]}
    assert lookup_params == {"id_type", "id", "limit"}
    pkey = next(
        p
        for p in spec["paths"]["/v1/customers/{customer_pkey}/scores"]["get"]["parameters"]
        if p["name"] == "customer_pkey"
    )
    assert pkey["schema"]["pattern"] == "^pk_[0-9a-f]{32}$"


def test_the_docs_page_renders_in_chromium_with_no_request_outside_the_server(publish_dir, tmp_path):
    # issue 39: /docs was blank offline, Swagger UI came from a CDN
    import os
    import threading
    import time
    from pathlib import Path

    import uvicorn
    from playwright import sync_api

    from tessera.realtime.redis_server import free_port
    from tests.test_storefront_browser import CHROMIUM, FLAGS

    assert Path(CHROMIUM).exists(), "Chromium is not installed: run scripts/install_chromium.sh (make test does)"
    app = create_app(publish_dir, reload_seconds=0, mode="production", salt=SALT, api_keys=KEY)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{server.config.port}"
    shots = Path(os.environ.get("TESSERA_SCREENSHOTS_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    requested: list[str] = []
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.on("request", lambda request: requested.append(request.url))
                page.goto(f"{base}/docs")
                # rendered from the spec: the title and every customer route's block
                page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
                assert "tessera serving API" in page.inner_text(".swagger-ui .info .title")
                page.wait_for_selector("#operations-customers-lookup_v1_lookup_get", timeout=15_000)
                blocks = page.locator(".opblock-summary-path").all_inner_texts()
                assert {"/v1/lookup", "/v1/customers/{customer_pkey}/next-best-action"} <= {b.strip() for b in blocks}
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(shots / "api_docs.png"), full_page=False)
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
    assert requested and all(url.startswith(base + "/") for url in requested), requested
    assert f"{base}/docs-static/swagger-ui-bundle.js" in requested and f"{base}/openapi.json" in requested
