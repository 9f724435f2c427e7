"""The event collector (tessera/realtime/collector.py): POST /v1/events into the stream.

Validation all or nothing with an error per event, idempotence on messageId, consent (per event,
revoke and grant), the suppression list of erased people, the limits, 503 without Redis, and the
serving app mounting the route only when real time is configured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tessera.realtime.collector import MAX_BODY_BYTES, add_collector_routes
from tessera.realtime.privacy import CONSENT_EVENT, identifier_hash
from tessera.realtime.redis_server import free_port
from tessera.realtime.store import connect
from tessera.realtime.stream import FIELD
from tessera.settings import RealtimeSettings

SALT = "test-salt-0123456789"
T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def msg(n: int, name: str | None = "Product Viewed", *, anon="cookie-1", user=None, kind=None, consent=None, **props):
    """One Segment message; `kind` page/identify, else a track event `name`."""
    message = {
        "type": kind or "track",
        "messageId": f"m{n}",
        "anonymousId": anon,
        "timestamp": (T0 + timedelta(seconds=n)).isoformat(),
        "properties": props or ({"product_id": f"p{n}"} if name == "Product Viewed" and kind is None else {}),
    }
    if kind is None:
        message["event"] = name
    if user:
        message["userId"] = user
    if consent is not None:
        message["context"] = {"consent": {"categoryPreferences": consent}}
    return message


def settings_for(url: str) -> RealtimeSettings:
    return RealtimeSettings(redis_url=url)


@pytest.fixture
def store(redis_server, redis_client):
    return connect(settings_for(redis_server.url), SALT)


@pytest.fixture
def api(store):
    app = FastAPI()
    add_collector_routes(app, store)
    return TestClient(app)


def on_stream(store) -> list[dict]:
    """The events on the stream, in order."""
    return [orjson.loads(fields[FIELD]) for _, fields in store.client.xrange(store.stream.key)]


def stream_ids(store) -> list[str]:
    return [e["message_id"] for e in on_stream(store)]


def post(api, messages, **extra):
    return api.post("/v1/events", json={"batch": messages, "sentAt": T0.isoformat(), **extra})


def test_a_valid_batch_is_appended_in_order_and_counted(api, store):
    r = post(api, [msg(1, kind="page"), msg(2), msg(3, "Product Added", product_id="p2", quantity=2)])
    assert r.status_code == 200
    assert r.json() == {"accepted": 3, "duplicates": 0, "suppressed": 0}
    assert stream_ids(store) == ["m1", "m2", "m3"]
    events = on_stream(store)
    assert [e["event_type"] for e in events] == ["page_view", "product_view", "add_to_cart"]
    assert events[2]["products"] == [{"product_id": "p2", "category": None, "price": None, "quantity": 2}]


def test_a_single_message_without_a_batch_is_accepted(api, store):
    r = api.post("/v1/events", json=msg(1, kind="identify", user="c-1"))
    assert r.json() == {"accepted": 1, "duplicates": 0, "suppressed": 0}
    assert stream_ids(store) == ["m1"]


def test_a_batch_with_invalid_events_lists_each_and_accepts_none(api, store):
    bad_type = {**msg(2), "type": "screen"}
    no_ids = {k: v for k, v in msg(4).items() if k != "anonymousId"}
    bad_price = msg(5, "Product Added", product_id="p5", price="cheap")
    r = post(api, [msg(1), bad_type, msg(3), no_ids, bad_price, "not an object"])
    assert r.status_code == 400
    body = r.json()
    assert "4 of 6 messages are invalid; none was accepted" in body["detail"]
    errors = {e["index"]: e for e in body["errors"]}
    assert sorted(errors) == [1, 3, 4, 5]
    assert (
        errors[1]["messageId"] == "m2" and "type must be track, identify or page, got 'screen'" in errors[1]["message"]
    )
    assert errors[3]["messageId"] == "m4" and "userId or anonymousId is required" in errors[3]["message"]
    assert errors[4]["messageId"] == "m5" and "properties.price must be a number, got 'cheap'" in errors[4]["message"]
    assert errors[5]["messageId"] is None and "must be a JSON object, got str" in errors[5]["message"]
    assert stream_ids(store) == []  # none accepted, not even m1 and m3


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"{not json", 400, "the body is not JSON"),
        (b'{"batch": {"type": "track"}}', 400, "batch must be a list of messages, got dict"),
        (b'{"batch": []}', 400, "batch is empty"),
        (b'{"events": []}', 400, 'the body must be a batch {"batch"'),
    ],
)
def test_a_body_that_is_not_a_batch_is_refused_by_name(api, body, status, detail):
    r = api.post("/v1/events", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    assert r.json()["detail"].startswith(detail)


def test_more_than_500_events_or_500_kb_is_too_large(api, store):
    r = post(api, [msg(i) for i in range(501)])
    assert r.status_code == 413 and "at most 500 messages, got 501" in r.json()["detail"]
    big = [msg(1, "Product Viewed", product_id="p1", note="x" * (MAX_BODY_BYTES + 10))]
    r = post(api, big)
    assert r.status_code == 413 and "at most 512,000 bytes" in r.json()["detail"]
    assert stream_ids(store) == []


def test_a_resent_batch_is_counted_as_duplicates_and_not_appended_twice(api, store):
    first = post(api, [msg(1), msg(2)])
    again = post(api, [msg(1), msg(2), msg(3)])
    assert first.json() == {"accepted": 2, "duplicates": 0, "suppressed": 0}
    assert again.json() == {"accepted": 1, "duplicates": 2, "suppressed": 0}
    # the same messageId twice in one batch is appended once too
    assert post(api, [msg(4), msg(4)]).json() == {"accepted": 1, "duplicates": 1, "suppressed": 0}
    assert stream_ids(store) == ["m1", "m2", "m3", "m4"]


def test_an_event_without_consent_for_the_category_is_not_tracked(api, store):
    r = post(
        api, [msg(1, consent={"analytics": False, "advertising": True}), msg(2, consent={"analytics": True}), msg(3)]
    )
    assert r.json() == {"accepted": 2, "duplicates": 0, "suppressed": 1}
    assert stream_ids(store) == ["m2", "m3"]


def test_a_consent_revoke_suppresses_later_events_deletes_state_and_a_grant_lifts_it(api, store):
    post(api, [msg(1), msg(2, "Product Added", product_id="p1")])
    store.state.record_many(on_stream(store))  # what the state worker does
    assert store.state.get("a:cookie-1").cart == {"p1": 1}
    r = post(api, [msg(3), msg(4, CONSENT_EVENT, consent={"analytics": False}), msg(5), msg(6, anon="cookie-2")])
    # m3 before the revoke is tracked, the revoke itself is appended (the worker deletes state at
    # it), m5 after it is not; another visitor is untouched
    assert r.json() == {"accepted": 3, "duplicates": 0, "suppressed": 1}
    assert stream_ids(store)[-3:] == ["m3", "m4", "m6"]
    assert store.state.get("a:cookie-1") is None and store.state.idle_carts(T0.timestamp() + 10**6) == []
    # a later batch of that visitor: suppressed, also when it comes with the customer's id joined
    assert post(api, [msg(7), msg(8, user="c-1")]).json() == {"accepted": 0, "duplicates": 0, "suppressed": 2}
    # the revoke is stored hashed, never as the id
    members = store.client.smembers("tessera:consent:revoked")
    assert members == {identifier_hash(SALT, "cookie-1").encode()}
    # the grant lifts it
    r = post(api, [msg(9, CONSENT_EVENT, consent={"analytics": True}), msg(10)])
    assert r.json() == {"accepted": 2, "duplicates": 0, "suppressed": 0}
    assert store.client.scard("tessera:consent:revoked") == 0


def test_a_resent_old_revoke_does_not_undo_a_later_grant(api, store):
    revoke = msg(1, CONSENT_EVENT, consent={"analytics": False})
    post(api, [revoke])
    post(api, [msg(2, CONSENT_EVENT, consent={"analytics": True})])
    assert post(api, [revoke, msg(3)]).json() == {"accepted": 1, "duplicates": 1, "suppressed": 0}
    assert store.client.scard("tessera:consent:revoked") == 0


def test_a_revoke_of_the_customer_covers_the_cookie_an_identify_joined_to_them(api, store):
    post(api, [msg(1, kind="identify", user="c-1", anon="cookie-1")])
    store.state.record_many(on_stream(store))
    post(api, [msg(2, CONSENT_EVENT, user="c-1", anon="cookie-9", consent={"analytics": False})])
    # cookie-1 alone names no revoked id, but it was joined to c-1
    assert post(api, [msg(3, anon="cookie-1")]).json()["suppressed"] == 1


def test_an_erased_person_is_suppressed_by_any_of_their_ids(api, store):
    store.suppression.suppress_hashes([identifier_hash(SALT, "c-erased"), identifier_hash(SALT, "cookie-x")])
    r = post(api, [msg(1, user="c-erased", anon="cookie-new"), msg(2, anon="cookie-x"), msg(3, anon="cookie-ok")])
    assert r.json() == {"accepted": 1, "duplicates": 0, "suppressed": 2}
    assert stream_ids(store) == ["m3"]


def test_the_collector_answers_503_when_redis_is_unreachable(redis_client):
    store = connect(settings_for(f"redis://127.0.0.1:{free_port()}/0"), SALT, connect_timeout=0.5)
    app = FastAPI()
    add_collector_routes(app, store)
    r = TestClient(app).post("/v1/events", json={"batch": [msg(1)]})
    assert r.status_code == 503
    assert "the event stream (Redis at 127.0.0.1:" in r.json()["detail"]
    assert "nothing was accepted" in r.json()["detail"] and r.headers["retry-after"] == "1"
    # invalid events are still told apart from an outage: validation needs no Redis
    r = TestClient(app).post("/v1/events", json={"batch": [{"type": "track"}]})
    assert r.status_code == 400


def test_the_serving_app_mounts_the_collector_only_when_real_time_is_configured(tmp_path, redis_server, redis_client):
    from tessera.serving import create_app
    from tests.test_serving import publish_tiny

    publish_tiny(tmp_path, "v1", "demo")
    plain = TestClient(create_app(tmp_path, reload_seconds=0, mode="demo"))
    assert plain.post("/v1/events", json=msg(1)).status_code in (404, 405)
    assert "/v1/events" not in plain.get("/openapi.json").json()["paths"]
    app = create_app(tmp_path, reload_seconds=0, mode="demo", realtime=settings_for(redis_server.url), salt=SALT)
    live = TestClient(app)
    assert live.post("/v1/events", json=msg(1)).json() == {"accepted": 1, "duplicates": 0, "suppressed": 0}
    assert app.state.realtime.stream.length() == 1
    assert live.get("/health").status_code == 200
