"""Raw loading: every format, lineage, missing and extra columns, atomic replacement."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tessera.landing.contract import SOURCES_BY_NAME
from tessera.landing.loader import LandingError, load_source

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
    assert report.missing_columns["a.csv"] == [
        "category",
        "brand",
        "currency",
        "is_active",
        "product_type",
        "created_at",
    ]


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
    assert cols == [*PRODUCTS.column_names, "_source_file", "_source_row"]


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


EVENTS = SOURCES_BY_NAME["events"]


def _day(folder, day: int, ids: list[str]) -> None:
    lines = "".join(f"{i},cookie,page_view,2026-11-{day:02d}T10:00:00Z\n" for i in ids)
    (folder / f"events_2026-11-{day:02d}.csv").write_text("event_id,anonymous_id,event_type,event_ts\n" + lines)


def _raw_events(con) -> list[tuple]:
    return con.execute("select event_id, _source_file, _source_row from raw.events order by all").fetchall()


def _audit(con) -> list[tuple]:
    return con.execute(
        "select _source_file, landing_records, loaded_rows, quarantined_rows from raw.load_audit "
        "where source = 'events' order by 1"
    ).fetchall()


def test_loads_are_incremental_by_file_and_raw_always_equals_the_folder(tmp_path, con):
    folder = tmp_path / "landing" / "events"
    folder.mkdir(parents=True)
    _day(folder, 1, ["e1", "e2"])
    _day(folder, 2, ["e3"])
    first = load_source(con, EVENTS, tmp_path / "landing")
    assert first.files_read == ["events_2026-11-01.csv", "events_2026-11-02.csv"] and first.records_scanned == 3

    # nothing new: no file is read, nothing changes
    before = (_raw_events(con), _audit(con))
    again = load_source(con, EVENTS, tmp_path / "landing")
    assert again.files_read == [] and again.records_scanned == 0
    assert again.files_unchanged == ["events_2026-11-01.csv", "events_2026-11-02.csv"]
    assert (_raw_events(con), _audit(con)) == before and again.rows == 3

    # a new day: only its file is read, and appended
    _day(folder, 3, ["e4", "e5"])
    third = load_source(con, EVENTS, tmp_path / "landing")
    assert third.files_read == ["events_2026-11-03.csv"] and third.records_scanned == 2
    assert third.rows == 5 and third.rows_per_file["events_2026-11-01.csv"] == 2
    assert [r[0] for r in _raw_events(con)] == ["e1", "e2", "e3", "e4", "e5"]

    # a file delivered again with other content replaces its own rows, and a bad record in it
    # replaces its rejects; other files are not read
    (folder / "events_2026-11-02.csv").write_text(
        "event_id,anonymous_id,event_type,event_ts\ne3,c,page_view,2026-11-02T10:00:00Z\ne6,c,search,2026-11-02T11:00:00Z\nbad,row\n"
    )
    fourth = load_source(con, EVENTS, tmp_path / "landing")
    assert fourth.files_read == ["events_2026-11-02.csv"]
    assert [r[0] for r in _raw_events(con)] == ["e1", "e2", "e3", "e4", "e5", "e6"]
    assert ("events_2026-11-02.csv", 3, 2, 1) in _audit(con)
    assert con.execute("select count(*) from raw.load_rejects where source = 'events'").fetchall() == [(1,)]

    # a file taken out of the folder takes its rows, rejects and audit row with it
    (folder / "events_2026-11-02.csv").unlink()
    fifth = load_source(con, EVENTS, tmp_path / "landing")
    assert fifth.files_removed == ["events_2026-11-02.csv"] and fifth.files_read == []
    assert [r[0] for r in _raw_events(con)] == ["e1", "e2", "e4", "e5"]
    assert con.execute("select count(*) from raw.load_rejects where source = 'events'").fetchall() == [(0,)]
    assert [a[0] for a in _audit(con)] == ["events_2026-11-01.csv", "events_2026-11-03.csv"]

    # a full refresh reads everything and ends where the incremental loads did
    incremental = (_raw_events(con), _audit(con))
    full = load_source(con, EVENTS, tmp_path / "landing", full_refresh=True)
    assert full.full_refresh and full.files_read == ["events_2026-11-01.csv", "events_2026-11-03.csv"]
    assert (_raw_events(con), _audit(con)) == incremental


def test_changed_limits_or_an_audit_without_fingerprints_read_files_again(tmp_path, con):
    folder = tmp_path / "landing" / "events"
    folder.mkdir(parents=True)
    _day(folder, 1, ["e1"])
    load_source(con, EVENTS, tmp_path / "landing")
    assert load_source(con, EVENTS, tmp_path / "landing", max_field_chars=5).files_read == ["events_2026-11-01.csv"]
    # a database written before loads were incremental has no fingerprints: every file once more
    con.execute("update raw.load_audit set file_bytes = null, file_hash = null")
    assert load_source(con, EVENTS, tmp_path / "landing").files_read == ["events_2026-11-01.csv"]
    assert load_source(con, EVENTS, tmp_path / "landing").files_read == []
    assert [r[0] for r in _raw_events(con)] == ["e1"]


def test_a_bad_new_file_leaves_every_earlier_file_loaded(tmp_path, con):
    folder = tmp_path / "landing" / "events"
    folder.mkdir(parents=True)
    _day(folder, 1, ["e1"])
    load_source(con, EVENTS, tmp_path / "landing")
    (folder / "events_2026-11-02.parquet").write_bytes(b"not parquet")
    with pytest.raises(LandingError, match="events_2026-11-02.parquet"):
        load_source(con, EVENTS, tmp_path / "landing")
    assert [r[0] for r in _raw_events(con)] == ["e1"]
    assert [a[0] for a in _audit(con)] == ["events_2026-11-01.csv"]


def test_the_independent_csv_count_equals_the_csv_modules_for_any_bytes(tmp_path):
    """count_landing_records counts plain CSV files (no quote, carriage return, NUL or empty line)
    by their newlines and splits any other with csv.reader: on random files over the bytes that
    decide it, in chunks as small as 3 bytes so that every pattern also straddles a chunk border,
    it equals the csv module's count; and both ways of counting are really taken."""
    import csv
    import random

    import duckdb

    from tessera.landing import loader as landing

    def reference(path) -> int:
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            return max(sum(1 for record in csv.reader(fh) if record) - 1, 0)

    rng = random.Random(5)
    symbols = [b"a", b"b", b",", b" ", b"\n", b"\n", b"\n", b"\r", b'"', b"\x00", "é".encode(), b"\xff"]
    plain = other = 0
    con = duckdb.connect()
    for i in range(600):
        if i % 2:  # any bytes
            data = b"".join(rng.choices(symbols, k=rng.randint(0, 60)))
        else:  # lines of text, some with a rare byte, some ending without a newline
            rare = [rng.choice([0, 0, 0, 0.05]) for _ in range(3)]  # carriage return, quote, NUL
            lines = [
                b"".join(rng.choices(symbols[:4] + symbols[7:], weights=[1] * 4 + rare + [1, 1], k=rng.randint(1, 8)))
                for _ in range(rng.randint(0, 6))
            ]
            data = b"\n".join(lines) + rng.choice([b"", b"\n"])
        path = tmp_path / f"f{i}.csv"
        path.write_bytes(data)
        expected = reference(path)
        for chunk in (3, 1 << 24):
            fast = landing._count_plain_lines(path, chunk_bytes=chunk)
            if fast is not None:
                assert max(fast - 1, 0) == expected, data
        plain += landing._count_plain_lines(path) is not None
        other += landing._count_plain_lines(path) is None
        assert landing.count_landing_records(con, path) == expected, data
    assert plain > 100 and other > 100


