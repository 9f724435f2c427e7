"""Fail fast: the configuration is checked before any work (tessera/settings.py `preflight`), by
`tessera run`, `tessera serve` and every Dagster step (orchestration/resources.py)."""

from __future__ import annotations

import time

import dagster as dg
import pytest

from orchestration.resources import TesseraResource
from tessera import settings as settings_module
from tessera.settings import ConfigurationError, load_settings, preflight, preflight_once
from tests.conftest import run_job, use_data_dir


def _production_without_salt(monkeypatch):
    monkeypatch.setenv("TESSERA_MODE", "production")
    monkeypatch.delenv("TESSERA_PSEUDONYM_SALT", raising=False)


def test_every_problem_is_listed_in_one_error(tmp_path, monkeypatch):
    _production_without_salt(monkeypatch)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    use_data_dir(monkeypatch, tmp_path / "data")
    monkeypatch.setenv("TESSERA_PUBLISH_DIR", str(blocker / "publish"))
    monkeypatch.setenv("TESSERA_DUCKDB_PATH", str(tmp_path / "a-dir.duckdb"))
    (tmp_path / "a-dir.duckdb").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker}/mlflow/mlflow.db")
    with pytest.raises(ConfigurationError) as err:
        preflight(load_settings())
    message = str(err.value)
    assert message.startswith("tessera cannot run: 4 problem(s) in its configuration")
    assert "TESSERA_PSEUDONYM_SALT is not set" in message and "(TESSERA_MODE=production)" in message
    assert f"TESSERA_PUBLISH_DIR {blocker / 'publish'} cannot be created: {blocker} is not a directory" in message
    assert f"TESSERA_DUCKDB_PATH {tmp_path / 'a-dir.duckdb'} is a directory, not a DuckDB file" in message
    assert f"MLFLOW_TRACKING_URI's directory {blocker / 'mlflow'} cannot be created" in message
    # nothing was created by the check
    assert not (tmp_path / "data").exists()


def test_a_usable_configuration_passes_and_a_read_only_landing_folder_is_enough(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERA_MODE", "production")
    monkeypatch.setenv("TESSERA_PSEUDONYM_SALT", "a-deployment-secret-of-some-length")
    use_data_dir(monkeypatch, tmp_path / "data")
    preflight(load_settings())  # nothing exists yet: every directory can be created
    monkeypatch.setenv("TESSERA_LANDING_DIR", str(tmp_path / "a-file"))
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigurationError, match="TESSERA_LANDING_DIR .* exists but is not a directory"):
        preflight(load_settings())


def test_serving_needs_a_readable_publish_directory_but_never_the_salt(tmp_path, monkeypatch):
    _production_without_salt(monkeypatch)
    use_data_dir(monkeypatch, tmp_path / "data")
    with pytest.raises(ConfigurationError) as err:
        preflight(load_settings(), purpose="serve")
    assert str(err.value).startswith("tessera cannot serve: 1 problem(s)")
    assert f"TESSERA_PUBLISH_DIR {tmp_path / 'data' / 'publish'} is not a directory" in str(err.value)
    (tmp_path / "data" / "publish").mkdir(parents=True)
    preflight(load_settings(), purpose="serve")


def test_tessera_run_refuses_production_without_a_salt_before_any_work(tmp_path, monkeypatch, capsys):
    # issue 33: this failed only at privacy/erasure, ~45 s in, after loads, dbt and identity had run
    from orchestration.run import run_pipeline

    _production_without_salt(monkeypatch)
    use_data_dir(monkeypatch, tmp_path / "data")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    started = time.perf_counter()
    assert run_pipeline() == 2
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    assert err.startswith("tessera run: tessera cannot run: 1 problem(s)")
    assert "TESSERA_PSEUDONYM_SALT is not set" in err
    assert elapsed < 1.0, elapsed
    # no work: no data directory, no warehouse, no Dagster run
    assert not (tmp_path / "data").exists() and not (tmp_path / "dagster_home").exists()


@pytest.mark.graph
def test_a_dagster_run_fails_at_its_first_steps_on_a_bad_configuration(tmp_path, monkeypatch):
    """A run launched from the UI or a schedule goes through the TesseraResource: every step that
    asks for settings fails before doing anything, with the same error, and nothing downstream runs."""
    _production_without_salt(monkeypatch)
    use_data_dir(monkeypatch, tmp_path / "data")
    started = time.perf_counter()
    result = run_job()
    elapsed = time.perf_counter() - started
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures
    for event in failures:
        assert "tessera cannot run" in event.event_specific_data.error.cause.message
        assert "TESSERA_PSEUDONYM_SALT is not set" in event.event_specific_data.error.cause.message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_SUCCESS"]
    assert not (tmp_path / "data" / "tessera.duckdb").exists()
    print(f"failed {len(failures)} steps in {elapsed:.1f} s")


def test_the_resource_checks_once_per_process_and_configuration_and_rechecks_failures(tmp_path, monkeypatch):
    use_data_dir(monkeypatch, tmp_path / "data")
    monkeypatch.setattr(settings_module, "_PREFLIGHT_PASSED", set())
    calls = []
    real = settings_module.preflight
    monkeypatch.setattr(settings_module, "preflight", lambda s, *a, **k: calls.append(s) or real(s, *a, **k))
    resource = TesseraResource()
    resource.settings()
    resource.settings()
    assert len(calls) == 1
    # another configuration is checked anew; a failing one on every call
    _production_without_salt(monkeypatch)
    for _ in range(2):
        with pytest.raises(ConfigurationError):
            resource.settings()
    assert len(calls) == 3
    with pytest.raises(ConfigurationError):
        preflight_once(load_settings())


def test_a_run_is_tagged_with_the_process_running_its_steps(tmp_path, monkeypatch):
    """Runs launched by the daemon (UI, schedule, sensor) get the tags `tessera run` sets at launch,
    from the TesseraResource's setup in the run worker; tags copied from a parent run are replaced."""
    import os

    from orchestration.recovery import HOST_TAG, PID_TAG, PROCESS_START_TAG, TAGGED_RUN_TAG, process_start

    use_data_dir(monkeypatch, tmp_path / "data")

    @dg.asset
    def probe(tessera: TesseraResource) -> None:
        tessera.settings()

    with dg.instance_for_test() as instance:
        stale = {PID_TAG: "999999", HOST_TAG: "elsewhere", TAGGED_RUN_TAG: "the-parent-run"}
        result = dg.materialize([probe], resources={"tessera": TesseraResource()}, instance=instance, tags=stale)
        tags = instance.get_run_by_id(result.run_id).tags
    assert result.success
    assert tags[PID_TAG] == str(os.getpid())
    assert tags[TAGGED_RUN_TAG] == result.run_id
    assert tags[HOST_TAG] != "elsewhere"
    assert tags[PROCESS_START_TAG] == process_start(os.getpid())
