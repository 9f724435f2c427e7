"""Visitor recommendations latency: GET /v1/visitors/{id}/recommendations under a fixed request
rate, as bench/serving.py measures the customer routes (open loop, latency from each request's
due time, persistent connections; its load generator is reused).

    .venv/bin/python bench/visitor_recs.py                                   # 10,000 customers, 5,000 visitors, 500 req/s, 20 s
    .venv/bin/python bench/visitor_recs.py --customers 1000000 --visitors 100000 --seconds 30   # the target's size

What is served (written into a bench publish directory with tessera/publish/snapshots.py):
- the session index: Online Retail's invoices as sessions (real, /work/shared/data; about 20,000
  sessions over 3,900 products), the served V-SKNN fitted on it at start;
- bought-together lists computed on the same invoices (ml/product_lists.py, published parameters);
- `--customers` published customer lists of 10 products each (the popular products shuffled per
  customer, seeded): their content does not matter to the latency, their number does (memory);
- popular products.
The visitors' session state is seeded into a Redis of the bench's own (tessera.realtime.state, the
worker's own writes): `--visitors` visitors, each replaying the first 1 to 8 products of a real
invoice as views, the first 0 to 3 of them added to the cart; 20 % identified and known (they pass
a published customer_pkey). The request mix: 85 % these visitors by their anonymous id, 10 % the
identified ones by userId with their customer_pkey, 5 % unknown visitors (the popular fallback).

The server (uvicorn, one process, as `tessera serve`) runs in its own process; the load generator
shares the machine's cores with it, so the figures are an upper bound on the server's own. The
server's CPU time per request (HTTP included, from /proc) and the load average are reported too:
on a shared machine the CPU time is the steadier figure.
Results: bench/results/visitor_recs.json and .md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.serving import load, percentile, rss_mb, wait_healthy  # noqa: E402
from tessera.markdown import table  # noqa: E402

SHARED = Path("/work/shared/data")
SEED = 42
IDENTIFIED_SHARE = 0.2
MIX = {"anonymous": 0.85, "user": 0.10, "unknown": 0.05}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--visitors", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--work", type=Path, help="default: a temporary directory")
    parser.add_argument(
        "--control",
        action="store_true",
        help="request the customers' published lists (GET /v1/customers/{key}/recommendations) instead: "
        "what the same server and machine answer without the session",
    )
    parser.add_argument("--in-process", type=int, default=2000, help="requests timed without HTTP (0: none)")
    parser.add_argument("--out", type=Path, help="default bench/results/visitor_recs[_control].json")
    # internal: run the server (in the child process)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=8767)  # bench/serving.py uses 8766
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------ the published data
def publish(publish_dir: Path, data: Path, customers: int) -> tuple[list[list[str]], list[str]]:
    """Write every snapshot the route reads; returns the invoices' product lists (to seed visitors)
    and the customers' keys."""
    import duckdb
    import polars as pl

    from ml.product_lists import BOUGHT_TOGETHER, DEFAULT_PARAMS, co_occurrence
    from ml.session_data import online_retail_sessions
    from tessera.publish import snapshots
    from tessera.serving import PRODUCT_LISTS, RECOMMENDATIONS, SCORES, SEGMENTS

    frame = online_retail_sessions(data / "online_retail" / "online_retail.parquet")
    firsts = frame.unique(["session", "item"], keep="first", maintain_order=True)
    starts = firsts.group_by("session").agg(pl.col("time").min().alias("start")).sort("start", "session")
    starts = starts.with_row_index("session_number", offset=1)
    index = (
        firsts.join(starts, on="session")
        .sort("session_number", "time")
        .with_columns(position=pl.int_range(1, pl.len() + 1).over("session_number"))
        .select(
            pl.col("session_number").cast(pl.Int64),
            pl.col("item").alias("product_id"),
            pl.col("position").cast(pl.Int32),
            pl.from_epoch(pl.col("start"), time_unit="us").alias("session_start"),
        )
    )
    sessions = index.group_by("session_number", maintain_order=True).agg("product_id")["product_id"].to_list()
    products = index.group_by("product_id").len().sort("len", "product_id", descending=[True, False])
    now = datetime.now(UTC)
    rng = random.Random(SEED)
    keys = [f"pk_{rng.getrandbits(128):032x}" for _ in range(customers)]
    con = duckdb.connect()
    con.register("idx", index)
    con.register("products", products)
    con.register("pop", products.head(200).with_row_index("rank", offset=1))
    con.register("keys", pl.DataFrame({"customer_pkey": keys}))

    def write(name: str, sql: str, exports: dict[str, str] | None = None) -> None:
        con.execute(f"create or replace table t as {sql}")
        snap = snapshots.write_snapshot(
            con, publish_dir, name, "t", "bench", published_at=now, run_id="bench", checks=[]
        )
        (snap.path / "exports").mkdir(exist_ok=True)
        for file, query in (exports or {}).items():
            con.execute(f"copy ({query}) to '{snap.path / 'exports' / file}' (format json)")

    write(
        "session_index",
        "select * from idx",
        {
            "session_products.jsonl": "select product_id, product_id as product_name, 'other' as category, len as sessions from products"
        },
    )
    baskets = index.select(pl.col("session_number").alias("basket_id"), "product_id")
    con.register("baskets", baskets)
    lists = co_occurrence(
        con, "select * from baskets", "select distinct product_id from baskets", BOUGHT_TOGETHER, DEFAULT_PARAMS
    )
    con.register("lists", lists)
    write(
        PRODUCT_LISTS,
        "select product_id, list_name, rank, recommended_product_id, recommended_product_id as product_name, "
        "'other' as category, score, support from lists",
        {"product_catalogue.jsonl": "select distinct product_id, true as is_active from idx"},
    )
    # each customer: 10 of the 200 most popular products, a seeded shuffle per customer
    write(
        RECOMMENDATIONS,
        "select k.customer_pkey, r.rank, p.product_id, p.product_id as product_name, 'other' as category, "
        "1.0 / r.rank as score, 'personalised' as source, 'bench' as model_version "
        "from keys as k cross join range(1, 11) as r(rank) "
        "join pop as p on p.rank = 1 + (hash(k.customer_pkey, r.rank) % 200)",
        {"popular_products.jsonl": "select rank, product_id, product_id as product_name, 'other' as category from pop"},
    )
    write(
        SEGMENTS,
        "select customer_pkey, 'Champions' as rfm_segment, 3 as r_score, 2 as f_score, 1 as m_score, 0 as cluster_id, "
        "'c' as cluster_description, null::varchar as rule_segment, null::integer as rule_segment_priority, "
        "'treatment' as rfm_holdout_group, null::varchar as rule_holdout_group, date '2026-10-31' as as_of_date from keys",
    )
    write(
        SCORES,
        "select customer_pkey, 5 as recency_days, 2 as frequency, 20.0 as monetary, 10.0 as average_order_value, "
        "100 as tenure_days, 321 as rfm_score, 0.5 as purchase_propensity_30d, 0.5 as purchase_propensity_percentile, "
        "0.1 as churn_risk_30d, 0.2 as churn_risk_percentile, date '2026-10-31' as as_of_date from keys",
    )
    con.close()
    snapshots.release(
        publish_dir, dict.fromkeys(["session_index", PRODUCT_LISTS, RECOMMENDATIONS, SEGMENTS, SCORES], "bench")
    )
    return sessions, keys


