"""Real time: the collector's throughput and latency, event → session state latency, and crash safety.

    .venv/bin/python bench/realtime.py throughput --rate 2000 --seconds 15    # open loop, one rate
    .venv/bin/python bench/realtime.py max --seconds 10                        # closed loop, how far it goes
    .venv/bin/python bench/realtime.py crash --target collector               # also: worker, redis

Every part starts its own processes on 127.0.0.1, in a fresh folder under
$TESSERA_DATA_DIR/bench/realtime (default data/): a Redis (tessera/realtime/redis_server.py,
`appendfsync always`, as `make serve` runs it), the collector (`POST /v1/events`, the same route
code as `tessera serve`, in a uvicorn process of its own) and the state worker
(`tessera realtime worker`), and drives the collector from this process.

- **throughput**: an open-loop generator (asyncio, persistent HTTP/1.1 connections) sends Segment
  batches of `--batch` events at `--rate` events/s; each request's latency counts from the time it
  was due, so a slow collector cannot hide its queue (no coordinated omission). Beside it, every
  0.1 s a probe event for a new visitor is sent and Redis polled (every 2 ms) until the
  visitor's session state shows it: **event → state visible** (the HTTP request, the stream, the
  worker's read, the Lua update). At the end: every accepted event must be in a landing file.
- **max**: `--clients` closed-loop senders as fast as answers come: the collector's ceiling.
- **crash**: `--clients` senders send unique events (a client retries a batch until it gets 200,
  as Segment's libraries do) while, `--kill-at` seconds in, the target process gets SIGKILL and is
  started again a second later (Redis: on the same data folder and port); sending stops at
  `--seconds`, the worker drains, stops, and every landing file is read. Counted: events
  acknowledged (a 200) and not in any landing file (**lost: must be 0**), rows landed twice
  (must be 0), events landed without a 200 (in flight at the kill: allowed).

The mix: page 20 %, Product Viewed 45 %, Product Added 15 %, Product Removed 5 %, Checkout
Started 5 %, Order Completed 10 % (1-3 products); 5,000 visitors, 30 % with a userId; seeded.
Results: bench/results/realtime.json (each part's last run) and realtime.md.

The generator, the collector, the worker and Redis share the machine's cores; the figures are
what the whole chain does on this machine, not the collector alone. Full run (each part about a
minute): throughput --rate 2000 --seconds 60, max --seconds 30, crash for each target --seconds 20.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tessera.markdown import table  # noqa: E402
from tessera.realtime.redis_server import RedisProcess, free_port  # noqa: E402
from tessera.settings import load_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SALT = "bench-salt-0123456789"
MIX = [
    ("page", 0.20),
    ("Product Viewed", 0.45),
    ("Product Added", 0.15),
    ("Product Removed", 0.05),
    ("Checkout Started", 0.05),
    ("Order Completed", 0.10),
]
VISITORS = 5000


# --- the processes --------------------------------------------------------------------------------
def env_for(data_dir: Path, redis_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TESSERA_DATA_DIR": str(data_dir),
        "TESSERA_REDIS_URL": redis_url,
        "TESSERA_PSEUDONYM_SALT": SALT,
        "TESSERA_MODE": "demo",
        # a killed worker restarts under its own name and reads its own pending at once; the
        # reclaim of another's pending (60 s by default) is not what these runs wait for
        "TESSERA_RECLAIM_IDLE_MS": "5000",
        "PYTHONUNBUFFERED": "1",
    }


def start_collector(env: dict, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, str(Path(__file__).resolve()), "_collector", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    wait_port(port, proc)
    return proc


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tessera.cli", "realtime", "worker", "--consumer", "bench-worker"]
    return subprocess.Popen(cmd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=ROOT)


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port} after {timeout} s")


def stop(proc: subprocess.Popen | None, timeout: float = 30) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_collector(port: int) -> None:
    """The collector alone on a bare FastAPI app: the route `tessera serve` mounts, without the
    published snapshots (their loading is not what is measured here)."""
    import uvicorn
    from fastapi import FastAPI

    from tessera.realtime.collector import add_collector_routes
    from tessera.realtime.store import connect
    from tessera.settings import load_realtime_settings

    app = FastAPI()
    add_collector_routes(app, connect(load_realtime_settings(), load_settings().pseudonym_salt))
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


class Chain:
    """Redis, collector and worker of one run, in a fresh folder."""

    def __init__(self, name: str, appendfsync: str = "always"):
        base = load_settings().data_dir / "bench" / "realtime" / name
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        self.base = base
        self.redis = RedisProcess(base / "redis", appendfsync=appendfsync)
        self.port = free_port()
        self.env = env_for(base, self.redis.url)
        self.log = base / "processes.log"
        self.collector: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None

    def __enter__(self) -> Chain:
        self.redis.start()
        self.collector = start_collector(self.env, self.port, self.log)
        self.worker = start_worker(self.env, self.log)
        return self

    def __exit__(self, *exc) -> None:
        stop(self.collector)
        stop(self.worker)
        self.redis.stop()

    @property
    def landing(self) -> Path:
        return self.base / "landing" / "events"

    def landed_rows(self) -> list[dict]:
        return [
            orjson.loads(line)
            for path in sorted(self.landing.glob("*.jsonl"))
            for line in path.read_bytes().splitlines()
        ]

    def drain(self, accepted_ids: set[str], timeout: float = 60) -> None:
        """Wait until the worker has written every accepted event (or the timeout), then stop it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if accepted_ids <= {r["event_id"].split(":")[0] for r in self.landed_rows()}:
                break
            time.sleep(0.5)
        stop(self.worker)


