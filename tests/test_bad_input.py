"""The bad-input matrix: every case gets a clear error or a quarantine row with its reason, and
nothing valid is lost.

Loader cases run on the loader alone. Value cases are injected together into one small generated
dataset, each in rows of its own, and the graph up to the quarantine and the facts is materialized
once with its gates; each test then looks at its own rows: the reason and raw content in
`quarantine.quarantined_records`, the valid neighbours in the marts, and reconciliation per source.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from datetime import date, datetime

import dagster as dg
import duckdb
import pandas as pd
import pytest

import tessera.landing.loader as landing
from tessera.landing.contract import SOURCES_BY_NAME
from tessera.landing.generate import GenerateConfig, generate
from tessera.landing.loader import LandingError, load_source
from tessera.settings import load_settings
from tests.conftest import materialized_keys, run_job, use_data_dir

PRODUCTS = SOURCES_BY_NAME["products"]
ORDER_ITEMS = SOURCES_BY_NAME["order_items"]


# ---------------------------------------------------------------- loader cases


def _landing(tmp_path, source: str = "products"):
    folder = tmp_path / "landing" / source
    folder.mkdir(parents=True)
    return folder


def _rejects(con) -> list[tuple]:
    return con.execute(
        "select source, _source_file, _source_row, reason, raw_content from raw.load_rejects order by _source_file, _source_row"
    ).fetchall()


def test_header_only_file_loads_nothing_and_is_audited_as_zero_records(tmp_path, con):
    folder = _landing(tmp_path)
    (folder / "header_only.csv").write_text("product_id,name,price\n")
    (folder / "ok.csv").write_text("product_id,price\nP1,1\n")
    report = load_source(con, PRODUCTS, tmp_path / "landing")
    assert report.rows == 1 and report.rows_per_file == {"header_only.csv": 0, "ok.csv": 1}
    audit = con.execute(
        "select _source_file, landing_records, loaded_rows, quarantined_rows from raw.load_audit order by 1"
    )
    assert audit.fetchall() == [("header_only.csv", 0, 0, 0), ("ok.csv", 1, 1, 0)]


def test_non_utf8_bytes_quarantine_their_record_and_the_rest_of_the_file_loads(tmp_path, con):
    folder = _landing(tmp_path)
    (folder / "latin1.csv").write_bytes(b"product_id,name,price\nP1,Mug,1\nP2,Caf\xe9 cup,2\nP3,Bowl,3\n")
    report = load_source(con, PRODUCTS, tmp_path / "landing")
    assert con.execute("select product_id, _source_row from raw.products order by 2").fetchall() == [
        ("P1", 1),
        ("P3", 3),
    ]
    [(source, file, row, reason, content)] = _rejects(con)
    assert (source, file, row) == ("products", "latin1.csv", 2)
    assert reason.startswith("INVALID ENCODING") and content.startswith("P2,Caf")
    assert report.rejected == 1 and report.records_read == 3


def test_quoted_newlines_stay_inside_their_record_and_rows_keep_their_positions(tmp_path, con):
    folder = _landing(tmp_path)
    (folder / "a.csv").write_text('product_id,name,price\nP1,"Mug\nlarge, blue",1\nP2,"say ""hi""",2\nP3,Bowl,3\n')
    report = load_source(con, PRODUCTS, tmp_path / "landing")
    rows = con.execute("select product_id, name, _source_row from raw.products order by 3").fetchall()
    assert rows == [("P1", "Mug\nlarge, blue", 1), ("P2", 'say "hi"', 2), ("P3", "Bowl", 3)]
    assert report.rejected == 0


def test_records_with_too_many_or_too_few_fields_are_quarantined_with_position_and_line(tmp_path, con):
    folder = _landing(tmp_path)
    (folder / "a.csv").write_text("product_id,name,price\nP1,Mug,1\nP2,Short\nP3,Bowl,3,extra\nP4,Plate,4\n")
    load_source(con, PRODUCTS, tmp_path / "landing")
    assert con.execute("select product_id, _source_row from raw.products order by 2").fetchall() == [
        ("P1", 1),
        ("P4", 4),
    ]
    rejects = _rejects(con)
    assert [(r[2], r[3].split(":")[0], r[4]) for r in rejects] == [
        (2, "MISSING COLUMNS", "P2,Short"),
        (3, "TOO MANY COLUMNS", "P3,Bowl,3,extra"),
    ]


def test_a_huge_value_is_quarantined_whole_and_an_unreadable_line_is_a_short_clear_error(tmp_path, con):
    folder = _landing(tmp_path)
    huge = "x" * 150_000
    (folder / "a.csv").write_text(f"product_id,name,price\nP1,Mug,1\nP2,{huge},2\nP3,Bowl,3\n")
    report = load_source(con, PRODUCTS, tmp_path / "landing")
    assert con.execute("select product_id from raw.products order by 1").fetchall() == [("P1",), ("P3",)]
    [(_, _, row, reason, content)] = _rejects(con)
    assert row == 2 and reason == "VALUE TOO LONG: name holds 150000 characters, over the limit of 100000"
    assert len(content) > 150_000 and huge in content  # the whole record is kept
    assert report.records_read == 3

    # a line longer than the reader accepts fails the load, naming the file, without quoting 150 kB
    with pytest.raises(LandingError, match="a.csv") as caught:
        load_source(con, PRODUCTS, tmp_path / "landing", max_line_bytes=100_000)
    assert len(str(caught.value)) < 5_000 and "Maximum line size" in str(caught.value)
    assert con.execute("select count(*) from raw.products").fetchall() == [(2,)]  # previous load kept


def test_json_lines_that_are_not_objects_are_quarantined_and_non_utf8_json_fails_the_load(tmp_path, con):
    folder = _landing(tmp_path)
    (folder / "a.jsonl").write_text(
        '{"product_id": "P1", "price": "1"}\n\n{"product_id": "P2", "pri\n[1, 2]\n{"product_id": "P3"}\n'
    )
    report = load_source(con, PRODUCTS, tmp_path / "landing")
    assert con.execute("select product_id, _source_row from raw.products order by 2").fetchall() == [
        ("P1", 1),
        ("P3", 4),
    ]
    assert [(r[2], r[3].split(":")[0], r[4]) for r in _rejects(con)] == [
        (2, "INVALID JSON", '{"product_id": "P2", "pri'),
        (3, "NOT A JSON OBJECT", "[1, 2]"),
    ]
    assert report.records_read == 4  # the blank line is not a record

    (folder / "b.jsonl").write_bytes(b'{"product_id": "P4", "name": "Caf\xe9"}\n')
    with pytest.raises(LandingError, match="b.jsonl"):
        load_source(con, PRODUCTS, tmp_path / "landing")
    assert con.execute("select count(*) from raw.products").fetchall() == [(2,)]


