"""Realtime triggers benchmark: idle threshold to trigger decision (issue 38's target: p95 <= 5 s).

    .venv/bin/python bench/realtime_triggers.py [--carts 300] [--spread 20] [--idle-seconds 6]
                                                [--background 200,1000] [--customers 2000]

Set-up: a Redis of its own (tessera.realtime.redis_server.RedisProcess on a free port, the
append-only file with appendfsync always, as deployed), a synthetic trigger audience of
--customers customers (reachable, every consent granted; the holdout share applies), and the
shipped catalogue (config/actions.yml). The trigger worker runs as its own process, started as a
deployment starts it: `tessera realtime triggers --idle-minutes <idle-seconds / 60>`.

This process plays the collector and the state worker: it appends each event to the stream and
applies it to the session state (SessionState.record). --carts customers each add a product to
the cart, spread evenly over --spread seconds, while --background product views a second from
visitors the audience does not know keep the stream busy (the worker evaluates each for dwell and
visits). A cart becomes due --idle-seconds after its add_to_cart. A watcher reads the outbox files
every 20 ms and notes when each decision line appears.

Measured per cart:
- due to outbox row: when its decision line appeared in next_best_actions/realtime/<day>.jsonl
  minus when it became due (the cart's timestamp + the idle time); for sends, the message line in
  campaign_outbox/realtime appears in the same append, before it;
- due to decision: the worker's own stamps, decided_at - due_at (no file polling in it).

--background takes a comma-separated list: one run per rate, each with a fresh Redis and worker.
--drain N adds the worker's event throughput: N events queued (and applied to the session state)
before it starts, timed until the group has none left.

Results: bench/results/realtime_triggers.json ({"runs": [...]}) and .md, and Markdown on stdout.
Keep runs short on a shared machine (a run takes --spread + --idle-seconds + about 10 s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import polars as pl  # noqa: E402
import redis  # noqa: E402

from tessera.markdown import table  # noqa: E402
from tessera.privacy import pseudonym  # noqa: E402
from tessera.realtime import audience as trigger_audience  # noqa: E402
from tessera.realtime import outbox  # noqa: E402
from tessera.realtime.events import normalise  # noqa: E402
from tessera.realtime.redis_server import RedisProcess  # noqa: E402
from tessera.realtime.state import SessionState  # noqa: E402
from tessera.realtime.stream import RedisEventStream  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PRODUCT = pl.Struct({"product_id": pl.String, "product_name": pl.String, "category": pl.String, "rank": pl.Int64})
PRODUCTS = 50


def synthetic_audience(directory: Path, customers: int) -> None:
    """Every customer reachable on every channel with every consent: each due cart is decided."""
    products = [
        {"product_id": f"P{i:03d}", "product_name": f"Product {i}", "category": f"cat{i % 5}", "is_active": True,
         "related": [{"product_id": f"P{(i + 1) % PRODUCTS:03d}", "product_name": f"Product {(i + 1) % PRODUCTS}",
                      "category": f"cat{(i + 1) % 5}", "rank": 1}]}
        for i in range(PRODUCTS)
    ]  # fmt: skip
    recs = [{"product_id": p["product_id"], "product_name": p["product_name"], "category": p["category"],
             "rank": r + 1} for r, p in enumerate(products[:3])]  # fmt: skip
    rows = []
    for i in range(customers):
        key = f"bench_{i:07d}"
        rows.append({
            "customer_key": key, "customer_pkey": pseudonym.pseudonym(pseudonym.DEMO_SALT, key),
            "user_ids": [f"user{i}"], "reach_email": True, "reach_push": True, "reach_web_banner": True,
            "granted": ["email/marketing", "email/personalization", "push/marketing", "web/personalization"],
            "first_name": f"Name{i}", "rfm_segment": "Loyal", "rule_segment": None, "cluster_description": None,
            "top_category": "cat0", "last_device": "mobile", "recommendations": recs,
        })  # fmt: skip
    frames = {
        "customers": pl.DataFrame(
            rows,
            schema_overrides={
                "user_ids": pl.List(pl.String),
                "granted": pl.List(pl.String),
                "rule_segment": pl.String,
                "cluster_description": pl.String,
                "recommendations": pl.List(PRODUCT),
            },
        ),
        "visitors": pl.DataFrame(
            [{"visitor": f"u:user{i}", "customer_key": f"bench_{i:07d}"} for i in range(customers)]
        ),
        "products": pl.DataFrame(products, schema_overrides={"related": pl.List(PRODUCT)}),
        "popular": pl.DataFrame(
            [
                {k: p[k] for k in ("product_id", "product_name", "category")} | {"rank": r + 1}
                for r, p in enumerate(products[:3])
            ]
        ),
    }
    trigger_audience.save(frames, directory, {"format": 1, "as_of_date": None, "synthetic": True})


class Watcher(threading.Thread):
    """Notes the wall time each decision line first appears in the realtime outbox files."""

    def __init__(self, publish_dir: Path):
        super().__init__(daemon=True)
        self.directory = outbox.folder(publish_dir, outbox.DECISIONS)
        self.seen: dict[str, tuple[float, dict]] = {}
        self.offsets: dict[Path, int] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.scan()
            time.sleep(0.02)
        self.scan()

    def scan(self) -> None:
        now = time.time()
        for path in sorted(self.directory.glob("*.jsonl")) if self.directory.is_dir() else []:
            with open(path, "rb") as f:
                f.seek(self.offsets.get(path, 0))
                data = f.read()
            end = data.rfind(b"\n") + 1
            self.offsets[path] = self.offsets.get(path, 0) + end
            for line in data[:end].splitlines():
                row = orjson.loads(line)
                self.seen.setdefault(row["customer_pkey"], (now, row))


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": round(statistics.median(ordered), 3), "p95": round(pick(0.95), 3), "p99": round(pick(0.99), 3),
            "max": round(ordered[-1], 3), "mean": round(statistics.fmean(ordered), 3)}  # fmt: skip


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def run(args, background: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-triggers-"))
    data_dir = work / "data"
    publish_dir = data_dir / "publish"
    synthetic_audience(trigger_audience.default_dir(data_dir), args.customers)
    with RedisProcess(work / "redis") as server:
        client = redis.Redis.from_url(server.url)
        stream, state = RedisEventStream(client), SessionState(client)
        worker, log = _start_worker(work, data_dir, server.url, args.idle_seconds)
        try:
            deadline = time.monotonic() + 60
            while not any(g["name"] == b"triggers" for g in _groups(client)):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the trigger worker did not start: see {work / 'worker.log'}")
                time.sleep(0.1)
            watcher = Watcher(publish_dir)
            watcher.start()
            due: dict[str, float] = {}
            n, started = 0, time.time()
            background_sent = 0
            cart_times = [started + args.spread * i / max(1, args.carts - 1) for i in range(args.carts)]
            next_cart = 0
            state_lag: list[float] = []
            while next_cart < args.carts:
                now = time.time()
                # the carts first, and into the session state at once: the worker cannot decide a cart
                # before the state worker has recorded it, and this process plays that worker
                carts = []
                while next_cart < args.carts and cart_times[next_cart] <= now:
                    i = next_cart
                    carts.append(_event(n, now, "Product Added", user=f"user{i}", product_id=f"P{i % PRODUCTS:03d}"))
                    due[pseudonym.pseudonym(pseudonym.DEMO_SALT, f"bench_{i:07d}")] = now + args.idle_seconds
                    n += 1
                    next_cart += 1
                if carts:
                    stream.append(carts)
                    for event in carts:
                        state.record(event)
                    state_lag += [time.time() - now] * len(carts)
                # background product views at --background a second, at most 50 ms worth at a time
                owed = min(int((now - started) * background) - background_sent, max(1, int(background * 0.05)))
                batch = []
                for _ in range(max(0, owed)):
                    v = background_sent % 500
                    batch.append(
                        _event(n, now, "Product Viewed", anon=f"visitor{v}", product_id=f"P{n % PRODUCTS:03d}")
                    )
                    n += 1
                    background_sent += 1
                if batch:
                    stream.append(batch)
                    for event in batch:
                        state.record(event)
                time.sleep(0.005)
            elapsed = time.time() - started
            end = max(due.values()) + args.margin
            while time.time() < end and len(watcher.seen) < len(due):
                time.sleep(0.05)
            time.sleep(0.2)
            watcher.stopping.set()
            watcher.join()
            pending = client.xpending(stream.key, "triggers")["pending"]
            lag = next((g.get("lag") for g in _groups(client) if g["name"] == b"triggers"), None)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
            log.close()
    seen_latency = [watcher.seen[p][0] - due[p] for p in due if p in watcher.seen]
    stamp_latency = [epoch(r["decided_at"]) - epoch(r["due_at"]) for t, r in watcher.seen.values()]
    decisions: dict[str, int] = {}
    for _, row in watcher.seen.values():
        decisions[row["decision"]] = decisions.get(row["decision"], 0) + 1
    messages = len(outbox.read(publish_dir, outbox.MESSAGES))
    _clean(work)
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "carts": args.carts,
            "spread_seconds": args.spread,
            "idle_seconds": args.idle_seconds,
            "background_events_per_second": background,
            "customers": args.customers,
            "poll_seconds": 1.0,
            "catalogue": "config/actions.yml",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "note": "the load average above says what else ran on the machine",
        },
        "carts": len(due),
        "decisions_seen": len(watcher.seen),
        "missing": len(due) - len([p for p in due if p in watcher.seen]),
        "decisions": decisions,
        "messages": messages,
        "background_events": background_sent,
        "background_events_per_second_achieved": round(background_sent / elapsed, 1),
        "cart_to_session_state_seconds": percentiles(state_lag),
        "events_appended": n,
        "stream_pending_at_end": int(pending),
        "stream_lag_at_end": lag,
        "due_to_outbox_row_seconds": percentiles(seen_latency),
        "due_to_decision_seconds": percentiles(stamp_latency),
        "worker_log": str(work / "worker.log"),
    }


def drain(args) -> dict:
    """The worker's event throughput: --drain product views (visitors the audience does not know, each
    evaluated for dwell and visits) are in the stream and the session state before the worker starts;
    timed from its start-up (the consumer group appearing) until the group's lag is 0."""
    work = Path(tempfile.mkdtemp(prefix="bench-triggers-drain-"))
    data_dir = work / "data"
    synthetic_audience(trigger_audience.default_dir(data_dir), 10)
    with RedisProcess(work / "redis") as server:
        client = redis.Redis.from_url(server.url)
        stream, state = RedisEventStream(client), SessionState(client)
        now = time.time()
        events = [
            _event(n, now + n / 1000, "Product Viewed", anon=f"visitor{n % 2000}", product_id=f"P{n % PRODUCTS:03d}")
            for n in range(args.drain)
        ]
        for i in range(0, len(events), 500):
            stream.append(events[i : i + 500])
        for event in events:
            state.record(event)
        worker, log = _start_worker(work, data_dir, server.url, args.idle_seconds)
        try:
            started = None
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                info = next((g for g in _groups(client) if g["name"] == b"triggers"), None)
                if info is not None and started is None:
                    started = time.monotonic()
                if info is not None and info.get("lag") == 0 and not info.get("pending"):
                    break
                time.sleep(0.02)
            seconds = time.monotonic() - started
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
            log.close()
    _clean(work)
    return {
        "events": args.drain,
        "seconds": round(seconds, 2),
        "events_per_second": round(args.drain / seconds, 1),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def _start_worker(work: Path, data_dir: Path, url: str, idle_seconds: float):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TESSERA_MODE": "demo",
        "TESSERA_DATA_DIR": str(data_dir),
        "TESSERA_REDIS_URL": url,
        "TESSERA_ACTIONS_FILE": str(ROOT / "config" / "actions.yml"),
    }
    for name in ("TESSERA_PUBLISH_DIR", "TESSERA_TRIGGERS_AUDIENCE_DIR", "TESSERA_TRIGGERS_IDLE_MINUTES"):
        env.pop(name, None)
    log = open(work / "worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "-m", "tessera.cli", "realtime", "triggers", "--idle-minutes", f"{idle_seconds / 60}",
         "--report-seconds", "5"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return worker, log


def _clean(work: Path) -> None:
    """Remove a run's Redis and data directories; its worker.log stays for a look afterwards."""
    for name in ("redis", "data"):
        shutil.rmtree(work / name, ignore_errors=False)


def _groups(client) -> list[dict]:
    try:
        return client.xinfo_groups("tessera:events")
    except redis.ResponseError:
        return []


def _event(n: int, at: float, name: str, *, user: str | None = None, anon: str | None = None, **props) -> dict:
    ts = datetime.fromtimestamp(at, UTC)
    message = {
        "type": "track",
        "event": name,
        "messageId": f"bench-{n}",
        "timestamp": ts.isoformat(),
        "properties": props,
    }
    if user:
        message["userId"] = user
    if anon:
        message["anonymousId"] = anon
    return normalise(message, received_at=ts)


def markdown(result: dict) -> str:
    rows = []
    for label, key in (("due to outbox row (file watcher)", "due_to_outbox_row_seconds"),
                       ("due to decision (worker stamps)", "due_to_decision_seconds")):  # fmt: skip
        p = result[key]
        rows.append((label, p.get("p50"), p.get("p95"), p.get("p99"), p.get("max")))
    c = result["config"]
    head = (
        f"Idle threshold to trigger decision, {result['measured_at']}: {result['carts']} carts over "
        f"{c['spread_seconds']} s, idle time {c['idle_seconds']} s, {c['background_events_per_second']} background "
        f"events/s, poll every {c['poll_seconds']} s. Load average {result['machine']['load_average_1_5_15']} on "
        f"{result['machine']['cpus']} CPUs ({result['machine']['note']}).\n\n"
    )
    tail = (
        f"\n\nDecisions seen {result['decisions_seen']} of {result['carts']} (missing {result['missing']}): "
        f"{result['decisions']}; messages {result['messages']}; events appended {result['events_appended']} "
        f"(background {result['background_events_per_second_achieved']} a second achieved; a cart reached the "
        f"session state {result['cart_to_session_state_seconds'].get('p95')} s after its event at p95); "
        f"stream pending at the end {result['stream_pending_at_end']}, lag {result['stream_lag_at_end']}.\n"
    )
    return (
        head + table(rows, ["seconds", "p50", "p95", "p99", "max"], ("left", "right", "right", "right", "right")) + tail
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--carts", type=int, default=300)
    parser.add_argument("--spread", type=float, default=20.0, help="seconds over which the carts are added")
    parser.add_argument("--idle-seconds", type=float, default=6.0, help="the shortened idle time")
    parser.add_argument("--background", default="200,1000", help="background events a second, one run per value")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--margin", type=float, default=10.0, help="seconds to wait past the last due cart")
    parser.add_argument("--drain", type=int, default=0, help="also time the worker through this many queued events")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the .json and .md go")
    args = parser.parse_args()
    if args.customers < args.carts:
        parser.error("--customers must be at least --carts (one cart per customer)")
    try:
        rates = [float(r) for r in args.background.split(",")]
    except ValueError:
        parser.error(f"--background must be comma-separated numbers, got {args.background!r}")
    runs = [run(args, rate) for rate in rates]
    drained = drain(args) if args.drain else None
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "realtime_triggers.json").write_text(json.dumps({"runs": runs, "drain": drained}, indent=2) + "\n")
    text = "\n\n".join(markdown(r) for r in runs)
    if drained:
        text += (
            f"\n\nEvent throughput: the worker went through {drained['events']:,} queued events in "
            f"{drained['seconds']} s, {drained['events_per_second']:,} events/s (load average "
            f"{drained['load_average_1_5_15']}).\n"
        )
    (args.results / "realtime_triggers.md").write_text(
        "# Realtime triggers: idle threshold to trigger decision\n\n" + text
    )
    print(text)
    return 0 if all(r["missing"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