# --- events and HTTP ------------------------------------------------------------------------------
class Events:
    def __init__(self, seed: int, prefix: str):
        self.rng = random.Random(seed)
        self.prefix = prefix
        self.n = 0
        self.users = {v: f"c-{v}" for v in range(VISITORS) if self.rng.random() < 0.3}

    def one(self) -> dict:
        self.n += 1
        rng, v = self.rng, self.rng.randrange(VISITORS)
        kind = rng.choices([m[0] for m in MIX], weights=[m[1] for m in MIX])[0]
        product = f"p{rng.randrange(2000)}"
        message = {
            "type": "page" if kind == "page" else "track",
            "messageId": f"{self.prefix}-{self.n}",
            "anonymousId": f"cookie-{v}",
            "timestamp": datetime.now(UTC).isoformat(),
            "context": {"device": {"type": rng.choice(["desktop", "mobile", "tablet"])}},
            "properties": {},
        }
        if v in self.users:
            message["userId"] = self.users[v]
        if kind != "page":
            message["event"] = kind
        if kind in ("Product Viewed", "Product Added", "Product Removed"):
            message["properties"] = {"product_id": product, "category": f"cat{int(product[1:]) % 40}", "price": 9.5}
        elif kind == "Order Completed":
            items = [{"product_id": f"p{rng.randrange(2000)}", "quantity": 1} for _ in range(rng.randint(1, 3))]
            message["properties"] = {"order_id": f"o-{self.prefix}-{self.n}", "products": items}
        return message

    def batch(self, size: int) -> list[dict]:
        return [self.one() for _ in range(size)]


def body_of(messages: list[dict]) -> bytes:
    return orjson.dumps({"batch": messages, "sentAt": datetime.now(UTC).isoformat()})


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(int(h.split(":", 1)[1]) for h in lines[1:] if h.lower().startswith("content-length:"))
        return int(lines[0].split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] if sorted_values else float("nan")


def summary_ms(values: list[float]) -> dict:
    s = sorted(values)
    out = {f"p{q}": round(1000 * percentile(s, q / 100), 2) for q in (50, 95, 99)}
    return {**out, "max": round(1000 * s[-1], 2) if s else None, "n": len(s)}


