"""What the Dagster UI shows: every asset described, owned, grouped and kinded; every table asset
with its schema, row count, preview, duration and rows processed (checked against DuckDB); ML
assets linked to their MLflow run with a chart; gates with their Great Expectations results."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestration.definitions import defs
from orchestration.metadata import MASK, PREVIEW_CELL_CHARS, PREVIEW_MAX_CHARS, PREVIEW_ROWS, capped, table_metadata
from tests.conftest import shown_row_counts

KNOWN_KINDS = {"dbt", "duckdb", "python", "lightfm", "mlflow", "great_expectations", "scikitlearn", "parquet"}


def test_every_asset_has_a_description_an_owner_a_group_and_kinds():
    graph = defs.resolve_asset_graph()
    kinds_seen = set()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 20, key
        assert node.owners, key
        assert node.group_name and node.group_name != "default", key
        assert node.kinds and node.kinds <= KNOWN_KINDS, (key, node.kinds)
        kinds_seen |= node.kinds
    assert {"dbt", "duckdb", "python", "lightfm", "mlflow", "great_expectations"} <= kinds_seen


# `<word>` outside a code span: the UI's Markdown renderer takes it for an HTML tag and drops it
PLACEHOLDER = re.compile(r"<[A-Za-z_][^<>\n]*>")
CODE_SPAN = re.compile(r"`[^`\n]*`")
# dagster-dbt's own entries on every dbt asset, objects the code location needs at run time; the
# Dagster UI hides them by name (ui-core AssetEventMetadataEntriesTable), so they never render
HIDDEN_BY_THE_UI = {"dagster_dbt/manifest", "dagster_dbt/dagster_dbt_translator"}


def unescaped_placeholders(text: str | None) -> list[str]:
    return PLACEHOLDER.findall(CODE_SPAN.sub("", (text or "").replace("\\<", "")))


def serialisable(value) -> bool:
    """Whether the UI receives `value` as itself, not as '[Class] (unserializable)'."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (dict, list)):
        try:
            json.dumps(value)
        except TypeError:
            return False
        return True
    if isinstance(value, (dg.MetadataValue, dg.TableSchema, dg.TableColumnLineage)):
        dg.serialize_value(value)
        return True
    return False


def test_descriptions_and_metadata_render_as_written_in_the_ui():
    # issue 39: descriptions lost `<landing>` to the Markdown renderer, and every dbt asset showed
    # `dagster_dbt/project [DbtProject] (unserializable)`
    graph = defs.resolve_asset_graph()
    texts: dict[str, str | None] = {}
    unserialisable = []
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        texts[key.to_user_string()] = node.description
        for label, value in node.metadata.items():
            if label not in HIDDEN_BY_THE_UI and not serialisable(value):
                unserialisable.append(f"{key.to_user_string()}: {label} [{type(value).__name__}]")
            if isinstance(value, dg.TableSchema):
                texts |= {f"{key.to_user_string()}.{c.name}": c.description for c in value.columns}
            elif isinstance(value, str):
                texts[f"{key.to_user_string()} {label}"] = value
    texts |= {f"check {k.to_user_string()}": graph.get_check_spec(k).description for k in graph.asset_check_keys}
    for job in defs.jobs:
        texts[f"job {job.name}"] = job.description
    for automation in [*defs.sensors, *defs.schedules]:
        texts[f"{type(automation).__name__} {automation.name}"] = automation.description
    assert len(texts) > 150
    assert {name: found for name, text in texts.items() if (found := unescaped_placeholders(text))} == {}
    assert unserialisable == []


def test_the_landing_sensor_shows_its_target_as_a_selection_not_a_python_repr():
    # issue 39: the target read SubtractAssetSelection(left=SubtractAssetSelection(left=AllSelection(...
    # (the freshness checks' sensor, built by Dagster, still targets a set of check keys, which
    # Dagster 1.13 prints so)
    [sensor] = [s for s in defs.sensors if s.name == "landing_files_sensor"]
    assert str(sensor.asset_selection) == 'not key:"ml/recommendation_candidates"+'


