"""Clickstream is processed incrementally (dbt_project/models/intermediate/int_events.sql): a new
day's file is appended without rewriting history, a changed or removed file replaces its rows, a
row that outlived its file fails the gate, and a full refresh rebuilds it all.

The tests share one data directory and run in order, as files would arrive."""

from __future__ import annotations

import shutil
from datetime import date

import dagster as dg
import duckdb
import pytest

from tests.conftest import materialized_keys, run_job, use_data_dir

SENTINEL = "sentinel: written before the increment"


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    """The customer view built on 30 days of data, the last day of clickstream held back."""
    from tessera.generate import GenerateConfig, generate
    from tessera.settings import load_settings

    root = tmp_path_factory.mktemp("incremental_events")
    mp = pytest.MonkeyPatch()
    use_data_dir(mp, root / "data")
    mp.setenv("TESSERA_LANDING_SETTLE_SECONDS", "0")
    settings = load_settings()
    generate(
        GenerateConfig(customers=150, days=30, seed=5, end_date=date(2026, 10, 31)),
        settings.landing_dir,
        settings.truth_dir,
    )
    events = settings.landing_dir / "events"
    last_day = sorted(events.iterdir())[-1]
    held = root / last_day.name
    shutil.move(last_day, held)
    from orchestration.definitions import defs

    result = defs.resolve_job_def("refresh_customer_view").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert result.success
    yield settings, events, held
    mp.undo()


def _graph():
    from orchestration.definitions import defs

    return defs.resolve_asset_graph()


def _sensor_keys() -> list[dg.AssetKey]:
    """What the landing sensor requests for a change in the events folder."""
    from orchestration.automation import sensor_selection

    return list(sensor_selection(["events"]).resolve(_graph()))


def _query(settings, sql: str, params=()):
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def _usable(settings, source_file: str) -> int:
    """Usable events of one file by the staging rules (the view reads raw as it is now)."""
    sql = "select count(*) from staging.stg_events where _source_file = ? and invalid_reason is null"
    return _query(settings, sql, [source_file])[0][0]


def _processed(settings, source_file: str) -> int:
    return _query(settings, "select count(*) from intermediate.int_events where _source_file = ?", [source_file])[0][0]


def _check(result, name: str) -> bool:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation.passed


def test_a_new_day_is_appended_without_rewriting_history(landing):
    settings, events, held = landing
    first_file = sorted(p.name for p in events.iterdir())[0]
    with duckdb.connect(str(settings.duckdb_path)) as con:
        # mark history: a rebuild would rewrite these rows from raw and lose the mark
        con.execute("update intermediate.int_events set device = ? where _source_file = ?", [SENTINEL, first_file])
    marked = _processed(settings, first_file)
    before = _query(settings, "select count(*) from intermediate.int_events")[0][0]

    shutil.move(held, events / held.name)
    result = run_job(_sensor_keys())

    assert result.success
    assert {k.to_user_string() for k in materialized_keys(result)} == {"raw/events", "intermediate/int_events"}
    assert _check(result, "assert_int_events_match_staging")
    new = _usable(settings, held.name)
    assert new > 50
    assert _processed(settings, held.name) == new
    assert _query(settings, "select count(*) from intermediate.int_events")[0][0] == before + new
    # history untouched: every marked row is still there, still marked
    assert _query(settings, "select count(*) from intermediate.int_events where device = ?", [SENTINEL])[0][0] == marked
    # fct_events is a view: the new day is in the facts without rebuilding them
    in_facts = "select count(*) from marts.fct_events f join intermediate.int_events i using (event_id) where i._source_file = ?"
    assert _query(settings, in_facts, [held.name])[0][0] == new


def test_a_changed_file_replaces_its_rows_and_a_removed_file_takes_them_away(landing):
    settings, events, _ = landing
    files = sorted(events.iterdir())
    changed, removed = files[1], files[2]
    lines = changed.read_text().splitlines(keepends=True)
    changed.write_text("".join(lines[: len(lines) // 2]))  # the shop re-sent a shorter file
    changed_rows = _processed(settings, changed.name)
    removed_rows = _processed(settings, removed.name)
    removed.unlink()
    assert removed_rows > 0

    result = run_job(_sensor_keys())

    assert result.success and _check(result, "assert_int_events_match_staging")
    assert _processed(settings, changed.name) == _usable(settings, changed.name)
    assert 0 < _processed(settings, changed.name) <= len(lines) // 2 < changed_rows
    assert _processed(settings, removed.name) == 0
    # the untouched files were not reprocessed: the marked rows survive this run too
    assert _query(settings, "select count(*) from intermediate.int_events where device = ?", [SENTINEL])[0][0] > 0


def test_a_row_that_outlived_its_file_fails_the_gate_and_a_full_refresh_rebuilds(landing):
    from orchestration.definitions import defs
    from tessera.run import full_refresh_config

    settings, _, _ = landing
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute(
            "insert into intermediate.int_events select * replace ('E-GHOST' as event_id) "
            "from intermediate.int_events limit 1"
        )

    result = run_job(_sensor_keys())
    assert not result.success
    assert not _check(result, "assert_int_events_match_staging")

    keys = set(_sensor_keys())
    job = defs.resolve_job_def("tessera_all").get_subset(asset_selection=keys)
    refreshed = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), run_config=full_refresh_config(job), raise_on_error=False
    )
    assert refreshed.success
    assert _query(settings, "select count(*) from intermediate.int_events where event_id = 'E-GHOST'")[0][0] == 0
    assert _query(settings, "select count(*) from intermediate.int_events where device = ?", [SENTINEL])[0][0] == 0
    usable = _query(settings, "select count(*) from staging.stg_events where invalid_reason is null")[0][0]
    assert _query(settings, "select count(*) from intermediate.int_events")[0][0] == usable