def test_json_lines_blank_means_ascii_whitespace_only_as_the_independent_count_says(tmp_path, con):
    """Lines of spaces, tabs or form feeds are not records; a no-break space is text (invalid
    JSON, quarantined); CRLF line ends are cut. The load and count_landing_records agree, so the
    file reconciles."""
    folder = _landing(tmp_path)
    (folder / "a.jsonl").write_bytes(
        b'{"product_id": "P1"}\r\n \t \r\n\t\n\x0b\x0c\n\xc2\xa0\n{"product_id": "P2"}\r\n  \n'
    )
    report = load_source(con, PRODUCTS, tmp_path / "landing")
    assert con.execute("select product_id, _source_row from raw.products order by 2").fetchall() == [
        ("P1", 1),
        ("P2", 3),
    ]
    assert [(r[2], r[3].split(":")[0], r[4]) for r in _rejects(con)] == [(2, "INVALID JSON", "\xa0")]
    assert report.records_read == 3 == landing.count_landing_records(con, folder / "a.jsonl")


def test_json_lines_files_loaded_in_one_batch_keep_each_files_own_record_numbers(tmp_path):
    """JSON Lines files are loaded several per statement (landing.JSON_BATCH_BYTES). Whether the
    files go one by one or all together, the raw table, the rejects, the audit and the report are
    the same, and every row's file and record number are those Python counts line by line."""
    folder = _landing(tmp_path)
    (folder / "a.jsonl").write_bytes(
        b'{"product_id": "A1", "name": "x"}\n\n  \n[1, 2]\n{"product_id": "A2", "name": "' + b"y" * 50 + b'"}\r\n'
        b'{"product_id": "A3"\n{"product_id": "A4", "colour": "red"}\n'
    )
    (folder / "b.jsonl").write_text("".join(f'{{"product_id": "B{i}", "price": "{i}"}}\n' for i in range(1, 3001)))
    (folder / "c.csv").write_text("product_id,price\nC1,1\n")  # a CSV between JSON files
    (folder / "d.jsonl").write_text('"text"\n{"product_id": "D2"}\n')

    def load(batch_bytes):
        con = duckdb.connect()
        report = load_source(con, PRODUCTS, tmp_path / "landing", max_field_chars=20, json_batch_bytes=batch_bytes)
        tables = [
            con.execute(sql).fetchall()
            for sql in (
                "select * from raw.products",
                "select * exclude (raw_content_hex) from raw.load_rejects order by _source_file, _source_row",
                "select * exclude (file_hash) from raw.load_audit order by _source_file",
            )
        ]
        return tables, report.missing_columns, report.extra_columns, report.records_read, report.files_read

    one_by_one, together = load(1), load(10**9)
    assert one_by_one == together
    (rows, rejects, audit), missing, extra, records_read, files_read = together
    expected = []
    for name in ("a.jsonl", "b.jsonl", "d.jsonl"):
        lines = [line for line in (folder / name).read_bytes().splitlines() if line.strip()]
        expected += [(name, n, line) for n, line in enumerate(lines, start=1)]
    loaded = {(f, n): pid for pid, *_, f, n in rows}
    for name, n, line in expected:
        if (name, n) in loaded:
            assert f'"product_id": "{loaded[name, n]}"'.encode() in line
    assert [(f, n, reason.split(":")[0]) for _, f, n, reason, _ in rejects] == [
        ("a.jsonl", 2, "NOT A JSON OBJECT"),
        ("a.jsonl", 3, "VALUE TOO LONG"),
        ("a.jsonl", 4, "INVALID JSON"),
        ("d.jsonl", 1, "NOT A JSON OBJECT"),
    ]
    assert len(rows) == 2 + 3000 + 1 + 1 and records_read == len(expected) + 1 == 5 + 3000 + 1 + 2
    assert [row[1:5] for row in audit] == [
        ("a.jsonl", 5, 2, 3),
        ("b.jsonl", 3000, 3000, 0),
        ("c.csv", 1, 1, 0),
        ("d.jsonl", 2, 1, 1),
    ]
    assert (
        extra == {"a.jsonl": ["colour"]} and "price" in missing["a.jsonl"] and "price" not in missing.get("b.jsonl", [])
    )
    assert files_read == ["a.jsonl", "b.jsonl", "c.csv", "d.jsonl"]
    # rows go in file order, each file's in record order, whatever the batching
    assert [(f, n) for *_, f, n in rows] == sorted((f, n) for *_, f, n in rows)


def test_a_file_that_is_not_utf8_is_named_when_it_is_loaded_in_a_batch(tmp_path, con):
    folder = _landing(tmp_path)
    (folder / "a.jsonl").write_text('{"product_id": "P1"}\n')
    (folder / "b.jsonl").write_bytes(b'{"product_id": "P2", "name": "Caf\xe9"}\n')
    (folder / "c.jsonl").write_text('{"product_id": "P3"}\n')
    with pytest.raises(LandingError, match="b.jsonl") as caught:
        load_source(con, PRODUCTS, tmp_path / "landing")
    # the one file, though the batch's files are read by one statement
    assert f"cannot read landing file {folder / 'b.jsonl'}:" in str(caught.value)
    assert not con.execute("select count(*) from information_schema.tables where table_name = 'products'").fetchall()[
        0
    ][0]


def test_a_file_that_does_not_reconcile_is_refused_and_nothing_of_the_load_is_kept(tmp_path, con, monkeypatch):
    folder = _landing(tmp_path)
    (folder / "a.csv").write_text("product_id,price\nP1,1\nP2,2\n")
    load_source(con, PRODUCTS, tmp_path / "landing")
    (folder / "b.csv").write_text("product_id,price\nP3,3\n")
    # as if DuckDB had silently dropped a record: the independent count says one more
    real = landing.count_text_records
    monkeypatch.setattr(landing, "count_text_records", lambda p, m=0: real(p) + (p.name == "b.csv"))
    with pytest.raises(LandingError, match="b.csv does not reconcile: it holds 2 records but 1 loaded and 0"):
        load_source(con, PRODUCTS, tmp_path / "landing")
    assert con.execute("select count(*) from raw.products").fetchall() == [(2,)]
    assert con.execute("select count(*) from raw.load_audit").fetchall() == [(1,)]


def test_independent_record_count_agrees_with_csv_semantics(tmp_path, con):
    path = tmp_path / "a.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["product_id", "name"])
        w.writerows([["P1", "two\nlines"], ["P2", ""], ["P3", 'quote " inside']])
        fh.write("\n")  # a trailing blank line is not a record
    assert landing.count_landing_records(con, path) == 3


# ---------------------------------------------------------------- landing accounts for every file (issue 33)

CUSTOMERS = SOURCES_BY_NAME["customers"]


def _audit(con, source: str = "products") -> list[tuple]:
    return con.execute(
        "select _source_file, landing_records, loaded_rows, quarantined_rows, not_loaded_reason from raw.load_audit "
        "where source = ? order by _source_file",
        [source],
    ).fetchall()


