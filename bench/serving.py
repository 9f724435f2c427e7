"""Serving latency: `tessera serve` under a fixed request rate, with N customers published.

    make demo                                          # once: the published snapshots to scale up
    .venv/bin/python bench/serving.py                  # 1,000,000 customers, 500 requests/s, 30 s
    .venv/bin/python bench/serving.py --customers 100000 --rate 1000 --seconds 20

1. Scales the demo's current published snapshots (recommendations, segments, scores, next best
   actions, from TESSERA_PUBLISH_DIR or data/publish) to `--customers` by copying each customer
   under new, well-formed keys (`pk_` + md5 of `<customer_pkey>-<copy>`). The rows keep the real
   published schema; the copies are not new behaviour. Each scaled customer gets two ids of the
   shop, a CRM id `B<8 digits>` and a cookie `ck-<n>`, published as customer_segments' lookup
   export (salted hashes, as the publish step writes it). Written with tessera/publish/snapshots.py
   into a bench publish directory, as a publish would.
2. Starts `tessera serve` on 127.0.0.1 as a separate process, with an API key (TESSERA_API_KEYS)
   that every request sends, and its request log (one line per request) written to a file;
   times its start (the load of every snapshot into memory); records its resident memory.
3. Open-loop load generator (asyncio, persistent HTTP/1.1 connections): request i is *due* at
   start + i / rate and its latency is measured from that due time, so a slow server cannot
   hide its queue by slowing the generator down (no coordinated omission). The mix (MIX): 45 %
   recommendations, 15 % segments, 15 % scores, 5 % next best action by customer_pkey, 20 %
   lookups by the shop's ids (GET /v1/lookup, half CRM ids, half cookies); 95 % known customers,
   5 % unknown ones (well formed: the popular fallback, or 404). `--warmup` seconds first, not
   counted.
4. Reports p50 / p90 / p99 / p99.9 / max, overall and per route, the achieved rate, status codes,
   the request log's line count and any unexpected answer (a known customer must get 200, an
   unknown one 200 with known=false or 404).

The generator runs on the same machine (2 cores here), so it competes with the server for CPU:
the figures are an upper bound on what the server alone would show.
Results: bench/results/serving_<customers>_<rate>rps.json, printed as Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tessera.markdown import table  # noqa: E402
from tessera.privacy import pseudonym  # noqa: E402
from tessera.publish import snapshots  # noqa: E402
from tessera.publish.snapshots import Export  # noqa: E402
from tessera.serving import (  # noqa: E402
    IDENTIFIERS_EXPORT,
    NEXT_BEST_ACTIONS,
    RECOMMENDATIONS,
    SCORES,
    SEGMENTS,
    SERVED,
)
from tessera.settings import load_settings  # noqa: E402

LOOKUP_CRM, LOOKUP_COOKIE = "lookup_customer_id", "lookup_anonymous_id"
PATHS = {
    RECOMMENDATIONS: "/v1/customers/{}/recommendations",
    SEGMENTS: "/v1/customers/{}/segments",
    SCORES: "/v1/customers/{}/scores",
    NEXT_BEST_ACTIONS: "/v1/customers/{}/next-best-action",
    LOOKUP_CRM: "/v1/lookup?id_type=customer_id&id={}",
    LOOKUP_COOKIE: "/v1/lookup?id_type=anonymous_id&id={}",
}
MIX = [
    (RECOMMENDATIONS, 0.45),
    (SEGMENTS, 0.15),
    (SCORES, 0.15),
    (NEXT_BEST_ACTIONS, 0.05),
    (LOOKUP_CRM, 0.10),
    (LOOKUP_COOKIE, 0.10),
]
API_KEY = "bench-serving-key-0123456789"
# the scaled customers' ids of the shop, published hashed in the lookup export
IDENTIFIERS_SQL = """
    select id_type, sha256(getvariable('tessera_pseudonym_salt') || ':' || id) as id_hash, customer_pkey
    from (
        select 'customer_id' as id_type, 'B' || lpad(cast(n as varchar), 8, '0') as id, customer_pkey from keys
        union all
        select 'anonymous_id', 'ck-' || n, customer_pkey from keys
    )
