"""What every column means, and how many columns are described.

Three places describe columns, each once: the dbt YAML (dbt models and seeds, read from dbt's
manifest), tessera/publish/columns.yml (the tables Python writes: published, ML, decisioning...)
and the landing contract (tessera/landing/contract.py: the raw tables hold its columns as
delivered). `table_descriptions` answers for the tables Python writes; `declared` for all.

`python scripts/column_docs.py` prints the count; tests/test_column_docs.py fails when a
materialised column of a documented layer has no description.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tessera.landing.contract import LINEAGE_COLUMNS, SOURCES
from tessera.publish.columns import column_docs

# the layers every materialised column of which must be described: every schema tessera writes
# (the count reports any other too)
DOCUMENTED_LAYERS = (
    "raw",
    "staging",
    "intermediate",
    "marts",
    "audiences",
    "quarantine",
    "reference",
    "identity",
    "privacy",
    "quality",
    "ml",
    "decisioning",
    "campaigns",
    "publish",
)

LINEAGE_DESCRIPTIONS = {
    "_source_file": "Lineage: the landing file the row was loaded from (relative to the source's landing folder).",
    "_source_row": "Lineage: the record's position in its landing file (1 = the first data row).",
}


def raw_docs() -> dict[str, dict[str, str]]:
    """The raw tables' columns from the landing contract: every contract column as delivered
    (text), and the loader's lineage columns."""
    out = {}
    for source in SOURCES:
        columns = {
            c.name: f"As delivered, text (staging types it): {c.description.rstrip('.')}." for c in source.columns
        }
        out[source.raw_table] = {**columns, **{c: LINEAGE_DESCRIPTIONS[c] for c in LINEAGE_COLUMNS}}
    return out


def python_docs() -> dict[str, dict[str, str]]:
    """Every table written outside dbt that is described: columns.yml and the landing contract."""
    return {**raw_docs(), **column_docs()}


def table_descriptions(relation: str) -> dict[str, str]:
    """The column descriptions of a table written outside dbt (schema.table); empty when none."""
    return python_docs().get(relation, {})


def dbt_declared(manifest: dict) -> dict[str, dict[str, str]]:
    """{schema.alias: {column: description ('' when declared without one)}} of every dbt model and
    seed, from the manifest (doc blocks rendered)."""
    out = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] not in ("model", "seed"):
            continue
        relation = f"{node['schema']}.{node['alias']}"
        out[relation] = {name: (col.get("description") or "").strip() for name, col in node["columns"].items()}
    return out


def declared(manifest: dict) -> dict[str, dict[str, str]]:
    """Every declared column of every table tessera writes and describes: the dbt models and seeds
    and the tables of tessera/publish/columns.yml."""
    return {**dbt_declared(manifest), **python_docs()}


def read_manifest(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no dbt manifest; run `dbt parse` in dbt_project first")
    return json.loads(path.read_text())


def materialised(con) -> dict[str, list[str]]:
    """{schema.table: [columns in order]} of every table and view in the warehouse."""
    rows = con.execute(
        "select table_schema, table_name, column_name from information_schema.columns "
        "where table_catalog = current_database() order by table_schema, table_name, ordinal_position"
    ).fetchall()
    out: dict[str, list[str]] = {}
    for schema, table, column in rows:
        out.setdefault(f"{schema}.{table}", []).append(column)
    return out


@dataclass(frozen=True)
class LayerCount:
    layer: str
    declared: int  # columns declared in YAML
    declared_described: int  # of which have a description
    materialised: int  # columns the warehouse holds
    materialised_described: int  # of which have a description where they are declared


def coverage(tables: Mapping[str, list[str]], docs: Mapping[str, Mapping[str, str]]) -> list[LayerCount]:
    """Per layer (schema) of the warehouse's `tables` ({schema.table: columns}, materialised())
    and of the declarations `docs` (declared()), in name order."""
    layers = sorted({r.split(".", 1)[0] for r in docs} | {r.split(".", 1)[0] for r in tables})
    counts = []
    for layer in layers:
        in_docs = [cols for r, cols in docs.items() if r.split(".", 1)[0] == layer]
        in_tables = {r: cols for r, cols in tables.items() if r.split(".", 1)[0] == layer}
        counts.append(
            LayerCount(
                layer,
                sum(len(c) for c in in_docs),
                sum(1 for c in in_docs for d in c.values() if d),
                sum(len(c) for c in in_tables.values()),
                sum(1 for r, cols in in_tables.items() for c in cols if docs.get(r, {}).get(c)),
            )
        )
    return counts


def undescribed(
    tables: Mapping[str, list[str]],
    docs: Mapping[str, Mapping[str, str]],
    layers: tuple[str, ...] = DOCUMENTED_LAYERS,
) -> list[str]:
    """schema.table.column of every column of `tables` in `layers` without a description in `docs`
    (a publish step's candidate table, publish.<name>__next, is not a table of its own)."""
    return [
        f"{relation}.{column}"
        for relation, columns in tables.items()
        if relation.split(".", 1)[0] in layers and not relation.endswith("__next")
        for column in columns
        if not docs.get(relation, {}).get(column)
    ]


def report(counts: list[LayerCount]) -> str:
    """The counts as a plain-text table, with totals."""
    header = f"{'layer':<14}{'declared':>10}{'described':>11}{'materialised':>14}{'described':>11}"
    lines = [header, "-" * len(header)]
    for c in counts:
        lines.append(
            f"{c.layer:<14}{c.declared:>10}{c.declared_described:>11}{c.materialised:>14}{c.materialised_described:>11}"
        )
    total = LayerCount(
        "total",
        sum(c.declared for c in counts),
        sum(c.declared_described for c in counts),
        sum(c.materialised for c in counts),
        sum(c.materialised_described for c in counts),
    )
    lines += [
        "-" * len(header),
        f"{total.layer:<14}{total.declared:>10}{total.declared_described:>11}"
        f"{total.materialised:>14}{total.materialised_described:>11}",
    ]
    return "\n".join(lines)
