"""Shared fixtures: an isolated data directory per test module, and the pipeline run on it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# as under `make test`: the built-in pseudonym salt is allowed on generated data
os.environ.setdefault("TESSERA_MODE", "demo")
# the SMALL dataset below evaluates the recommender on 129 warm users, fewer than the gate's
# default 200 (ml/promotion.py): at 100 the pipeline tests exercise a promoted champion
os.environ.setdefault("TESSERA_PROMOTION_MIN_USERS", "100")

# 100 days: enough history for the 60-day-old feature snapshot the propensity models train on
SMALL = dict(customers=300, days=100, seed=7, end_date=date(2026, 10, 31))


@pytest.fixture
def con():
    """An in-memory DuckDB connection."""
    import duckdb

    c = duckdb.connect()
    yield c
    c.close()


def with_pkeys(con):
    """Define customer_pkey(customer_key) on `con` with the salt the pipeline publishes with, so
    tests can join published tables (keyed by customer_pkey) with the marts."""
    from tessera.privacy import pseudonym
    from tessera.settings import load_settings

    pseudonym.install(con, load_settings().pseudonym_salt)
    return con


def use_data_dir(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    from tessera.settings import DERIVED_LOCATION_VARS

    monkeypatch.setenv("TESSERA_DATA_DIR", str(data_dir))
    for name in DERIVED_LOCATION_VARS:
        monkeypatch.delenv(name, raising=False)


def run_job(asset_selection: list[dg.AssetKey] | None = None) -> dg.ExecuteInProcessResult:
    """Materialize the graph, or only the given assets, in-process on the current TESSERA_DATA_DIR."""
    from orchestration.automation import gates_of
    from orchestration.definitions import defs

    job = defs.resolve_job_def("tessera_all")
    if asset_selection is not None:
        # an upstream selection also names raw/load_rejects and raw/load_audit, which the source
        # assets write but no asset materializes on its own
        graph = defs.resolve_asset_graph()
        keys = {k for k in asset_selection if graph.get(k).is_executable}
        job = job.get_subset(asset_selection=keys, asset_check_selection=set(gates_of(graph, keys)))
    return job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )


_HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("held", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


@contextmanager
def duckdb_held(path: Path, seconds: float) -> Iterator[None]:
    """Another process holds the DuckDB file at `path` (created if missing) for `seconds`,
    counted from when this block starts; the block runs while it holds it."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.wait(timeout=30)


def materialized_keys(result: dg.ExecuteInProcessResult) -> set[dg.AssetKey]:
    return {e.asset_key for e in result.get_asset_materialization_events()}


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory):
    """The whole graph materialized once on a small generated dataset."""
    from tessera.landing.generate import GenerateConfig, generate
    from tessera.settings import load_settings

    data_dir = tmp_path_factory.mktemp("pipeline") / "data"
    mp = pytest.MonkeyPatch()
    use_data_dir(mp, data_dir)
    settings = load_settings()
    generate(GenerateConfig(**SMALL), settings.landing_dir, settings.truth_dir)
    result = run_job()
    # later tests change this data directory; what the run itself left is kept for comparison
    _PIPELINE_TABLES[str(data_dir)] = table_snapshot(settings.duckdb_path)
    yield result, settings
    mp.undo()


_PIPELINE_TABLES: dict[str, dict[str, tuple[int, list[str]]]] = {}


def table_snapshot(duckdb_path) -> dict[str, tuple[int, list[str]]]:
    """Every table and view: its row count and column names."""
    import duckdb

    con = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        names = con.execute(
            "select table_schema || '.' || table_name from information_schema.tables where table_catalog = current_database()"
        ).fetchall()
        return {
            name: (
                con.execute(f"select count(*) from {name}").fetchall()[0][0],
                [r[0] for r in con.execute(f"describe {name}").fetchall()],
            )
            for (name,) in names
        }
    finally:
        con.close()


@pytest.fixture(scope="session")
def pipeline_tables(pipeline) -> dict[str, tuple[int, list[str]]]:
    """Row counts and columns of every table right after the `pipeline` run."""
    _, settings = pipeline
    return _PIPELINE_TABLES[str(settings.data_dir)]


def published_fingerprint(settings, ignore_run_ids: bool = False) -> dict[str, object]:
    """Each published table's rows (count and an order-independent hash) and the sha256 of each
    file of its current snapshot; with ignore_run_ids, tables only, without the columns naming
    MLflow runs and model versions (they differ between otherwise identical runs)."""
    import duckdb

    columns = "columns(lambda c: c not like '%run_id' and c <> 'model_version')" if ignore_run_ids else "columns(*)"
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        names = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables where table_schema = 'publish' order by 1"
            ).fetchall()
        ]
        out: dict[str, object] = {
            name: con.execute(f"select count(*), sum(hash({columns})) from publish.{name}").fetchall()[0] for name in names
        }
    finally:
        con.close()
    if not ignore_run_ids:
        from tessera.publish import snapshots

        for name in names:
            if snapshots.current_version(settings.publish_dir, name) is None:
                continue  # a table that is not a snapshot (segment history)
            snap = snapshots.current_snapshot(settings.publish_dir, name)
            for f in snap.manifest["files"]:
                out[f"{name}/{f['path']}"] = f["sha256"]
    return out