def test_the_render_checks_find_what_the_ui_would_lose():
    assert unescaped_placeholders("files under <landing>/customers/") == ["<landing>"]
    assert unescaped_placeholders("files under `<landing>/customers/`, a -> b, x < y > z") == []
    assert unescaped_placeholders("escaped \\<data dir>") == []
    assert not serialisable(object()) and serialisable(dg.MetadataValue.md("x")) and serialisable({"a": [1]})


def _materializations(result) -> dict[str, dict]:
    return {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}


def test_every_table_asset_shows_schema_row_count_preview_duration_and_rows(pipeline, pipeline_tables):
    result, _ = pipeline
    by_asset = _materializations(result)
    assert len(by_asset) > 40
    # publish/release moves files, not a table: its metadata is the release it made
    release = by_asset.pop("publish/release")
    assert set(release["current"].value) == {k.removeprefix("publish/") for k in by_asset if k.startswith("publish/")}
    # the trigger audience is files for the real-time worker, not a table: its metadata is the export
    audience = by_asset.pop("decisioning/trigger_audience")
    assert audience["rows"].value["customers"] == audience["rows_processed"].value > 0
    assert Path(audience["path"].value).is_dir()
    for asset, metadata in by_asset.items():
        # compared with the tables as the run left them (later tests change the data)
        rows, columns = pipeline_tables[metadata["table"].value]
        assert metadata["dagster/row_count"].value == rows, asset
        assert [c.name for c in metadata["dagster/column_schema"].schema.columns] == columns, asset
        preview = metadata["preview"].value
        assert preview == "(no rows)" if rows == 0 else preview.count("\n") == min(rows, 5) + 1, asset
        if "changed_by" in metadata:  # a table the erasure changed after its own step built it
            assert metadata["changed_by"].value == "privacy/erasure", asset
        else:
            assert metadata["duration_seconds"].value >= 0, asset
        assert metadata["rows_processed"].value >= 0, asset
    # a loader processed every landing record; a dbt model's rows are the rows it wrote
    raw = by_asset["raw/customers"]
    assert raw["rows_processed"].value == raw["landing_records"].value
    dim = [e.materialization.metadata for e in result.get_asset_materialization_events() if e.step_key == "dbt_marts"]
    dim = next(m for m in dim if m["table"].value == "marts.dim_customers")
    assert dim["rows_processed"].value == dim["dagster/row_count"].value > 0
    assert dim["duration_seconds"].value > 0


@pytest.mark.graph
def test_every_row_count_the_ui_shows_after_a_run_is_the_tables(pipeline, pipeline_tables):
    # issue 39: a step that changed a table another asset owns left that asset's count stale; the
    # loaders' side tables showed none
    result, _ = pipeline
    shown = shown_row_counts(result)
    assert {"raw/load_audit", "raw/load_rejects", "raw/customers", "marts/dim_customers"} <= shown.keys()
    assert {a: rows for a, (_, rows, _) in shown.items()} == {
        a: pipeline_tables[table][0] for a, (table, _, _) in shown.items()
    }


def test_a_load_observes_the_side_tables_it_changed():
    from orchestration.sources import side_table_observations

    con = duckdb.connect()
    con.execute("create schema raw")
    con.execute("create table raw.load_audit as select 'orders' as source, 'o.csv' as _source_file from range(3)")
    con.execute(
        "create table raw.load_rejects as select 'orders' as source, 'Ada;ada@example.com' as raw_content from range(2)"
    )
    shown = {"raw/load_audit": 2, "raw/load_rejects": 2}
    [audit] = side_table_observations(con, lambda key: shown[key.to_user_string()])
    assert isinstance(audit, dg.AssetObservation) and audit.asset_key == dg.AssetKey(["raw", "load_audit"])
    assert audit.metadata["dagster/row_count"].value == 3 and audit.metadata["table"].value == "raw.load_audit"
    [_, rejects] = side_table_observations(con, lambda key: None)  # nothing shown yet
    assert rejects.metadata["dagster/row_count"].value == 2
    assert "ada@" not in rejects.metadata["preview"].value and MASK in rejects.metadata["preview"].value