def test_file_names_are_literal_a_glob_character_never_reads_another_file(tmp_path, con):
    # regression (issue 33): DuckDB's readers take a path as a glob, so `x16_a[1].csv` was read as
    # `x16_a1.csv` (its own rows appeared nowhere, yet it "reconciled") and a name with `*` read
    # every file it matched, failing the whole source
    folder = _landing(tmp_path)
    names = ["x16_a1.csv", "x16_a[1].csv", "x*.csv", "x?.csv", "x{a,b}.csv", "back\\slash[1].csv"]
    for i, name in enumerate(names):
        (folder / name).write_text(f"product_id,name\nP{i},{name.replace(',', ';')}\n")
    pd.DataFrame({"product_id": ["PQ"]}).to_parquet(folder / "p[1].parquet")
    (folder / "j*[1].jsonl").write_text('{"product_id": "PJ"}\n')
    report = load_source(con, PRODUCTS, tmp_path / "landing")
    rows = con.execute("select product_id, _source_file from raw.products order by 2").fetchall()
    expected = sorted(
        [(f"P{i}", name) for i, name in enumerate(names)] + [("PQ", "p[1].parquet"), ("PJ", "j*[1].jsonl")],
        key=lambda r: r[1],
    )
    assert rows == expected
    assert _audit(con) == [(name, 1, 1, 0, None) for _, name in expected]
    assert report.records_read == len(expected) and report.files_not_loaded == {}


def test_compressed_csv_and_json_lines_load_like_their_plain_files(tmp_path, con):
    # regression (issue 33): a .csv.gz was ignored silently: no audit row, no quarantine, no log line
    import gzip

    folder = _landing(tmp_path)
    (folder / "a.csv.gz").write_bytes(gzip.compress(b"product_id,name\nP1,Mug\nP2,Short,extra\nP3,Bowl\n"))
    (folder / "b.jsonl.gz").write_bytes(gzip.compress(b'{"product_id": "P4"}\n\n[1]\n{"product_id": "P5"}\n'))
    (folder / "c.NDJSON.GZ").write_bytes(gzip.compress(b'{"product_id": "P6"}\n'))
    report = load_source(con, PRODUCTS, tmp_path / "landing")
    assert con.execute("select product_id, _source_file, _source_row from raw.products order by 2, 3").fetchall() == [
        ("P1", "a.csv.gz", 1),
        ("P3", "a.csv.gz", 3),
        ("P4", "b.jsonl.gz", 1),
        ("P5", "b.jsonl.gz", 3),
        ("P6", "c.NDJSON.GZ", 1),
    ]
    assert [(r[1], r[2], r[3].split(":")[0], r[4]) for r in _rejects(con)] == [
        ("a.csv.gz", 2, "TOO MANY COLUMNS", "P2,Short,extra"),
        ("b.jsonl.gz", 2, "NOT A JSON OBJECT", "[1]"),
    ]
    assert _audit(con) == [("a.csv.gz", 3, 2, 1, None), ("b.jsonl.gz", 3, 2, 1, None), ("c.NDJSON.GZ", 1, 1, 0, None)]
    assert report.records_read == 7
    # unchanged compressed files are not read again
    assert load_source(con, PRODUCTS, tmp_path / "landing").files_read == []


def _unloadable_folder(tmp_path):
    folder = _landing(tmp_path)
    (folder / "ok.csv").write_text("product_id\nP1\n")
    (folder / "array.json").write_text('[{"product_id": "P2"}, {"product_id": "P3"}]\n')
    (folder / "prices.xlsx").write_bytes(b"PK\x03\x04 a spreadsheet")
    (folder / "notes.txt").write_text("P4\n")
    (folder / "gone.csv").symlink_to(tmp_path / "no_such_file.csv")
    (folder / "2026-11").mkdir()
    (folder / "2026-11" / "inside.csv").write_text("product_id\nP5\n")
    os.mkfifo(folder / "pipe.csv")  # never opened: a reader would wait on it for ever
    return folder


UNLOADABLE = {
    "2026-11": "a folder",
    "array.json": "a JSON document holding an array",
    "gone.csv": "a symbolic link to a file that does not exist",
    "notes.txt": "unsupported file type .txt",
    "pipe.csv": "not a regular file",
    "prices.xlsx": "a spreadsheet (.xlsx)",
}


def test_every_file_landing_does_not_load_is_audited_with_its_reason_and_blocks_by_default(tmp_path, con):
    # regression (issue 33): a JSON array in .json, an .xlsx and a dangling symlink were ignored
    # silently, and "8/8 sources reconcile"
    _unloadable_folder(tmp_path)
    with pytest.raises(LandingError) as caught:
        load_source(con, PRODUCTS, tmp_path / "landing")
    message = str(caught.value)
    assert "6 landing files of products were not loaded" in message and "TESSERA_LANDING_UNLOADED_FILES" in message
    for name, reason in UNLOADABLE.items():
        assert f"{name}: {reason}" in message
    # the files that could be loaded were, and the audit accounts for every entry of the folder
    assert con.execute("select product_id, _source_file from raw.products").fetchall() == [("P1", "ok.csv")]
    audit = {name: row for name, *row in _audit(con)}
    assert sorted(audit) == sorted([*UNLOADABLE, "ok.csv"])
    assert audit.pop("ok.csv") == [1, 1, 0, None]
    for name, (records, loaded, quarantined, reason) in audit.items():
        # not counted (NULL records), nothing loaded or quarantined, and why
        assert (records, loaded, quarantined) == (None, 0, 0) and reason.startswith(UNLOADABLE[name]), (name, reason)


def test_the_warn_policy_records_the_files_it_does_not_load_and_lets_the_load_go_on(tmp_path, con):
    folder = _unloadable_folder(tmp_path)
    report = load_source(con, PRODUCTS, tmp_path / "landing", unloaded_files="warn")
    assert sorted(report.files_not_loaded) == sorted(UNLOADABLE)
    assert report.rows == 1 and report.records_read == 1 and report.files == ["ok.csv"]
    assert len(_audit(con)) == 7
    # the audit follows the folder: a file taken away leaves it, and a loaded file that can no longer
    # be read takes its rows with it
    (folder / "notes.txt").unlink()
    (folder / "ok.csv").unlink()
    (folder / "ok.csv").symlink_to(tmp_path / "no_such_file.csv")
    report = load_source(con, PRODUCTS, tmp_path / "landing", unloaded_files="warn")
    assert report.files_removed == ["ok.csv"] and report.rows == 0 and "notes.txt" not in report.files_not_loaded
    assert con.execute("select count(*) from raw.products").fetchone() == (0,)
    assert [r[0] for r in _audit(con)] == sorted(set(UNLOADABLE) - {"notes.txt"} | {"ok.csv"})
    assert report.files_not_loaded["ok.csv"].startswith("a symbolic link to a file that does not exist")


