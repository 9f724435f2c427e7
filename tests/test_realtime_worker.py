"""The state worker (tessera/realtime/worker.py): stream → session state and landing files.

Landing rows as the contract's `events` source, acknowledgement only after the file is in place,
exactly one row per event_id through kills at every step, consent and erasure, trimming, and the
real landing loader reading the files without rejecting a line."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import duckdb
import orjson
import pytest
import redis

from tessera.landing.contract import SOURCES_BY_NAME
from tessera.landing.loader import load_source
from tessera.realtime import landing_files
from tessera.realtime.events import normalise
from tessera.realtime.privacy import CONSENT_EVENT, identifier_hash
from tessera.realtime.store import connect
from tessera.realtime.worker import StateWorker
from tessera.settings import RealtimeSettings

SALT = "test-salt-0123456789"
T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
EVENTS = SOURCES_BY_NAME["events"]


def event(n: int, name: str | None = "Product Viewed", *, anon="cookie-1", user=None, kind="track", seconds=None, **p):
    if kind == "track" and name == "Product Viewed":
        p.setdefault("product_id", f"p{n}")
    message = {
        "type": kind,
        "messageId": f"m{n}",
        "timestamp": (T0 + timedelta(seconds=n if seconds is None else seconds)).isoformat(),
        "properties": p,
        "context": {"device": {"type": "mobile"}, "campaign": {"source": "newsletter"}},
    }
    if anon:
        message["anonymousId"] = anon
    if user:
        message["userId"] = user
    if kind == "track":
        message["event"] = name
    consent = p.pop("consent", None)
    if consent is not None:
        message["context"]["consent"] = {"categoryPreferences": consent}
    return normalise(message, received_at=T0 + timedelta(hours=1))


@pytest.fixture
def store(redis_server, redis_client):
    return connect(RealtimeSettings(redis_url=redis_server.url), SALT, socket_timeout=None)


def worker(store, landing, consumer="w1", **kw) -> StateWorker:
    kw.setdefault("flush_max_events", 1000)
    kw.setdefault("flush_max_seconds", 3600)
    return StateWorker(store.stream, store.state, store.suppression, landing, consumer=consumer, **kw)


def landed(landing) -> list[dict]:
    """Every row of every landing file of `events/`, in file order."""
    return [
        orjson.loads(line)
        for path in sorted((landing / "events").glob("*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]


def drain(w: StateWorker) -> None:
    while w.poll(block_ms=0):
        pass
    w.flush()


def test_landing_files_hold_the_contracts_columns_and_one_row_per_event_or_product(store, tmp_path):
    store.stream.append(
        [
            event(1, kind="page", name=None),
            event(2, product_id="p1"),
            event(3, kind="identify", name=None, user="c-1"),  # no landing row
            event(4, "Product Added", product_id="p1", quantity=2, user="c-1"),
            event(5, "Order Completed", order_id="o1", products=[{"product_id": "p1"}, {"sku": "p2"}], user="c-1"),
            event(6, "Product Dwell", product_id="p1", dwell_seconds=40),  # real-time only: no row
            event(7, "Product Viewed", anon=None, user="c-2", product_id="p3"),  # no cookie: no row
        ]
    )
    w = worker(store, tmp_path)
    drain(w)
    files = sorted((tmp_path / "events").iterdir())
    assert len(files) == 1 and files[0].name.startswith("stream-") and files[0].name.endswith("-w1.jsonl")
    rows = landed(tmp_path)
    assert all(list(r) == EVENTS.column_names for r in rows)
    assert [(r["event_id"], r["event_type"], r["product_id"], r["customer_id"]) for r in rows] == [
        ("m1", "page_view", None, None),
        ("m2", "product_view", "p1", None),
        ("m4", "add_to_cart", "p1", "c-1"),
        ("m5:1", "purchase", "p1", "c-1"),
        ("m5:2", "purchase", "p2", "c-1"),
    ]
    first = rows[0]
    assert first["event_ts"] == "2026-12-07T10:00:01Z" and first["anonymous_id"] == "cookie-1"
    assert (first["device"], first["referrer"], first["country"]) == ("mobile", "newsletter", None)
    assert {r["session_id"] for r in rows} == {"s-m1"}  # one visit, the state's session id
    assert w.stats.not_landed_without_anonymous_id == 1
    # the state saw all seven; the stream is acknowledged and trimmed
    assert store.state.get("u:c-1").cart == {} and store.state.get("u:c-2").views == ["p3"]
    assert store.stream.pending("state") == 0 and store.stream.length() == 0
    assert not list((tmp_path / landing_files.STAGING_DIR).iterdir())  # no temp file left


def test_an_event_is_acknowledged_only_after_its_file_is_in_place(store, tmp_path, monkeypatch):
    store.stream.append([event(1), event(2)])
    w = worker(store, tmp_path)
    w.poll(block_ms=0)
    assert store.stream.pending("state") == 2 and not (tmp_path / "events").exists()
    seen_at_ack = []
    real_ack = store.stream.ack

    def ack(group, ids):
        seen_at_ack.append(len(landed(tmp_path)))
        return real_ack(group, ids)

    monkeypatch.setattr(store.stream, "ack", ack)

    def broken_rename(landing_dir, part):
        raise OSError("disk full")

    monkeypatch.setattr(landing_files, "publish", broken_rename)
    with pytest.raises(OSError, match="disk full"):
        w.flush()
    assert seen_at_ack == [] and store.stream.pending("state") == 2  # nothing acknowledged
    assert not list((tmp_path / landing_files.STAGING_DIR).iterdir())  # the staged file removed
    monkeypatch.undo()
    monkeypatch.setattr(store.stream, "ack", ack)
    w.flush()
    assert seen_at_ack == [2] and store.stream.pending("state") == 0


@pytest.mark.parametrize("dies", ["before_its_file", "after_rename_before_ack"])
def test_a_killed_workers_events_land_exactly_once_through_another_worker(store, tmp_path, monkeypatch, dies):
    batch = [event(n, product_id=f"p{n}") for n in range(1, 6)]
    store.stream.append(batch[:3])
    dead = worker(store, tmp_path, consumer="dead")
    dead.poll(block_ms=0)  # read and applied to the state, not acknowledged
    if dies == "after_rename_before_ack":
        monkeypatch.setattr(store.stream, "ack", lambda group, ids: (_ for _ in ()).throw(SystemExit("killed")))
        with pytest.raises(SystemExit):
            dead.flush()
        monkeypatch.undo()
        assert len(landed(tmp_path)) == 3
    assert store.stream.pending("state") == 3
    store.stream.append(batch[3:])
    heir = worker(store, tmp_path, consumer="heir", reclaim_idle_ms=0)
    drain(heir)
    rows = landed(tmp_path)
    assert sorted(r["event_id"] for r in rows) == ["m1", "m2", "m3", "m4", "m5"]  # each exactly once
    assert heir.stats.reclaimed == 3 and heir.stats.redelivered == 3 and heir.stats.applied == 2
    assert heir.stats.rows_already_landed == (3 if dies == "after_rename_before_ack" else 0)
    assert store.stream.pending("state") == 0
    assert store.state.get("a:cookie-1").views == ["p5", "p4", "p3", "p2", "p1"]  # applied once each


def test_a_restarted_worker_of_the_same_name_finishes_what_it_held(store, tmp_path):
    store.stream.append([event(1), event(2)])
    worker(store, tmp_path, consumer="w1").poll(block_ms=0)  # dies holding both
    # its half-written file, as a kill during stage() leaves it
    (tmp_path / landing_files.STAGING_DIR).mkdir(exist_ok=True)
    leftover = tmp_path / landing_files.STAGING_DIR / "stream-x-1-0-w1.jsonl.part"
    leftover.write_text('{"event_id": "m1"')
    restarted = worker(store, tmp_path, consumer="w1", reclaim_idle_ms=3_600_000)
    restarted.start()
    assert not leftover.exists()
    assert sorted(r["event_id"] for r in landed(tmp_path)) == ["m1", "m2"]
    assert store.stream.pending("state") == 0


def test_a_redelivered_event_lands_with_the_session_of_its_first_delivery(store, tmp_path):
    store.stream.append([event(1, seconds=0)])
    worker(store, tmp_path, consumer="dead").poll(block_ms=0)
    store.stream.append([event(2, seconds=3600)])  # an hour later: a new visit
    drain(worker(store, tmp_path, consumer="heir", reclaim_idle_ms=0))
    assert {r["event_id"]: r["session_id"] for r in landed(tmp_path)} == {"m1": "s-m1", "m2": "s-m2"}


def test_a_consent_revoke_on_the_stream_drops_the_visitors_events_and_deletes_their_state(store, tmp_path):
    w = worker(store, tmp_path)
    store.stream.append([event(1, "Product Added", product_id="p1")])
    w.poll(block_ms=0)
    assert store.state.get("a:cookie-1").cart == {"p1": 1}
    # the collector recorded the revoke, then appended the revoke event behind an earlier event
    store.suppression.revoke(["cookie-1"])
    store.stream.append(
        [event(2, product_id="p2"), event(3, CONSENT_EVENT, consent={"analytics": False}), event(4, anon="cookie-2")]
    )
    drain(w)
    assert store.state.get("a:cookie-1") is None
    assert store.state.idle_carts(T0.timestamp() + 10**6) == []
    assert [r["event_id"] for r in landed(tmp_path)] == ["m1", "m4"]  # m1 landed before the revoke
    assert w.stats.suppressed == 2 and store.stream.pending("state") == 0


def test_an_erased_persons_events_are_dropped_by_the_worker(store, tmp_path):
    store.stream.append([event(1, user="c-9", anon="k9"), event(2, anon="k9"), event(3, anon="k1")])
    store.suppression.suppress_hashes([identifier_hash(SALT, "c-9")])
    store.state.identify("k9", "c-9")  # k9 was joined to c-9 earlier
    w = worker(store, tmp_path)
    drain(w)
    assert [r["event_id"] for r in landed(tmp_path)] == ["m3"]
    assert store.state.get("u:c-9") is None and store.state.get("a:k9") is None
    assert w.stats.suppressed == 2


def test_the_stream_waits_for_every_group_before_dropping_events(store, tmp_path):
    store.stream.ensure_group("triggers")
    store.stream.append([event(1), event(2)])
    drain(worker(store, tmp_path, trim_groups=("state",)))
    # "triggers" exists and has read nothing: nothing dropped though only "state" was configured
    assert store.stream.length() == 2
    got = store.stream.read("triggers", "t", 10, 0)
    store.stream.ack("triggers", [e.id for e in got])
    store.stream.append([event(3)])
    drain(worker(store, tmp_path, trim_groups=("state",)))
    assert store.stream.length() == 1  # m3: the trigger group has not read it yet


def test_a_flush_is_due_by_count_or_by_age(store, tmp_path):
    now = [0.0]
    w = worker(store, tmp_path, flush_max_events=3, flush_max_seconds=2, clock=lambda: now[0])
    store.stream.append([event(1), event(2)])
    w.poll(block_ms=0)
    assert not w.due() and not (tmp_path / "events").exists()
    now[0] = 2.5
    assert w.due()
    w.poll(block_ms=0)
    assert len(landed(tmp_path)) == 2
    store.stream.append([event(3), event(4), event(5)])
    w.poll(block_ms=0)  # three events: due at once
    assert len(landed(tmp_path)) == 5


def test_the_landing_loader_reads_the_worker_files_without_rejecting_a_line(store, tmp_path):
    store.stream.append(
        [
            event(1, kind="page", name=None),
            event(2, product_id="p1"),
            event(3, "Product Added", product_id="p1", user="c-1"),
            event(4, "Order Completed", order_id="o1", products=[{"product_id": "p1"}, {"product_id": "p2"}]),
        ]
    )
    drain(worker(store, tmp_path))
    store.stream.append([event(5, "Checkout Started")])
    drain(worker(store, tmp_path))
    (tmp_path / landing_files.STAGING_DIR / "stream-a-1-0-w9.jsonl.part").write_text("{")  # a temp file
    con = duckdb.connect()
    report = load_source(con, EVENTS, tmp_path, unloaded_files="block")
    assert report.rows == 6 and report.rejected == 0 and len(report.files) == 2
    assert report.files_not_loaded == {} and report.missing_columns == {} and report.extra_columns == {}
    # what stg_events would flag (dbt_project/models/staging/stg_events.sql): nothing
    flagged = con.execute(
        """
        select count(*) from raw.events
        where event_id is null or anonymous_id is null or session_id is null
           or event_type not in ('page_view', 'product_view', 'search', 'add_to_cart', 'remove_from_cart',
                                 'checkout', 'purchase')
           or try_cast(event_ts as timestamptz) is null
        """
    ).fetchone()[0]
    assert flagged == 0
    assert con.execute("select count(distinct event_id) from raw.events").fetchone()[0] == 6


def test_a_batch_cut_by_redis_going_away_is_finished_without_waiting_for_a_reclaim(store, tmp_path, monkeypatch):
    store.stream.append([event(1), event(2)])
    w = worker(store, tmp_path, reclaim_idle_ms=3_600_000)
    stop = threading.Event()
    real = store.state.record_many
    calls = []

    def flaky(events, group="state"):
        calls.append(len(events))
        if len(calls) == 1:
            real(events[:1], group)  # one update went through, then the connection broke
            raise redis.ConnectionError("Connection reset by peer")
        stop.set()
        return real(events, group)

    monkeypatch.setattr(store.state, "record_many", flaky)
    stats = w.run(stop, block_ms=0, retry_seconds=0)
    assert calls == [2, 2] and stats.reclaimed == 2 and (stats.applied, stats.redelivered) == (1, 1)
    assert sorted(r["event_id"] for r in landed(tmp_path)) == ["m1", "m2"]
    assert store.stream.pending("state") == 0


def test_tessera_realtime_redis_finds_a_running_server(redis_server, monkeypatch, capsys):
    from tessera.cli import main

    monkeypatch.setenv("TESSERA_REDIS_URL", redis_server.url)
    assert main(["realtime", "redis"]) == 0
    assert f"Redis at 127.0.0.1:{redis_server.port}/0: running" in capsys.readouterr().out
