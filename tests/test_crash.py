"""SIGKILL a run mid-way, then run again.

Nothing partial is published (every published table and file is the last good version while the
killed run is dead), the next run does not wait forever for the pool slot the dead run held
(orchestration.recovery frees it), and once it has run, the outputs equal the uninterrupted run's, with
no duplicated rows anywhere.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from datetime import date

import dagster as dg
import duckdb
import pytest

from tessera.landing.generate import GenerateConfig, generate
from tests.conftest import copy_data_dir, empty_mlflow_store, published_fingerprint, use_data_dir

# whole `tessera run` processes killed and rerun: the system tier (make test-system)
pytestmark = pytest.mark.system

DAGSTER_YAML = "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"
# history enough for the 60-day feature snapshot the propensity models train on
CRASH_DATA = {"customers": 150, "days": 100, "seed": 11, "end_date": date(2026, 10, 31)}


def _env(data_dir, home) -> dict[str, str]:
    from tessera.settings import DERIVED_LOCATION_VARS

    env = {k: v for k, v in os.environ.items() if k not in DERIVED_LOCATION_VARS}
    env.update(TESSERA_DATA_DIR=str(data_dir), DAGSTER_HOME=str(home), DO_NOT_TRACK="1", GX_ANALYTICS_ENABLED="false")
    env["TESSERA_GX_DOCS_DIR"] = ""  # no Data Docs: the kills land elsewhere (tests/conftest.py, use_data_dir)
    return env


def _tessera_run(env, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", "run"], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def shop_after_a_run(tmp_path_factory):
    """A generated shop after one uninterrupted `tessera run`, in its own data directory and Dagster
    home: (data dir, home). Each test works on a copy (`_copy_of`)."""
    from tessera.settings import load_settings

    root = tmp_path_factory.mktemp("crash_shop")
    data_dir, home = root / "data", root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    mp = pytest.MonkeyPatch()
    try:
        use_data_dir(mp, data_dir)
        settings = load_settings()
        generate(GenerateConfig(**CRASH_DATA), settings.landing_dir, settings.truth_dir)
        empty_mlflow_store(data_dir / "mlflow" / "mlflow.db")
    finally:
        mp.undo()
    first = _tessera_run(_env(data_dir, home))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return data_dir, home


def _copy_of(shop, tmp_path, monkeypatch):
    """A private copy of the shop: (data dir, home, settings, env)."""
    from tessera.settings import load_settings

    data_dir, home = tmp_path / "data", tmp_path / "dagster_home"
    copy_data_dir(shop[0], data_dir)
    shutil.copytree(shop[1], home)
    use_data_dir(monkeypatch, data_dir)
    return data_dir, home, load_settings(), _env(data_dir, home)


@pytest.mark.graph
def test_a_run_killed_mid_way_leaves_nothing_partial_and_the_next_run_recovers(shop_after_a_run, tmp_path, monkeypatch):
    _data_dir, home, settings, env = _copy_of(shop_after_a_run, tmp_path, monkeypatch)
    good = published_fingerprint(settings, ignore_run_ids=True)
    good_files = published_fingerprint(settings)

    # a second run, killed with SIGKILL while the recommender trains (mid-way through the graph)
    victim = subprocess.Popen(
        [sys.executable, "-m", "tessera.cli", "run"],
        # retrain on every run: on the same data the default cadence would only score (issue 37);
        # Dagster's INFO log on the console, where the step's "holdout from" line is awaited
        # (by default `tessera run` prints progress lines only, issue 39)
        env={**env, "TESSERA_RECOMMENDER_RETRAIN_EVERY_DAYS": "1", "TESSERA_LOG_LEVEL": "INFO"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    for line in victim.stdout:
        seen.append(line)
        if "holdout from" in line:  # logged inside ml/recommendation_candidates
            os.killpg(victim.pid, signal.SIGKILL)
            break
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL, "".join(seen[-50:])

    # the dead run still holds the duckdb pool slot, and nothing it was building is published
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        held = instance.event_log_storage.get_concurrency_info("duckdb")
        assert held.active_slot_count == 1
    finally:
        instance.dispose()
    assert published_fingerprint(settings) == good_files

    # the next run frees the dead run's slot instead of waiting for it, and completes
    again = _tessera_run(env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "marked failed and its concurrency-pool slots freed" in again.stdout + again.stderr
    # same inputs, same outputs (run ids and model versions aside), nothing duplicated
    assert published_fingerprint(settings, ignore_run_ids=True) == good
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        dupes = con.execute(
            """
            select
                (select count(*) - count(distinct (customer_key, rank)) from ml.recommendation_candidates),
                (select count(*) - count(distinct (customer_pkey, rank)) from publish.customer_recommendations),
                (select count(*) - count(distinct order_id) from marts.fct_orders),
                (select count(*) - count(distinct (_source_file, _source_row)) from raw.orders)
            """
        ).fetchall()[0]
    finally:
        con.close()
    assert dupes == (0, 0, 0, 0)


@pytest.mark.graph
def test_a_run_killed_inside_the_erasure_rewrite_is_finished_by_the_next_run(shop_after_a_run, tmp_path, monkeypatch):
    """Issue 33's hostile case: the kill lands right after the erasure rewrote its first published
    version. While the run is dead, every file the release names still matches its manifest (the
    rewrite is a new version, not yet released) and the journal holds the requests; the next run,
    with no operator action, completes the erasure: logged, journal empty, no residue in any table,
    published file or byte of the data directory and Dagster home."""
    from bench.crash_matrix import byte_scan, identifiers, journal, release_consistent, request_erasure

    data_dir, home, settings, env = _copy_of(shop_after_a_run, tmp_path, monkeypatch)
    people = identifiers(settings.duckdb_path, request_erasure(data_dir))
    assert len(people) >= 10
    logged = journal(settings.duckdb_path)["logged_requests"]  # the demo's own earlier requests

    killed = _tessera_run({**env, "TESSERA_CRASH_AT": "erasure:first_rewrite"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-3000:] + killed.stderr[-3000:]
    assert release_consistent(settings.publish_dir) == []
    dead = journal(settings.duckdb_path)
    assert dead["pending_requests"] == 3 and dead["logged_requests"] == logged

    again = _tessera_run(env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert journal(settings.duckdb_path) == {
        "logged_requests": logged + 3,
        "pending_values": 0,
        "pending_requests": 0,
        "owed_compactions": 0,
    }
    assert release_consistent(settings.publish_dir) == []
    scan = byte_scan(data_dir, home, people)
    assert scan["hits"] == {} and scan["files"] > 20
