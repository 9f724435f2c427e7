"""`tessera run` as its users meet it (issue 39): its runs belong to their job and code location in
the Dagster UI and carry the git commit, mode and data directory; the console shows one line per
step with the elapsed time; the summary starts with the outcome and its cause and marks what this
run did not rebuild; a blocked run names its gate, expectation, file and rows."""

from __future__ import annotations

import io
import json
import re
import textwrap
import uuid
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestration.launch import (
    DATA_DIR_TAG,
    GIT_SHA_TAG,
    MODE_TAG,
    data_dir_label,
    execute_in_process,
    git_sha,
    workspace_job,
)
from orchestration.progress import Progress, prune_logs
from orchestration.run import number, outcome_lines
from tessera.quality.gate import explain_failure
from tessera.quality.suites import BY_FILE, validate_table
from tessera.settings import PROJECT_ROOT

# a code location of three assets, whose blocking check on `a` fails: `b` and `c` are never run
TOY = """
import dagster as dg

@dg.asset
def a():
    return 1

@dg.asset_check(asset=a, blocking=True)
def a_is_good():
    yield dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR)
    raise dg.Failure(description="gate a_is_good: 3 rows of f.csv failed\\nsecond line", allow_retries=False)

@dg.asset(deps=[a])
def b():
    return 2

@dg.asset(deps=[b])
def c():
    return 3

defs = dg.Definitions(
    assets=[a, b, c], asset_checks=[a_is_good], jobs=[dg.define_asset_job("toy_job")],
    executor=dg.in_process_executor,
)
"""


@pytest.fixture
def toy_workspace(tmp_path) -> Path:
    (tmp_path / "toy_defs.py").write_text(TOY)
    (tmp_path / "workspace.yaml").write_text(
        textwrap.dedent("""\
            load_from:
              - python_file:
                  relative_path: toy_defs.py
                  working_directory: .
                  location_name: toy
            """)
    )
    return tmp_path / "workspace.yaml"


