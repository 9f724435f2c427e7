"""A Redis server of the project's own: started on 127.0.0.1 for `make serve`, the demo and the tests.

Redis here holds the event stream and the session state. It runs with the append-only file and
`appendfsync always`: a collector answers 200 only after the stream append returned, and with
`always` Redis has written that append to disk before it replies (one fsync per event-loop pass,
so a pipelined batch costs one), so a SIGKILL of Redis loses no acknowledged event
(bench/realtime.py measures it). `TESSERA_REDIS_APPENDFSYNC=everysec` trades up to a second of
events for throughput; docs/realtime.md.

`scripts/install_redis.sh` installs Debian's redis-server when it is missing. The system package's
own service is not used: the instance is a child process (tests: one per session on a free port)
or, for `make serve`, a daemon with its pid file and data in `$TESSERA_DATA_DIR/realtime/redis`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

INSTALL_HINT = "run scripts/install_redis.sh (Debian's redis-server 7)"


class RedisUnavailable(RuntimeError):
    """No redis-server binary, or the server did not answer."""


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RedisUnavailable(f"redis-server is not installed: {INSTALL_HINT}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _arguments(port: int, data_dir: Path, appendfsync: str) -> list[str]:
    return [
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir),
        "--appendonly", "yes",
        "--appendfsync", appendfsync,
        # the append-only file is the durability; no background RDB snapshots besides it
        "--save", "",
        # a rewritten append-only file as commands, not an RDB image: an RDB image copies a stream's
        # nodes whole, with the entries an erasure XDELed still in them (tessera/realtime/privacy.py)
        "--aof-use-rdb-preamble", "no",
        "--protected-mode", "yes",
        "--loglevel", "warning",
        "--logfile", str(data_dir / "redis.log"),
    ]  # fmt: skip


def wait_ready(url: str, timeout: float = 10.0, process: subprocess.Popen | None = None) -> None:
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RedisUnavailable(f"redis-server exited with code {process.returncode} (see its redis.log)")
        try:
            if client.ping():
                # the append-only file is loaded before PING answers; LOADING errors mean not yet
                return
        except (redis.ConnectionError, redis.BusyLoadingError) as exc:
            last = exc
        time.sleep(0.05)
    raise RedisUnavailable(f"Redis at {url} did not answer within {timeout:.0f} s: {last}")


@dataclass
class RedisProcess:
    """A redis-server child process on 127.0.0.1 (tests and benchmarks). Restartable on its data."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    appendfsync: str = "always"
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [redis_binary(), *_arguments(self.port, self.data_dir, self.appendfsync)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_ready(self.url, process=self.process)
        return self

    def kill(self) -> None:
        """SIGKILL: what a crash looks like (the crash benchmark and tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def ensure_running(url: str, data_dir: Path, appendfsync: str = "always") -> str:
    """Make sure Redis answers at `url`; start a daemon there when it is local and not running.

    Returns what was done ("running" or "started"). A remote URL that does not answer is an error:
    a deployment's Redis is its own to run.
    """
    try:
        if redis.Redis.from_url(url, socket_connect_timeout=1).ping():
            return "running"
    except redis.ConnectionError:
        pass
    connection = redis.Redis.from_url(url).connection_pool.connection_kwargs
    host, port = connection.get("host", "127.0.0.1"), int(connection.get("port", 6379))
    if host not in {"127.0.0.1", "localhost"}:
        raise RedisUnavailable(f"Redis at {url} does not answer, and it is not local: start it there")
    data_dir.mkdir(parents=True, exist_ok=True)
    daemon = ["--daemonize", "yes", "--pidfile", str(data_dir / "redis.pid")]
    subprocess.run(
        [redis_binary(), *_arguments(port, data_dir, appendfsync), *daemon],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wait_ready(url)
    return "started"
