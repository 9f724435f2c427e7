"""How good is "bought together" (ml/product_lists.py) on real baskets, against top sellers?

    .venv/bin/python bench/product_lists.py                      # both datasets
    .venv/bin/python bench/product_lists.py --dataset online_retail --test-days 30 --seed 7

Per dataset: baskets before the last `--test-days` days train the lists; each basket of the last
days with at least two distinct products (known before the split or not) is a test case. One of
its products, drawn by a seeded hash, is the seed; the others are what the list should name.
hit_rate@10: the share of test baskets where the seed's first 10 name at least one of the others;
recall@10: the share of the others named, averaged over baskets. A seed without a list (never
bought with anything twice before the split) counts as a miss, and `coverage` says how often
that was. distinct_products_shown and median_sales_rank_shown say how much of the catalogue the
lists show and how popular it is (1 = the best seller). The popularity baseline ranks products by training baskets (the seed left out).
"with popular fill": the list, then the top sellers it lacks, up to 10 (what a storefront that
falls back would show).

Measures compared: cosine (published), lift, confidence and raw count, and cosine at min support
1, 2 and 3; all run in the same process on the same split.

Online Retail (InvoiceNo = basket, StockCode = product): cancellations (InvoiceNo 'C…'),
non-positive quantities or prices and non-goods (postage, fees, adjustments, vouchers: the
stock codes config/mappings/online_retail.yml marks) are dropped. Complete Journey
(transactions_sample: basket_id; a random sample of 75,000 line items, so most sampled baskets
hold one line, which leaves few test baskets and thin co-occurrence: said in the results):
fuel, coupons, the postal centre and charity departments are dropped (config/mappings/complete_journey.yml).

--similar-catalogue also times "similar items" on Complete Journey's products.parquet (92,331
products; name = product type and package size, category = product category else department, as
config/mappings/complete_journey.yml maps them; no price band), with the process's peak memory.

Writes bench/results/product_lists.json. Timings are wall-clock on a shared machine: noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from ml.product_lists import BOUGHT_TOGETHER, ListParams, co_occurrence, similar_items  # noqa: E402

DATA = Path(os.environ.get("TESSERA_SHARED_DATA", ROOT.parent / "shared" / "data"))
K = 10

# (basket_id, product_id, at) of each dataset's goods lines
LINES_SQL = {
    "online_retail": """
        select InvoiceNo as basket_id, StockCode as product_id, InvoiceDate as bought_at
        from read_parquet($path)
        where not starts_with(InvoiceNo, 'C') and Quantity > 0 and UnitPrice > 0
          and StockCode not in ('POST', 'DOT', 'C2', 'BANK CHARGES', 'AMAZONFEE', 'CRUK', 'M', 'D', 'S', 'B', 'ADJUST')
          and not starts_with(upper(StockCode), 'GIFT_')
    """,
    "complete_journey": """
        select cast(cast(t.basket_id as bigint) as varchar) as basket_id, cast(t.product_id as varchar) as product_id,
            cast(t.transaction_timestamp as timestamp) as bought_at
        from read_parquet($path) as t
        left join read_parquet($products) as p on p.product_id = t.product_id
        where t.quantity > 0
          and coalesce(upper(p.department), '') not in ('FUEL', 'KIOSK-GAS', 'COUPON', 'POSTAL CENTER', 'CHARITABLE CONT')
    """,
}
FILES = {
    "online_retail": {"path": DATA / "online_retail" / "online_retail.parquet"},
    "complete_journey": {
        "path": DATA / "complete_journey" / "transactions_sample.parquet",
        "products": DATA / "complete_journey" / "products.parquet",
    },
}

SPLIT_SQL = """
    create or replace temp table lines as select distinct basket_id, product_id, bought_at from ({lines});
    create or replace temp table split as select max(bought_at) - to_days($test_days) as split_at from lines;
    create or replace temp table train as
        select distinct basket_id, product_id from lines where bought_at < (select split_at from split);
    create or replace temp table test_items as
        select distinct basket_id, product_id from lines
        where bought_at >= (select split_at from split) and basket_id not in (select basket_id from train);
    create or replace temp table test_baskets as
        select basket_id from test_items group by basket_id having count(*) >= 2;
    create or replace temp table seeds as
        select basket_id, arg_min(product_id, hash(basket_id || '|' || product_id || '|' || $seed)) as seed
        from test_items where basket_id in (select basket_id from test_baskets) group by basket_id;
    create or replace temp table popular as
        select product_id, row_number() over (order by count(*) desc, product_id) as rank
        from train group by product_id;
