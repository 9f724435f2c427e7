"""Small DuckDB helpers shared by the pipeline, the CLI summary and the tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    # fetchall, not fetchone: DuckDB 2 keeps a half-read result open, and register() then refuses
    rows = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, table]
    ).fetchall()
    return bool(rows[0][0])


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One DuckDB transaction: committed when the block ends, rolled back (and the error raised
    again) when anything, an interrupt included, leaves it early."""
    con.execute("begin transaction")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")


LOCK_MESSAGES = ("Could not set lock on file", "Conflicting lock is held")


class DuckDBLockTimeout(RuntimeError):
    """Another process kept the DuckDB file locked for longer than the configured wait."""


def connect(path, read_only: bool = False, config: dict | None = None, wait_seconds: float = 0.0, log=None):
    """duckdb.connect, waiting up to `wait_seconds` while another *process* holds the file.

    Inside Dagster every step that opens the file runs in the `duckdb` concurrency pool (limit 1),
    so tessera's own runs never meet a lock; this wait covers processes outside Dagster (a
    notebook, the DuckDB CLI, the `tessera run` summary beside a running job). Each wait is
    logged through `log` (a callable); past `wait_seconds` a DuckDBLockTimeout names the file and
    DuckDB's own message (which names the holding process)."""
    import time

    deadline = time.monotonic() + wait_seconds
    delay = 0.2
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=config or {})
        except duckdb.IOException as exc:
            if not any(m in str(exc) for m in LOCK_MESSAGES):
                raise
            if time.monotonic() + delay > deadline:
                raise DuckDBLockTimeout(
                    f"{path} stayed locked by another process for {wait_seconds:.0f} s "
                    f"(TESSERA_DUCKDB_LOCK_WAIT_SECONDS): {exc}"
                ) from exc
            if log is not None:
                log(f"DuckDB file {path} is locked by another process; waiting {delay:.1f} s: {exc}")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
