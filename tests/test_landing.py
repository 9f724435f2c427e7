"""Raw loading: every format, lineage, missing and extra columns, atomic replacement."""

from __future__ import annotations

import pandas as pd
import pytest

from tessera.contract import SOURCES_BY_NAME
from tessera.landing import LandingError, load_source

PRODUCTS = SOURCES_BY_NAME["products"]


def _folder(tmp_path):
    folder = tmp_path / "landing" / "products"
    folder.mkdir(parents=True)
    return folder


def test_csv_parquet_and_jsonl_load_as_text_with_file_and_row(tmp_path, con):
    folder = _folder(tmp_path)
    (folder / "a.csv").write_text('product_id,name,price\nP1,Mug,007.50\nP2,"Bag, big",3\n')
    pd.DataFrame({"product_id": ["P3"], "price": [1.25], "is_active": [True]}).to_parquet(folder / "b.parquet")
    (folder / "c.jsonl").write_text(
        '{"product_id": "P4", "price": "2.00", "created_at": "2026-01-01T10:00:00+01:00"}\n'
    )
    report = load_source(con, PRODUCTS, tmp_path / "landing")
    assert report.rows == 4 and report.rows_per_file == {"a.csv": 2, "b.parquet": 1, "c.jsonl": 1}
    rows = con.execute(
        "select product_id, name, price, created_at, _source_file, _source_row from raw.products order by product_id"
    ).fetchall()
    assert rows == [
        ("P1", "Mug", "007.50", None, "a.csv", 1),  # text as delivered, not re-formatted
        ("P2", "Bag, big", "3", None, "a.csv", 2),
        ("P3", None, "1.25", None, "b.parquet", 1),
        ("P4", None, "2.00", "2026-01-01T10:00:00+01:00", "c.jsonl", 1),
    ]
    assert report.missing_columns["a.csv"] == ["category", "brand", "currency", "is_active", "created_at"]


def test_extra_columns_are_reported_not_loaded(tmp_path, con):
    folder = _folder(tmp_path)
    (folder / "a.csv").write_text("product_id,price,colour\nP1,1,red\n")
    report = load_source(con, PRODUCTS, tmp_path / "landing")
    assert report.extra_columns == {"a.csv": ["colour"]}
    assert "colour" not in [d[0] for d in con.execute("select * from raw.products").description]


def test_missing_folder_gives_an_empty_table_with_the_contract_columns(tmp_path, con):
    report = load_source(con, PRODUCTS, tmp_path / "landing")
    assert report.rows == 0
    cols = [d[0] for d in con.execute("select * from raw.products").description]
    assert cols == PRODUCTS.column_names + ["_source_file", "_source_row"]


def test_empty_file_is_skipped_and_reported(tmp_path, con):
    folder = _folder(tmp_path)
    (folder / "empty.csv").write_bytes(b"")
    (folder / "ok.csv").write_text("product_id,price\nP1,1\n")
    report = load_source(con, PRODUCTS, tmp_path / "landing")
    assert report.skipped_empty_files == ["empty.csv"] and report.rows == 1


def test_unreadable_file_raises_a_clear_error_and_keeps_the_previous_table(tmp_path, con):
    folder = _folder(tmp_path)
    (folder / "ok.csv").write_text("product_id,price\nP1,1\n")
    load_source(con, PRODUCTS, tmp_path / "landing")
    (folder / "z.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(LandingError, match="z.parquet"):
        load_source(con, PRODUCTS, tmp_path / "landing")
    assert con.execute("select product_id from raw.products").fetchall() == [("P1",)]
