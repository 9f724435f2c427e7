"""Shared fixtures: an isolated data directory per test module, the session's warehouse (the whole
graph built once, read by many tests, copied by those that change it), and the `graph` marker on
every test that needs it."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
# the batch graph's tests run without the online store (a developer's exported TESSERA_REDIS_URL
# would make their erasure reach for Redis); real-time tests start their own (redis_server below)
os.environ.pop("TESSERA_REDIS_URL", None)

# 100 days: enough history for the 60-day-old feature snapshot the propensity models train on
SMALL = {"customers": 300, "days": 100, "seed": 7, "end_date": date(2026, 10, 31)}


# tests that need the session's warehouse run the graph (once per session): marked `graph`, out of
# the fast tier (`make test-fast`); tests that run the graph themselves carry the mark explicitly
WAREHOUSE_FIXTURES = {"built_warehouse", "pipeline", "pipeline_tables", "warehouse_copy"}


# the longest files first (pytest-xdist hands each worker whole files in this order, two ahead):
# the first builds the session's warehouse and goes on with tests that copy it while the second
# runs files that need no warehouse; the many short files even out the end
LONGEST_FIRST = [
    "test_erasure.py",
    "test_crash.py",
    "test_spark_portability.py",
    "test_identity_spark.py",
    "test_partial_shops.py",
    "test_incremental.py",
    "test_bench_smoke.py",
    "test_idempotency.py",
    "test_declared_identifiers.py",
    "test_quality_gates.py",
    "test_gates.py",
    "test_e2e_webserver.py",
    "test_real_data.py",
    "test_consent.py",
    "test_currencies.py",
    "test_concurrency.py",
    "test_bad_input.py",
    "test_publishing.py",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if WAREHOUSE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.graph)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session", autouse=True)
def _own_dagster_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Dagster home of the session's own (under pytest-xdist, of each worker's own), configured as
    DAGSTER_HOME's: tests never write to the developer's run history nor to each other's."""
    home = tmp_path_factory.mktemp("dagster_home")
    configured = Path(os.environ["DAGSTER_HOME"], "dagster.yaml") if os.environ.get("DAGSTER_HOME") else None
    if configured is not None and configured.is_file():
        shutil.copyfile(configured, home / "dagster.yaml")
    else:
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_HOME", str(home))
    yield home
    mp.undo()


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


def write_templates(directory: Path, templates: dict[str, str]) -> Path:
    """A directory of email/banner templates (name -> text) for a catalogue under test."""
    directory.mkdir(parents=True)
    for name, text in templates.items():
        (directory / name).write_text(text)
    return directory


_MLFLOW_TEMPLATE: list[Path] = []


def empty_mlflow_store(target: Path) -> None:
    """A fresh data directory's MLflow store, copied from one migrated once per test process:
    MLflow creates its tables with a run of schema migrations, 3-8 s on this machine, which every
    whole-graph run on a new data directory paid. The copy is the file MLflow would have made (no
    experiment, no run); a data directory that has a store keeps it. Only where a test runs the
    graph (run_job, the crash tests' first run): the preflight tests assert a refused run creates
    nothing."""
    if target.exists():
        return
    if not _MLFLOW_TEMPLATE:
        import tempfile

        from mlflow.tracking import MlflowClient

        template = Path(tempfile.mkdtemp(prefix="tessera-mlflow-")) / "mlflow.db"
        MlflowClient(f"sqlite:///{template}").search_experiments()
        _MLFLOW_TEMPLATE.append(template)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_MLFLOW_TEMPLATE[0], target)


def use_data_dir(monkeypatch: pytest.MonkeyPatch, data_dir: Path, data_docs: bool = False) -> None:
    """Point the settings at `data_dir`. Graph runs render no Great Expectations Data Docs unless
    `data_docs` (rendering them costs about a fifth of a small run); the session's warehouse and
    the tests that read a Data Docs page turn them on."""
    from tessera.settings import DERIVED_LOCATION_VARS

    monkeypatch.setenv("TESSERA_DATA_DIR", str(data_dir))
    for name in DERIVED_LOCATION_VARS:
        monkeypatch.delenv(name, raising=False)
    if data_docs:
        monkeypatch.delenv("TESSERA_GX_DOCS_DIR", raising=False)
    else:
        monkeypatch.setenv("TESSERA_GX_DOCS_DIR", "")


def run_job(asset_selection: list[dg.AssetKey] | None = None) -> dg.ExecuteInProcessResult:
    """Materialize the graph, or only the given assets, in-process on the current TESSERA_DATA_DIR."""
    from orchestration.automation import gates_of
    from orchestration.definitions import defs
    from tessera.settings import load_settings

    empty_mlflow_store(load_settings().data_dir / "mlflow" / "mlflow.db")
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


def shown_row_counts(result: dg.ExecuteInProcessResult) -> dict[str, tuple[str, int, str | None]]:
    """Per asset, what the Dagster UI shows after the run: the table, row count and author
    (`changed_by`, None for the asset's own step) of its latest materialization that has a row
    count, or else of its latest observation (Dagster 1.13, ui-core AssetNodeOverview)."""
    shown: dict[str, dict[str, tuple[str, int, str | None]]] = {"materialization": {}, "observation": {}}
    events = [("materialization", e.asset_key, e.materialization) for e in result.get_asset_materialization_events()]
    events += [
        ("observation", e.asset_key, e.asset_observation_data.asset_observation)
        for e in result.get_asset_observation_events()
    ]
    for kind, key, event in events:
        metadata = event.metadata
        if "dagster/row_count" in metadata and "table" in metadata:
            changed_by = metadata.get("changed_by")
            shown[kind][key.to_user_string()] = (
                metadata["table"].value,
                metadata["dagster/row_count"].value,
                None if changed_by is None else changed_by.value,
            )
    return shown["observation"] | shown["materialization"]


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


