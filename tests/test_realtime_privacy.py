"""Erasure reaches the online store (tessera/realtime/privacy.py): state, aliases, idle carts, stream
events and the bytes of Redis's append-only file; the erasure's steps include it only when real
time is configured."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tessera.privacy.erasure_run import file_steps
from tessera.realtime.events import normalise
from tessera.realtime.privacy import forget_people, identifier_hash, sync_suppression
from tessera.realtime.redis_server import free_port
from tessera.realtime.store import connect
from tessera.realtime.stream import _entries as parse_entries
from tessera.realtime.triggers import decided_key, last_view_key
from tessera.settings import RealtimeSettings, load_settings, realtime_configured

SALT = "test-salt-0123456789"
T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
ERASED_USER, ERASED_COOKIE, JOINED_COOKIE, KEPT_COOKIE = "c-erased-4242", "ck-erased-77", "ck-joined-88", "ck-kept-55"


def event(n, name="Product Added", *, anon, user=None, kind="track"):
    message = {
        "type": kind,
        "messageId": f"m{n}",
        "anonymousId": anon,
        "timestamp": (T0 + timedelta(minutes=n)).isoformat(),
    }
    if kind == "track":
        message |= {"event": name, "properties": {"product_id": f"p{n}"}}
    if user:
        message["userId"] = user
    return normalise(message, received_at=T0 + timedelta(hours=1))


def files_holding(data_dir, needle: bytes) -> list[str]:
    return [p.name for p in data_dir.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_forget_people_leaves_no_trace_of_them_in_redis_or_its_files(redis_server, redis_client):
    store = connect(RealtimeSettings(redis_url=redis_server.url), SALT)
    events = [
        event(1, anon=ERASED_COOKIE, user=ERASED_USER),
        event(2, anon=JOINED_COOKIE),
        event(3, anon=JOINED_COOKIE, user=ERASED_USER, kind="identify"),  # a cookie only the site saw
        event(4, anon=KEPT_COOKIE),
    ]
    store.stream.append(events)
    store.state.record_many(events)
    assert [v for v, _ in store.state.idle_carts(T0.timestamp() + 10**6)] == [f"u:{ERASED_USER}", f"a:{KEPT_COOKIE}"]
    outcome = forget_people(redis_client, [ERASED_USER, ERASED_COOKIE, "someone@example.com"], SALT)
    assert outcome["identifiers"] == 4  # the three values and the joined cookie
    assert outcome["stream_events_deleted"] == 3 and outcome["append_only_file_rewritten"] is True
    assert store.state.get(f"u:{ERASED_USER}") is None and redis_client.get(f"tessera:alias:{JOINED_COOKIE}") is None
    assert [v for v, _ in store.state.idle_carts(T0.timestamp() + 10**6)] == [f"a:{KEPT_COOKIE}"]
    assert store.state.get(f"a:{KEPT_COOKIE}").cart == {"p4": 1}
    assert [e.event["anonymous_id"] for e in _entries(store)] == [KEPT_COOKIE]
    for value in (ERASED_USER, ERASED_COOKIE, JOINED_COOKIE):
        assert redis_client.sismember("tessera:suppressed", identifier_hash(SALT, value))
    # on disk: the rewritten append-only file holds the kept visitor and neither erased id (Redis
    # deletes the old files just after the rewrite; give it a moment)
    deadline = time.monotonic() + 10
    while files_holding(redis_server.data_dir, ERASED_USER.encode()) and time.monotonic() < deadline:
        time.sleep(0.05)
    for value in (ERASED_USER, ERASED_COOKIE, JOINED_COOKIE):
        assert files_holding(redis_server.data_dir, value.encode()) == []
    assert files_holding(redis_server.data_dir, KEPT_COOKIE.encode()) != []
    # run again (a resumed erasure): nothing more to do, no error
    assert forget_people(redis_client, [ERASED_USER], SALT, rewrite=False)["keys_deleted"] == 0


def _entries(store):
    return parse_entries(store.client.xrange(store.stream.key))


def test_the_erasure_reaches_redis_only_when_real_time_is_configured(monkeypatch, redis_server, redis_client):
    monkeypatch.delenv("TESSERA_REDIS_URL", raising=False)
    settings = load_settings()
    # the realtime outbox files and trigger audience are files: erased with or without Redis
    assert sorted(file_steps(settings, realtime_configured())) == ["mlflow", "previews", "realtime"]
    monkeypatch.setenv("TESSERA_REDIS_URL", redis_server.url)
    steps = file_steps(settings, realtime_configured())
    assert sorted(steps) == ["mlflow", "online_store", "previews", "realtime"]
    store = connect(RealtimeSettings(redis_url=redis_server.url), settings.pseudonym_salt)
    store.state.record(event(1, anon="ck-someone-1", user="c-someone-1"))
    # what the trigger worker keeps of the person: a decision mark by key, a last view by visitor
    pkey = "pk_" + "0" * 32
    redis_client.hset(decided_key(pkey), "cart_abandonment_realtime:1", "send")
    redis_client.set(last_view_key("u:c-someone-1"), "P1")
    done = steps["online_store"](["c-someone-1", pkey])
    assert done["keys_deleted"] >= 1 and store.state.get("u:c-someone-1") is None
    assert done["trigger_keys_deleted"] == 2
    assert not redis_client.exists(decided_key(pkey), last_view_key("u:c-someone-1"))


def test_an_unreachable_online_store_fails_the_erasure_step_by_name_and_is_reported_in_the_sync():
    down = RealtimeSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    step = file_steps(load_settings(), down)["online_store"]
    with pytest.raises(RuntimeError, match=r"the erasure cannot reach the online store \(Redis at 127\.0\.0\.1:"):
        step(["c-1"])
    assert sync_suppression(down, ["ab" * 32])["error"].startswith("Redis at 127.0.0.1:")


def test_the_batch_suppression_list_is_copied_into_the_online_one(redis_server, redis_client):
    hashes = [identifier_hash(SALT, v) for v in ("c-old-1", "ck-old-2")]
    settings = RealtimeSettings(redis_url=redis_server.url)
    assert sync_suppression(settings, hashes) == {"hashes": 2, "newly_suppressed": 2}
    assert sync_suppression(settings, hashes) == {"hashes": 2, "newly_suppressed": 0}
    blocked = connect(settings, SALT).suppression.blocked([["c-old-1"], ["c-new-3"]])
    assert blocked == [True, False]