# --- throughput and event -> state ----------------------------------------------------------------
async def probe_state(port: int, redis_url: str, until: float, every: float = 0.1) -> tuple[list[float], int]:
    """Send one event for a new visitor every `every` s; time until Redis shows it in their state."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    conn = await Connection.open(port)
    latencies, missed, n = [], 0, 0
    while time.perf_counter() < until:
        n += 1
        visitor, product = f"probe-{n}", f"probe-product-{n}"
        message = {
            "type": "track",
            "event": "Product Viewed",
            "messageId": f"probe-{n}",
            "anonymousId": visitor,
            "timestamp": datetime.now(UTC).isoformat(),
            "properties": {"product_id": product},
        }
        sent = time.perf_counter()
        await conn.post(body_of([message]))
        key = f"tessera:v:a:{visitor}:views"
        while True:
            if (await client.lindex(key, 0)) == product.encode():
                latencies.append(time.perf_counter() - sent)
                break
            if time.perf_counter() - sent > 10:
                missed += 1
                break
            await asyncio.sleep(0.002)
        await asyncio.sleep(max(0.0, every - (time.perf_counter() - sent)))
    conn.close()
    await client.aclose()
    return latencies, missed


async def open_loop(
    port: int, events: Events, rate: float, batch: int, seconds: float, warmup: float, connections: int
):
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await Connection.open(port))
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    accepted_ids: set[str] = set()
    counts = {"accepted": 0, "duplicates": 0, "suppressed": 0}
    interval = batch / rate
    total = int((seconds + warmup) / interval)
    first_measured = int(warmup / interval)
    bodies = [(m := events.batch(batch), body_of(m)) for _ in range(total)]

    async def one(i: int, due: float, messages: list[dict], body: bytes):
        conn = await pool.get()
        try:
            status, answer = await conn.post(body)
        finally:
            pool.put_nowait(conn)
        done = time.perf_counter()
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status == 200:
            got = orjson.loads(answer)
            for k in counts:
                counts[k] += got[k]
            accepted_ids.update(m["messageId"] for m in messages)
        if i >= first_measured:
            latencies.append(done - due)

    start = time.perf_counter() + 0.2
    pending: set[asyncio.Task] = set()
    for i, (messages, body) in enumerate(bodies):
        due = start + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i, due, messages, body))
        pending.add(task)
        task.add_done_callback(pending.discard)
    while pending:
        await asyncio.wait(set(pending))
    elapsed = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait().close()
    return latencies, statuses, counts, accepted_ids, elapsed


def part_throughput(args) -> dict:
    events = Events(args.seed, "t")
    with Chain("throughput", args.appendfsync) as chain:
        time.sleep(1.0)  # the worker's start
        pids = {"collector": chain.collector.pid, "worker": chain.worker.pid, "redis": chain.redis.process.pid}
        cpu_before = {k: cpu_seconds(p) for k, p in pids.items()}
        load_before = os.getloadavg()

        async def both():
            until = time.perf_counter() + args.warmup + args.seconds
            load = open_loop(chain.port, events, args.rate, args.batch, args.seconds, args.warmup, args.connections)
            return await asyncio.gather(load, probe_state(chain.port, chain.redis.url, until))

        import uvloop

        (latencies, statuses, counts, accepted_ids, elapsed), (state_latencies, missed) = uvloop.run(both())
        cpu = {k: round(cpu_seconds(p) - cpu_before[k], 1) for k, p in pids.items()}
        behind = worker_behind(chain.redis.url)
        chain.drain(accepted_ids)
        rows = chain.landed_rows()
    landed = {r["event_id"].split(":")[0] for r in rows}
    sent = len(accepted_ids) + counts["duplicates"]
    return {
        "appendfsync": args.appendfsync,
        "rate_requested_events_s": args.rate,
        "events_accepted_per_s": round(counts["accepted"] / elapsed, 1),
        "batch_events": args.batch,
        "seconds_measured": args.seconds,
        "requests_measured": len(latencies),
        "request_latency_ms": summary_ms(latencies),
        "statuses": statuses,
        "event_to_state_visible_ms": summary_ms(state_latencies),
        "probes_not_visible_within_10s": missed,
        "accepted_events": counts["accepted"],
        "accepted_not_landed": len(accepted_ids - landed),
        "landing_rows": len(rows),
        "landing_files": len(list(chain.landing.glob("*.jsonl"))),
        "cpu_seconds": cpu,
        "worker_behind_at_end_events": behind,
        "loadavg_before": [round(x, 2) for x in load_before],
        "events_sent": sent,
    }


async def closed_loop(port: int, events: Events, clients: int, batch: int, seconds: float):
    latencies: list[float] = []
    accepted = 0
    bodies = [body_of(events.batch(batch)) for _ in range(int(clients * seconds * 40))]
    it = iter(bodies)
    until = time.perf_counter() + seconds

    async def client():
        nonlocal accepted
        conn = await Connection.open(port)
        while time.perf_counter() < until:
            body = next(it, None)
            if body is None:
                break
            t = time.perf_counter()
            status, answer = await conn.post(body)
            latencies.append(time.perf_counter() - t)
            if status == 200:
                accepted += orjson.loads(answer)["accepted"]
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, accepted, time.perf_counter() - started


def part_max(args) -> dict:
    events = Events(args.seed, "x")
    with Chain("max") as chain:
        time.sleep(1.0)
        import uvloop

        latencies, accepted, elapsed = uvloop.run(
            closed_loop(chain.port, events, args.clients, args.batch, args.seconds)
        )
        behind = worker_behind(chain.redis.url)
    return {
        "clients": args.clients,
        "batch_events": args.batch,
        "seconds": args.seconds,
        "events_accepted_per_s": round(accepted / elapsed, 1),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "request_latency_ms": summary_ms(latencies),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "worker_behind_at_end_events": behind,
    }


def worker_behind(redis_url: str) -> int:
    """Events the state worker has not acknowledged yet: never read (lag) plus read and pending."""
    import redis

    client = redis.Redis.from_url(redis_url)
    group = next(g for g in client.xinfo_groups("tessera:events") if g["name"] == b"state")
    return int(group["lag"] or 0) + int(group["pending"])


# --- crash safety ---------------------------------------------------------------------------------
async def crash_load(chain: Chain, args, events: Events, kill, restart):
    acked: set[str] = set()
    sent: set[str] = set()
    retries = 0
    failures: dict[str, int] = {}
    until = time.perf_counter() + args.seconds
    gap = {"first_failure": None, "last_failure": None}

    async def client():
        nonlocal retries
        conn = None
        while time.perf_counter() < until:
            messages = events.batch(args.batch)
            body = body_of(messages)
            sent.update(m["messageId"] for m in messages)
            while True:  # a client retries a batch until it is acknowledged (Segment's libraries do)
                try:
                    if conn is None:
                        conn = await Connection.open(chain.port)
                    status, _ = await asyncio.wait_for(conn.post(body), timeout=5)
                    if status == 200:
                        acked.update(m["messageId"] for m in messages)
                        break
                    failures[str(status)] = failures.get(str(status), 0) + 1
                except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                    failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                    if conn is not None:
                        conn.close()
                    conn = None
                now = time.perf_counter()
                gap["first_failure"] = gap["first_failure"] or now
                gap["last_failure"] = now
                retries += 1
                if now > until + 30:
                    return
                await asyncio.sleep(0.05)
        if conn is not None:
            conn.close()

    async def chaos():
        await asyncio.sleep(args.kill_at)
        killed_at = time.perf_counter()
        await asyncio.to_thread(kill)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(restart)
        return killed_at, time.perf_counter()

    started = time.perf_counter()
    *_, (killed_at, restarted_at) = await asyncio.gather(*(client() for _ in range(args.clients)), chaos())
    outage = None
    if gap["first_failure"]:
        outage = round(gap["last_failure"] - gap["first_failure"], 2)
    return {
        "acked": acked,
        "sent": sent,
        "retries": retries,
        "failures": failures,
        "killed_at_s": round(killed_at - started, 2),
        "restarted_at_s": round(restarted_at - started, 2),
        "clients_saw_failures_for_s": outage,
    }


def part_crash(args) -> dict:
    events = Events(args.seed, f"k{args.target}")
    with Chain(f"crash_{args.target}") as chain:
        time.sleep(1.0)

        def kill():
            if args.target == "collector":
                chain.collector.kill()
                chain.collector.wait()
            elif args.target == "worker":
                chain.worker.kill()
                chain.worker.wait()
            else:
                chain.redis.kill()

        def restart():
            if args.target == "collector":
                chain.collector = start_collector(chain.env, chain.port, chain.log)
            elif args.target == "worker":
                chain.worker = start_worker(chain.env, chain.log)
            else:
                chain.redis.start()

        import uvloop

        run = uvloop.run(crash_load(chain, args, events, kill, restart))
        chain.drain(run["acked"])
        rows = chain.landed_rows()
    by_event: dict[str, int] = {}
    for r in rows:
        by_event[r["event_id"]] = by_event.get(r["event_id"], 0) + 1
    landed = {e.split(":")[0] for e in by_event}
    acked, sent = run.pop("acked"), run.pop("sent")
    return {
        "target": args.target,
        "signal": "SIGKILL",
        "seconds": args.seconds,
        "clients": args.clients,
        "batch_events": args.batch,
        "events_sent": len(sent),
        "events_acknowledged": len(acked),
        "acknowledged_lost": len(acked - landed),
        "rows_landed_twice": sum(1 for n in by_event.values() if n > 1),
        "landed_without_acknowledgement": len(landed - acked),
        "landing_rows": len(rows),
        **run,
    }


# --- results --------------------------------------------------------------------------------------
def write_results(part: str, result: dict, command: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "realtime.json"
    everything = json.loads(path.read_text()) if path.exists() else {}
    result = {**result, "command": command, "at": datetime.now(UTC).isoformat(timespec="seconds")}
    if part == "crash":
        everything.setdefault("crash", {})[result["target"]] = result
    elif part == "throughput" and result["appendfsync"] != "always":
        everything[f"throughput_{result['appendfsync']}"] = result
    else:
        everything[part] = result
    everything["cpu_count"] = os.cpu_count()
    path.write_text(json.dumps(everything, indent=2) + "\n")
    (RESULTS / "realtime.md").write_text(markdown(everything))
    return path


def markdown(r: dict) -> str:
    out = ["# Real time: collector, event → state, crash safety (bench/realtime.py)", ""]
    out.append(
        f"{r.get('cpu_count')} cores, shared by the load generator, the collector, the worker and Redis; "
        "each run's load average before it is below its table (other work on the machine shows there)."
    )
    runs = [r[k] for k in ("throughput", "throughput_everysec") if k in r]
    if runs:
        out += ["", "## Collector at a fixed rate, and event → state visible", ""]
        rows = []
        for t in runs:
            lat, st = t["request_latency_ms"], t["event_to_state_visible_ms"]
            rows.append(
                (
                    t.get("appendfsync", "always"), t["rate_requested_events_s"], t["events_accepted_per_s"],
                    t["batch_events"], lat["p50"], lat["p95"], lat["p99"], lat["max"], st["p50"], st["p95"], st["p99"],
                    t["accepted_not_landed"],
                )
            )  # fmt: skip
        out.append(
            table(
                rows,
                [
                    "appendfsync",
                    "events/s asked",
                    "accepted/s",
                    "batch",
                    "req p50 ms",
                    "req p95 ms",
                    "req p99 ms",
                    "req max ms",
                    "state p50 ms",
                    "state p95 ms",
                    "state p99 ms",
                    "accepted not landed",
                ],
                ("left",) + ("right",) * 11,
            )
        )
        for t in runs:
            out.append(
                f"\n- {t.get('appendfsync', 'always')}: CPU seconds over the run {t['cpu_seconds']}; load average "
                f"before {t['loadavg_before']}; worker behind at the end {t.get('worker_behind_at_end_events')}; "
                f"statuses {t['statuses']}; {t['landing_files']} landing files. `{t['command']}`"
            )
    if m := r.get("max"):
        lat = m["request_latency_ms"]
        out += ["", "## Collector ceiling (closed loop)", ""]
        out.append(
            table(
                [
                    (
                        m["clients"],
                        m["batch_events"],
                        m["events_accepted_per_s"],
                        m["requests_per_s"],
                        lat["p50"],
                        lat["p99"],
                        m["worker_behind_at_end_events"],
                    )
                ],
                ["clients", "batch", "events/s", "requests/s", "p50 ms", "p99 ms", "worker behind at end"],
                ("right",) * 7,
            )
        )
        out.append(f"\n`{m['command']}`")
    if crash := r.get("crash"):
        out += ["", "## SIGKILL mid-load: every acknowledged event counted from send to landing file", ""]
        rows = [
            (
                c["target"], c["events_sent"], c["events_acknowledged"], c["acknowledged_lost"], c["rows_landed_twice"],
                c["landed_without_acknowledgement"], c["killed_at_s"], c["clients_saw_failures_for_s"], c["retries"],
            )
            for c in crash.values()
        ]  # fmt: skip
        out.append(
            table(
                rows,
                [
                    "killed",
                    "sent",
                    "acknowledged",
                    "acknowledged lost",
                    "landed twice",
                    "landed unacknowledged",
                    "killed at s",
                    "clients saw failures s",
                    "retries",
                ],
                ("left",) + ("right",) * 8,
            )
        )
        out += [""] + [f"- {c['target']}: `{c['command']}`; failures seen {c['failures']}" for c in crash.values()]
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    tp = sub.add_parser("throughput")
    tp.add_argument("--rate", type=float, default=2000, help="events per second")
    tp.add_argument("--batch", type=int, default=50, help="events per request")
    tp.add_argument("--seconds", type=float, default=15)
    tp.add_argument("--warmup", type=float, default=3)
    tp.add_argument("--connections", type=int, default=16)
    tp.add_argument(
        "--appendfsync", choices=["always", "everysec"], default="always", help="Redis's (always: as make serve)"
    )
    mx = sub.add_parser("max")
    mx.add_argument("--clients", type=int, default=8)
    mx.add_argument("--batch", type=int, default=100)
    mx.add_argument("--seconds", type=float, default=10)
    cr = sub.add_parser("crash")
    cr.add_argument("--target", choices=["collector", "worker", "redis"], required=True)
    cr.add_argument("--seconds", type=float, default=10)
    cr.add_argument("--kill-at", type=float, default=3)
    cr.add_argument("--clients", type=int, default=4)
    cr.add_argument("--batch", type=int, default=20)
    co = sub.add_parser("_collector", help=argparse.SUPPRESS)
    co.add_argument("--port", type=int, required=True)
    for p in (tp, mx, cr):
        p.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if args.part == "_collector":
        run_collector(args.port)
        return 0
    result = {"throughput": part_throughput, "max": part_max, "crash": part_crash}[args.part](args)
    path = write_results(args.part, result, "bench/realtime.py " + " ".join(sys.argv[1:]))
    print(json.dumps(result, indent=2))
    print(f"written to {path} and {path.with_suffix('.md')}")
    bad = args.part == "crash" and (result["acknowledged_lost"] or result["rows_landed_twice"])
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