# --------------------------------------------------------------------------- the session's warehouse
# The whole graph is built once per test session on SMALL (`built_warehouse`): tests that only read
# it share it (`pipeline`), tests that change it work on a copy (`warehouse_copy`), never on a
# rebuild. Under pytest-xdist the workers share the one build: the first to take the lock builds
# it, the others wait, and each reads the run's events back from disk.


@dataclass(frozen=True)
class Warehouse:
    """A built data directory (landing files, DuckDB file, MLflow store, published files) and the
    run that built it."""

    data_dir: Path
    result: dg.ExecuteInProcessResult
    tables: dict[str, tuple[int, list[str]]]


def _session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory every worker of this session sees: under xdist each worker's basetemp is a
    subdirectory of the session's."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _build_warehouse(root: Path) -> None:
    data_dir = root / "data"
    mp = pytest.MonkeyPatch()
    try:
        use_data_dir(mp, data_dir, data_docs=True)
        from tessera.landing.generate import GenerateConfig, generate
        from tessera.settings import load_settings

        settings = load_settings()
        generate(GenerateConfig(**SMALL), settings.landing_dir, settings.truth_dir)
        result = run_job()
        (root / "tables.json").write_text(json.dumps(table_snapshot(settings.duckdb_path)))
        (root / "run.json").write_text(dg.serialize_value(result.dagster_run))
        # written last: its presence says the build is complete
        (root / "events.json").write_text(dg.serialize_value(list(result.all_events)))
    finally:
        mp.undo()


def _load_warehouse(root: Path) -> Warehouse:
    from orchestration.definitions import defs

    result = dg.ExecuteInProcessResult(
        event_list=dg.deserialize_value((root / "events.json").read_text()),
        dagster_run=dg.deserialize_value((root / "run.json").read_text()),
        output_capture=None,
        job_def=defs.resolve_job_def("tessera_all"),
    )
    tables = {name: (rows, columns) for name, (rows, columns) in json.loads((root / "tables.json").read_text()).items()}
    return Warehouse(root / "data", result, tables)


@pytest.fixture(scope="session")
def built_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """The whole graph materialized once per session on a small generated dataset; read it, never
    change it (copy it with `warehouse_copy`)."""
    from filelock import FileLock

    root = _session_root(tmp_path_factory) / "warehouse"
    root.mkdir(exist_ok=True)
    with FileLock(str(root) + ".lock"):
        if not (root / "events.json").exists():
            _build_warehouse(root)
    return _load_warehouse(root)


@pytest.fixture(scope="session")
def pipeline(built_warehouse: Warehouse):
    """(result, settings) of the session's warehouse, with TESSERA_DATA_DIR pointing at it for the
    rest of the session. Read only: a test that changes the data takes `warehouse_copy`."""
    from tessera.settings import load_settings

    mp = pytest.MonkeyPatch()
    use_data_dir(mp, built_warehouse.data_dir, data_docs=True)  # the session's run rendered them
    yield built_warehouse.result, load_settings()
    mp.undo()


@pytest.fixture(scope="session")
def pipeline_tables(built_warehouse: Warehouse) -> dict[str, tuple[int, list[str]]]:
    """Row counts and columns of every table right after the `pipeline` run."""
    return built_warehouse.tables


def copy_data_dir(source: Path, target: Path) -> None:
    """A copy of a built data directory that works on its own: MLflow records artifact locations as
    absolute paths (in its store and in each logged model's MLmodel file), which are moved to the
    copy's."""
    shutil.copytree(source, target, symlinks=True)
    store = target / "mlflow" / "mlflow.db"
    if not store.exists():
        return
    for mlmodel in (target / "mlflow").rglob("MLmodel"):
        mlmodel.write_text(mlmodel.read_text().replace(str(source), str(target)))
    con = sqlite3.connect(store)
    try:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type = 'table'")]
        for table in tables:
            for column, kind in con.execute(f'select name, type from pragma_table_info("{table}")').fetchall():
                if "CHAR" in kind.upper() or "TEXT" in kind.upper():
                    con.execute(
                        f'update "{table}" set "{column}" = replace("{column}", ?, ?) where instr("{column}", ?) > 0',
                        [str(source), str(target), str(source)],
                    )
        con.commit()
    finally:
        con.close()


def use_copy_of(warehouse: Warehouse, target: Path, monkeypatch: pytest.MonkeyPatch):
    """Copy the session's warehouse to `target`, point TESSERA_DATA_DIR at the copy, and return its
    settings."""
    from tessera.settings import load_settings

    # what the copy starts from is a good run
    assert warehouse.result.success
    copy_data_dir(warehouse.data_dir, target)
    use_data_dir(monkeypatch, target)
    return load_settings()


@pytest.fixture
def warehouse_copy(built_warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Settings of a private copy of the session's warehouse, TESSERA_DATA_DIR pointing at it: for
    tests that run the graph again or change the data."""
    return use_copy_of(built_warehouse, tmp_path / "data", monkeypatch)


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
            name: con.execute(f"select count(*), sum(hash({columns})) from publish.{name}").fetchall()[0]
            for name in names
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


# --- real time: a Redis server of the session's own (each pytest-xdist worker its own) -----------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """redis-server on a free port of 127.0.0.1 (`make test` installs it: scripts/install_redis.sh)."""
    from tessera.realtime.redis_server import RedisProcess

    with RedisProcess(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_client(redis_server):
    """A client of the session's Redis, emptied before each test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()