# ---------------------------------------------------------------------------------- the visitors
def seed_visitors(
    url: str, sessions: list[list[str]], keys: list[str], visitors: int
) -> list[tuple[str, str | None, str | None]]:
    """Replay real invoices' first products as views and cart adds; returns (anonymous id, userId,
    customer_pkey) per visitor."""
    import redis

    from tessera.realtime.events import normalise
    from tessera.realtime.state import SessionState

    state = SessionState(redis.Redis.from_url(url))
    rng = random.Random(SEED + 1)
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    out = []
    for v in range(visitors):
        products = rng.choice(sessions)[: rng.randint(1, 8)]
        anon = f"bench-{v:07d}"
        user = f"shop-{v:07d}" if rng.random() < IDENTIFIED_SHARE else None
        messages = [
            {"type": "track", "event": "Product Viewed", "properties": {"product_id": p, "category": "other"}}
            for p in products
        ] + [
            {"type": "track", "event": "Product Added", "properties": {"product_id": p}}
            for p in products[: rng.randint(0, 3)]
        ]
        if user:
            messages.append({"type": "identify"})
        for i, m in enumerate(messages):
            m |= {"messageId": f"{anon}-{i}", "anonymousId": anon, "timestamp": (t0 + timedelta(seconds=i)).isoformat()}
            if user and m["type"] == "identify":
                m["userId"] = user
            state.record(normalise(m, received_at=t0 + timedelta(seconds=i)))
        out.append((anon, user, keys[v % len(keys)] if user else None))
    return out


