"""The event stream behind its interface (tessera/realtime/stream.py), on Redis Streams: groups each
see every event, a consumer's unacknowledged events are reclaimed, own pending after a restart,
idempotent appends, and trimming waits for every group."""

from __future__ import annotations

import pytest

from tessera.realtime.stream import RedisEventStream, _entries


def ev(n: int) -> dict:
    return {"message_id": f"m{n}", "type": "track"}


@pytest.fixture
def stream(redis_client):
    return RedisEventStream(redis_client, key="t:events")


def ids(entries) -> list[str]:
    return [e.event["message_id"] for e in entries]


def test_every_group_reads_every_event_once_in_order_and_pending_counts_until_acked(stream):
    stream.ensure_group("state")
    stream.ensure_group("triggers")
    stream.ensure_group("state")  # again: no error
    appended = stream.append([ev(1), ev(2), ev(3)])
    assert len(appended) == 3 and appended == sorted(appended, key=lambda i: tuple(map(int, i.split("-"))))
    a = stream.read("state", "a", count=2, block_ms=0)
    b = stream.read("state", "b", count=10, block_ms=0)
    assert ids(a) == ["m1", "m2"] and ids(b) == ["m3"]  # within a group, each to one consumer
    assert ids(stream.read("triggers", "t", count=10, block_ms=0)) == ["m1", "m2", "m3"]
    assert stream.pending("state") == 3
    assert stream.ack("state", [e.id for e in a]) == 2
    assert stream.ack("state", [e.id for e in a]) == 0  # acknowledging twice counts once
    assert stream.pending("state") == 1 and stream.length() == 3
    assert sorted(stream.groups()) == ["state", "triggers"]


def test_read_with_no_wait_returns_at_once_when_nothing_is_new(stream):
    # regression: XREADGROUP BLOCK 0 waits forever; block_ms=0 must mean "do not wait"
    stream.ensure_group("state")
    assert stream.read("state", "a", count=10, block_ms=0) == []


def test_a_dead_consumers_events_are_reclaimed_and_a_restarted_one_finds_its_own(stream):
    stream.ensure_group("state")
    stream.append([ev(1), ev(2)])
    held = stream.read("state", "dead", count=10, block_ms=0)
    assert ids(held) == ["m1", "m2"]
    # the same name after a restart reads what it held (XREADGROUP 0)
    assert ids(stream.read_own_pending("state", "dead", count=10)) == ["m1", "m2"]
    assert stream.read_own_pending("state", "other", count=10) == []
    # another consumer takes them over once idle long enough (0 ms here)
    assert stream.reclaim("state", "other", min_idle_ms=10_000, count=10) == []
    taken = stream.reclaim("state", "other", min_idle_ms=0, count=10)
    assert ids(taken) == ["m1", "m2"]
    assert stream.read_own_pending("state", "dead", count=10) == []
    assert stream.ack("state", [e.id for e in taken]) == 2 and stream.pending("state") == 0


def test_an_entry_deleted_while_pending_is_acknowledged_not_returned(stream, redis_client):
    stream.ensure_group("state")
    first, _ = stream.append([ev(1), ev(2)])
    stream.read("state", "a", count=10, block_ms=0)
    redis_client.xdel("t:events", first)  # what an erasure does to a person's events
    assert ids(stream.read_own_pending("state", "a", count=1)) == ["m2"]
    assert stream.pending("state") == 1


def test_append_unique_appends_each_message_id_once(stream):
    assert stream.append_unique([ev(1), ev(2), ev(1)], ["k1", "k2", "k1"], ttl_seconds=60) == [True, True, False]
    assert stream.append_unique([ev(2), ev(3)], ["k2", "k3"], ttl_seconds=60) == [False, True]
    assert stream.length() == 3
    assert 0 < stream.client.ttl("k1") <= 60
    with pytest.raises(ValueError, match="one key per event, got 1 keys for 2 events"):
        stream.append_unique([ev(4), ev(5)], ["k4"], ttl_seconds=60)


def test_trimming_drops_only_what_every_group_acknowledged(stream):
    assert stream.trim_acknowledged(["state"]) == 0  # no stream yet
    stream.ensure_group("state")
    stream.append([ev(i) for i in range(1, 6)])
    # a group that does not exist yet needs everything
    assert stream.trim_acknowledged(["state", "triggers"]) == 0
    stream.ensure_group("triggers")
    state = stream.read("state", "a", count=5, block_ms=0)
    stream.ack("state", [e.id for e in state[:3]])  # m1..m3 acknowledged, m4 m5 pending
    triggers = stream.read("triggers", "t", count=2, block_ms=0)  # m3..m5 never delivered
    stream.ack("triggers", [e.id for e in triggers])
    assert stream.trim_acknowledged(["state", "triggers"]) == 2  # m1 m2
    assert ids(_left(stream)) == ["m3", "m4", "m5"]
    stream.ack("state", [e.id for e in state[3:]])
    assert stream.trim_acknowledged(["state"]) == 3  # only state waited for: the rest goes
    assert stream.length() == 0


def _left(stream):
    return _entries(stream.client.xrange(stream.key))
