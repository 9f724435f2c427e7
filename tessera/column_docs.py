"""How many columns are described: the columns declared with a description (dbt YAML for the dbt
models and seeds, tessera/publish/columns.yml for the published and ML tables) against the
columns the warehouse holds, per layer (DuckDB schema).

`python scripts/column_docs.py` prints the count; tests/test_column_docs.py fails when a
materialised column of a documented layer has no description.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tessera.publish.columns import column_docs

# the layers every materialised column of which must be described
DOCUMENTED_LAYERS = ("marts", "publish", "ml")


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
    return {**dbt_declared(manifest), **column_docs()}


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
