"""Serving latency: `tessera serve` under a fixed request rate, with N customers published.

    make demo                                          # once: the published snapshots to scale up
    .venv/bin/python bench/serving.py                  # 1,000,000 customers, 500 requests/s, 30 s
    .venv/bin/python bench/serving.py --customers 100000 --rate 1000 --seconds 20

1. Scales the demo's current published snapshots (recommendations, segments, scores, from
   TESSERA_PUBLISH_DIR or data/publish) to `--customers` by copying each customer under new keys
   (`<customer_pkey>-<copy>`). The rows keep the real published schema; the copies are not new behaviour.
   They are written with tessera/publish/snapshots.py into a bench publish directory, as a publish would.
2. Starts `tessera serve` on 127.0.0.1 as a separate process and times its start (the load of
   every snapshot into memory); records its resident memory.
3. Open-loop load generator (asyncio, persistent HTTP/1.1 connections): request i is *due* at
   start + i / rate and its latency is measured from that due time, so a slow server cannot
   hide its queue by slowing the generator down (no coordinated omission). The mix: 60 %
   recommendations, 20 % segments, 20 % scores; 95 % known customers, 5 % unknown ones (the
   popular fallback, or 404). `--warmup` seconds first, not counted.
4. Reports p50 / p90 / p99 / p99.9 / max, the achieved rate, status codes and any unexpected
   answer (a known customer must get 200, an unknown one 200 with known=false or 404).

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
from tessera.publish import snapshots  # noqa: E402
from tessera.publish.snapshots import Export  # noqa: E402
from tessera.serving import RECOMMENDATIONS, SCORES, SEGMENTS, SERVED  # noqa: E402
from tessera.settings import load_settings  # noqa: E402

PATHS = {
    RECOMMENDATIONS: "/v1/customers/{}/recommendations",
    SEGMENTS: "/v1/customers/{}/segments",
    SCORES: "/v1/customers/{}/scores",
}
MIX = [(RECOMMENDATIONS, 0.6), (SEGMENTS, 0.2), (SCORES, 0.2)]


def scale_snapshots(source_dir: Path, target_dir: Path, customers: int) -> list[str]:
    """Write `customers` customers' snapshots to target_dir; returns their keys."""
    import duckdb

    current = {name: snapshots.current_snapshot(source_dir, name) for name in SERVED}
    shutil.rmtree(target_dir, ignore_errors=True)
    con = duckdb.connect()
    con.execute("set preserve_insertion_order = false")
    seg = current[SEGMENTS].parquet
    base = con.execute(f"select count(*) from read_parquet('{seg}')").fetchall()[0][0]
    copies = -(-customers // base)
    con.execute(
        f"""
        create table keys as
        select customer_pkey as source_key, customer_pkey || '-' || c.copy as customer_pkey
        from read_parquet('{seg}') cross join range({copies}) as c(copy)
        order by c.copy, customer_pkey limit {customers}
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
        version = snapshots.new_version(now, "bench")
        snapshots.write_snapshot(
            con, target_dir, name, "scaled", version, published_at=now, run_id="bench", checks=[], exports=exports
        )
        snapshots.set_current(target_dir, name, version)
    keys = [r[0] for r in con.execute("select customer_pkey from keys").fetchall()]
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
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
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
        slowest.append((done - due, due - start, path))
        if len(slowest) > 200:
            slowest.sort(reverse=True)
            del slowest[20:]
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        ok = status == 200 if known else (status == 404 or (status == 200 and b'"known":false' in body))
        if known and status == 200 and name == RECOMMENDATIONS and b'"known":true' not in body:
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
    return latencies, statuses, unexpected, elapsed, slowest[:10]


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
    keys = scale_snapshots(settings.publish_dir, target, args.customers)
    scale_seconds = time.perf_counter() - started
    print(f"{len(keys):,} customers published to {target} in {scale_seconds:.1f} s", flush=True)

    rng = random.Random(args.seed)
    warmup = int(args.warmup * args.rate)
    plan = []
    for _ in range(warmup + int(args.seconds * args.rate)):
        name = rng.choices([m[0] for m in MIX], weights=[m[1] for m in MIX])[0]
        known = rng.random() < 0.95
        key = rng.choice(keys) if known else f"unknown-{rng.randrange(10**9)}"
        plan.append((name, PATHS[name].format(key), known))
    del keys

    env = {**os.environ, "TESSERA_SERVE_RELOAD_SECONDS": "0"}
    cmd = [
        str(Path(sys.executable).parent / "tessera"),
        "serve",
        "--publish-dir",
        str(target),
        "--port",
        str(args.port),
    ]
    proc = subprocess.Popen(cmd, env=env)
    try:
        t0 = time.perf_counter()
        health = wait_healthy(f"http://127.0.0.1:{args.port}", proc, timeout=600)
        start_seconds = time.perf_counter() - t0
        rss_before = rss_mb(proc.pid)
        import uvloop

        latencies, statuses, unexpected, elapsed, slowest = uvloop.run(
            load(args.port, plan, args.rate, args.connections, warmup)
        )
        rss_after = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

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
    print(f"statuses {statuses}; unexpected {unexpected or 'none'}; written to {out}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    raise SystemExit(main())