def test_the_policy_comes_from_the_environment_and_defaults_to_block(tmp_path, con, monkeypatch):
    _unloadable_folder(tmp_path)
    monkeypatch.setenv("TESSERA_LANDING_UNLOADED_FILES", "warn")
    assert load_settings().landing_unloaded_files == "warn"
    assert len(load_source(con, PRODUCTS, tmp_path / "landing").files_not_loaded) == 6
    monkeypatch.delenv("TESSERA_LANDING_UNLOADED_FILES")
    assert load_settings().landing_unloaded_files == "block"
    with pytest.raises(LandingError, match="were not loaded"):
        load_source(con, PRODUCTS, tmp_path / "landing")
    monkeypatch.setenv("TESSERA_LANDING_UNLOADED_FILES", "ignore")
    with pytest.raises(ValueError, match="TESSERA_LANDING_UNLOADED_FILES must be one of block, warn"):
        load_settings()


def test_a_file_that_cannot_be_opened_is_audited_as_unreadable(tmp_path, con, monkeypatch):
    # tests run as root, whom file permissions do not stop: the refusal is simulated at open
    folder = _landing(tmp_path)
    (folder / "ok.csv").write_text("product_id\nP1\n")
    (folder / "locked.csv").write_text("product_id\nP2\n")
    real = landing.file_fingerprint

    def fingerprint(path, limits=""):
        if path.name == "locked.csv":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, limits)

    monkeypatch.setattr(landing, "file_fingerprint", fingerprint)
    report = load_source(con, PRODUCTS, tmp_path / "landing", unloaded_files="warn")
    assert report.files_not_loaded == {"locked.csv": "cannot be read: Permission denied"}
    assert _audit(con) == [("locked.csv", None, 0, 0, "cannot be read: Permission denied"), ("ok.csv", 1, 1, 0, None)]


def test_column_names_match_whatever_their_case_and_two_spellings_of_one_column_refuse_the_file(tmp_path, con):
    # regression (issue 33): an `EMAIL` header loaded every email as NULL with only a warning
    folder = tmp_path / "landing" / "customers"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text("Customer_ID,EMAIL, First_Name \nC1,ada@example.com,Ada\n")
    (folder / "b.jsonl").write_text('{"customer_id": "C2", "Email": "bob@example.com"}\n{"customer_id": "C3"}\n')
    pd.DataFrame({"CUSTOMER_ID": ["C4"], "eMail": ["cy@example.com"]}).to_parquet(folder / "c.parquet")
    (folder / "d.csv").write_text("customer_id,email,EMAIL\nC5,dee@example.com,other@example.com\n")
    (folder / "e.jsonl").write_text('{"customer_id": "C6", "email": "e@example.com", "EMAIL": "f@example.com"}\n')
    report = load_source(con, CUSTOMERS, tmp_path / "landing", unloaded_files="warn")
    assert con.execute(
        "select customer_id, email, first_name, _source_file from raw.customers order by 1"
    ).fetchall() == [
        ("C1", "ada@example.com", "Ada", "a.csv"),
        ("C2", "bob@example.com", None, "b.jsonl"),
        ("C3", None, None, "b.jsonl"),
        ("C4", "cy@example.com", None, "c.parquet"),
    ]
    assert "email" not in report.missing_columns["a.csv"] and "email" not in report.missing_columns["c.parquet"]
    assert report.extra_columns == {}
    assert report.renamed_columns == {
        "a.csv": {"Customer_ID": "customer_id", "EMAIL": "email", "First_Name": "first_name"},
        "b.jsonl": {"Email": "email"},
        "c.parquet": {"CUSTOMER_ID": "customer_id", "eMail": "email"},
    }
    assert report.files_not_loaded == {
        "d.csv": "columns email and EMAIL both name the contract column email: which one holds it is not known",
        "e.jsonl": "columns EMAIL and email both name the contract column email: which one holds it is not known",
    }
    assert [(r[0], r[1], r[2], r[3]) for r in _audit(con, "customers")] == [
        ("a.csv", 1, 1, 0),
        ("b.jsonl", 2, 2, 0),
        ("c.parquet", 1, 1, 0),
        ("d.csv", None, 0, 0),
        ("e.jsonl", None, 0, 0),
    ]
    kept = dict(
        con.execute("select _source_file, missing_columns from raw.load_audit where source = 'customers'").fetchall()
    )
    assert "email" not in json.loads(kept["a.csv"]) and kept["d.csv"] is None


def test_a_record_that_cannot_be_decoded_keeps_its_original_bytes(tmp_path, con):
    # regression (issue 33): a Latin-1 record was kept as `Ren??`, not as the bytes delivered
    folder = tmp_path / "landing" / "customers"
    folder.mkdir(parents=True)
    delivered = [b"C1,Ren\xe9,r@example.com", b'C3,"Zo\xeb\r\nline",z@example.com']
    (folder / "latin1.csv").write_bytes(
        b"customer_id,first_name,email\r\n"
        + delivered[0]
        + b"\r\nC2,Bob,b@example.com\r\n\r\n"
        + delivered[1]
        + b"\r\n"
    )
    report = load_source(con, CUSTOMERS, tmp_path / "landing")
    rejects = con.execute(
        "select _source_row, reason, raw_content, raw_content_hex from raw.load_rejects order by 1"
    ).fetchall()
    assert [r[1].split(":")[0] for r in rejects] == ["INVALID ENCODING", "INVALID ENCODING"]
    assert [bytes.fromhex(r[3]) for r in rejects] == delivered  # nothing lost
    assert rejects[0][2] == "C1,Ren\\xe9,r@example.com"  # readable: each byte that is not UTF-8 as \xNN
    assert rejects[1][2] == 'C3,"Zo\\xeb\r\nline",z@example.com'
    assert con.execute("select customer_id, _source_row from raw.customers").fetchall() == [("C2", 2)]
    assert _audit(con, "customers") == [("latin1.csv", 3, 1, 2, None)] and report.records_read == 3
    # a record in valid UTF-8 keeps its text and needs no copy of its bytes
    (folder / "short.csv").write_text("customer_id,first_name,email\nC9,Short\n")
    load_source(con, CUSTOMERS, tmp_path / "landing")
    assert con.execute(
        "select raw_content, raw_content_hex from raw.load_rejects where _source_file = 'short.csv'"
    ).fetchall() == [("C9,Short", None)]


