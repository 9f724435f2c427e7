"""What a raw gate checks about a delivery beyond its expectation suite: that the source still sends
every column it sent before, and that the empty share of its key attributes did not jump.

Both compare with the last time the same gate passed on this warehouse, as the row-count bounds
do (tessera/quality/suites.py): quality.delivery_columns keeps, per pass, each contract column's
delivered flag and empty share over the table, and quality.delivery_files the landing files (name
and content hash) that passed. A file is judged when it is new or changed since that pass, so a
file that passed once is not failed again for the same content.

- Column dropped: a contract column the source delivered at the last pass (some file's header had
  it) that a new or changed file lacks. Great Expectations cannot see this: the loader fills a
  missing column with NULL, and expectations skip NULLs (a CRM export without its email column
  passed all 125 checks of the gates). TESSERA_GX_ACCEPTED_MISSING_COLUMNS lists the
  "source.column" pairs whose end is intended.
- Empty share jumped: a key attribute (KEY_ATTRIBUTES) empty (NULL or blank) in a larger share of
  the rows than at the last pass, by more than TESSERA_GX_MAX_NULL_SHARE_INCREASE: in a new or
  changed file of at least TESSERA_GX_NULL_SHARE_MIN_ROWS rows, or over the whole table (which
  also covers smaller files).

Each failure names the file and the column. The first pass of a gate has nothing to compare: it
becomes the baseline, and the result says so. An entry of the landing folder that was not loaded
(raw.load_audit.not_loaded_reason: another file type, a broken link...) is no delivery: it is
neither judged nor remembered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb

from tessera.landing.contract import Source
from tessera.sql import ident

COLUMNS_TABLE = "quality.delivery_columns"
FILES_TABLE = "quality.delivery_files"
COLUMN_DROPPED = "column delivered as at the last pass"
SHARE_JUMPED = "empty share within TESSERA_GX_MAX_NULL_SHARE_INCREASE of the last pass"
BASELINE = "delivery baseline"

# The attributes whose emptiness changes what the pipeline can do with a record: identifiers,
# contact points, amounts and business timestamps. A column outside this list is still checked
# for being dropped, but its empty share may move freely.
KEY_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "email", "phone", "country", "signup_at"),
    "products": ("product_id", "name", "category", "price", "currency"),
    "orders": ("order_id", "customer_id", "status", "currency", "ordered_at"),
    "order_items": ("order_item_id", "order_id", "product_id", "quantity", "unit_price"),
    "pos_transactions": ("transaction_line_id", "receipt_id", "product_id", "quantity", "unit_price", "transacted_at"),
    "events": ("event_id", "event_type", "event_ts", "anonymous_id", "session_id"),
    "email_events": ("email_event_id", "email", "event_type", "event_ts"),
    "privacy": ("request_id", "request_type", "requested_at"),
    "identifiers": ("customer_id", "id_type", "id_value"),
}


@dataclass(frozen=True)
class FileProfile:
    name: str
    file_hash: str | None
    rows: int
    missing: frozenset[str]  # contract columns its header lacked
    empty: dict[str, int]  # key attribute -> rows where it is NULL or blank


@dataclass(frozen=True)
class ColumnBaseline:
    delivered: bool
    empty_share: float | None
    rows: int
    run_id: str
    validated_at: str


def _exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, name]
        ).fetchone()[0]
    )


def _has_column(con: duckdb.DuckDBPyConnection, schema: str, table: str, column: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.columns where table_schema = ? and table_name = ? "
            "and column_name = ?",
            [schema, table, column],
        ).fetchone()[0]
    )


def file_profiles(con: duckdb.DuckDBPyConnection, source: Source, schema: str = "raw") -> list[FileProfile]:
    """Each loaded landing file of `source`: its rows, the contract columns it lacked, and how many
    of its rows have each key attribute empty. A file loaded before the audit kept its missing
    columns is taken to lack the columns it holds no value of."""
    keys = [c for c in KEY_ATTRIBUTES.get(source.name, ()) if c in source.column_names]
    counts = ", ".join(
        [f"count({ident(c)}) as {ident('n_' + c)}" for c in source.column_names]
        + [f"count(*) - count(nullif(trim({ident(c)}), '')) as {ident('e_' + c)}" for c in keys]
    )
    stats = {
        row[0]: row[1:]
        for row in con.execute(
            f"select _source_file, count(*), {counts} from {ident(schema, source.name)} group by _source_file"
        ).fetchall()
    }
    profiles = []
    # an entry of the landing folder that was not loaded (tessera/landing/loader.py) delivered nothing:
    # it neither drops a column nor empties one (it blocks its load unless TESSERA_LANDING_UNLOADED_FILES=warn)
    loaded_only = (
        " and not_loaded_reason is null" if _has_column(con, schema, "load_audit", "not_loaded_reason") else ""
    )
    for name, file_hash, missing in con.execute(
        f"select _source_file, file_hash, missing_columns from {ident(schema, 'load_audit')} where source = ?{loaded_only} "
        "order by _source_file",
        [source.name],
    ).fetchall():
        values = stats.get(name)
        rows = values[0] if values else 0
        present = (
            dict(zip(source.column_names, values[1 : 1 + len(source.column_names)], strict=True)) if values else {}
        )
        if missing is None:  # loaded before missing_columns was kept
            lacked = frozenset(c for c in source.column_names if not present.get(c))
        else:
            lacked = frozenset(json.loads(missing))
        empty = (
            dict(zip(keys, values[1 + len(source.column_names) :], strict=True)) if values else dict.fromkeys(keys, 0)
        )
        profiles.append(FileProfile(name, file_hash, rows, lacked, empty))
    return profiles


def last_pass(con: duckdb.DuckDBPyConnection, gate: str) -> tuple[dict[str, ColumnBaseline], set[tuple[str, str]]]:
    """The columns and the files of the last pass of `gate` that recorded them (empty if none)."""
    if not _exists(con, "quality", "delivery_columns"):
        return {}, set()
    run = con.execute(
        f"select run_id from {COLUMNS_TABLE} where gate = ? order by validated_at desc limit 1", [gate]
    ).fetchone()
    if run is None:
        return {}, set()
    columns = {
        name: ColumnBaseline(delivered, share, rows, run[0], str(at)[:16])
        for name, delivered, share, rows, at in con.execute(
            f"select column_name, delivered, empty_share, rows_in_table, validated_at from {COLUMNS_TABLE} "
            "where gate = ? and run_id = ?",
            [gate, run[0]],
        ).fetchall()
    }
    files = set(
        con.execute(
            f"select source_file, file_hash from {FILES_TABLE} where gate = ? and run_id = ?", [gate, run[0]]
        ).fetchall()
    )
    return columns, files


def _share(empty: int, rows: int) -> float | None:
    return empty / rows if rows else None


def _pct(share: float) -> str:
    return f"{share * 100:.1f} %"


def _result(expectation: str, column: str | None, success: bool, observed: str, files: list[str]) -> dict:
    return {
        "expectation": expectation,
        "column": column,
        "success": success,
        "observed": observed,
        "unexpected_percent": None,
        "unexpected_sample": files[:5],
    }


def check_delivery(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    gate: str,
    max_increase: float,
    min_rows: int,
    accepted_missing: frozenset[str] = frozenset(),
    schema: str = "raw",
) -> tuple[list[dict], list[FileProfile]]:
    """The delivery checks' results (in the shape of tessera.quality.suites's expectation results, each
    failure's `observed` naming the file(s) and the column), and the file profiles to record when
    the gate passes."""
    profiles = file_profiles(con, source, schema)
    baseline, passed_files = last_pass(con, gate)
    if not baseline:
        return [
            _result(
                BASELINE,
                None,
                True,
                "first pass of this gate on this warehouse: this delivery becomes the "
                "baseline for dropped columns and empty shares",
                [],
            )
        ], profiles
    new = [p for p in profiles if (p.name, p.file_hash) not in passed_files]
    since = next(iter(baseline.values()))
    when = f"at this gate's last pass (run {since.run_id[:8]}, {since.validated_at} UTC)"
    results = []
    for column in source.column_names:
        before = baseline.get(column)
        if before is None or not before.delivered:
            continue
        # a file without data rows (a header alone) loads nothing, so it drops nothing either
        lacking = [p.name for p in new if column in p.missing and p.rows > 0]
        if lacking and f"{source.name}.{column}" not in accepted_missing:
            results.append(
                _result(
                    COLUMN_DROPPED,
                    column,
                    False,
                    f"column {column} is missing from {', '.join(lacking)}: the {source.name} source sent it {when}; "
                    f"if it was dropped on purpose, TESSERA_GX_ACCEPTED_MISSING_COLUMNS={source.name}.{column} accepts it",
                    lacking,
                )
            )
        else:
            note = (
                f" ({', '.join(lacking)} lack it: accepted by TESSERA_GX_ACCEPTED_MISSING_COLUMNS)" if lacking else ""
            )
            results.append(_result(COLUMN_DROPPED, column, True, f"delivered in every new or changed file{note}", []))
    total_rows = sum(p.rows for p in profiles)
    for column in KEY_ATTRIBUTES.get(source.name, ()):
        before = baseline.get(column)
        if before is None or not before.delivered or before.empty_share is None or column not in source.column_names:
            continue
        limit = before.empty_share + max_increase
        worse = [p for p in new if p.rows >= min_rows and _share(p.empty[column], p.rows) > limit]
        table_share = _share(sum(p.empty[column] for p in profiles), total_rows)
        was = f"{_pct(before.empty_share)} of {before.rows:,} rows {when}"
        problems = [
            f"{p.name}: {column} empty in {_pct(_share(p.empty[column], p.rows))} of its {p.rows:,} rows" for p in worse
        ]
        if table_share is not None and table_share > limit:
            by_share = sorted((p for p in profiles if p.rows), key=lambda p: -_share(p.empty[column], p.rows))
            top = ", ".join(f"{p.name} {_pct(_share(p.empty[column], p.rows))}" for p in by_share[:3])
            problems.append(
                f"the whole table: {column} empty in {_pct(table_share)} of {total_rows:,} rows (files: {top})"
            )
        if problems:
            files = [p.name for p in worse] or [p.name for p in new]
            results.append(
                _result(
                    SHARE_JUMPED,
                    column,
                    False,
                    "; ".join(problems) + f"; it was {was}, and may rise by at most {max_increase * 100:.1f} "
                    "percentage points (TESSERA_GX_MAX_NULL_SHARE_INCREASE)",
                    files,
                )
            )
        else:
            now = "n/a" if table_share is None else _pct(table_share)
            results.append(_result(SHARE_JUMPED, column, True, f"empty in {now} of the table (was {was})", []))
    return results, profiles


def record_delivery(
    con: duckdb.DuckDBPyConnection, gate: str, source: Source, profiles: list[FileProfile], run_id: str
) -> None:
    """Keep this passing delivery as the baseline of the gate's next run."""
    con.execute("create schema if not exists quality")
    con.execute(
        f"create table if not exists {COLUMNS_TABLE} (gate varchar, run_id varchar, validated_at timestamp, "
        "column_name varchar, delivered boolean, empty_share double, rows_in_table bigint)"
    )
    con.execute(
        f"create table if not exists {FILES_TABLE} (gate varchar, run_id varchar, source_file varchar, file_hash varchar)"
    )
    rows = sum(p.rows for p in profiles)
    keys = set(KEY_ATTRIBUTES.get(source.name, ()))
    columns = []
    for column in source.column_names:
        delivered = any(column not in p.missing for p in profiles)
        share = _share(sum(p.empty[column] for p in profiles), rows) if column in keys else None
        columns.append([gate, run_id, column, delivered, share, rows])
    con.executemany(f"insert into {COLUMNS_TABLE} values (?, ?, cast(now() as timestamp), ?, ?, ?, ?)", columns)
    if profiles:  # an empty source (no file delivered) has no files to remember
        con.executemany(
            f"insert into {FILES_TABLE} values (?, ?, ?, ?)", [[gate, run_id, p.name, p.file_hash] for p in profiles]
        )