def plan(
    visitors: list[tuple[str, str | None, str | None]], n: int, control: bool = False
) -> list[tuple[str, str, bool]]:
    rng = random.Random(SEED + 2)
    identified = [v for v in visitors if v[1]]
    requests = []
    for _ in range(n):
        if control:
            requests.append(("visitor", f"/v1/customers/{rng.choice(identified)[2]}/recommendations", True))
            continue
        kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
        if kind == "anonymous":
            anon, _, _ = rng.choice(visitors)
            path = f"/v1/visitors/{anon}/recommendations"
        elif kind == "user":
            _, user, pkey = rng.choice(identified)
            path = f"/v1/visitors/{user}/recommendations?id_type=user&customer_pkey={pkey}"
        else:
            path = f"/v1/visitors/unknown-{rng.randrange(10**9)}/recommendations"
        requests.append(("visitor", path, True))
    return requests


# ------------------------------------------------------------------------------------- the server
def serve(publish_dir: Path, redis_url: str, port: int) -> None:
    import uvicorn

    from tessera.serving import create_app
    from tessera.settings import RealtimeSettings

    app = create_app(
        publish_dir,
        reload_seconds=0,
        mode="demo",
        realtime=RealtimeSettings(redis_url=redis_url),
        salt="bench-salt-0123456789",
    )
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_process(publish_dir: Path, redis_url: str, requests: list[tuple[str, str, bool]]) -> dict:
    """The route's own work without HTTP: VisitorRecommender.recommend() for the plan's requests,
    one at a time (the Redis round trip included), without the session model's cache and with it:
    wall time, and the thread's CPU time (less affected by other work on the machine)."""
    from urllib.parse import parse_qs, unquote, urlsplit

    import numpy as np
    import redis

    from tessera.realtime.state import SessionState
    from tessera.realtime.visitor_recs import KNN_CACHE, IdType, VisitorRecommender
    from tessera.serving import Server
    from tessera.session_serving import SessionServer

    state = SessionState(redis.Redis.from_url(redis_url))
    server, sessions = Server(publish_dir, 10, "demo"), SessionServer(publish_dir)
    out = {}
    for label, cache in (("uncached", 0), ("cached", KNN_CACHE)):
        recommender = VisitorRecommender(state, server, sessions, knn_cache=cache)
        times, cpu = [], []
        for _, path, _ in requests:
            parts = urlsplit(path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            visitor = unquote(parts.path.split("/")[3])
            started, cpu_started = time.perf_counter(), time.thread_time()
            recommender.recommend(visitor, IdType(query.get("id_type", "anonymous")), query.get("customer_pkey"), 10)
            times.append(time.perf_counter() - started)
            cpu.append(time.thread_time() - cpu_started)
        ms = np.array(times) * 1000
        out[label] = {f"p{q}": round(float(np.percentile(ms, q)), 3) for q in (50, 90, 99)}
        out[label]["cpu_mean"] = round(float(np.mean(cpu)) * 1000, 3)
        out[label]["cache_hit_share"] = round(recommender.cache_hits / max(len(requests), 1), 3)
    out["requests"] = len(requests)
    return out


def repeat_share(requests: list[tuple[str, str, bool]]) -> float:
    """The share of requests asking for a visitor already asked for earlier in the plan: those the
    session model's cache can answer (the seeded states do not change during the run)."""
    seen: set[str] = set()
    repeats = 0
    for _, path, _ in requests:
        repeats += path in seen
        seen.add(path)
    return round(repeats / max(len(requests), 1), 3)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args.serve, args.redis_url, args.port)
        return 0
    from tessera.realtime.redis_server import RedisProcess

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-visitor-recs-"))
    publish_dir = work / "publish"
    shutil.rmtree(publish_dir, ignore_errors=True)
    started = time.perf_counter()
    sessions, keys = publish(publish_dir, args.data, args.customers)
    publish_seconds = time.perf_counter() - started
    with RedisProcess(work / "redis", appendfsync="everysec") as redis_process:
        started = time.perf_counter()
        visitors = seed_visitors(redis_process.url, sessions, keys, args.visitors)
        seed_seconds = time.perf_counter() - started
        warmup = int(args.warmup * args.rate)
        requests = plan(visitors, warmup + int(args.seconds * args.rate), args.control)
        compute = (
            in_process(publish_dir, redis_process.url, requests[: args.in_process])
            if args.in_process and not args.control
            else None
        )
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", str(publish_dir), "--redis-url", redis_process.url,
               "--port", str(args.port)]  # fmt: skip
        proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            t0 = time.perf_counter()
            wait_healthy(f"http://127.0.0.1:{args.port}", proc, timeout=300)
            start_seconds = time.perf_counter() - t0
            import uvloop

            # the generator's own pauses count as the server's latency: what the setup left (the
            # in-process run's indexes, the plan) is collected once and frozen, so that the
            # generator's collections do not walk it in the middle of the load
            gc.collect()
            gc.freeze()
            cpu_before, load_before = cpu_seconds(proc.pid), os.getloadavg()[0]
            latencies, statuses, unexpected, elapsed, slowest = uvloop.run(
                load(args.port, requests, args.rate, args.connections, warmup)
            )
            server_cpu_ms = 1000 * (cpu_seconds(proc.pid) - cpu_before) / len(requests)
            load_after = os.getloadavg()[0]
            rss = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    lat = sorted(latencies)
    ms = {f"p{q}": round(1000 * percentile(lat, q / 100), 2) for q in (50, 90, 99, 99.9)}
    result = {
        "customers": args.customers,
        "visitors_with_state": args.visitors,
        "session_index": "Online Retail invoices",
        "rate_requested": args.rate,
        "rate_achieved": round(len(lat) / elapsed, 1),
        "requests_measured": len(lat),
        "route": "/v1/customers/{key}/recommendations (control)"
        if args.control
        else "/v1/visitors/{id}/recommendations",
        "latency_ms": {**ms, "max": round(1000 * lat[-1], 2), "mean": round(1000 * sum(lat) / len(lat), 2)},
        "server_cpu_ms_per_request": round(server_cpu_ms, 3),
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],
        "in_process_ms": compute,
        "repeat_share": repeat_share(requests[warmup:]),
        "statuses": statuses,
        "unexpected_answers": unexpected,
        "slowest": [{"ms": round(1000 * s, 2), "at_second": round(at, 2), "path": p} for s, at, p in slowest],
        "mix": MIX,
        "server_start_seconds": round(start_seconds, 1),
        "server_rss_mb": round(rss),
        "publish_seconds": round(publish_seconds, 1),
        "seed_seconds": round(seed_seconds, 1),
        "cpu_count": os.cpu_count(),
        "command": "bench/visitor_recs.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    out = args.out or ROOT / "bench" / "results" / (
        "visitor_recs_control.json" if args.control else "visitor_recs.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    headers = ["route", "customers", "visitors", "rate req/s", "achieved", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms",
               "max ms", "server CPU ms/req", "RSS MB"]  # fmt: skip
    row = ("customers (control)" if args.control else "visitors", f"{args.customers:,}", f"{args.visitors:,}",
           f"{args.rate:.0f}", result["rate_achieved"], ms["p50"], ms["p90"], ms["p99"], ms["p99.9"],
           result["latency_ms"]["max"], result["server_cpu_ms_per_request"], result["server_rss_mb"])  # fmt: skip
    text = "# Visitor recommendations latency\n\n" + table([row], headers, ("left",) + ("right",) * (len(headers) - 1))
    text += f"\n\nload average (1 min) before and after the load: {result['load_average_1min']}"
    text += (
        f"\n\nshare of measured requests repeating an earlier visitor (the cache's best case): {result['repeat_share']}"
    )
    if compute:
        text += f"\n\nwithout HTTP (recommend() one at a time, Redis included, ms): {json.dumps(compute)}"
    text += f"\n\nstatuses {statuses}; unexpected {unexpected or 'none'}\n\n`{result['command']}`\n"
    out.with_suffix(".md").write_text(text)
    print(text)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if unexpected else 0


if __name__ == "__main__":
    raise SystemExit(main())