def test_read_ahead_keeps_order_stays_within_its_bound_and_stops_when_closed(tmp_path):
    import threading
    import time

    from tessera.landing.loader import read_ahead

    sizes = [300, 100, 100, 250, 50, 400, 100, 100]
    paths = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"f{i}.csv"
        path.write_bytes(b"x" * size)
        paths.append(path)
    consumed = [0]
    started: list[tuple[int, int]] = []  # (file index, files consumed when its work began)
    lock = threading.Lock()

    def work(path):
        k = paths.index(path)
        with lock:
            started.append((k, consumed[0]))
        if path.name == "f6.csv":
            raise ValueError("f6 is unreadable")
        return path.stat().st_size

    got = []
    with pytest.raises(ValueError, match="f6 is unreadable"):
        for path, size in read_ahead(paths, work, ahead_bytes=400):
            got.append((path.name, size))
            time.sleep(0.02)  # a slow consumer: the worker runs as far ahead as it may
            consumed[0] += 1
    # results in order, each with its own path, until the failing file's turn
    assert got == [(f"f{i}.csv", sizes[i]) for i in range(6)]
    # at most 400 bytes of unconsumed files queued, or a single file (f5 alone is 400, f0 300)
    for k, position in started:
        assert k == position or sum(sizes[position : k + 1]) <= 400, (k, position)
    assert max(k - position for k, position in started) >= 2  # it did run ahead

    # closed early: work not yet begun is cancelled, so a failed load does not read on
    began = []
    scans = read_ahead(paths, lambda p: began.append(p.name) or time.sleep(0.05) or p.name, ahead_bytes=10_000)
    assert next(scans) == (paths[0], "f0.csv")
    scans.close()
    assert began[0] == "f0.csv" and len(began) <= 2  # f0, and f1 if it had begun when closed


CUSTOMERS = SOURCES_BY_NAME["customers"]


