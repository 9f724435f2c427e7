"""What the Dagster UI shows about every table asset, on every materialization.

- `dagster/row_count`, `dagster/column_schema` and a `preview` of the first rows, read back from
  DuckDB after the step wrote the table. Personal data never reaches the UI: preview values of
  personal columns (those marked `meta: {pii: true}` in dbt, and the contract's personal
  columns by name) are masked.
- `duration_seconds` and `rows_processed` (rows the step read or wrote in this run), numeric,
  so the asset's Plots tab charts them over time.

dbt models get the same, added once `dbt build` has released the DuckDB file (dbt-duckdb holds it
while it runs, so dagster-dbt's own row-count fetch would meet the lock).
"""

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import dagster as dg
import duckdb

PREVIEW_ROWS = 5
MASK = "***"
# personal columns in raw tables and anywhere a dbt column lacks `meta.pii`
PERSONAL_COLUMN_NAMES = frozenset(
    {
        "first_name", "last_name", "given_name", "family_name", "full_name", "email", "email_address",
        "phone", "phone_e164", "birth_date", "address", "street", "postcode", "loyalty_card", "card_number",
        "ip_address",
    }
)


def table_schema(con: duckdb.DuckDBPyConnection, table: str) -> dg.TableSchema:
    rows = con.execute(f"describe {table}").fetchall()
    return dg.TableSchema(columns=[dg.TableColumn(name=r[0], type=r[1]) for r in rows])


def preview_markdown(
    con: duckdb.DuckDBPyConnection, table: str, limit: int = PREVIEW_ROWS, personal: Iterable[str] = ()
) -> str:
    df = con.execute(f"select * from {table} limit {int(limit)}").df()
    if not len(df):
        return "(no rows)"
    masked = [c for c in df.columns if c in PERSONAL_COLUMN_NAMES or c in set(personal)]
    for column in masked:
        df[column] = df[column].where(df[column].isna(), MASK).astype(object)
    return df.to_markdown(index=False)


def table_metadata(con: duckdb.DuckDBPyConnection, table: str, personal: Iterable[str] = ()) -> dict[str, Any]:
    [(rows,)] = con.execute(f"select count(*) from {table}").fetchall()
    return {
        "dagster/row_count": int(rows),
        "dagster/column_schema": table_schema(con, table),
        "table": table,
        "preview": dg.MetadataValue.md(preview_markdown(con, table, personal=personal)),
    }


def run_metadata(started: float, rows_processed: int) -> dict[str, Any]:
    return {
        "duration_seconds": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
        "rows_processed": dg.MetadataValue.int(int(rows_processed)),
    }


def with_dbt_table_metadata(
    events: Iterable[Any],
    open_duckdb: Callable[[], Any],
    relations: Mapping[str, tuple[str, frozenset[str]]],
) -> Iterator[Any]:
    """dbt's events, each model's and seed's Output carrying table metadata and its duration.

    `relations` maps a dbt unique_id to its relation (schema.alias) and personal columns. The
    events are held until dbt has exited; if dbt failed, the Outputs it produced are still
    emitted (enriched where the table can be read) before the failure is raised."""
    held: list[Any] = []
    failure: BaseException | None = None
    try:
        for event in events:
            held.append(event)
    except Exception as exc:  # re-raised below, after what dbt did build is reported
        failure = exc
    outputs = [e for e in held if isinstance(e, dg.Output) and e.metadata.get("unique_id")]
    enriched: dict[int, dg.Output] = {}
    if outputs:
        with open_duckdb() as con:
            for event in outputs:
                uid = event.metadata["unique_id"].value
                if uid not in relations:
                    continue
                relation, personal = relations[uid]
                extra = table_metadata(con, relation, personal)
                duration = event.metadata.get("Execution Duration")
                if duration is not None:
                    extra["duration_seconds"] = dg.MetadataValue.float(round(float(duration.value), 3))
                extra["rows_processed"] = dg.MetadataValue.int(extra["dagster/row_count"])
                enriched[id(event)] = event.with_metadata({**event.metadata, **extra})
    for event in held:
        yield enriched.get(id(event), event)
    if failure is not None:
        raise failure
