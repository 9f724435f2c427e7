"""The resource every tessera asset uses to reach settings and the DuckDB file."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from orchestration.recovery import tag_run_with_this_process
from tessera.db import DuckDBLockTimeout, connect
from tessera.settings import Settings, load_settings, preflight_once

# Every asset and check that opens the DuckDB file runs in this pool. DuckDB allows one process
# to hold the file while it writes (and readers in other processes are refused meanwhile), so the
# instance limits the pool to 1 (dagster.yaml: concurrency.pools.default_limit: 1): steps of
# overlapping runs, and parallel steps of one run under the multiprocess executor, take turns.
DUCKDB_POOL = "duckdb"


class TesseraResource(dg.ConfigurableResource):
    """Settings come from environment variables when a step runs, never at import time."""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Tag the run with the process running its steps, however it was launched (`tessera run`,
        # the UI, a schedule, a sensor): a later run, or the abandoned-runs sensor, can then tell
        # that the run died and free the pool slot it held (orchestration/recovery.py). Resources are set
        # up in the run worker before any step takes a slot (in-process executor, definitions.py).
        if context.instance is not None and context.dagster_run is not None:
            tag_run_with_this_process(context.instance, context.dagster_run)

    def settings(self) -> Settings:
        settings = load_settings()
        # the configuration is checked before the step does any work (once per process):
        # a production run without its salt fails at its first step, not 45 s in
        preflight_once(settings)
        settings.ensure_dirs()
        return settings

    @contextmanager
    def duckdb(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        settings = self.settings()
        try:
            con = connect(
                settings.duckdb_path,
                read_only=read_only,
                config=settings.duckdb_config(),
                wait_seconds=settings.duckdb_lock_wait_seconds,
                log=dg.get_dagster_logger().warning,
            )
        except DuckDBLockTimeout as exc:
            # transient: whoever holds the file (a notebook, the DuckDB CLI) will let go; the step
            # is retried later. Any other failure is not retried: it would fail the same way.
            raise dg.RetryRequested(
                max_retries=settings.step_retries, seconds_to_wait=settings.step_retry_seconds
            ) from exc
        try:
            # After connecting: the ICU extension that owns TimeZone loads lazily.
            con.execute("set TimeZone = 'UTC'")
            yield con
        finally:
            con.close()

    def wait_until_free(self) -> None:
        """Before a step hands the file to another process (dbt): wait while something outside
        Dagster holds it, and ask for a retry past the wait (dbt would fail on the lock at once)."""
        if not self.settings().duckdb_path.exists():
            return
        with self.duckdb(read_only=True):
            pass

    def export_dbt_env(self) -> None:
        """Point the dbt profile at the same database the Python assets use."""
        os.environ.update(self.settings().dbt_env())