class Clock:
    """A clock that moves 1.5 s each time it is read: the progress lines' seconds are exact."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.5
        return self.now


def _toy_run(instance, workspace, listener=None):
    job = workspace_job("toy_job", workspace, "toy")
    run_id = str(uuid.uuid4())
    if listener is not None:
        instance.add_event_listener(run_id, listener)
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    return execute_in_process(instance, job, run_id, quiet, {"tessera/mode": "demo"})


def test_a_run_executed_in_process_carries_its_code_locations_origin_and_is_listed_under_its_job(toy_workspace):
    # issue 39: runs of `tessera run` never appeared on their job's page ("No runs found"): they had
    # no code-location origin, and the webserver lists a job's runs by the origin's label
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    with dg.instance_for_test() as instance:
        result = _toy_run(instance, toy_workspace)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        assert run.remote_job_origin.job_name == "toy_job"
        assert run.remote_job_origin.location_name == "toy"
        assert run.remote_job_origin.repository_origin.get_label() == "__repository__@toy"
        assert run.job_code_origin.repository_origin.code_pointer.python_file == str(
            toy_workspace.parent / "toy_defs.py"
        )
        assert run.tags["tessera/mode"] == "demo"

        # the query the job page's Runs tab makes, on a workspace loaded as `dagster dev` loads it
        query = """query($selector: PipelineSelector!) {
            pipelineOrError(params: $selector) { ... on Pipeline { runs { runId status } } } }"""
        selector = {"repositoryLocationName": "toy", "repositoryName": "__repository__", "pipelineName": "toy_job"}
        with WorkspaceProcessContext(instance, WorkspaceFileTarget([str(toy_workspace)])) as workspace:
            reply = execute_dagster_graphql(workspace.create_request_context(), query, {"selector": selector})
        assert reply.errors is None
        assert reply.data["pipelineOrError"]["runs"] == [{"runId": result.run_id, "status": "FAILURE"}]


def test_progress_prints_one_line_per_step_start_and_end_and_logs_everything_to_the_file(toy_workspace):
    out, log = io.StringIO(), io.StringIO()
    with dg.instance_for_test() as instance:
        result = _toy_run(instance, toy_workspace, Progress(log, out, clock=Clock()))
    lines = out.getvalue().splitlines()
    # the clock moves 1.5 s per reading: the step's own seconds are those between its two lines
    assert [re.sub(r"^\[\s*[\d.]+ s\] ", "", line) for line in lines] == [
        "a started",
        "a done in 1.5 s",
        "a_a_is_good started",
        "a_a_is_good FAILED after 1.5 s: gate a_is_good: 3 rows of f.csv failed",
    ]
    assert all(re.match(r"^\[\s*\d+\.\d s\] ", line) for line in lines)
    # the steps that were not run print nothing; Dagster's own account of them is in the file
    written = log.getvalue()
    assert "Dependencies for step b failed: ['a_a_is_good']" in written
    assert "STEP_FAILURE" in written and "second line" in written
    assert result.run_id not in out.getvalue()

    # and the summary's first lines: the outcome, then the cause in the step's own words
    assert outcome_lines(result, ["b", "c"]) == [
        f"FAILED: tessera run {result.run_id}",
        "cause: step a_a_is_good: gate a_is_good: 3 rows of f.csv failed",
        "  second line",
        "not run (2 steps downstream of the failure): b, c",
    ]


def test_a_blocked_run_records_no_failure_of_the_assets_it_did_not_run(toy_workspace):
    """What Dagster 1.13 records for the assets downstream of a blocking gate: no materialization
    and no ASSET_FAILED_TO_MATERIALIZE event (OSS Dagster emits none), no step failure of theirs;
    their last materialization stays the latest. The UI still draws them "Failed", from the run's
    status alone (docs/operations.md, "A blocked run in the UI")."""
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("b"))
        before = instance.get_latest_materialization_event(dg.AssetKey("b"))
        result = _toy_run(instance, toy_workspace)
        events = instance.all_logs(result.run_id)
        kinds = [(e.dagster_event.event_type_value, e.step_key) for e in events if e.dagster_event is not None]
        assert ("ASSET_FAILED_TO_MATERIALIZE", "b") not in kinds
        assert not [k for k in kinds if k[0] == "ASSET_FAILED_TO_MATERIALIZE"]
        assert [s for kind, s in kinds if kind == "STEP_FAILURE"] == ["a_a_is_good"]
        assert not [s for kind, s in kinds if kind == "STEP_START" and s in ("b", "c")]
        after = instance.get_latest_materialization_event(dg.AssetKey("b"))
        assert (after.run_id, after.timestamp) == (before.run_id, before.timestamp)


def test_provenance_tags_name_the_commit_and_a_data_directory_without_the_users_home(tmp_path):
    assert re.fullmatch(r"[0-9a-f]{40}", git_sha(PROJECT_ROOT) or "")
    assert git_sha(tmp_path) is None  # not a git checkout: the tag is left out
    assert data_dir_label(PROJECT_ROOT / "data") == "data"
    assert data_dir_label(PROJECT_ROOT / "data" / "online_retail") == "data/online_retail"
    assert data_dir_label(tmp_path / "home" / "ann" / "shop", home=tmp_path / "home" / "ann") == "~/shop"
    assert data_dir_label(Path("/srv/tessera/data"), home=tmp_path) == "/srv/tessera/data"
    assert (GIT_SHA_TAG, MODE_TAG, DATA_DIR_TAG) == ("tessera/git_sha", "tessera/mode", "tessera/data_dir")


def test_counts_print_as_integers_and_rates_with_four_decimals():
    assert [number(v) for v in (1991.0, 2_000_000.0, 0.0, 0.12345, 3.5)] == [
        "1,991",
        "2,000,000",
        "0",
        "0.1235",
        "3.5000",
    ]


def test_old_run_logs_are_pruned_to_the_newest(tmp_path):
    import os

    for i in range(5):
        for kind in ("dagster", "dbt"):
            path = tmp_path / f"{kind}-{i}.log"
            path.write_text("x")
            os.utime(path, (1_000 + i, 1_000 + i))
    (tmp_path / "other.log").write_text("x")
    removed = prune_logs(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == [f"{k}-{i}.log" for k in ("dagster", "dbt") for i in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dagster-3.log",
        "dagster-4.log",
        "dbt-3.log",
        "dbt-4.log",
        "other.log",
    ]


def test_dbt_console_lines_go_to_the_runs_dbt_log_when_one_is_set(tmp_path, capsys):
    import sys

    from orchestration.dbt import _dbt_console

    log = tmp_path / "logs" / "dbt-run.log"
    with _dbt_console(str(log)):
        sys.stdout.write("1 of 2 OK created sql table model staging.a\n")
    with _dbt_console(str(log)):  # a second dbt step of the run appends
        sys.stdout.write("2 of 2 OK created sql table model staging.b\n")
    with _dbt_console(None):  # Dagster's UI and daemon: stdout, the step's compute log
        sys.stdout.write("3 of 3 OK\n")
    assert log.read_text().splitlines() == [
        "1 of 2 OK created sql table model staging.a",
        "2 of 2 OK created sql table model staging.b",
    ]
    assert capsys.readouterr().out == "3 of 3 OK\n"


def test_a_failed_gate_names_each_expectation_its_rows_and_their_files_and_shows_nulls_as_null(tmp_path):
    # issue 39: the sample of a not-null expectation read ["nan", …] and the failure named no file
    con = duckdb.connect()
    con.execute("create schema raw")
    con.execute(
        """create table raw.customers as select * from (values
            ('C1', 'GB', 'customers_2026-10.csv'), (null, 'GB', 'customers_broken.csv'),
            (null, 'XX', 'customers_broken.csv'), ('C4', 'YY', 'customers_2026-10.csv'),
            (null, 'FR', 'customers_2026-10.csv'), ('C6', 'FR', 'customers_2026-10.csv')
        ) as t(customer_id, country, _source_file)"""
    )
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": "raw_customers", "meta": {"table": "raw.customers"}, "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "country", "value_set": ["GB", "FR"]}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "country"}, "meta": {}},
    ]}))  # fmt: skip
    result = validate_table(con, "raw.customers", path, 1000)
    by_expectation = {f["expectation"]: f for f in result.failed}
    nulls = by_expectation["expect_column_values_to_not_be_null"]
    assert nulls["unexpected_sample"] == ["null", "null", "null"]
    assert (nulls["unexpected_count"], nulls["rows_checked"]) == (3, 6)
    assert nulls[BY_FILE] == {"customers_broken.csv": 2, "customers_2026-10.csv": 1}
    assert by_expectation["expect_column_values_to_be_in_set"][BY_FILE] == {
        "customers_2026-10.csv": 1,
        "customers_broken.csv": 1,
    }

    text = explain_failure("gx_raw_customers", "raw.customers", result)
    lines = text.splitlines()
    assert (
        lines[0]
        == "quality gate gx_raw_customers stopped the run: raw.customers failed 3 of 3 expectations (suite raw_customers.json)"
    )
    assert lines[1] == (
        "- expect_column_values_to_not_be_null on customer_id: 3 of 6 rows "
        "(2 in customers_broken.csv, 1 in customers_2026-10.csv), e.g. null, null, null"
    )
    assert lines[2].startswith(
        "- expect_column_values_to_be_in_set on country: 2 of 6 rows (1 in customers_2026-10.csv"
    )
    assert "nan" not in text.lower().replace("nothing", "")
    assert "nothing downstream of raw.customers was run in this run" in text


def test_a_mart_without_a_file_column_still_fails_with_its_row_counts(tmp_path):
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute("create table marts.dim_x as select * from (values (1), (null), (3)) as t(x_id)")
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": "marts_dim_x", "meta": {"table": "marts.dim_x"}, "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "x_id"}},
    ]}))  # fmt: skip
    result = validate_table(con, "marts.dim_x", path, 1000)
    assert result.failed[0][BY_FILE] is None and result.failed[0]["unexpected_sample"] == ["null"]
    assert "- expect_column_values_to_not_be_null on x_id: 1 of 3 rows, e.g. null" in explain_failure(
        "gx_marts_dim_x", "marts.dim_x", result
    )


@pytest.mark.graph
def test_tessera_run_of_a_blocked_delivery_tells_the_cause_first_and_is_a_run_of_its_job(tmp_path, monkeypatch, capsys):
    """One whole-graph run (it stops after the raw gates): a second customers file without a
    customer_id column. The run belongs to the code location's job, its tags say what it was made
    from, the console shows the cause first and each step not run once, and no "nan"."""
    from orchestration.run import run_pipeline
    from tessera.landing.generate import GenerateConfig, generate
    from tessera.settings import load_settings
    from tests.conftest import empty_mlflow_store, use_data_dir

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    use_data_dir(monkeypatch, tmp_path / "data")
    settings = load_settings()
    generate(
        GenerateConfig(customers=120, days=30, seed=3, end_date=date(2026, 10, 31)),
        settings.landing_dir,
        settings.truth_dir,
    )
    (settings.landing_dir / "customers" / "customers_export_broken.csv").write_text(
        "id;name;mail\n" + "".join(f"{i};someone;x{i}@example.com\n" for i in range(200))
    )
    empty_mlflow_store(settings.data_dir / "mlflow" / "mlflow.db")

    assert run_pipeline() == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    summary = lines[lines.index("=" * 78) + 1 :]
    assert summary[0].startswith("FAILED: tessera run ")
    assert summary[1].startswith("cause: step ") and "quality gate gx_raw_customers stopped the run" in summary[1]
    cause = "\n".join(summary[1 : summary.index("=" * 78)])
    assert "expect_column_values_to_not_be_null on customer_id: " in cause
    assert re.search(r"customer_id: [\d,]+ of [\d,]+ rows \(200 in customers/customers_export_broken\.csv", cause) or (
        "customers_export_broken.csv" in cause
    ), cause
    not_run = next(line for line in summary if line.startswith("not run ("))
    names = not_run.split(": ", 1)[1].split(", ")
    assert len(names) == len(set(names)) and "dbt_staging" in " ".join(names)
    assert "nan" not in re.sub(r"[A-Za-z_]nan|nan[A-Za-z_]", "", out)  # words like "financial" aside
    assert "Traceback" not in out
    # the progress lines, not Dagster's log: every line before the summary is ours
    progress = lines[1 : lines.index("")]
    assert progress and all(re.match(r"^\[\s*\d+\.\d s\] ", line) for line in progress), progress[:5]
    assert any("gx_raw_customers FAILED after" in line for line in progress)
    log_file = next(settings.data_dir.glob("logs/dagster-*.log"))
    assert "Dependencies for step" in log_file.read_text()
    # the checks that never ran are not counted as passed
    checks = next(line for line in summary if line.startswith("checks: "))
    assert re.fullmatch(r"checks: \d+ passed, [1-9]\d* failed, [1-9]\d* not run \(downstream of the failure\)", checks)

    instance = dg.DagsterInstance.get()
    (record,) = instance.get_run_records()
    run = record.dagster_run
    assert run.job_name == "tessera_all"
    assert run.remote_job_origin.repository_origin.get_label() == "__repository__@tessera"
    assert run.remote_job_origin.job_name == "tessera_all"
    assert re.fullmatch(r"[0-9a-f]{40}", run.tags[GIT_SHA_TAG])
    assert run.tags[MODE_TAG] == "demo"
    assert run.tags[DATA_DIR_TAG] == data_dir_label(settings.data_dir)
    failures = [e for e in instance.all_logs(run.run_id) if e.dagster_event and e.dagster_event.is_step_failure]
    assert [e.step_key for e in failures] == [
        next(s for s in (e.step_key for e in failures) if "gx_raw_customers" in s)
    ]


def test_the_summary_of_a_blocked_run_starts_with_its_cause_and_counts_what_did_not_run(
    toy_workspace, tmp_path, monkeypatch, capsys
):
    from orchestration.run import print_summary
    from tessera.settings import load_settings
    from tests.conftest import use_data_dir

    use_data_dir(monkeypatch, tmp_path / "data")
    settings = load_settings()
    settings.ensure_dirs()
    with dg.instance_for_test() as instance:
        result = _toy_run(instance, toy_workspace)
        print_summary(settings, result, instance, tmp_path / "run.log")
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "=" * 78
    assert lines[2:6] == [
        f"FAILED: tessera run {result.run_id}",
        "cause: step a_a_is_good: gate a_is_good: 3 rows of f.csv failed",
        "  second line",
        "not run (2 steps downstream of the failure): b, c",
    ]
    assert lines[6].startswith(f"Dagster's log of this run: {tmp_path / 'run.log'}; ")
    assert lines[6].endswith(f"/runs/{result.run_id}")
    assert lines[7] == "=" * 78
    # the failed check counts as failed; nothing the run did not reach is counted as passed
    assert lines[8] == "checks: 0 passed, 1 failed"
    assert any(line.endswith("[the last good versions: this run published none]") for line in lines)


def test_a_failed_dbt_step_is_told_by_dbts_own_errors_not_the_command_line():
    from orchestration.progress import dbt_failure_text

    message = (
        "The dbt CLI process with command\n\n`/x/.venv/bin/dbt --no-write-json build --select staging`\n\n"
        "failed with exit code `1`. Check the stdout in the Dagster compute logs for the full information about "
        "the error, or view the dbt debug log: /x/dbt.log.\n\nErrors parsed from dbt logs:\n\n"
        "53 of 57 FAIL 27 assert_order_lines_match_current .... [\x1b[31mFAIL 27\x1b[0m in 17.47s]\n\n"
        "\x1b[31mFailure in test assert_order_lines_match_current (tests/assert_order_lines_match_current.sql)\x1b[0m\n\n"
        "  Got 27 results, configured to fail if != 0\n"
    )
    assert dbt_failure_text(message).splitlines() == [
        "dbt: Failure in test assert_order_lines_match_current (tests/assert_order_lines_match_current.sql)",
        "53 of 57 FAIL 27 assert_order_lines_match_current .... [FAIL 27 in 17.47s]",
        "Failure in test assert_order_lines_match_current (tests/assert_order_lines_match_current.sql)",
        "Got 27 results, configured to fail if != 0",
    ]
    assert dbt_failure_text("ValueError: something else") is None
