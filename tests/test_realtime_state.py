"""Session state in Redis: visits, recent views, cart, idle carts, identify, idempotency, forget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tessera.realtime.events import normalise
from tessera.realtime.state import SessionState

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


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


@pytest.fixture
def state(redis_client):
    return SessionState(redis_client, gap_seconds=1800)


def test_views_cart_and_visits_follow_the_events(state):
    state.record(event(1, 0, kind="page"))
    state.record(event(2, 1, name="Product Viewed", product_id="p1", category="mugs"))
    state.record(event(3, 2, name="Product Viewed", product_id="p2", category="lamps"))
    state.record(event(4, 3, name="Product Viewed", product_id="p1", category="mugs"))
    state.record(event(5, 4, name="Product Added", product_id="p1", quantity=2))
    # 45 minutes later: a second visit
    second = state.record(event(6, 49, name="Product Added", product_id="p3"))
    s = state.get("a:cookie-1")
    assert s.views == ["p1", "p2"]  # newest first, no repeats
    assert s.categories == ["mugs", "lamps"]
    assert s.cart == {"p1": 2, "p3": 1}
    assert (s.visits, s.visits_since_purchase) == (2, 2)
    assert second["visits"] == 2 and second["session_id"] == "s-m6"
    assert s.last_cart_ts == (T0 + timedelta(minutes=49)).timestamp()
    assert state.idle_carts((T0 + timedelta(minutes=60)).timestamp()) == [("a:cookie-1", s.last_cart_ts)]
    assert state.idle_carts((T0 + timedelta(minutes=49)).timestamp()) == []


def test_a_redelivered_event_is_applied_once(state):
    first = state.record(event(1, 0, name="Product Added", product_id="p1"))
    again = state.record(event(1, 0, name="Product Added", product_id="p1"))
    assert first["applied"] and not again["applied"]
    assert state.get("a:cookie-1").cart == {"p1": 1}


def test_removing_the_last_item_or_buying_leaves_no_idle_cart(state):
    state.record(event(1, 0, name="Product Added", product_id="p1"))
    state.record(event(2, 1, name="Product Removed", product_id="p1"))
    assert state.get("a:cookie-1").cart == {}
    assert state.idle_carts(T0.timestamp() + 10_000) == []
    state.record(event(3, 2, name="Product Added", product_id="p2"))
    state.record(event(4, 3, name="Order Completed", order_id="o1", products=[{"product_id": "p2", "quantity": 1}]))
    s = state.get("a:cookie-1")
    assert s.cart == {} and s.visits_since_purchase == 0 and s.last_purchase_ts is not None
    assert state.idle_carts(T0.timestamp() + 10_000) == []


def test_identify_joins_the_anonymous_visitor_to_the_customer(state):
    state.record(event(1, 0, name="Product Viewed", product_id="p1", user="c-9", anon="old-cookie"))
    state.record(event(2, 100, name="Product Viewed", product_id="p2", anon="cookie-1"))
    state.record(event(3, 101, name="Product Added", product_id="p2", anon="cookie-1"))
    joined = state.record(event(4, 102, kind="identify", anon="cookie-1", user="c-9"))
    assert joined["visitor"] == "u:c-9"
    assert state.get("a:cookie-1") is None
    s = state.get("u:c-9")
    assert s.views == ["p2", "p1"] and s.cart == {"p2": 1} and s.user_id == "c-9"
    assert s.visits == 2  # the customer's earlier visit and the cookie's
    # later anonymous events of that cookie are the customer's
    assert state.record(event(5, 103, name="Product Viewed", product_id="p3", anon="cookie-1"))["visitor"] == "u:c-9"
    assert [v for v, _ in state.idle_carts(T0.timestamp() + 100_000)] == ["u:c-9"]


def test_forget_removes_every_key_of_the_visitor(state, redis_client):
    state.record(event(1, 0, name="Product Added", product_id="p1", user="c-1", anon="k1"))
    state.record(event(2, 1, kind="identify", user="c-1", anon="k2"))
    assert state.forget("u:c-1", anonymous_ids=["k1", "k2"]) >= 2
    assert state.get("u:c-1") is None
    leftover = [k.decode() for k in redis_client.keys("tessera:*") if b":done:" not in k]
    assert leftover == []


def test_a_redelivered_event_gets_the_session_it_was_first_applied_to(state):
    # a worker killed between the state update and its landing file: the event comes back after
    # the visitor started a new visit, and must land with its first session id, not the new one
    first = state.record(event(1, 0, name="Product Viewed", product_id="p1"))
    later = state.record(event(2, 45, name="Product Viewed", product_id="p2"))
    again = state.record(event(1, 0, name="Product Viewed", product_id="p1"))
    assert first["session_id"] == "s-m1" and later["session_id"] == "s-m2"
    assert not again["applied"] and again["session_id"] == "s-m1"


def test_record_many_gives_what_recording_one_by_one_gives(redis_client):
    events = [
        event(1, 0, kind="page", anon="k1"),
        event(2, 1, name="Product Added", product_id="p1", anon="k1"),
        event(3, 2, name="Product Viewed", product_id="p2", category="mugs", anon="k2"),
        event(4, 3, kind="identify", anon="k1", user="c-1"),
        event(5, 4, name="Product Added", product_id="p3", anon="k1"),  # k1 is c-1 from here
        event(6, 50, name="Product Viewed", product_id="p4", anon="k2"),  # k2's second visit
        event(2, 1, name="Product Added", product_id="p1", anon="k1"),  # a redelivery
    ]
    one = SessionState(redis_client, prefix="one:")
    many = SessionState(redis_client, prefix="many:")
    singly = [one.record(e) for e in events]
    batched = many.record_many(events)
    assert batched == singly
    # the redelivered cart add resolves to the customer now, and is not applied again
    assert [r["visitor"] for r in batched] == ["a:k1", "a:k1", "a:k2", "u:c-1", "u:c-1", "a:k2", "u:c-1"]
    assert [r["applied"] for r in batched] == [True] * 6 + [False]
    for visitor in ("u:c-1", "a:k2"):
        assert many.get(visitor) == one.get(visitor)
    assert many.get("u:c-1").cart == {"p1": 1, "p3": 1}