def test_a_header_line_repeated_mid_file_is_quarantined_with_its_reason_and_counted(tmp_path, con):
    # regression (issue 32): a customers file with its header written again in the middle (two
    # exports concatenated) loaded that line as a customer called "first_name", who was then
    # published with segments, scores and recommendations
    folder = tmp_path / "landing" / "customers"
    folder.mkdir(parents=True)
    (folder / "crm.csv").write_text(
        "customer_id,first_name,email,country\n"
        "C1,Ada,ada@example.com,GB\n"
        " Customer_ID , first_name,EMAIL,country\n"  # the header again, padded and in another case
        "C2,Bob,bob@example.com,DE\n"
        "customer_id,Carol,carol@example.com,FR\n"  # one value equal to its name is a real record
    )
    report = load_source(con, CUSTOMERS, tmp_path / "landing")
    assert report.rows_per_file == {"crm.csv": 3} and report.rejected_per_file == {"crm.csv": 1}
    assert con.execute("select customer_id, _source_row from raw.customers order by _source_row").fetchall() == [
        ("C1", 1),
        ("C2", 3),
        ("customer_id", 4),
    ]
    [(row, reason, content)] = con.execute(
        "select _source_row, reason, raw_content from raw.load_rejects where source = 'customers'"
    ).fetchall()
    assert row == 2 and reason.startswith("REPEATED HEADER:")
    assert '"first_name":" first_name"' in content
    audit = con.execute(
        "select landing_records, loaded_rows, quarantined_rows from raw.load_audit where _source_file = 'crm.csv'"
    ).fetchall()
    assert audit == [(4, 3, 1)]


def test_each_files_missing_contract_columns_are_kept_in_the_audit(tmp_path, con):
    folder = tmp_path / "landing" / "customers"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text("customer_id,email\nC1,a@example.com\n")
    (folder / "b.csv").write_text("customer_id\nC2\n")
    load_source(con, CUSTOMERS, tmp_path / "landing")
    kept = dict(
        con.execute("select _source_file, missing_columns from raw.load_audit where source = 'customers'").fetchall()
    )
    others = [c for c in CUSTOMERS.column_names if c not in ("customer_id", "email")]
    assert json.loads(kept["a.csv"]) == others
    assert json.loads(kept["b.csv"]) == [c for c in CUSTOMERS.column_names if c != "customer_id"]
    assert "email" in json.loads(kept["b.csv"])


def test_a_compressed_file_that_is_not_gzip_is_not_loaded_and_an_empty_one_is_skipped(tmp_path, con):
    import gzip

    folder = _folder(tmp_path)
    (folder / "ok.csv").write_text("product_id\nP1\n")
    (folder / "plain.csv.gz").write_text("product_id\nP2\n")  # named .gz, but not compressed
    (folder / "cut.csv.gz").write_bytes(gzip.compress(b"product_id\nP3\n" * 50)[:30])
    (folder / "empty.csv.gz").write_bytes(gzip.compress(b""))
    report = load_source(con, PRODUCTS, tmp_path / "landing", unloaded_files="warn")
    assert report.skipped_empty_files == ["empty.csv.gz"] and report.rows == 1
    assert report.files_not_loaded["plain.csv.gz"].startswith("cannot be decompressed: Not a gzipped file")
    assert report.files_not_loaded["cut.csv.gz"].startswith("cannot be decompressed")
    with pytest.raises(LandingError, match="2 landing files of products were not loaded: cut.csv.gz: cannot be"):
        load_source(con, PRODUCTS, tmp_path / "landing")


def test_the_sensor_state_sees_entries_landing_does_not_load(tmp_path):
    # a spreadsheet or a broken link dropped into a folder starts a run, which records (or blocks on) it
    from tessera.landing.loader import landing_state

    folder = _folder(tmp_path)
    (folder / "a.csv").write_text("product_id\nP1\n")
    before = landing_state(tmp_path / "landing", [PRODUCTS])["products"]
    (folder / "b.xlsx").write_bytes(b"PK")
    (folder / "c.csv").symlink_to(tmp_path / "missing.csv")
    after = landing_state(tmp_path / "landing", [PRODUCTS])["products"]
    assert set(before) == {"a.csv"} and set(after) == {"a.csv", "b.xlsx", "c.csv"}


def test_the_record_counts_and_the_delivery_checks_read_only_what_was_loaded(tmp_path, con):
    from tessera.landing import loader as landing
    from tessera.quality.delivery import file_profiles

    folder = tmp_path / "landing" / "customers"
    folder.mkdir(parents=True)
    pd.DataFrame({"customer_id": ["C1", "C2"]}).to_parquet(
        folder / "a[1].parquet"
    )  # the public count reads it literally
    (folder / "notes.txt").write_text("not a delivery\n")
    assert landing.count_landing_records(con, folder / "a[1].parquet") == 2
    load_source(con, CUSTOMERS, tmp_path / "landing", unloaded_files="warn")
    assert [(p.name, p.rows) for p in file_profiles(con, CUSTOMERS)] == [("a[1].parquet", 2)]
