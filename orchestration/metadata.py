"""What the Dagster UI shows about every table asset, on every materialization.

- `dagster/row_count`, `dagster/column_schema` and a `preview` of the first rows, read back from
  DuckDB after the step wrote the table.
- `duration_seconds` and `rows_processed` (rows the step read or wrote in this run), numeric,
  so the asset's Plots tab charts them over time.

Personal data never enters the Dagster event log, which the erasure cannot rewrite (docs/privacy.md):
- a preview reads personal columns (tessera/privacy/personal.py: the contract's and the erasure's
  columns, columns derived from them by name, free text such as raw_content, and dbt columns
  marked `meta: {pii: true}`) only as MASK or NULL: their values never leave DuckDB;
- a preview is bounded: PREVIEW_ROWS rows, PREVIEW_CELL_CHARS characters per cell (cut in SQL,
  so a 5 MB value is never read), PREVIEW_MAX_CHARS in all (columns past it are left out);
- `capped` bounds any step's text, markdown and JSON entries, METADATA_ENTRY_MAX_CHARS each.

dbt models get the same, added once `dbt build` has released the DuckDB file (dbt-duckdb holds it
while it runs, so dagster-dbt's own row-count fetch would meet the lock).
"""

import base64
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import dagster as dg
import duckdb

from ml.tracking import log_plot, run_url
from tessera.column_docs import table_descriptions as column_descriptions
from tessera.privacy.personal import is_personal

PREVIEW_ROWS = 5
PREVIEW_CELL_CHARS = 40
PREVIEW_MAX_CHARS = 8_000
METADATA_ENTRY_MAX_CHARS = 16_000
MASK = "***"
ELLIPSIS = "…"
# columns every dbt model must tag `meta: {pii: true}` (tests/test_pseudonym.py); previews mask
# these and every other column tessera/privacy/personal.py calls personal
PERSONAL_COLUMN_NAMES = frozenset(
    {
        "first_name",
        "last_name",
        "given_name",
        "family_name",
        "full_name",
        "email",
        "email_address",
        "phone",
        "phone_e164",
        "birth_date",
        "address",
        "street",
        "postcode",
        "loyalty_card",
        "card_number",
        "ip_address",
    }
)


# a code span, or a `<placeholder>` the UI's Markdown renderer would take for an HTML tag and drop
_CODE_SPAN_OR_TAG = re.compile(r"(`[^`\n]*`)|(<[A-Za-z_][^<>\n]*>)")


def markdown_safe(text: str | None) -> str | None:
    """`text` with each `<placeholder>` outside a code span put in one: the UI renders
    descriptions as Markdown, where `<landing>` would vanish as an unknown HTML tag."""
    if not text:
        return text
    return _CODE_SPAN_OR_TAG.sub(lambda m: m.group(1) or f"`{m.group(2)}`", text)