@pytest.mark.parametrize("encoding, bom", [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"), ("utf-16-le", b"")])
def test_a_utf16_file_is_decoded_and_loads(tmp_path, con, encoding, bom):
    # regression (issue 33): a UTF-16 file was quarantined with raw_content null
    folder = tmp_path / "landing" / "customers"
    folder.mkdir(parents=True)
    text = "customer_id\tfirst_name\temail\r\nC1\tRené\tr@example.com\r\nC2\tZoë\tz@example.com\r\n"
    (folder / "excel.csv").write_bytes(bom + text.encode(encoding))
    report = load_source(con, CUSTOMERS, tmp_path / "landing")
    assert con.execute(
        "select customer_id, first_name, email, _source_row from raw.customers order by 1"
    ).fetchall() == [
        ("C1", "René", "r@example.com", 1),
        ("C2", "Zoë", "z@example.com", 2),
    ]
    assert _audit(con, "customers") == [("excel.csv", 2, 2, 0, None)] and report.rejected == 0


# ---------------------------------------------------------------- value cases, through the graph

END = date(2026, 10, 31)


def _write_csv(path, header: list[str], rows: list[list[str]]) -> None:
    path.write_text("\n".join([",".join(header)] + [",".join(r) for r in rows]) + "\n")


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    use_data_dir(mp, tmp_path_factory.mktemp("bad_input") / "data")
    settings = load_settings()
    generate(GenerateConfig(customers=300, days=100, seed=7, end_date=END), settings.landing_dir, settings.truth_dir)
    land = settings.landing_dir
    customer = pd.read_csv(land / "customers" / "customers.csv", dtype=str)["customer_id"].iloc[0]
    product = pd.read_parquet(land / "products" / "products.parquet")["product_id"].iloc[0]

    order_cols = ["order_id", "customer_id", "channel", "status", "currency", "ordered_at", "coupon"]
    _write_csv(
        land / "orders" / "orders_matrix.csv",
        order_cols,  # `coupon` is outside the contract: reported, not loaded
        [
            ["M0001", customer, "web", "completed", "GBP", "2026-10-20 08:30:00", "X"],  # no zone: UTC
            ["M0002", customer, "web", "completed", "GBP", "2031-01-01T00:00:00+00:00", ""],
            ["M0003", customer, "web", "completed", "GBP", "1999-12-31T23:00:00+00:00", ""],
            ["M0004", customer, "app", "completed", "GBP", "2026-10-21T10:00:00+02:00", ""],
            ["M0004", customer, "app", "completed", "GBP", "2026-10-21T10:00:00+02:00", ""],  # repeated row
        ],
    )
    resent = [
        ["M0010", customer, "web", "completed", "GBP", "2026-10-22T09:00:00Z"],
        ["M0011", customer, "web", "completed", "GBP", "2026-10-22T09:05:00Z"],
    ]
    _write_csv(land / "orders" / "orders_resent_a.csv", order_cols[:-1], resent)
    _write_csv(land / "orders" / "orders_resent_b.csv", order_cols[:-1], resent)  # the same file again

    item_cols = ["order_item_id", "order_id", "product_id", "quantity", "unit_price"]
    items = (
        "\n".join(
            [
                ",".join(item_cols),
                f"L0001,M0001,{product},2,9.99",
                f"L0002,M0001,{product},-1,9.99",
                f"L0003,M0001,{product},1,-5.00",
                f"L0004,M0001,{product},two,9.99",
                "L0005,M0001,SKU_DOES_NOT_EXIST,1,9.99",
                f"L0006,M_NO_SUCH_ORDER,{product},1,9.99",
                f"L0007,M0001,{product},1,9.99",  # replaced by bad bytes below
                f"L0008,M0001,{product},1,9.99,surplus",
                f"L0009,M0004,{product},3,4.50",
                f"L0010,M0002,{product},1,9.99",
                f"L0001,M0001,{product},2,9.99",  # row 11: line L0001 again
                f"L0011,M0001,{product},0,9.99",
            ]
        ).encode()
        + b"\n"
    )
    items = items.replace(f"L0007,M0001,{product}".encode(), b"L0007,M0001,SKU\xff\xfe")
    (land / "order_items" / "order_items_matrix.csv").write_bytes(items)
    _write_csv(
        land / "order_items" / "order_items_no_product.csv",
        ["order_item_id", "order_id", "quantity"],
        [["L0020", "M0001", "1"]],
    )

    (land / "products" / "products_header_only.csv").write_text("product_id,name,price,currency\n")
    (land / "products" / "products_matrix.csv").write_text(
        f'product_id,name,price,currency\nSKU_NL,"Mug\nlarge",4.00,GBP\nSKU_HUGE,{"y" * 120_000},4.00,GBP\n'
    )
    (land / "privacy" / "privacy_empty.csv").write_bytes(b"")
    customer_cols = pd.read_csv(land / "customers" / "customers.csv", dtype=str, nrows=0).columns.tolist()
    profile = dict.fromkeys(customer_cols, "") | {"first_name": "Ada", "last_name": "Future", "country": "GB"}
    _write_csv(
        land / "customers" / "customers_matrix.csv",
        customer_cols,
        [
            [
                {
                    **profile,
                    "customer_id": "CFUTURE1",
                    "email": "ada.future1@example.com",
                    "signup_at": "2031-01-01T00:00:00Z",
                    "updated_at": "2026-10-01T00:00:00Z",
                }[c]
                for c in customer_cols
            ],
            [
                {
                    **profile,
                    "customer_id": "CFUTURE2",
                    "email": "ada.future2@example.com",
                    "signup_at": "2026-09-01T00:00:00Z",
                    "updated_at": "2031-01-01T00:00:00Z",
                }[c]
                for c in customer_cols
            ],
            customer_cols,  # row 3: the header line again, as when two exports are concatenated
            [
                {
                    **profile,
                    "customer_id": "CATLANTIS",
                    "email": "ada.atlantis@example.com",
                    "country": "Atlantis",
                    "signup_at": "2026-09-01T00:00:00Z",
                    "updated_at": "2026-09-01T00:00:00Z",
                }[c]
                for c in customer_cols
            ],
        ],
    )

    # issue 33, landing: names with glob characters, compressed files, a header in capitals, a
    # Latin-1 record, a UTF-16 export, and entries landing does not load (recorded: policy warn)
    mp.setenv("TESSERA_LANDING_UNLOADED_FILES", "warn")
    (land / "products" / "products_x1.csv").write_text("product_id,name,price,currency\nSKU_PLAIN,Plain mug,3.00,GBP\n")
    (land / "products" / "products_x[1].csv").write_text(
        "product_id,name,price,currency\nSKU_BRACKET,Bracket mug,3.00,GBP\n"
    )
    (land / "products" / "products_*.csv").write_text("product_id,name,price,currency\nSKU_STAR,Star mug,3.00,GBP\n")
    (land / "orders" / "orders_gz.csv.gz").write_bytes(
        gzip.compress(
            f"{','.join(order_cols[:-1])}\nM0030,{customer},web,completed,GBP,2026-10-23T09:00:00Z\n".encode()
        )
    )
    signup = {"signup_at": "2026-09-01T00:00:00Z", "updated_at": "2026-09-01T00:00:00Z"}
    _write_csv(
        land / "customers" / "customers_upper.csv",
        [c.upper() for c in customer_cols],
        [[{**profile, **signup, "customer_id": "CUPPER", "email": "ada.upper@example.com"}[c] for c in customer_cols]],
    )
    latin1 = {**profile, **signup, "customer_id": "CLATIN1", "first_name": "Renée", "email": "renee.latin1@example.com"}
    (land / "customers" / "customers_latin1.csv").write_bytes(
        (",".join(customer_cols) + "\n" + ",".join(latin1[c] for c in customer_cols) + "\n").encode("latin-1")
    )
    utf16 = {**profile, **signup, "customer_id": "CUTF16", "first_name": "Zoë", "email": "zoe.utf16@example.com"}
    (land / "customers" / "customers_excel.csv").write_bytes(
        ("\t".join(customer_cols) + "\r\n" + "\t".join(utf16[c] for c in customer_cols) + "\r\n").encode("utf-16")
    )
    (land / "privacy" / "privacy_export.json").write_text('[{"request_id": "R_ARRAY", "request_type": "erasure"}]\n')
    (land / "privacy" / "privacy_requests.xlsx").write_bytes(b"PK\x03\x04 a spreadsheet")
    (land / "privacy" / "privacy_gone.jsonl").symlink_to(land / "privacy" / "no_such_file.jsonl")

    # an email event delivered again in a later file (its name sorts last)
    email = pd.read_csv(min((land / "email_events").glob("*.csv")), dtype=str, keep_default_na=False)
    email.head(1).to_csv(land / "email_events" / "email_events_zz_again.csv", index=False)

    events = pd.read_json(sorted((land / "events").glob("*.jsonl"))[-1], lines=True, dtype=False).head(2)
    late, future, again = events.iloc[0].copy(), events.iloc[1].copy(), events.iloc[0].copy()
    late["event_id"], late["event_ts"] = "E_LATE", "2026-10-02T12:00:00+00:00"
    future["event_id"], future["event_ts"] = "E_FUTURE", "2031-06-01T12:00:00+00:00"
    # delivered after everything else (the name sorts last), about a day a month old
    # `again`: the first event of the last day's file, delivered a second time (row 3)
    pd.DataFrame([late, future, again]).to_json(land / "events" / "events_zz_late.jsonl", orient="records", lines=True)

    from orchestration.dbt import model_key
    from orchestration.definitions import defs

    marts = ("fct_orders", "fct_order_items", "fct_events", "dim_products", "dim_customers")
    targets = [model_key(m) for m in ("source_reconciliation", "flagged_values", *marts)]
    selection = dg.AssetSelection.keys(*targets).upstream().resolve(defs.resolve_asset_graph())
    result = run_job(sorted(selection, key=str))
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    yield result, con
    con.close()
    mp.undo()


def _quarantined(con, source: str, record_id: str | None = None, file: str | None = None, row: int | None = None):
    sql = "select stage, reason, raw_content, _source_file, _source_row from quarantine.quarantined_records where source = ?"
    params: list = [source]
    if record_id is not None:
        sql, params = sql + " and record_id = ?", [*params, record_id]
    if file is not None:
        sql, params = sql + " and _source_file = ? and _source_row = ?", [*params, file, row]
    return con.execute(sql + " order by _source_file, _source_row", params).fetchall()


@pytest.mark.graph
def test_the_matrix_run_passes_every_gate_and_reconciles_every_source(matrix):
    result, con = matrix
    assert result.success, [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    rows = con.execute(
        "select source, reconciles, landing_records, quarantined_records from quarantine.source_reconciliation"
    )
    by_source = {r[0]: r[1:] for r in rows.fetchall()}
    assert len(by_source) == len(SOURCES_BY_NAME) and all(ok for ok, *_ in by_source.values()), by_source
    # the three order_items records the loader rejected (bad bytes, surplus field) or quarantined later
    assert by_source["order_items"][2] > 0


@pytest.mark.graph
def test_missing_required_column_quarantines_its_rows(matrix):
    _, con = matrix
    assert [r[1] for r in _quarantined(con, "order_items", "L0020")] == ["missing product_id"]


@pytest.mark.graph
def test_extra_unknown_column_is_reported_and_its_rows_go_on(matrix):
    result, con = matrix
    [load] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(["raw", "orders"])]
    assert load.materialization.metadata["extra_columns"].value == {"orders_matrix.csv": ["coupon"]}
    assert con.execute("select count(*) from marts.fct_orders where order_id = 'M0001'").fetchall() == [(1,)]


@pytest.mark.graph
def test_wrong_types_and_negative_values_are_quarantined_with_their_reason_and_content(matrix):
    _, con = matrix
    expected = {"L0011": "zero quantity", "L0003": "negative unit_price", "L0004": "unparseable quantity"}
    for line, reason in expected.items():
        [(stage, got, content, file, _)] = _quarantined(con, "order_items", line)
        assert (stage, got, file) == ("staging", reason, "order_items_matrix.csv")
        assert f'"order_item_id":"{line}"' in content
    assert '"quantity":"two"' in _quarantined(con, "order_items", "L0004")[0][2]


@pytest.mark.graph
def test_a_negative_quantity_is_a_returned_line_netted_against_its_order_not_a_quarantined_one(matrix):
    # issue 32: returned lines were quarantined as 'non-positive quantity' and never netted
    _, con = matrix
    assert _quarantined(con, "order_items", "L0002") == []
    [(quantity, line_type)] = con.execute(
        "select quantity, line_type from marts.fct_order_items where order_item_id = 'L0002'"
    ).fetchall()
    assert (quantity, line_type) == (-1, "return")
    gross, returned, net = con.execute(
        "select gross_sales_base, returned_base, net_revenue_base from marts.fct_orders where order_id = 'M0001'"
    ).fetchone()
    assert returned > 0 and net == gross - returned


@pytest.mark.graph
def test_unknown_products_and_orphan_order_items_are_quarantined(matrix):
    _, con = matrix
    assert _quarantined(con, "order_items", "L0005")[0][1] == "unknown product"
    assert _quarantined(con, "order_items", "L0006")[0][1] == "order not found"
    assert _quarantined(con, "order_items", "L0010")[0][1] == "order rejected: ordered_at in the future"


@pytest.mark.graph
def test_non_utf8_and_malformed_records_are_quarantined_at_load_and_their_neighbours_go_on(matrix):
    _, con = matrix
    [bad_bytes] = _quarantined(con, "order_items", file="order_items_matrix.csv", row=7)
    assert (
        bad_bytes[0] == "load"
        and bad_bytes[1].startswith("INVALID ENCODING")
        and bad_bytes[2].startswith("L0007,M0001,SKU")
    )
    [surplus] = _quarantined(con, "order_items", file="order_items_matrix.csv", row=8)
    assert surplus[0] == "load" and surplus[1].startswith("TOO MANY COLUMNS") and surplus[2].endswith(",surplus")
    lines = con.execute(
        "select order_item_id, quantity from marts.fct_order_items where order_item_id in ('L0001', 'L0009') order by 1"
    ).fetchall()
    assert lines == [("L0001", 2), ("L0009", 3)]


@pytest.mark.graph
def test_future_and_too_old_timestamps_are_quarantined_and_a_zoneless_one_is_read_as_utc(matrix):
    _, con = matrix
    assert _quarantined(con, "orders", "M0002")[0][1] == "ordered_at in the future"
    assert _quarantined(con, "orders", "M0003")[0][1] == "ordered_at before the shop's first day"
    assert _quarantined(con, "events", "E_FUTURE")[0][1] == "event_ts in the future"
    # a CRM profile signing up, or updated, in the future: quarantined at the row, not at the mart's gate
    assert _quarantined(con, "customers", "CFUTURE1")[0][1] == "signup_at in the future"
    assert _quarantined(con, "customers", "CFUTURE2")[0][1] == "updated_at in the future"
    assert (
        con.execute(
            "select count(*) from marts.dim_customers "
            "where first_signup_at > current_timestamp or anchor_customer_id in ('CFUTURE1', 'CFUTURE2')"
        ).fetchone()[0]
        == 0
    )
    got = con.execute(
        "select ordered_at from marts.fct_orders where order_id in ('M0001', 'M0004') order by 1"
    ).fetchall()
    assert got == [(datetime(2026, 10, 20, 8, 30),), (datetime(2026, 10, 21, 8, 0),)]


@pytest.mark.graph
def test_duplicated_rows_and_a_file_delivered_twice_keep_the_first_delivery_only(matrix):
    _, con = matrix
    [(stage, reason, content, file, row)] = _quarantined(con, "orders", "M0004")
    assert (stage, reason, file, row) == (
        "staging",
        "duplicate order_id (first delivered in orders_matrix.csv row 4)",
        "orders_matrix.csv",
        5,
    )
    assert '"order_id":"M0004"' in content
    resent = _quarantined(con, "orders", file="orders_resent_b.csv", row=1) + _quarantined(
        con, "orders", file="orders_resent_b.csv", row=2
    )
    assert [r[1] for r in resent] == [
        "duplicate order_id (first delivered in orders_resent_a.csv row 1)",
        "duplicate order_id (first delivered in orders_resent_a.csv row 2)",
    ]
    passed_on = con.execute(
        "select order_id, count(*) from staging.stg_orders where invalid_reason is null "
        "and order_id in ('M0004', 'M0010', 'M0011') group by 1 order by 1"
    ).fetchall()
    assert passed_on == [("M0004", 1), ("M0010", 1), ("M0011", 1)]  # the first delivery of each goes on
    assert con.execute("select count(*) from marts.fct_orders where order_id = 'M0004'").fetchall() == [(1,)]
    # the clickstream ranks only repeated event ids (stg_events): the same reason, the first delivery kept
    first_file = con.execute(
        "select max(_source_file) from raw.events where _source_file <> 'events_zz_late.jsonl'"
    ).fetchall()[0][0]
    [(event_id,)] = con.execute(
        "select event_id from raw.events where _source_file = ? and _source_row = 1", [first_file]
    ).fetchall()
    [(stage, reason, _, file, row)] = _quarantined(con, "events", event_id)
    assert (stage, reason, file, row) == (
        "staging",
        f"duplicate event_id (first delivered in {first_file} row 1)",
        "events_zz_late.jsonl",
        3,
    )
    assert con.execute(
        "select _source_file, _source_row from staging.stg_events where event_id = ? and invalid_reason is null",
        [event_id],
    ).fetchall() == [(first_file, 1)]
    # every source words its duplicates the same way (tessera.repeated_deliveries)
    [(stage, reason, _, file, row)] = _quarantined(con, "order_items", file="order_items_matrix.csv", row=11)
    assert (stage, reason) == ("staging", "duplicate order_item_id (first delivered in order_items_matrix.csv row 1)")
    email_file = con.execute(
        "select min(_source_file) from raw.email_events where _source_file <> 'email_events_zz_again.csv'"
    ).fetchall()[0][0]
    [(stage, reason, _, file, row)] = _quarantined(con, "email_events", file="email_events_zz_again.csv", row=1)
    assert (stage, reason) == ("staging", f"duplicate email_event_id (first delivered in {email_file} row 1)")
    [(email_event_id,)] = con.execute(
        "select email_event_id from staging.stg_email_events where _source_file = 'email_events_zz_again.csv'"
    ).fetchall()
    assert con.execute(
        "select _source_file, _source_row from staging.stg_email_events where email_event_id = ? and invalid_reason is null",
        [email_event_id],
    ).fetchall() == [(email_file, 1)]
    # no staging row was multiplied by the join to the repeated deliveries
    for source, model in (
        ("orders", "stg_orders"),
        ("order_items", "stg_order_items"),
        ("events", "stg_events"),
        ("email_events", "stg_email_events"),
        ("pos_transactions", "stg_pos_transactions"),
        ("privacy", "stg_privacy"),
    ):
        counts = con.execute(
            f"select (select count(*) from raw.{source}), (select count(*) from staging.{model}), "
            f"(select count(*) from (select distinct _source_file, _source_row from staging.{model}))"
        ).fetchone()
        assert counts[0] > 0 and counts[0] == counts[1] == counts[2], (source, counts)
    # the duplicated order's line was joined once, not once per delivery
    assert con.execute("select count(*) from marts.fct_order_items where order_item_id = 'L0009'").fetchall() == [(1,)]


@pytest.mark.graph
def test_a_repeated_header_line_is_quarantined_at_load_and_never_becomes_a_customer(matrix):
    # regression (issue 32): a header line repeated in the middle of a customers file became a
    # published customer, with segments, scores and 10 recommendations
    _, con = matrix
    [(stage, reason, content, _, _)] = _quarantined(con, "customers", file="customers_matrix.csv", row=3)
    assert stage == "load" and reason.startswith("REPEATED HEADER:")
    assert '"customer_id":"customer_id"' in content
    assert con.execute("select count(*) from raw.customers where customer_id = 'customer_id'").fetchone() == (0,)
    # dim_customers is what every published output (segments, scores, recommendations) is built from
    assert con.execute(
        "select count(*) from marts.dim_customers where anchor_customer_id = 'customer_id' or first_name = 'First_name'"
    ).fetchone() == (0,)
    landing, quarantined, ok = con.execute(
        "select landing_records, quarantined_at_load, reconciles from quarantine.source_reconciliation "
        "where source = 'customers'"
    ).fetchone()
    assert ok and quarantined == 2  # this header line and the Latin-1 record of customers_latin1.csv
    assert (
        landing
        == con.execute("select sum(landing_records) from raw.load_audit where source = 'customers'").fetchone()[0]
    )


@pytest.mark.graph
def test_an_unknown_country_stays_empty_with_its_reason_and_the_profile_goes_on(matrix):
    # regression (issue 32): countries missing from the seed became GB
    _, con = matrix
    [(code, issue, invalid)] = con.execute(
        "select country_code, country_issue, invalid_reason from staging.stg_customers where customer_id = 'CATLANTIS'"
    ).fetchall()
    assert code is None and invalid is None
    assert issue.startswith("unknown country 'Atlantis': not an ISO 3166-1 code or English name")
    assert con.execute(
        "select country_code from marts.dim_customers where anchor_customer_id = 'CATLANTIS'"
    ).fetchall() == [(None,)]
    assert con.execute(
        "select records, first_source_row from quarantine.flagged_values "
        "where source = 'customers' and _source_file = 'customers_matrix.csv' and column_name = 'country'"
    ).fetchall() == [(1, 4)]
    # every country the demo generator writes is known: none of them was flagged
    assert con.execute(
        "select count(*) from staging.stg_customers where country_issue is not null and _source_file = 'customers.csv'"
    ).fetchone() == (0,)


@pytest.mark.graph
def test_a_late_arriving_event_is_accepted_at_its_own_time(matrix):
    _, con = matrix
    got = con.execute("select event_at from marts.fct_events where event_id = 'E_LATE'").fetchall()
    assert got == [(datetime(2026, 10, 2, 12, 0),)]


@pytest.mark.graph
def test_huge_values_quoted_newlines_header_only_and_empty_files_through_the_graph(matrix):
    result, con = matrix
    [huge] = _quarantined(con, "products", file="products_matrix.csv", row=2)
    assert huge[0] == "load" and huge[1].startswith("VALUE TOO LONG: name holds 120000 characters")
    assert con.execute("select product_name from marts.dim_products where product_id = 'SKU_NL'").fetchall() == [
        ("Mug\nlarge",)
    ]
    loads = {
        e.asset_key.path[-1]: e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[0] == "raw"
    }
    assert loads["privacy"]["skipped_empty_files"].value == ["privacy_empty.csv"]
    assert loads["products"]["rows_per_file"].value["products_header_only.csv"] == 0
    assert loads["products"]["quarantined_at_load"].value == 1
    assert materialized_keys(result) >= {dg.AssetKey(["quarantine", "quarantined_records"])}


def _audit_row(con, source: str, file: str) -> tuple:
    return con.execute(
        "select landing_records, loaded_rows, quarantined_rows, not_loaded_reason from raw.load_audit "
        "where source = ? and _source_file = ?",
        [source, file],
    ).fetchone()


def _reconciles(con, source: str) -> bool:
    [(ok, landing, audited)] = con.execute(
        "select reconciles, landing_records, (select sum(landing_records) from raw.load_audit where source = ?) "
        "from quarantine.source_reconciliation where source = ?",
        [source, source],
    ).fetchall()
    return ok and landing == audited


@pytest.mark.graph
def test_file_names_with_glob_characters_load_their_own_rows_through_the_graph(matrix):
    # regression (issue 33): `x16_a[1].csv` was read as `x16_a1.csv`, and `*` failed the source
    _, con = matrix
    rows = con.execute(
        "select product_id, _source_file from raw.products where _source_file like 'products\\_x%' escape '\\' "
        "or _source_file = 'products_*.csv' order by 1"
    ).fetchall()
    assert rows == [
        ("SKU_BRACKET", "products_x[1].csv"),
        ("SKU_PLAIN", "products_x1.csv"),
        ("SKU_STAR", "products_*.csv"),
    ]
    for file in ("products_x1.csv", "products_x[1].csv", "products_*.csv"):
        assert _audit_row(con, "products", file) == (1, 1, 0, None)
    assert con.execute(
        "select count(*) from marts.dim_products where product_id in ('SKU_BRACKET', 'SKU_PLAIN', 'SKU_STAR')"
    ).fetchone() == (3,)
    assert _reconciles(con, "products")


@pytest.mark.graph
def test_a_compressed_csv_file_loads_through_the_graph(matrix):
    # regression (issue 33): a .csv.gz was ignored without a trace
    _, con = matrix
    assert _audit_row(con, "orders", "orders_gz.csv.gz") == (1, 1, 0, None)
    assert con.execute(
        "select _source_file, _source_row from staging.stg_orders where order_id = 'M0030' and invalid_reason is null"
    ).fetchall() == [("orders_gz.csv.gz", 1)]
    assert _reconciles(con, "orders")


@pytest.mark.graph
def test_a_header_in_capitals_loads_its_values_through_the_graph(matrix):
    # regression (issue 33): an `EMAIL` header loaded every email as NULL with only a warning
    result, con = matrix
    assert con.execute(
        "select email from staging.stg_customers where customer_id = 'CUPPER' and invalid_reason is null"
    ).fetchall() == [("ada.upper@example.com",)]
    [load] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(["raw", "customers"])]
    assert "customers_upper.csv" not in load.materialization.metadata["missing_columns"].value
    assert "customers_upper.csv" not in load.materialization.metadata["extra_columns"].value
    assert _audit_row(con, "customers", "customers_upper.csv") == (1, 1, 0, None)
    assert _reconciles(con, "customers")


@pytest.mark.graph
def test_a_latin1_record_is_quarantined_with_its_original_bytes_and_a_utf16_file_loads(matrix):
    # regression (issue 33): a Latin-1 record kept `Ren??`; a UTF-16 file was quarantined with raw_content null
    _, con = matrix
    [(stage, reason, content, _, _row)] = _quarantined(con, "customers", file="customers_latin1.csv", row=1)
    assert stage == "load" and reason.startswith("INVALID ENCODING") and "CLATIN1,Ren\\xe9e," in content
    [(hex_bytes,)] = con.execute(
        "select raw_content_hex from raw.load_rejects where _source_file = 'customers_latin1.csv'"
    ).fetchall()
    assert b"CLATIN1,Ren\xe9e," in bytes.fromhex(hex_bytes)  # the bytes as delivered
    assert _audit_row(con, "customers", "customers_latin1.csv") == (1, 0, 1, None)
    assert con.execute(
        "select first_name, email from staging.stg_customers where customer_id = 'CUTF16' and invalid_reason is null"
    ).fetchall() == [("Zoë", "zoe.utf16@example.com")]
    assert _audit_row(con, "customers", "customers_excel.csv") == (1, 1, 0, None)
    assert _reconciles(con, "customers")


@pytest.mark.graph
def test_entries_landing_does_not_load_are_in_the_audit_with_their_reason(matrix):
    # regression (issue 33): a JSON array, a spreadsheet and a broken link were ignored silently,
    # and every source "reconciled". Under TESSERA_LANDING_UNLOADED_FILES=warn (this matrix) the
    # run goes on and the audit says why; under the default (block) the load stops, naming them
    # (test_every_file_landing_does_not_load_is_audited_with_its_reason_and_blocks_by_default)
    result, con = matrix
    audit = con.execute(
        "select _source_file, landing_records, loaded_rows, quarantined_rows, not_loaded_reason from raw.load_audit "
        "where source = 'privacy' and not_loaded_reason is not null order by 1"
    ).fetchall()
    assert [row[:4] for row in audit] == [
        ("privacy_export.json", None, 0, 0),
        ("privacy_gone.jsonl", None, 0, 0),
        ("privacy_requests.xlsx", None, 0, 0),
    ]
    reasons = [row[4] for row in audit]
    assert reasons[0].startswith("a JSON document holding an array")
    assert reasons[1].startswith("a symbolic link to a file that does not exist")
    assert reasons[2].startswith("a spreadsheet (.xlsx)")
    assert materialized_keys(result) >= {dg.AssetKey(["raw", "privacy"])}
    assert _reconciles(con, "privacy")
