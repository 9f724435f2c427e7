"""Seeded samples of the real shop exports, small enough to run the whole graph in a test.

A sample keeps **every row of a seeded choice of customers**, so each kept customer's history is
whole (their first order, their returns, their repeat purchases): what RFM, the point-in-time
snapshots and the recommender's split see is the shop's own shape, only with fewer people. The
choice is the customers with the smallest md5 of ``<seed>:<customer id>``: the same seed gives the
same sample on any machine and DuckDB version, and a larger sample contains a smaller one.

- Online Retail: N CustomerIDs, plus a proportional share of the invoices without a CustomerID
  (guest invoices, chosen the same way by invoice number), all lines of each.
- Complete Journey: N households (from the transactions), their transactions and demographics,
  and the whole product table (the mapping keeps only the products that were sold).

The sampled source is written in the source's own format and columns, so the mapping reads it
exactly as it reads the full export.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

ONLINE_RETAIL_FILE = "online_retail.parquet"
# The Complete Journey's files (config/mappings/complete_journey.yml reads the same)
TRANSACTIONS_FILES = ("transactions.parquet", "transactions_sample.parquet")
PRODUCTS_FILE = "products.parquet"
DEMOGRAPHICS_FILE = "demographics.parquet"


def transactions_file(source_dir: Path) -> Path:
    """The transactions table in `source_dir`: the full one or the shared sample, never both."""
    found = [source_dir / name for name in TRANSACTIONS_FILES if (source_dir / name).exists()]
    if len(found) != 1:
        said = "both" if found else "none"
        raise ValueError(f"{source_dir}: {said} of {', '.join(TRANSACTIONS_FILES)} exist; keep the one to sample")
    return found[0]


@dataclass(frozen=True)
class Sample:
    path: Path  # the sampled source: a file (Online Retail) or a folder (Complete Journey)
    customers: int  # customers (households) kept
    customers_in_source: int
    rows: int  # transaction lines kept
    rows_in_source: int


# A sample keeps the source's row order (DuckDB's position of each row in its file): a mapping that
# breaks ties by the first row seen (a product's description) then gives the same landing files on
# every run, where a filtered scan's order varies with its threads.
POSITION = "file_row_number"


def _seeded_rank(key_sql: str) -> str:
    """SQL: the rank of a key by the md5 of '<seed>:<key>' (1 = kept first); the seed is the
    statement's first parameter."""
    return f"row_number() over (order by md5(cast(? as varchar) || ':' || {key_sql}), {key_sql})"


def _keep_seeded(con: duckdb.DuckDBPyConnection, table: str, id_sql: str, id_column: str, n: int, seed: int) -> None:
    """Create temp table `table` (one column, id) of the `n` ids of src (`id_sql`, rows where
    `id_column` is not null) that rank first by their seeded hash."""
    con.execute(
        f"""
        create temp table {table} as
        select id from (
            select id, {_seeded_rank("id")} as r
            from (select distinct {id_sql} as id from src where {id_column} is not null)
        ) where r <= ?
        """,
        [seed, n],
    )


def sample_online_retail(source: Path | str, out: Path | str, customers: int, seed: int) -> Sample:
    """Write to `out` (a .parquet file) every line of `customers` seeded CustomerIDs and of the same
    share of the guest invoices of the Online Retail export at `source`."""
    source, out = Path(source), Path(out)
    if customers < 1:
        raise ValueError(f"a sample needs at least one customer, not {customers}")
    con = duckdb.connect()
    try:
        con.execute(f"create temp table src as select * from read_parquet(?, {POSITION}=true)", [str(source)])
        present = {r[0] for r in con.execute("describe src").fetchall()}
        missing = [c for c in ("InvoiceNo", "CustomerID") if c not in present]
        if missing:
            raise ValueError(f"{source}: missing column(s) {', '.join(missing)}")
        known = "cast(cast(CustomerID as bigint) as varchar)"
        _keep_seeded(con, "chosen_customers", known, "CustomerID", customers, seed)
        (n_customers,) = con.execute(
            "select count(distinct CustomerID) from src where CustomerID is not null"
        ).fetchone()
        con.execute(
            f"""
            create temp table chosen_invoices as
            with guest as (select distinct cast(InvoiceNo as varchar) as id from src where CustomerID is null),
            ranked as (select id, {_seeded_rank("id")} as r, count(*) over () as n from guest)
            select id from ranked where r <= round(n * least(?, ?) / ?)
            """,
            [seed, customers, n_customers, n_customers],
        )
        sampled = con.sql(
            f"""
            select s.* exclude ({POSITION}) from src as s
            where {known} in (select id from chosen_customers)
               or (s.CustomerID is null and cast(s.InvoiceNo as varchar) in (select id from chosen_invoices))
            order by s.{POSITION}
            """
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        sampled.write_parquet(str(out))
        (rows,) = con.execute("select count(*) from read_parquet(?)", [str(out)]).fetchone()
        (rows_in_source,) = con.execute("select count(*) from src").fetchone()
        (kept,) = con.execute("select count(*) from chosen_customers").fetchone()
    finally:
        con.close()
    return Sample(out, kept, n_customers, rows, rows_in_source)


def sample_complete_journey(source_dir: Path | str, out_dir: Path | str, households: int, seed: int) -> Sample:
    """Write to `out_dir` the transactions and demographics of `households` seeded households of the
    Complete Journey export in `source_dir`, and its product table."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    if households < 1:
        raise ValueError(f"a sample needs at least one household, not {households}")
    tx = transactions_file(source_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        con.execute(f"create temp table src as select * from read_parquet(?, {POSITION}=true)", [str(tx)])
        if "household_id" not in {r[0] for r in con.execute("describe src").fetchall()}:
            raise ValueError(f"{tx}: missing column(s) household_id")
        hh = "cast(cast(household_id as bigint) as varchar)"
        _keep_seeded(con, "chosen", hh, "household_id", households, seed)
        con.sql(
            f"select * exclude ({POSITION}) from src where {hh} in (select id from chosen) order by {POSITION}"
        ).write_parquet(str(out_dir / tx.name))
        con.execute(
            f"create temp table demographics as select * from read_parquet(?, {POSITION}=true)",
            [str(source_dir / DEMOGRAPHICS_FILE)],
        )
        con.sql(
            f"select * exclude ({POSITION}) from demographics where {hh} in (select id from chosen) order by {POSITION}"
        ).write_parquet(str(out_dir / DEMOGRAPHICS_FILE))
        shutil.copyfile(source_dir / PRODUCTS_FILE, out_dir / PRODUCTS_FILE)
        (rows,) = con.execute("select count(*) from src where " + hh + " in (select id from chosen)").fetchone()
        (rows_in_source,) = con.execute("select count(*) from src").fetchone()
        (kept,) = con.execute("select count(*) from chosen").fetchone()
        (n_households,) = con.execute("select count(distinct household_id) from src").fetchone()
    finally:
        con.close()
    return Sample(out_dir, kept, n_households, rows, rows_in_source)
