"""Every column of every table tessera writes is described, and the Dagster UI shows it (issue 39:
3 of 86 declared columns had a description, 0 of 642 materialised ones did).

Descriptions live in the dbt YAML (dbt_project/models/**/_*.yml, shared ones as doc blocks in
models/_column_docs.md), the landing contract (raw tables) and, for the other tables written
outside dbt, tessera/publish/columns.yml (tessera/column_docs.py reads the three)."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime

import dagster as dg
import duckdb
import pytest

from orchestration.dbt import dbt_column_descriptions, dbt_manifest
from orchestration.definitions import defs
from orchestration.metadata import table_metadata, with_dbt_table_metadata
from tessera.column_docs import DOCUMENTED_LAYERS, coverage, declared, materialised, undescribed
from tessera.publish import snapshots
from tessera.publish.columns import ColumnDocsError, column_docs, parse
from tessera.publish.published import PUBLISHED
from tessera.segments.rules import load_rules

# a description shorter than this says nothing ("id", "the key")
MIN_DESCRIPTION_CHARS = 12


def _models(layer: str) -> dict[str, dict]:
    return {
        node["name"]: node
        for node in dbt_manifest()["nodes"].values()
        if node["resource_type"] == "model" and node["schema"] == layer
    }


def test_every_column_declared_in_the_dbt_yaml_has_a_description():
    missing = [
        f"{node['name']}.{column}"
        for node in dbt_manifest()["nodes"].values()
        if node["resource_type"] in ("model", "seed")
        for column, info in node["columns"].items()
        if len((info.get("description") or "").strip()) < MIN_DESCRIPTION_CHARS
    ]
    assert missing == []


def test_every_mart_declares_its_columns_with_doc_blocks_rendered():
    marts = _models("marts")
    assert len(marts) == 13
    for name, node in marts.items():
        assert len(node["columns"]) >= 4, name
        for column, info in node["columns"].items():
            # a doc() that did not resolve would leave its Jinja in the text
            assert "{{" not in info["description"] and "doc(" not in info["description"], (name, column)
    # written once, shown in every mart that has the column
    key = marts["dim_customers"]["columns"]["customer_key"]["description"]
    assert key.startswith("Stable tessera customer id")
    assert {marts[m]["columns"]["customer_key"]["description"] for m in ("customer_rfm", "customer_features")} == {key}


def test_no_description_holds_a_placeholder_the_markdown_renderer_would_drop():
    # the UI renders descriptions as Markdown, which takes `crm:<customer_id>` outside inline code
    # for an HTML tag and shows "crm:" (issue 39 met the same with <landing> in asset descriptions)
    tag = re.compile(r"<[A-Za-z_][^<>]*>")
    dropped = {
        f"{relation}.{column}": tag.findall(re.sub(r"`[^`]*`", "", text))
        for relation, columns in declared(dbt_manifest()).items()
        for column, text in columns.items()
        if tag.search(re.sub(r"`[^`]*`", "", text))
    }
    assert dropped == {}


def test_every_doc_block_is_used_by_a_column():
    # a doc block no column names any more is a description nobody sees
    manifest = dbt_manifest()
    blocks = {key for key in manifest["docs"] if key.startswith("doc.tessera.")}
    used = {
        block
        for node in manifest["nodes"].values()
        for column in node.get("columns", {}).values()
        for block in column.get("doc_blocks", [])
    }
    assert len(blocks) >= 50
    assert blocks - used == set()


def flag_description(rule: dict) -> str:
    kind = "exclusive" if rule["exclusive"] else "a flag only"
    return (
        f"True when the customer meets rule {rule['name']} of config/segment_rules.yml "
        f"({kind}, priority {rule['priority']}), else false: {' '.join(rule['description'].split())}"
    )


def test_the_rule_flags_are_described_by_their_rules():
    # customer_rule_segments is generated from config/segment_rules.yml: a rule added or edited
    # there needs its in_<name> column described in marts/_marts.yml as flag_description says
    columns = _models("marts")["customer_rule_segments"]["columns"]
    rules = load_rules()
    assert {c for c in columns if c.startswith("in_")} == {f"in_{r['name']}" for r in rules}
    for rule in rules:
        expected = flag_description(rule)
        assert columns[f"in_{rule['name']}"]["description"] == expected, (
            f"dbt_project/models/marts/_marts.yml: in_{rule['name']} should read {expected!r}"
        )


def test_every_table_of_columns_yml_is_described():
    docs = column_docs()
    published = {f"publish.{spec.name}" for spec in PUBLISHED}
    assert published <= set(docs)
    assert {"publish.session_index", "publish.customer_segment_history"} <= set(docs)
    assert {"ml.recommendation_candidates", "ml.propensity_scores", "ml.customer_clusters"} <= set(docs)
    for relation, columns in docs.items():
        for column, text in columns.items():
            assert len(text) >= MIN_DESCRIPTION_CHARS, (relation, column)
    # a shared description is written once and used where the column is named without text
    assert docs["publish.customer_scores"]["customer_pkey"] == docs["publish.next_best_actions"]["customer_pkey"]
    assert docs["publish.customer_scores"]["customer_pkey"].startswith("Pseudonymous customer key")


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"tables": {}}, "exactly the keys 'shared' and 'tables'"),
        ({"shared": {}, "tables": {"scores": {"a": "text"}}}, "table 'scores': expected schema.table"),
        ({"shared": {}, "tables": {"publish.t": {"a": None}}}, "column 'a' has no description and none under 'shared'"),
        ({"shared": {}, "tables": {"publish.t": {"a": "  "}}}, "column 'a': the description must be non-empty"),
        ({"shared": {"a": ""}, "tables": {}}, "shared column 'a'"),
        ({"shared": {}, "tables": {"publish.t": {"Bad Name": "text"}}}, "column 'Bad Name' is not a column name"),
        ({"shared": {}, "tables": {"publish.t": []}}, "expected a mapping of columns"),
    ],
)
def test_a_malformed_columns_file_is_refused_naming_table_and_column(document, problem):
    with pytest.raises(ColumnDocsError, match="^columns.yml: .*" + problem.replace("(", r"\(")):
        parse(document, "columns.yml")


def test_a_shared_description_fills_a_column_named_without_text():
    docs = parse({"shared": {"k": "the key,\n  shared"}, "tables": {"publish.t": {"k": None, "v": "a value"}}})
    assert docs == {"publish.t": {"k": "the key, shared", "v": "a value"}}


def _schema(node) -> dg.TableSchema | None:
    value = node.metadata.get("dagster/column_schema")
    return getattr(value, "schema", value)


def test_the_definitions_column_schemas_carry_every_description():
    graph = defs.resolve_asset_graph()
    by_key = {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}
    expected = {f"marts/{m}" for m in _models("marts")} | {f"publish/{spec.name}" for spec in PUBLISHED}
    expected |= {"publish/session_index", "ml/recommendation_candidates", "ml/propensity_scores"}
    expected |= {"ml/customer_clusters", "ml/product_recommendations"}
    assert expected <= set(by_key)
    described = 0
    for key in sorted(expected):
        schema = _schema(by_key[key])
        assert schema is not None and schema.columns, key
        assert [c.name for c in schema.columns if not c.description] == [], key
        described += len(schema.columns)
    assert described >= 280
    dim = {c.name: c.description for c in _schema(by_key["marts/dim_customers"]).columns}
    assert len(dim) == 38 and dim["email_source"].startswith("Which record gave the golden-record value")


def test_a_materialization_schema_keeps_types_and_adds_descriptions():
    # issue 39: the runtime schema (types from DuckDB) replaced the declared one and dropped every
    # description, so the UI showed none
    con = duckdb.connect()
    con.execute("create schema publish")
    con.execute(
        "create table publish.customer_scores as select 'pk_1' as customer_pkey, 0.5 as churn_risk_30d, 1 as extra"
    )
    columns = table_metadata(con, "publish.customer_scores")["dagster/column_schema"].columns
    assert [(c.name, c.type) for c in columns] == [
        ("customer_pkey", "VARCHAR"),
        ("churn_risk_30d", "DECIMAL(2,1)"),
        ("extra", "INTEGER"),
    ]
    assert columns[0].description == column_docs()["publish.customer_scores"]["customer_pkey"]
    assert columns[1].description.startswith("Probability (0..1)")
    assert columns[2].description is None
    # a dbt model's come from the manifest
    given = table_metadata(con, "publish.customer_scores", descriptions={"extra": "one more"})
    assert [c.description for c in given["dagster/column_schema"].columns] == [None, None, "one more"]


def test_a_dbt_model_output_carries_its_manifest_descriptions():
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute("create table marts.dim_products as select 'P1' as product_id, 'budget' as price_band")
    uid = "model.tessera.dim_products"
    output = dg.Output(None, output_name="marts_dim_products", metadata={"unique_id": uid})

    @contextlib.contextmanager
    def open_duckdb():
        yield con

    relations = {uid: ("marts.dim_products", frozenset())}
    [event] = with_dbt_table_metadata([output], open_duckdb, relations, dbt_column_descriptions())
    columns = {c.name: c.description for c in event.metadata["dagster/column_schema"].schema.columns}
    assert columns["product_id"] == dbt_column_descriptions()[uid]["product_id"]
    assert columns["price_band"].startswith("Quartile of price_base")


def test_dbt_column_descriptions_cover_every_mart_column_declared():
    descriptions = dbt_column_descriptions()
    for node in _models("marts").values():
        assert set(descriptions[node["unique_id"]]) == set(node["columns"]), node["name"]


def test_a_snapshot_manifest_describes_its_columns(tmp_path):
    con = duckdb.connect()
    con.execute("create table t as select 'pk_1' as customer_pkey, 'x' as undocumented")
    snap = snapshots.write_snapshot(
        con,
        tmp_path,
        "customer_scores",
        "t",
        "v1",
        published_at=datetime(2026, 1, 1, tzinfo=UTC),
        run_id="r",
        checks=[],
    )
    columns = {c["name"]: c for c in snap.manifest["columns"]}
    assert columns["customer_pkey"]["description"] == column_docs()["publish.customer_scores"]["customer_pkey"]
    assert columns["undocumented"] == {"name": "undocumented", "type": "VARCHAR", "description": ""}


def test_coverage_counts_declared_and_materialised_columns_per_layer():
    tables = {"marts.a": ["x", "y"], "marts.b": ["z"], "raw.r": ["q"]}
    docs = {"marts.a": {"x": "described", "y": ""}, "marts.gone": {"w": "declared, not built"}}
    counts = {c.layer: c for c in coverage(tables, docs)}
    assert (counts["marts"].declared, counts["marts"].declared_described) == (3, 2)
    assert (counts["marts"].materialised, counts["marts"].materialised_described) == (3, 1)
    assert (counts["raw"].materialised, counts["raw"].materialised_described) == (1, 0)
    assert undescribed(tables, docs, ("marts",)) == ["marts.a.y", "marts.b.z"]


@pytest.mark.graph
def test_every_materialised_column_of_the_marts_and_published_tables_is_described(pipeline_tables):
    tables = {relation: columns for relation, (_rows, columns) in pipeline_tables.items()}
    built = {r.split(".", 1)[0] for r in tables}
    assert set(DOCUMENTED_LAYERS) <= built
    assert undescribed(tables, declared(dbt_manifest())) == []
    counts = {c.layer: c for c in coverage(tables, declared(dbt_manifest()))}
    for layer in DOCUMENTED_LAYERS:
        if layer in counts:
            assert counts[layer].materialised == counts[layer].materialised_described, layer
    for layer in ("raw", "staging", "intermediate", "marts", "publish", "ml", "decisioning"):
        assert counts[layer].materialised_described > 0, layer
    assert counts["marts"].materialised >= 190


@pytest.mark.graph
def test_the_yaml_declares_only_columns_the_tables_have(pipeline_tables):
    # a column renamed or dropped in SQL or Python must leave the dbt YAML and columns.yml too
    tables = {relation: columns for relation, (_rows, columns) in pipeline_tables.items()}
    docs = declared(dbt_manifest())
    stale = {
        relation: sorted(set(columns) - set(tables[relation]))
        for relation, columns in docs.items()
        if relation in tables and set(columns) - set(tables[relation])
    }
    assert stale == {}
    assert len([r for r in docs if r in tables]) >= 70


@pytest.mark.graph
def test_the_ui_shows_the_descriptions_on_every_materialization(pipeline):
    # what the asset page shows: the latest materialization's column schema
    result, _ = pipeline
    shown = {}
    for event in result.get_asset_materialization_events():
        key = event.asset_key.to_user_string()
        schema = event.materialization.metadata.get("dagster/column_schema")
        if key.split("/")[0] in DOCUMENTED_LAYERS and schema is not None:
            shown[key] = [c.name for c in schema.schema.columns if not c.description]
    assert len(shown) >= 25
    assert {k: v for k, v in shown.items() if v} == {}


def test_materialised_reads_every_table_of_a_warehouse_in_column_order():
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute("create table marts.t as select 1 as b, 2 as a")
    con.execute("create view marts.v as select a from marts.t")
    assert materialised(con) == {"marts.t": ["b", "a"], "marts.v": ["a"]}