"""

# hits of each test basket's seed list (table `lists`: product_id, rank, recommended_product_id)
EVALUATE_SQL = """
    with truth as (
        select s.basket_id, s.seed, t.product_id
        from seeds as s inner join test_items as t on t.basket_id = s.basket_id and t.product_id <> s.seed
    ),
    shown as (
        select s.basket_id, l.recommended_product_id as product_id
        from seeds as s inner join lists as l on l.product_id = s.seed and l.rank <= $k
    ),
    per_basket as (
        select
            tr.basket_id,
            count(*) as others,
            count(sh.product_id) as hits,
            (select count(*) from shown as x where x.basket_id = tr.basket_id) as shown
        from truth as tr
        left join shown as sh on sh.basket_id = tr.basket_id and sh.product_id = tr.product_id
        group by tr.basket_id
    )
    select
        count(*) as baskets,
        avg(case when hits > 0 then 1.0 else 0.0 end) as hit_rate,
        avg(cast(hits as double) / others) as recall,
        avg(case when shown > 0 then 1.0 else 0.0 end) as coverage,
        (select count(distinct product_id) from shown) as distinct_shown,
        (select median(p.rank) from shown as x inner join popular as p using (product_id)) as median_popularity_rank
    from per_basket
"""

# the popularity baseline as a list per seed: the top sellers, the seed left out
POPULAR_LISTS_SQL = """
    create or replace temp table lists as
    select s.seed as product_id, row_number() over (partition by s.seed order by p.rank) as rank,
        p.product_id as recommended_product_id
    from (select distinct seed from seeds) as s
    inner join popular as p on p.rank <= $k + 1 and p.product_id <> s.seed
"""

# a list topped up with the top sellers it lacks (`lists` holds the list, rank <= $k)
FILLED_SQL = """
    create or replace temp table lists as
    with seeds_ as (select distinct seed from seeds),
    fill as (
        select s.seed as product_id, p.rank + 1000000 as rank, p.product_id as recommended_product_id
        from seeds_ as s inner join popular as p on p.rank <= 2 * $k + 1 and p.product_id <> s.seed
        where not exists (
            select 1 from co_lists as l
            where l.product_id = s.seed and l.recommended_product_id = p.product_id and l.rank <= $k
        )
    ),
    together as (
        select product_id, rank, recommended_product_id from co_lists where rank <= $k
        union all
        select * from fill
    )
    select product_id, row_number() over (partition by product_id order by rank) as rank, recommended_product_id
    from together