def test_previews_never_show_personal_data(pipeline):
    result, settings = pipeline
    by_asset = _materializations(result)
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        emails = {r[0] for r in con.execute("select email from marts.dim_customers where email is not null").fetchall()}
        raw_emails = {r[0] for r in con.execute("select email from raw.customers where email is not null").fetchall()}
    finally:
        con.close()
    for asset in ("marts/dim_customers", "raw/customers", "staging/stg_customers"):
        preview = by_asset[asset]["preview"].value
        assert "***" in preview, asset
        assert not any(e in preview for e in emails | raw_emails), asset
    # what is not personal stays readable
    dim = by_asset["marts/dim_customers"]["preview"].value
    assert "customer_key" in dim
    cells = [c.strip() for line in dim.splitlines()[2:] for c in line.strip("|").split("|")]
    assert MASK in cells and any(c not in (MASK, "") for c in cells)


# The values of the generated customers' personal columns, as delivered and as staging and the
# marts normalise them: none of them may be in the Dagster event log.
PERSONAL_VALUES = {
    "raw.customers": ("customer_id", "first_name", "last_name", "email", "phone", "loyalty_card", "address"),
    "staging.stg_customers": ("first_name_key", "last_name_key", "email", "phone_e164"),
    "marts.dim_customers": ("customer_key", "email", "phone_e164"),
    "raw.events": ("anonymous_id",),
}
# values shorter than this are not searched for (as the erasure: a substring of too much else)
MIN_VALUE_CHARS = 6
# what one event of a run may weigh, serialized; the largest are the ML assets' embedded plots
EVENT_MAX_CHARS = 100_000


def _personal_values(settings) -> dict[str, set[str]]:
    """Each value (lower-cased) and the columns holding it."""
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    values: dict[str, set[str]] = {}
    try:
        for table, columns in PERSONAL_VALUES.items():
            for column in columns:
                for (v,) in con.execute(f"select distinct cast({column} as varchar) from {table}").fetchall():
                    if v is not None and len(v.strip()) >= MIN_VALUE_CHARS:
                        values.setdefault(v.strip().lower(), set()).add(f"{table}.{column}")
    finally:
        con.close()
    return values


