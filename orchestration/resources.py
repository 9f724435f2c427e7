"""The resource every tessera asset uses to reach settings and the DuckDB file."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from tessera.settings import Settings, load_settings

# Every asset that opens the DuckDB file for writing runs in this pool. DuckDB allows one writing
# process; with the default in-process executor steps already run one at a time, and a deployment
# that switches to the multiprocess executor limits this pool to 1 in dagster.yaml.
DUCKDB_POOL = "duckdb"


class TesseraResource(dg.ConfigurableResource):
    """Settings come from environment variables when a step runs, never at import time."""

    def settings(self) -> Settings:
        settings = load_settings()
        settings.ensure_dirs()
        return settings

    @contextmanager
    def duckdb(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        settings = self.settings()
        con = duckdb.connect(
            str(settings.duckdb_path),
            read_only=read_only,
            config={
                "memory_limit": settings.duckdb_memory_limit,
                "threads": settings.duckdb_threads,
            },
        )
        try:
            # After connecting: the ICU extension that owns TimeZone loads lazily.
            con.execute("set TimeZone = 'UTC'")
            yield con
        finally:
            con.close()

    def export_dbt_env(self) -> None:
        """Point the dbt profile at the same database the Python assets use."""
        os.environ.update(self.settings().dbt_env())