"""

VARIANTS = (
    ("cosine_min_support_2 (published)", "cosine", 2),
    ("cosine_min_support_1", "cosine", 1),
    ("cosine_min_support_3", "cosine", 3),
    ("lift_min_support_2", "lift", 2),
    ("confidence_min_support_2", "confidence", 2),
    ("count_min_support_2", "count", 2),
)


def run_script(con, script: str, params: dict) -> None:
    for statement in (s.strip() for s in script.split(";")):
        if statement:
            con.execute(statement, {k: v for k, v in params.items() if f"${k}" in statement})


def evaluate(con) -> dict:
    baskets, hit_rate, recall, coverage, distinct, median_rank = con.execute(EVALUATE_SQL, {"k": K}).fetchall()[0]
    return {
        f"hit_rate@{K}": round(hit_rate or 0.0, 4),
        f"recall@{K}": round(recall or 0.0, 4),
        "coverage": round(coverage or 0.0, 4),
        "test_baskets": baskets,
        # how concentrated the shown items are: distinct products shown over all test seeds, and
        # the median sales rank (1 = best seller) of what is shown
        "distinct_products_shown": distinct,
        "median_sales_rank_shown": None if median_rank is None else float(median_rank),
    }


def bench_dataset(name: str, test_days: int, seed: int) -> dict:
    con = duckdb.connect()
    files = {k: str(v) for k, v in FILES[name].items()}
    for path in files.values():
        if not Path(path).exists():
            raise SystemExit(f"bench/product_lists.py: {path} is missing (set TESSERA_SHARED_DATA)")
    con.execute(f"create temp table goods_lines as {LINES_SQL[name]}", files)
    run_script(con, SPLIT_SQL.format(lines="select * from goods_lines"), {"test_days": test_days, "seed": str(seed)})
    (split_at,) = con.execute("select cast(split_at as varchar) from split").fetchall()[0]
    sizes = con.execute(
        "select (select count(distinct basket_id) from train), (select count(*) from train),"
        " (select count(distinct product_id) from train), (select count(*) from test_baskets),"
        " (select avg(n) from (select count(*) as n from train group by basket_id))"
    ).fetchall()[0]
    result = {
        "split_at": split_at,
        "train_baskets": sizes[0],
        "train_lines": sizes[1],
        "train_products": sizes[2],
        "test_baskets_with_2_plus_items": sizes[3],
        "train_mean_basket_items": round(sizes[4] or 0.0, 2),
        "methods": {},
    }
    run_script(con, POPULAR_LISTS_SQL, {"k": K})
    result["methods"]["popularity (top sellers)"] = evaluate(con)
    for label, score, min_support in VARIANTS:
        started = time.perf_counter()
        lists = co_occurrence(
            con,
            "select basket_id, product_id from train",
            "select distinct product_id from train",
            BOUGHT_TOGETHER,
            ListParams(min_support=min_support),
            score=score,
        )
        seconds = time.perf_counter() - started
        con.register("co_lists", lists.to_arrow())
        con.execute("create or replace temp table lists as select * from co_lists")
        result["methods"][label] = {
            **evaluate(con),
            "products_with_a_list": lists["product_id"].n_unique(),
            "seconds": round(seconds, 2),
        }
        if label.endswith("(published)"):
            run_script(con, FILLED_SQL, {"k": K})
            result["methods"]["cosine_min_support_2 with popular fill"] = evaluate(con)
        con.unregister("co_lists")
    con.close()
    return result


CATALOGUE_SQL = """
    select cast(product_id as varchar) as product_id,
        nullif(trim(concat_ws(' ', product_type, package_size)), '') as product_name,
        coalesce(product_category, department) as category, brand, 'unknown' as price_band, true as is_active
    from read_parquet($path)
"""


def bench_similar() -> dict:
    path = DATA / "complete_journey" / "products.parquet"
    if not path.exists():
        raise SystemExit(f"bench/product_lists.py: {path} is missing (set TESSERA_SHARED_DATA)")
    con = duckdb.connect()
    products = con.sql(CATALOGUE_SQL, params={"path": str(path)}).pl()
    con.close()
    started = time.perf_counter()
    lists = similar_items(products)
    return {
        "products": products.height,
        "categories": products["category"].n_unique(),
        "seconds": round(time.perf_counter() - started, 1),
        "rows": lists.height,
        "products_with_a_list": lists["product_id"].n_unique(),
        "peak_rss_mb_of_the_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(LINES_SQL), action="append")
    parser.add_argument("--test-days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--similar-catalogue", action="store_true", help="also time similar items on 92k products")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "product_lists.json")
    args = parser.parse_args(argv)
    results = {
        "k": K,
        "test_days": args.test_days,
        "seed": args.seed,
        "note": "wall-clock seconds on a shared 2-core machine: noisy",
        "datasets": {},
    }
    for name in args.dataset or sorted(LINES_SQL):
        results["datasets"][name] = bench_dataset(name, args.test_days, args.seed)
        print(json.dumps({name: results["datasets"][name]}, indent=2), flush=True)
    if args.similar_catalogue:
        results["similar_complete_journey_catalogue"] = bench_similar()
        print(json.dumps(results["similar_complete_journey_catalogue"], indent=2), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
