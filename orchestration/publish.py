"""Published outputs: tables in the DuckDB `publish` schema, each also exported as Parquet.

Publishing is a swap: the new table is built beside the old one and replaces it in one
transaction; the Parquet file is written to a temporary name and renamed. A failed step leaves
the last good version in place. Customers who asked for erasure are never published.
"""

import os
from pathlib import Path

import dagster as dg

from orchestration.dbt import model_key
from orchestration.ml import RECOMMENDER_KEY
from orchestration.resources import DUCKDB_POOL, TesseraResource
from orchestration.sources import preview_markdown, table_schema

PUBLISH_GROUP = "publish"

PUBLISHED_SQL = {
    "customer_recommendations": """
        select r.customer_key, r.rank, r.product_id, p.product_name, p.category, r.score, r.model_run_id
        from ml.recommendation_candidates as r
        inner join marts.dim_customers as c on c.customer_key = r.customer_key and not c.is_erasure_requested
        inner join marts.dim_products as p on p.product_id = r.product_id and p.is_active
        order by r.customer_key, r.rank
    """,
    "customer_segments": """
        select s.customer_key, s.rfm_segment, s.r_score, s.f_score, s.m_score, s.as_of_date
        from marts.customer_rfm as s
        inner join marts.dim_customers as c on c.customer_key = s.customer_key and not c.is_erasure_requested
        order by s.customer_key
    """,
    "customer_scores": """
        select
            s.customer_key,
            s.recency_days,
            s.frequency,
            s.monetary,
            s.average_order_value,
            s.tenure_days,
            s.r_score + s.f_score + s.m_score as rfm_score,
            s.as_of_date
        from marts.customer_rfm as s
        inner join marts.dim_customers as c on c.customer_key = s.customer_key and not c.is_erasure_requested
        order by s.customer_key
    """,
}

DESCRIPTIONS = {
    "customer_recommendations": "Top 10 products per customer from the latest recommender run; active products only.",
    "customer_segments": "RFM segment per customer (docs/rfm.md), with its R, F and M scores.",
    "customer_scores": "RFM values and the summed RFM score per customer.",
}


def publish_table(con, name: str, sql: str, publish_dir: Path) -> int:
    """Swap publish.<name> and <publish_dir>/<name>.parquet to the result of sql, atomically each."""
    con.execute("create schema if not exists publish")
    staging = f"publish.{name}__next"
    con.execute(f"create or replace table {staging} as {sql}")
    publish_dir.mkdir(parents=True, exist_ok=True)
    final = publish_dir / f"{name}.parquet"
    tmp = publish_dir / f".{name}.parquet.tmp"
    con.execute(f"copy {staging} to '{tmp.as_posix()}' (format parquet)")
    con.execute("begin transaction")
    try:
        con.execute(f"drop table if exists publish.{name}")
        con.execute(f"alter table {staging} rename to {name}")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)
    return con.execute(f"select count(*) from publish.{name}").fetchone()[0]


def build_publish_asset(name: str, deps: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey(["publish", name]),
        deps=deps,
        group_name=PUBLISH_GROUP,
        description=DESCRIPTIONS[name],
        kinds={"python", "duckdb", "parquet"},
        owners=["team:data-platform"],
        pool=DUCKDB_POOL,
    )
    def _publish(tessera: TesseraResource) -> dg.MaterializeResult:
        settings = tessera.settings()
        with tessera.duckdb() as con:
            rows = publish_table(con, name, PUBLISHED_SQL[name], settings.publish_dir)
            preview = preview_markdown(con, f"publish.{name}")
            schema = table_schema(con, f"publish.{name}")
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "dagster/column_schema": schema,
                "table": f"publish.{name}",
                "parquet": dg.MetadataValue.path(str(settings.publish_dir / f"{name}.parquet")),
                "preview": dg.MetadataValue.md(preview),
            }
        )

    return _publish


publish_assets = [
    build_publish_asset(
        "customer_recommendations", [RECOMMENDER_KEY, model_key("dim_customers"), model_key("dim_products")]
    ),
    build_publish_asset("customer_segments", [model_key("customer_rfm"), model_key("dim_customers")]),
    build_publish_asset("customer_scores", [model_key("customer_rfm"), model_key("dim_customers")]),
]