def markdown_safe_schema(schema: dg.TableSchema) -> dg.TableSchema:
    """`schema` with each column's description made markdown_safe."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=c.type,
                description=markdown_safe(c.description),
                constraints=c.constraints,
                tags=c.tags,
            )
            for c in schema.columns
        ],
        constraints=schema.constraints,
    )


def table_schema(
    con: duckdb.DuckDBPyConnection, table: str, descriptions: Mapping[str, str] | None = None
) -> dg.TableSchema:
    """The table's columns and types as DuckDB has them, each with its description: from
    `descriptions` (a dbt model's, from the manifest) or else tessera.column_docs
    (tessera/publish/columns.yml, the landing contract for raw tables)."""
    described = column_descriptions(table) if descriptions is None else descriptions
    rows = con.execute(f"describe {table}").fetchall()
    return dg.TableSchema(
        columns=[dg.TableColumn(name=r[0], type=r[1], description=markdown_safe(described.get(r[0]))) for r in rows]
    )


def declared_schema(relation: str) -> dg.TableSchema:
    """A table's columns as tessera.column_docs describes them, for the asset definition's
    `dagster/column_schema` (the UI shows them before the first materialization); types are known
    once a run has written the table ("?" until then, as dagster-dbt does)."""
    declared = column_descriptions(relation)
    if not declared:
        raise KeyError(f"{relation} has no column descriptions (tessera/publish/columns.yml, the landing contract)")
    return dg.TableSchema(columns=[dg.TableColumn(name=c, type="?", description=d) for c, d in declared.items()])


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _preview_expression(column: str, dtype: str, personal: frozenset[str]) -> str:
    """SQL reading `column` for a preview: MASK or NULL for a personal column, its bytes' length
    for a blob, otherwise its text cut to one character more than a cell shows."""
    name = _quoted(column)
    if is_personal(column, personal, dtype):
        return f"case when {name} is null then null else '{MASK}' end"
    if dtype.upper() == "BLOB":
        return f"case when {name} is null then null else octet_length({name}) || ' bytes' end"
    return f"left(cast({name} as varchar), {PREVIEW_CELL_CHARS + 1})"


def _cell(value: str | None) -> str:
    if value is None:
        return ""
    text = value if len(value) <= PREVIEW_CELL_CHARS else value[: PREVIEW_CELL_CHARS - 1] + ELLIPSIS
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def preview_markdown(
    con: duckdb.DuckDBPyConnection, table: str, limit: int = PREVIEW_ROWS, personal: Iterable[str] = ()
) -> str:
    """The first `limit` rows of `table` as a markdown table, personal columns masked, every cell
    at most PREVIEW_CELL_CHARS characters and the whole at most PREVIEW_MAX_CHARS: the columns
    past that are left out, and the last header cell says how many."""
    personal = frozenset(personal)
    columns = [(r[0], r[1]) for r in con.execute(f"describe {table}").fetchall()]
    select = ", ".join(_preview_expression(c, t, personal) for c, t in columns)
    values = con.execute(f"select {select} from {table} limit {int(limit)}").fetchall()
    if not values:
        return "(no rows)"
    header = [_cell(c) for c, _ in columns]
    rows = [[_cell(v) for v in row] for row in values]
    shown = len(header)
    while shown > 1 and len(_markdown(header[:shown], [r[:shown] for r in rows])) > PREVIEW_MAX_CHARS:
        shown -= 1
    if shown == len(header):
        return _markdown(header, rows)
    more = f"(+{len(header) - shown} columns)"
    return _markdown([*header[:shown], more], [[*r[:shown], ""] for r in rows])


def table_metadata(
    con: duckdb.DuckDBPyConnection,
    table: str,
    personal: Iterable[str] = (),
    descriptions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    [(rows,)] = con.execute(f"select count(*) from {table}").fetchall()
    return {
        "dagster/row_count": int(rows),
        "dagster/column_schema": table_schema(con, table, descriptions),
        "table": table,
        "preview": dg.MetadataValue.md(preview_markdown(con, table, personal=personal)),
    }


def _text_of(value: Any) -> tuple[str, str] | None:
    """(kind, text) of a metadata entry that carries free text, else None."""
    if isinstance(value, str):
        return "text", value
    if isinstance(value, dg.MarkdownMetadataValue):
        return "md", value.value or ""
    if isinstance(value, dg.TextMetadataValue):
        return "text", value.value or ""
    if isinstance(value, dg.JsonMetadataValue):
        return "json", json.dumps(value.value, default=str)
    if isinstance(value, (dict, list)):
        return "json", json.dumps(value, default=str)
    return None


def capped(metadata: Mapping[str, Any], max_chars: int = METADATA_ENTRY_MAX_CHARS) -> dict[str, Any]:
    """`metadata` with every text, markdown or JSON entry longer than `max_chars` cut to that
    length and saying so (as text): a step's metadata stays small whatever the data holds."""
    out = {}
    for label, value in metadata.items():
        found = _text_of(value)
        if found is None or len(found[1]) <= max_chars:
            out[label] = value
            continue
        kind, text = found
        note = f"{ELLIPSIS} (cut: {len(text):,} characters in all)"
        cut = text[: max_chars - len(note)] + note
        out[label] = dg.MetadataValue.md(cut) if kind == "md" else dg.MetadataValue.text(cut)
    return out


def shown_row_count(instance: dg.DagsterInstance, key: dg.AssetKey) -> int | None:
    """The row count the asset page shows for `key`: its latest materialization's, or else its
    latest observation's (Dagster 1.13, ui-core AssetNodeOverview)."""
    latest = [
        *(r.asset_materialization for r in instance.fetch_materializations(key, limit=1).records),
        *(r.asset_observation for r in instance.fetch_observations(key, limit=1).records),
    ]
    for event in latest:
        entry = event.metadata.get("dagster/row_count") if event is not None else None
        if entry is not None:
            return int(entry.value)
    return None


def run_metadata(started: float, rows_processed: int) -> dict[str, Any]:
    return {
        "duration_seconds": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
        "rows_processed": dg.MetadataValue.int(int(rows_processed)),
    }


def with_dbt_table_metadata(
    events: Iterable[Any],
    open_duckdb: Callable[[], Any],
    relations: Mapping[str, tuple[str, frozenset[str]]],
    descriptions: Mapping[str, Mapping[str, str]] | None = None,
) -> Iterator[Any]:
    """dbt's events, each model's and seed's Output carrying table metadata and its duration.

    `relations` maps a dbt unique_id to its relation (schema.alias) and personal columns,
    `descriptions` to its columns' descriptions in the dbt YAML (the column schema carries them). The
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
                extra = table_metadata(con, relation, personal, (descriptions or {}).get(uid, {}))
                duration = event.metadata.get("Execution Duration")
                if duration is not None:
                    extra["duration_seconds"] = dg.MetadataValue.float(round(float(duration.value), 3))
                extra["rows_processed"] = dg.MetadataValue.int(extra["dagster/row_count"])
                enriched[id(event)] = event.with_metadata({**event.metadata, **extra})
    for event in held:
        yield enriched.get(id(event), event)
    if failure is not None:
        raise failure


def mlflow_run_metadata(settings, run_id: str, plot: bytes | None = None, plot_name: str = "plot") -> dict:
    """A link to the MLflow run in its UI and, given a PNG, the chart: logged to the run under
    plots/ and shown inline in the Dagster UI."""
    experiment_id = log_plot(settings.mlflow_tracking_uri, run_id, plot, plot_name)
    metadata = {"mlflow_run": dg.MetadataValue.url(run_url(settings.mlflow_ui_url, experiment_id, run_id))}
    if plot is not None:
        encoded = base64.b64encode(plot).decode()
        metadata["plot"] = dg.MetadataValue.md(f"![{plot_name}](data:image/png;base64,{encoded})")
    return metadata