def _without_column_docs(value):
    """The serialised event without its columns' descriptions: text written in the repository
    (dbt YAML, tessera/publish/columns.yml), not data, and "Thompson sampling" there is a method,
    not the demo customer named Thompson. Everything else of the event is scanned."""
    if isinstance(value, dict):
        return {
            k: (None if k == "description" and value.get("__class__") == "TableColumn" else _without_column_docs(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_without_column_docs(v) for v in value]
    return value


def test_no_event_of_a_run_holds_a_personal_value_or_exceeds_the_size_cap(pipeline):
    # issue 33: previews showed name keys, CRM ids and quarantined customer lines, and check
    # metadata malformed emails; the event log is never rewritten by an erasure
    result, settings = pipeline
    values = _personal_values(settings)
    columns = {c for kinds in values.values() for c in kinds}
    assert {f"{t}.{c}" for t, cs in PERSONAL_VALUES.items() for c in cs} == columns
    events = [
        (e, json.dumps(_without_column_docs(json.loads(dg.serialize_value(e))), ensure_ascii=False))
        for e in result.all_events
    ]
    scanned = [t for e, t in events if e.event_type_value in ("ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION")]
    assert len(scanned) > 60 and any("preview" in t for t in scanned)
    leaks = {}
    for event, text in events:
        lowered = text.lower()
        found = sorted({c for value, kinds in values.items() if value in lowered for c in kinds})
        if found:
            leaks[f"{event.event_type_value} {event.step_key}"] = found
    assert leaks == {}
    sizes = {f"{e.event_type_value} {e.step_key}": len(t) for e, t in events}
    assert max(sizes.values()) <= EVENT_MAX_CHARS, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


def test_data_docs_of_a_run_hold_no_email_of_a_customer(pipeline):
    _result, settings = pipeline
    values = _personal_values(settings)
    emails = {v for v, kinds in values.items() if "raw.customers.email" in kinds}
    pages = [p for p in settings.gx_docs_dir.rglob("*") if p.is_file() and p.suffix in (".html", ".json")]
    assert len(emails) > 100 and len(pages) > 16
    assert [p for p in pages if any(e in p.read_text(errors="replace").lower() for e in emails)] == []


def test_a_preview_masks_personal_and_free_text_columns_and_is_bounded():
    # issue 33: one quarantined customer line with a 5 MB value wrote a 35 MB Dagster event
    con = duckdb.connect()
    huge = "Ada Lovelace;ada@example.com;" + "x" * 5_000_000
    con.execute(
        "create table q as select 'customers' as source, ? as raw_content, 'C0000042' as record_id, "
        "'ada' as first_name_key, 'crm:C0000042' as email_source, true as has_email, 3 as cookie_count, "
        "? as reason from range(7)",
        [huge, "y|" * 1000],
    )
    con.execute("create table wide as select " + ", ".join(f"repeat('v', 60) as c{i}" for i in range(400)))
    metadata = table_metadata(con, "q")
    preview = metadata["preview"].value
    assert preview.count("\n") == PREVIEW_ROWS + 1
    header, _, first = preview.splitlines()[:3]
    cells = dict(zip(header.strip("| ").split(" | "), first.strip("| ").split(" | "), strict=True))
    assert cells["raw_content"] == cells["record_id"] == cells["first_name_key"] == cells["email_source"] == MASK
    assert (cells["source"], cells["has_email"], cells["cookie_count"]) == ("customers", "true", "3")
    assert cells["reason"].endswith("…") and len(cells["reason"].replace("\\|", "|")) == PREVIEW_CELL_CHARS
    assert "ada" not in preview.lower() and "C0000042" not in preview and len(preview) < PREVIEW_MAX_CHARS
    wide = table_metadata(con, "wide")["preview"].value
    assert len(wide) <= PREVIEW_MAX_CHARS and wide.splitlines()[0].endswith("columns) |")
    assert len(dg.serialize_value(dg.AssetMaterialization("q", metadata=metadata))) < 20_000


@pytest.mark.parametrize(
    "value", [dg.MetadataValue.md("m" * 50_000), dg.MetadataValue.json({"k": "j" * 50_000}), "t" * 50_000]
)
def test_capped_metadata_cuts_a_long_entry_and_says_so(value):
    out = capped({"long": value, "count": 3, "short": dg.MetadataValue.md("ok")}, max_chars=1_000)
    text = out["long"].value
    assert len(text) == 1_000 and "(cut: 50,0" in text and text[0] in "mj{t"
    assert out["count"] == 3 and out["short"].value == "ok"


def test_ml_assets_link_their_mlflow_run_and_show_a_chart_logged_there(pipeline):
    from mlflow import MlflowClient

    result, settings = pipeline
    by_asset = _materializations(result)
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    links = {
        "ml/recommendation_candidates": ["mlflow_run"],
        "ml/customer_clusters": ["mlflow_run"],
        "ml/propensity_scores": ["purchased_next_30d/mlflow_run", "churned_next_30d/mlflow_run"],
    }
    for asset, labels in links.items():
        metadata = by_asset[asset]
        for label in labels:
            url = metadata[label].value
            assert url.startswith(f"{settings.mlflow_ui_url}/#/experiments/"), url
            run_id = url.split("?")[0].rsplit("/", 1)[1]
            run = client.get_run(run_id)
            assert url.split("/")[-3] == run.info.experiment_id
            plots = [a.path for a in client.list_artifacts(run_id, "plots")]
            assert len(plots) == 1 and plots[0].endswith(".png"), plots
        chart = metadata["plot"].value
        assert chart.startswith("![") and "data:image/png;base64," in chart
        png = base64.b64decode(chart.split("base64,", 1)[1].rstrip(")"))
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    # key metrics are numbers, so Dagster plots them run over run
    assert isinstance(by_asset["ml/recommendation_candidates"]["ndcg_at_10"], dg.FloatMetadataValue)


def test_gates_show_their_great_expectations_results(pipeline):
    result, _ = pipeline
    gates = [e for e in result.get_asset_check_evaluations() if e.check_name.startswith("gx_")]
    assert len(gates) >= 16
    for gate in gates:
        table = gate.metadata["expectations"].value
        evaluated = gate.metadata["expectations_evaluated"].value
        assert table.count("\n| pass |") + table.count("\n| **FAIL** |") == evaluated, gate.check_name
        assert gate.metadata["data_docs"].value.endswith(".html")