"""


def scale_snapshots(source_dir: Path, target_dir: Path, customers: int, salt: str) -> list[tuple[str, int]]:
    """Write `customers` customers' snapshots to target_dir; returns their (key, n): n numbers
    their ids of the shop (CRM id B<n, 8 digits>, cookie ck-<n>), hashed with `salt`."""
    import duckdb

    names = (*SERVED, NEXT_BEST_ACTIONS)
    current = {name: snapshots.current_snapshot(source_dir, name) for name in names}
    shutil.rmtree(target_dir, ignore_errors=True)
    con = duckdb.connect()
    con.execute("set preserve_insertion_order = false")
    pseudonym.install(con, salt)
    seg = current[SEGMENTS].parquet
    base = con.execute(f"select count(*) from read_parquet('{seg}')").fetchall()[0][0]
    copies = -(-customers // base)
    # well-formed keys (the API answers 422 to anything but pk_ and 32 hex digits)
    con.execute(
        f"""
        create table keys as
        select source_key, customer_pkey, row_number() over (order by customer_pkey) as n from (
            select customer_pkey as source_key, 'pk_' || md5(customer_pkey || '-' || c.copy) as customer_pkey
            from read_parquet('{seg}') cross join range({copies}) as c(copy)
            order by c.copy, source_key limit {customers}
        )
        """
    )
    now = datetime.now(UTC)
    popular = current[RECOMMENDATIONS].path / "exports" / "popular_products.jsonl"
    for name, snap in current.items():
        con.execute(
            f"""
            create or replace table scaled as
            select t.* replace (k.customer_pkey as customer_pkey)
            from read_parquet('{snap.parquet}') as t inner join keys as k on k.source_key = t.customer_pkey
            """
        )
        exports = ()
        if name == RECOMMENDATIONS:
            exports = (Export("popular_products", "the demo's", f"select * from read_json('{popular}')", "jsonl"),)
        if name == SEGMENTS:
            exports = (Export(IDENTIFIERS_EXPORT.removesuffix(".csv"), "the bench ids", IDENTIFIERS_SQL, "csv"),)
        version = snapshots.new_version(now, "bench")
        snapshots.write_snapshot(
            con,
            target_dir,
            name,
            "scaled",
            version,
            published_at=now,
            run_id="bench",
            checks=[],
            exports=exports,
            salt_check=pseudonym.salt_check(salt),
        )
        snapshots.set_current(target_dir, name, version)
    keys = [(k, n) for k, n in con.execute("select customer_pkey, n from keys").fetchall()]
    con.close()
    return keys


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tessera serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} not healthy after {timeout} s")


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def get(self, path: str) -> tuple[int, bytes]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {API_KEY}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(h.split(":", 1)[1]) for h in lines[1:] if h.lower().startswith("content-length:"))
        return status, await self.reader.readexactly(length)


async def load(port: int, plan: list[tuple[str, str, bool]], rate: float, connections: int, warmup: int):
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Connection(*await asyncio.open_connection("127.0.0.1", port)))
    latencies: list[float] = []
    per_route: dict[str, list[float]] = {}
    slowest: list[tuple[float, float, str]] = []  # (latency, seconds into the run, path)
    statuses: dict[str, int] = {}
    unexpected: list[str] = []

    async def one(i: int, due: float, name: str, path: str, known: bool):
        conn = await pool.get()
        try:
            status, body = await conn.get(path)
        finally:
            pool.put_nowait(conn)
        done = time.perf_counter()
        if i < warmup:
            return
        latencies.append(done - due)
        per_route.setdefault(name, []).append(done - due)
        slowest.append((done - due, due - start, PATHS[name]))
        if len(slowest) > 200:
            slowest.sort(reverse=True)
            del slowest[20:]
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        ok = status == 200 if known else (status == 404 or (status == 200 and b'"known":false' in body))
        if known and status == 200 and name == RECOMMENDATIONS and b'"known":true' not in body:
            ok = False
        if known and status == 200 and name in (LOOKUP_CRM, LOOKUP_COOKIE) and b'"segments":{' not in body:
            ok = False
        if not ok and len(unexpected) < 10:
            unexpected.append(f"{status} {path}")

    start = time.perf_counter() + 0.5
    # only requests in flight are held: gathering every task at the end would stall the loop
    # (tens of ms for ~20,000 tasks) while the last answers arrive, and count against them
    pending: set[asyncio.Task] = set()
    for i, (name, path, known) in enumerate(plan):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i, due, name, path, known))
        pending.add(task)
        task.add_done_callback(pending.discard)
    while pending:
        await asyncio.wait(set(pending))
    elapsed = time.perf_counter() - (start + warmup / rate)
    while not pool.empty():
        pool.get_nowait().writer.close()
    slowest.sort(reverse=True)
    return latencies, per_route, statuses, unexpected, elapsed, slowest[:10]


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured duration")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, help="default bench/results/serving_<customers>_<rate>rps.json")
    args = parser.parse_args()

    settings = load_settings()
    target = settings.data_dir / "bench" / "serving" / "publish"
    started = time.perf_counter()
    keys = scale_snapshots(settings.publish_dir, target, args.customers, settings.pseudonym_salt)
    scale_seconds = time.perf_counter() - started
    print(f"{len(keys):,} customers published to {target} in {scale_seconds:.1f} s", flush=True)

    rng = random.Random(args.seed)
    warmup = int(args.warmup * args.rate)
    plan = []
    for _ in range(warmup + int(args.seconds * args.rate)):
        name = rng.choices([m[0] for m in MIX], weights=[m[1] for m in MIX])[0]
        known = rng.random() < 0.95
        key, n = rng.choice(keys) if known else (f"pk_{rng.randrange(16**32):032x}", -rng.randrange(1, 10**9))
        value = {LOOKUP_CRM: f"B{n:08d}", LOOKUP_COOKIE: f"ck-{n}"}.get(name, key)
        plan.append((name, PATHS[name].format(value), known))
    del keys

    log_file = target.parent / "requests.log"
    env = {
        **os.environ,
        # the scaled snapshots are the demo's, published with the demo salt: production mode refuses them
        "TESSERA_MODE": os.environ.get("TESSERA_MODE", "demo"),
        "TESSERA_SERVE_RELOAD_SECONDS": "0",
        "TESSERA_API_KEYS": API_KEY,
        "TESSERA_SERVE_LOG_LEVEL": "info",
    }
    cmd = [
        str(Path(sys.executable).parent / "tessera"),
        "serve",
        "--publish-dir",
        str(target),
        "--port",
        str(args.port),
    ]
    log_handle = log_file.open("w")
    proc = subprocess.Popen(cmd, env=env, stderr=log_handle)
    try:
        t0 = time.perf_counter()
        health = wait_healthy(f"http://127.0.0.1:{args.port}", proc, timeout=600)
        start_seconds = time.perf_counter() - t0
        rss_before = rss_mb(proc.pid)
        import uvloop

        latencies, per_route, statuses, unexpected, elapsed, slowest = uvloop.run(
            load(args.port, plan, args.rate, args.connections, warmup)
        )
        rss_after = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log_handle.close()
    # the request log: one line per request, the route's template and never a key or an id
    access = [line for line in log_file.read_text().splitlines() if "tessera.serving.access" in line]
    leaked = sum(1 for line in access if "pk_" in line or "id=" in line)

    lat = sorted(latencies)
    ms = {f"p{q}": round(1000 * percentile(lat, q / 100), 2) for q in (50, 90, 99, 99.9)}
    result = {
        "customers": health["customers"],
        "rate_requested": args.rate,
        "rate_achieved": round(len(lat) / elapsed, 1),
        "requests_measured": len(lat),
        "seconds_measured": args.seconds,
        "connections": args.connections,
        "latency_ms": {**ms, "max": round(1000 * lat[-1], 2), "mean": round(1000 * sum(lat) / len(lat), 2)},
        "latency_ms_per_route": {
            name: {
                "requests": len(values),
                **{f"p{q}": round(1000 * percentile(sorted(values), q / 100), 2) for q in (50, 99)},
                "max": round(1000 * max(values), 2),
            }
            for name, values in sorted(per_route.items())
        },
        "request_log": {"lines": len(access), "lines_with_a_key_or_id": leaked, "file": str(log_file)},
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "statuses": statuses,
        "slowest": [{"ms": round(1000 * ms, 2), "at_second": round(at, 2), "path": p} for ms, at, p in slowest],
        "unexpected_answers": unexpected,
        "server_start_seconds": round(start_seconds, 1),
        "server_rss_mb": {"after_load": round(rss_before), "after_requests": round(rss_after)},
        "scale_seconds": round(scale_seconds, 1),
        "mix": dict(MIX),
        "unknown_share": 0.05,
        "cpu_count": os.cpu_count(),
        "command": "bench/serving.py " + " ".join(sys.argv[1:]),
    }
    out = args.out or ROOT / "bench" / "results" / f"serving_{args.customers}_{args.rate:.0f}rps.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    headers = [
        "customers",
        "rate req/s",
        "achieved",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "start s",
        "RSS MB",
    ]
    row = (
        f"{result['customers']:,}", f"{args.rate:.0f}", result["rate_achieved"], ms["p50"], ms["p90"], ms["p99"], ms["p99.9"],
        result["latency_ms"]["max"], result["server_start_seconds"], round(rss_after),
    )  # fmt: skip
    print("\n" + table([row], headers, ("right",) * len(headers)))
    per_route_rows = [
        (name, v["requests"], v["p50"], v["p99"], v["max"]) for name, v in result["latency_ms_per_route"].items()
    ]
    print("\n" + table(per_route_rows, ["route", "requests", "p50 ms", "p99 ms", "max ms"], ("left",) + ("right",) * 4))
    print(
        f"statuses {statuses}; unexpected {unexpected or 'none'}; request log {len(access):,} lines "
        f"({leaked} with a key or id); load average {os.getloadavg()[0]:.2f}; written to {out}"
    )
    return 1 if unexpected or leaked else 0


if __name__ == "__main__":
    raise SystemExit(main())
