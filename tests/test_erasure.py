"""Right to erasure end to end: requests in a privacy delivery remove three people from every
table and published file, the audit log says what went, and a re-delivered file brings nothing
back. The identifiers checked are read from the landing files here, independently of the code
under test."""

import json
from datetime import UTC, datetime

import duckdb
import pandas as pd
import pytest

from tessera.publish import snapshots
from tests.conftest import run_job, shown_row_counts, use_copy_of

READERS = {"parquet": "read_parquet", "csv": "read_csv", "jsonl": "read_json"}


def landing_identifiers(landing, ids: list[str]) -> set[str]:
    """Every identifier of these CRM customers in the landing files: ids, emails, cards, order
    ids, cookies they logged in with, store receipts with their card or email."""
    customers = pd.read_csv(landing / "customers" / "customers.csv", dtype=str)
    mine = customers[customers["customer_id"].isin(ids)]
    emails = set(mine["email"].dropna().str.strip().str.lower())
    cards = set(mine["loyalty_card"].dropna())
    orders = pd.read_csv(landing / "orders" / "orders.csv", dtype=str)
    order_ids = set(orders[orders["customer_id"].isin(ids)]["order_id"])
    events = pd.concat(pd.read_json(p, lines=True, dtype=str) for p in sorted((landing / "events").glob("*.jsonl")))
    cookies = set(events[events["customer_id"].isin(ids)]["anonymous_id"].dropna())
    pos = pd.read_csv(landing / "pos_transactions" / "pos_transactions.csv", dtype=str)
    receipts = set(
        pos[pos["loyalty_card"].isin(cards) | pos["email"].str.strip().str.lower().isin(emails)]["receipt_id"]
    )
    return set(ids) | emails | cards | order_ids | cookies | receipts


def residue(settings, identifiers: set[str]) -> dict[str, int]:
    """Every text value of every table and every published file, compared case-insensitively."""
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    found = {}
    try:
        con.execute("create temp table ids as select unnest(?) as v", [sorted(identifiers)])
        tables = con.execute(
            """select c.table_schema, c.table_name, c.column_name from information_schema.columns c
               join information_schema.tables t using (table_schema, table_name)
               where t.table_type = 'BASE TABLE' and c.data_type = 'VARCHAR' and c.table_schema <> 'temp'"""
        ).fetchall()
        for schema, table, column in tables:
            n = con.execute(
                f'select count(*) from {schema}.{table} where lower(trim("{column}")) in (select v from ids)'
            ).fetchall()[0][0]
            if n:
                found[f"{schema}.{table}.{column}"] = n
        for name_dir in settings.publish_dir.iterdir():
            for version in snapshots.versions(settings.publish_dir, name_dir.name):
                path = name_dir / "versions" / version
                for f in json.loads((path / "manifest.json").read_text())["files"]:
                    text = (path / f["path"]).read_bytes().lower()
                    hits = [i for i in identifiers if i.encode() in text and len(i) >= 6]
                    if hits and f["format"] != "parquet":
                        found[f"{name_dir.name}/{version}/{f['path']}"] = len(hits)
                    if f["format"] == "parquet":
                        reader = f"read_parquet('{path / f['path']}')"
                        for column, kind, *_ in con.execute(f"describe select * from {reader}").fetchall():
                            if kind == "VARCHAR":
                                n = con.execute(
                                    f'select count(*) from {reader} where lower(trim("{column}")) in (select v from ids)'
                                ).fetchall()[0][0]
                                if n:
                                    found[f"{name_dir.name}/{version}/{f['path']}:{column}"] = n
    finally:
        con.close()
    return found


@pytest.fixture(scope="module")
def erased(tmp_path_factory, built_warehouse):
    mp = pytest.MonkeyPatch()
    # a first run published everyone (the session's warehouse, copied): the retained snapshot
    # versions must be cleaned too
    settings = use_copy_of(built_warehouse, tmp_path_factory.mktemp("erasure") / "data", mp)
    customers = pd.read_csv(settings.landing_dir / "customers" / "customers.csv", dtype=str)
    emails = customers["email"].str.strip().str.lower()
    unique = customers[emails.map(emails.value_counts()) == 1]
    orders = pd.read_csv(settings.landing_dir / "orders" / "orders.csv", dtype=str)
    buyers = [c for c in unique["customer_id"] if c in set(orders["customer_id"])][:3]
    assert len(buyers) == 3
    people = landing_identifiers(settings.landing_dir, buyers)
    email_of_third = unique.set_index("customer_id").loc[buyers[2], "email"]
    requests = [
        {"request_id": "ER1", "customer_id": buyers[0], "email": None},
        {"request_id": "ER2", "customer_id": buyers[1], "email": None},
        {"request_id": "ER3", "customer_id": None, "email": email_of_third},  # by email only
    ]
    lines = [
        {
            **r,
            "request_type": "erasure",
            "channel": None,
            "purpose": None,
            "granted": None,
            "requested_at": "2026-10-30T09:00:00+00:00",
        }
        for r in requests
    ]
    (settings.landing_dir / "privacy" / "erasure_requests.jsonl").write_text(
        "".join(json.dumps(x) + "\n" for x in lines)
    )
    before = duckdb.connect(str(settings.duckdb_path), read_only=True)
    customers_before = before.execute("select count(*) from marts.dim_customers").fetchall()[0][0]
    before.close()
    first = run_job()
    yield settings, people, first, customers_before
    mp.undo()


@pytest.mark.graph
def test_the_erasure_run_succeeds_and_its_residue_check_passes(erased):
    _, people, first, _ = erased
    checks = {e.check_name: e for e in first.get_asset_check_evaluations()}
    assert checks["no_erased_identifier_remains"].passed
    proof = {k: v.value for k, v in checks["no_erased_bytes_remain"].metadata.items()}
    assert checks["no_erased_bytes_remain"].passed, proof["files_with_residue"]
    # the proof read the warehouse, the published files, MLflow and the Dagster home
    assert proof["files_scanned"] > 20 and proof["bytes_scanned"] > 1_000_000
    assert set(proof["roots"]) == {"dagster_home", "data"}
    assert first.success
    assert len(people) >= 10  # ids, emails, orders, cookies...


@pytest.mark.graph
def test_no_identifier_of_an_erased_person_remains_in_any_table_or_published_file(erased):
    settings, people, _, _ = erased
    assert residue(settings, people) == {}


@pytest.mark.graph
def test_the_audit_log_records_each_request_without_its_identifiers(erased):
    settings, people, _, _ = erased
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        log = con.execute("select request_id, identifiers, rows_removed from privacy.erasure_log order by 1").fetchall()
        hashes = con.execute("select count(*) from privacy.erased_identifiers").fetchall()[0][0]
    finally:
        con.close()
    requests = {r[0] for r in log}
    assert {"ER1", "ER2", "ER3"} <= requests
    removed = json.loads(log[0][2])
    assert removed["raw.customers"] >= 3 and removed["raw.orders"] > 0 and removed["marts.dim_customers"] >= 3
    assert hashes >= len(people)
    assert not any(p in "".join(map(str, log)) for p in people if len(p) >= 6)


def table_rows(settings, latest: dict[str, tuple[str, int, str | None]]) -> dict[str, int]:
    """count(*) of each asset's table, now."""
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        return {a: con.execute(f"select count(*) from {table}").fetchall()[0][0] for a, (table, _, _) in latest.items()}
    finally:
        con.close()


@pytest.mark.graph
def test_every_row_count_the_ui_shows_after_the_erasure_run_is_the_tables(erased):
    # issue 39: after an erasure dim_customers showed the count dbt built (2,000), not the 1,991
    # rows the table held; the erasure now reports each table it changed to that table's asset
    settings, _, first, customers_before = erased
    latest = shown_row_counts(first)
    assert {a: rows for a, (_, rows, _) in latest.items()} == table_rows(settings, latest)
    changed = {a for a, (_, _, by) in latest.items() if by == "privacy/erasure"}
    assert {"raw/customers", "raw/orders", "raw/erased_rows", "marts/dim_customers", "marts/fct_orders"} <= changed
    assert latest["marts/dim_customers"][1] == customers_before - 3
    # the models and outputs are built after the erasure: theirs are their own
    assert not {a for a in changed if a.startswith(("ml/", "publish/", "decisioning/"))}


@pytest.mark.graph
def test_a_second_run_reconciles_and_redelivered_files_bring_nobody_back(erased):
    settings, people, _, customers_before = erased
    # the erased people's CRM profiles and orders delivered again, in new files: their profiles
    # come back through this run's dbt build and identity step (same CRM ids, same customer_key)
    orders = pd.read_csv(settings.landing_dir / "orders" / "orders.csv", dtype=str)
    again = orders[orders["order_id"].isin(people)]
    assert len(again) > 0
    again.to_csv(settings.landing_dir / "orders" / "orders_redelivered.csv", index=False)
    customers = pd.read_csv(settings.landing_dir / "customers" / "customers.csv", dtype=str)
    profiles = customers[customers["customer_id"].isin(people)]
    assert len(profiles) == 3
    profiles.to_csv(settings.landing_dir / "customers" / "customers_redelivered.csv", index=False)
    second = run_job()
    assert second.success
    assert residue(settings, people) == {}
    # the redelivered rows the erasure removed again: every row count shown is still the table's
    latest = shown_row_counts(second)
    assert {a: rows for a, (_, rows, _) in latest.items()} == table_rows(settings, latest)
    assert latest["raw/orders"][2] == "privacy/erasure"
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        reconciliation = con.execute(
            "select source, reconciles, erased_rows from quarantine.source_reconciliation order by 1"
        ).fetchall()
        redelivered = con.execute(
            "select count(*) from raw.erased_rows where _source_file = 'orders_redelivered.csv'"
        ).fetchall()[0][0]
        erased_profiles = con.execute(
            "select count(*) from raw.erased_rows where _source_file = 'customers_redelivered.csv'"
        ).fetchall()[0][0]
        customers_after = con.execute("select count(*) from marts.dim_customers").fetchall()[0][0]
    finally:
        con.close()
    assert all(r[1] for r in reconciliation), reconciliation
    assert {r[0]: r[2] for r in reconciliation}["orders"] > 0
    assert redelivered == len(again)
    assert erased_profiles == 3
    # the three people are gone from the customer view, nobody else is
    assert customers_after == customers_before - 3


def test_the_residue_check_finds_a_planted_identifier_in_tables_and_published_files(tmp_path):
    """The production check hashes identifier columns only (erasure.residue_columns): a value left
    in one of them, as delivered (raw) or cleaned, in a table or a published file, is found; the
    same value in a free column of a published file is not that check's business (the end-to-end
    test above scans every column)."""
    from tessera.privacy import erasure, pseudonym

    con = duckdb.connect()
    pseudonym.install(con, pseudonym.DEMO_SALT)
    con.execute("create schema privacy; create schema raw; create schema marts")
    con.execute("create table privacy.erased_identifiers (request_id varchar, kind varchar, value_hash varchar)")
    con.execute(
        "insert into privacy.erased_identifiers values ('Q1', 'email', sha256(getvariable(?) || ':' || 'ann@example.com'))",
        [pseudonym.SALT_VARIABLE],
    )
    con.execute("create table raw.customers as select ' Ann@Example.com ' as email, 'x' as first_name")
    # two rows with the same value: the check hashes distinct values but counts rows
    con.execute(
        "create table marts.dim_customers as select 'ann@example.com' as email, 'ann@example.com' as note from range(2)"
    )
    con.execute("create table marts.fct_orders as select 'W1' as order_id")  # nothing listed
    version = tmp_path / "publish" / "exports" / "versions" / "v1"
    version.mkdir(parents=True)
    con.execute(f"copy (select 'ann@example.com' as email) to '{version / 'audience.csv'}' (format csv, header true)")
    (version / snapshots.MANIFEST).write_text(json.dumps({"files": [{"path": "audience.csv", "format": "csv"}]}))
    (tmp_path / "publish" / "exports" / snapshots.POINTER).write_text(json.dumps({"version": "v1"}))
    found = erasure.residue(con, tmp_path / "publish")
    assert found == {"raw.customers.email": 1, "marts.dim_customers.email": 2, "exports/v1/audience.csv:email": 1}
    con.execute("delete from marts.dim_customers")
    con.execute("delete from raw.customers")
    assert erasure.residue(con, tmp_path / "publish") == {"exports/v1/audience.csv:email": 1}


def test_one_hashing_pass_feeds_the_listed_values_and_the_residue_check_after_deletes(tmp_path):
    """erasure.list_values hashes each value once: add_listed_values takes only the values that are
    listed exactly and held by a built table (not raw, not a file), and the residue check reusing
    that pass after rows are deleted counts exactly what a fresh pass counts."""
    from tessera.privacy import erasure, pseudonym

    con = duckdb.connect()
    pseudonym.install(con, pseudonym.DEMO_SALT)
    con.execute("create schema privacy; create schema raw; create schema marts")
    con.execute("create table privacy.erased_identifiers (request_id varchar, kind varchar, value_hash varchar)")
    for value in ("ann@example.com", "C1", "C9"):
        con.execute(
            "insert into privacy.erased_identifiers values ('Q1', 'x', sha256(getvariable(?) || ':' || ?))",
            [pseudonym.SALT_VARIABLE, value],
        )
    # raw: the email as delivered (listed once cleaned) and C9, a CRM id no built table holds
    con.execute(
        "create table raw.customers as select * from (values (' Ann@Example.com ', 'C9'), ('bo@example.com', 'C2')) "
        "as t(email, customer_id)"
    )
    con.execute(
        "create table marts.dim_customers as select * from (values ('ann@example.com', 'C1'), "
        "('ann@example.com', 'C1'), ('bo@example.com', 'C2')) as t(email, customer_id)"
    )
    version = tmp_path / "publish" / "exports" / "versions" / "v1"
    version.mkdir(parents=True)
    con.execute(f"copy (select 'C1' as customer_id) to '{version / 'audience.csv'}' (format csv, header true)")
    (version / snapshots.MANIFEST).write_text(json.dumps({"files": [{"path": "audience.csv", "format": "csv"}]}))
    (tmp_path / "publish" / "exports" / snapshots.POINTER).write_text(json.dumps({"version": "v1"}))

    assert erasure.list_values(con, tmp_path / "publish") == 4
    assert set(con.execute("select value, exact, in_built from __listed").fetchall()) == {
        ("ann@example.com", True, True),
        ("C1", True, True),
        (" Ann@Example.com ", False, False),
        ("C9", True, False),
    }
    con.execute("create temp table __erase (request_id varchar, kind varchar, value varchar)")
    erasure.add_listed_values(con)
    added = con.execute("select kind, value from __erase").fetchall()
    assert sorted(added) == [("listed", "C1"), ("listed", "ann@example.com")]

    before = {
        "raw.customers.email": 1,
        "raw.customers.customer_id": 1,
        "marts.dim_customers.email": 2,
        "marts.dim_customers.customer_id": 2,
        "exports/v1/audience.csv:customer_id": 1,
    }
    assert erasure.residue(con, tmp_path / "publish", reuse_listed=True) == before
    con.execute("delete from marts.dim_customers where customer_id = 'C1'")
    con.execute("delete from raw.customers where customer_id = 'C9'")
    after = {"exports/v1/audience.csv:customer_id": 1}
    assert erasure.residue(con, tmp_path / "publish", reuse_listed=True) == after
    assert erasure.residue(con, tmp_path / "publish") == after


def test_a_listed_person_and_nothing_built_yet_lists_nothing_and_leaves_no_residue(tmp_path):
    """Before dbt has built anything (only the privacy schema exists), a suppression list that is
    not empty has no place to be found in: no values, no residue, not a SQL error."""
    from tessera.privacy import erasure, pseudonym

    con = duckdb.connect()
    pseudonym.install(con, pseudonym.DEMO_SALT)
    con.execute("create schema privacy")
    con.execute("create table privacy.erased_identifiers (request_id varchar, kind varchar, value_hash varchar)")
    con.execute("insert into privacy.erased_identifiers values ('Q1', 'email', 'h')")
    assert erasure.list_values(con, tmp_path / "publish") == 0
    assert con.execute("select count(*) from __listed").fetchall() == [(0,)]
    assert erasure.residue(con, tmp_path / "publish") == {}


def test_free_text_search_finds_exactly_the_values_each_text_contains_ignoring_case():
    """erasure.mentions (gram join, then contains) against the plain definition, every value tried
    on every text: random texts over a small alphabet, so that many grams match and the full value
    does not; values planted in random case, at the start, inside and at the very end; values
    shorter than MIN_TEXT_MATCH_CHARS never searched; NULL and short texts."""
    import random

    from tessera.privacy import erasure

    n = erasure.MIN_TEXT_MATCH_CHARS
    rng = random.Random(11)
    alphabet = "abAB01@.-"
    values = sorted({"".join(rng.choice(alphabet) for _ in range(rng.randint(n - 2, n + 4))) for _ in range(300)})
    texts: list[str | None] = [None, "", "ab", values[0][: n - 1]]
    for _ in range(400):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        if rng.random() < 0.5:
            v = rng.choice(values)
            v = "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in v)
            at = rng.choice([0, len(text), rng.randint(0, len(text))])
            text = text[:at] + v + text[at:]
        texts.append(text)
    con = duckdb.connect()
    con.execute("create table notes (id integer, raw_content varchar)")
    con.executemany("insert into notes values (?, ?)", list(enumerate(texts)))
    con.execute("create temp table __erase (request_id varchar, kind varchar, value varchar)")
    con.executemany("insert into __erase values (?, 'email', ?)", [(f"R{i % 7}", v) for i, v in enumerate(values)])
    erasure.text_values(con)
    got = set(
        con.execute(
            f"select n.id, m.value from ({erasure.mentions('notes', 'raw_content')}) as m join notes as n on n.rowid = m.rid"
        ).fetchall()
    )
    searched = {v.lower() for v in values if len(v) >= n}
    expected = {(i, v) for i, t in enumerate(texts) if t for v in searched if v in t.lower()}
    assert len(expected) > 150 and len(searched) < len(values)  # the data really exercises it
    assert got == expected
    # each match carries the first request that named the value
    first = {}
    for i, v in enumerate(values):
        first.setdefault(v.lower(), f"R{i % 7}")
        first[v.lower()] = min(first[v.lower()], f"R{i % 7}")
    rows = con.execute(
        f"select distinct value, request_id from ({erasure.mentions('notes', 'raw_content')})"
    ).fetchall()
    assert rows and all(first[value] == request for value, request in rows)


def test_erase_built_deletes_quarantined_lines_that_mention_an_identifier_in_any_case():
    from tessera.privacy import erasure

    con = duckdb.connect()
    con.execute("create schema quarantine")
    con.execute(
        "create table quarantine.quarantined_records as select * from (values "
        '(\'crm\', \'{"email": "Ann.Lee@Example.com", "age": 300}\'), '  # another case: erased
        "('crm', 'C0001234,ann.lee@example.com,1990-13-45'), "  # inside a CSV line: erased
        "('crm', 'C0001,bob@example.com,1990-13-45'), "  # C0001 is shorter than 6: not searched
        "('pos', 'R-99,ann.lee@example.co,12.5'), "  # a different value: kept
        "('pos', NULL)) as t(source_name, raw_content)"
    )
    con.execute("create temp table __erase (request_id varchar, kind varchar, value varchar)")
    con.execute("insert into __erase values ('ER1', 'email', 'ann.lee@example.com'), ('ER1', 'crm', 'C0001')")
    assert erasure.erase_built(con) == {"quarantine.quarantined_records": 2}
    assert con.execute("select raw_content from quarantine.quarantined_records order by 1 nulls last").fetchall() == [
        ("C0001,bob@example.com,1990-13-45",),
        ("R-99,ann.lee@example.co,12.5",),
        (None,),
    ]


def _published(con, publish_dir, version="v1"):
    """A released table `segs` holding pk_a and pk_b, with an email audience export."""
    from tessera.publish.snapshots import Export

    con.execute(
        "create or replace table segs as select * from (values ('pk_a', 'a@example.com'), ('pk_b', 'b@example.com')) "
        "as t(customer_pkey, email)"
    )
    audience = Export("audience", "all", "select email from {table}", "csv", pii=("email",))
    snapshots.write_snapshot(
        con,
        publish_dir,
        "segs",
        "segs",
        version,
        published_at=datetime(2026, 11, 1, tzinfo=UTC),
        run_id="r1",
        checks=[],
        exports=(audience,),
    )
    snapshots.set_current(publish_dir, "segs", version)
    con.execute("drop table segs")


def _erasure_con():
    from tessera.privacy import erasure, pseudonym

    con = duckdb.connect()
    pseudonym.install(con, pseudonym.DEMO_SALT)
    erasure.ensure_tables(con)
    return con


def test_an_erased_person_leaves_published_versions_as_a_new_released_version_never_in_place(tmp_path):
    from tessera.privacy import erasure

    con = _erasure_con()
    publish = tmp_path / "publish"
    _published(con, publish)
    original = (publish / "segs" / "versions" / "v1" / "segs.parquet").read_bytes()
    con.execute("insert into privacy.erasure_pending values ('Q1', 'pkey', 'pk_a'), ('Q1', 'email', 'a@example.com')")
    erasure.list_values(con, publish)
    removed = erasure.erase_snapshots(con, publish, datetime(2026, 12, 1, tzinfo=UTC))
    assert removed == {"segs/v1/segs.parquet": 1, "segs/v1/exports/audience.csv": 1}
    snap = snapshots.current_snapshot(publish, "segs")
    assert snap.version == "v1-erasure1" and snap.manifest["rewritten_from"] == "v1"
    assert snapshots.versions(publish, "segs") == ["v1-erasure1"]  # the original is gone with the release
    assert con.execute(f"select customer_pkey from read_parquet('{snap.parquet}')").fetchall() == [("pk_b",)]
    assert (snap.path / "exports" / "audience.csv").read_text().splitlines() == ["email", "b@example.com"]
    for f in snap.manifest["files"]:  # the manifest describes the bytes it sits beside
        assert snapshots.file_sha256(snap.path / f["path"]) == f["sha256"] and f["rows"] == 1
    assert original != snap.parquet.read_bytes()
    # idempotent: the journal's values are no longer anywhere
    assert erasure.erase_snapshots(con, publish, datetime(2026, 12, 1, tzinfo=UTC)) == {}


def test_a_published_file_left_holding_a_listed_person_is_rewritten_without_any_request(tmp_path):
    """The hostile case: a killed erasure had deleted the request from raw, so no later run has a
    request naming the person; the published files are still found through the suppression list."""
    from tessera.privacy import erasure, pseudonym

    con = _erasure_con()
    publish = tmp_path / "publish"
    _published(con, publish)
    con.execute(
        "insert into privacy.erased_identifiers values ('Q1', 'pkey', sha256(getvariable(?) || ':' || 'pk_b'))",
        [pseudonym.SALT_VARIABLE],
    )
    assert erasure.residue(con, publish) == {"segs/v1/segs.parquet:customer_pkey": 1}
    erasure.erase_snapshots(con, publish, datetime(2026, 12, 1, tzinfo=UTC))
    assert snapshots.current_version(publish, "segs") == "v1-erasure1"
    assert erasure.residue(con, publish) == {}


def test_a_crash_inside_the_erasure_transaction_changes_nothing_and_the_next_call_finishes(tmp_path, monkeypatch):
    """apply_erasures' first phase is one transaction: an exception at the crash point (standing in
    for a kill) rolls back the deletes and the journal; the next call erases the person, writes
    the log and owes a compaction."""
    from tessera import faults
    from tessera.privacy import erasure

    con = _erasure_con()
    publish = tmp_path / "publish"
    _published(con, publish)
    for schema in ("staging", "intermediate", "raw", "marts"):
        con.execute(f"create schema {schema}")
    con.execute("create table raw.privacy as select 'Q1' as request_id, 'C1' as customer_id, 0 as _source_row")
    con.execute(
        "create table intermediate.int_privacy_requests_resolved as select 'Q1' as request_id, 'k1' as customer_key, "
        "timestamp '2026-10-30 09:00' as requested_at, 'erasure' as request_type"
    )
    con.execute(
        "create table staging.stg_privacy as select 'Q1' as request_id, 'C1' as customer_id, null::varchar as email"
    )
    con.execute(
        "create table intermediate.int_identities_resolved as select 'k1' as customer_key, 'crm' as node_type, 'C1' as node_value"
    )
    con.execute("create table staging.stg_orders as select 'C1' as customer_id, 'W000001' as order_id")
    con.execute("create table marts.dim_customers as select 'k1' as customer_key union all select 'k2'")
    con.execute(
        "create table raw.erased_rows (source varchar, _source_file varchar, _source_row bigint, stage varchar, "
        "request_id varchar)"
    )
    con.execute(
        "create table raw.load_rejects as select 'privacy' as source, 'f' as _source_file, 1 as _source_row, "
        "'a line' as raw_content"
    )
    monkeypatch.setattr(erasure, "RAW_MATCHES", {})

    def boom(name):
        if name == "erasure:deleted":
            raise RuntimeError("killed")

    monkeypatch.setattr(erasure, "crash_point", boom)
    with pytest.raises(RuntimeError, match="killed"):
        erasure.apply_erasures(con, publish, "run-1")
    assert con.execute("select count(*) from marts.dim_customers").fetchall() == [(2,)]
    assert con.execute("select count(*) from privacy.erasure_pending").fetchall() == [(0,)]
    assert con.execute("select count(*) from privacy.erased_identifiers").fetchall() == [(0,)]
    monkeypatch.setattr(erasure, "crash_point", faults.crash_point)
    done = erasure.apply_erasures(con, publish, "run-2")
    assert done["completed"] == 1 and "pk_" not in json.dumps(done["removed"])
    assert con.execute("select customer_key from marts.dim_customers").fetchall() == [("k2",)]
    assert con.execute("select request_id, run_id from privacy.erasure_log").fetchall() == [("Q1", "run-2")]
    assert con.execute("select count(*) from privacy.erasure_pending").fetchall() == [(0,)]
    assert con.execute("select task from privacy.maintenance").fetchall() == [("compact",)]


def test_the_erasure_reports_the_tables_and_views_it_changed_to_their_assets():
    from orchestration.privacy import table_changes

    con = duckdb.connect()
    con.execute("create schema raw; create schema marts; create schema intermediate")
    con.execute("create table raw.customers as select range::varchar as customer_id from range(5)")
    con.execute("create table raw.erased_rows as select 'customers' as source from range(2)")
    con.execute("create table marts.dim_customers as select range::varchar as customer_key from range(7)")
    con.execute("create table intermediate.int_events as select range as event_id from range(4)")
    # dbt views: one over a changed table, one whose count is what was recorded
    con.execute("create view marts.fct_events as select * from intermediate.int_events")
    recorded = {("marts", "fct_events"): 6}
    events = table_changes(
        con,
        # rows removed per table; zero counts, files and tables no asset owns are not reported
        {"raw.customers": 2, "marts.dim_customers": 3, "raw.orders": 0, "customer_scores/v1/a.parquet": 1, "x.y": 4},
        lambda key: recorded.get(tuple(key.path)),
    )
    by_asset = {e.asset_key.to_user_string(): e for e in events}
    assert sorted(by_asset) == ["marts/dim_customers", "marts/fct_events", "raw/customers", "raw/erased_rows"]
    # raw.erased_rows has no step of its own: observed, as the UI shows an observation's count then
    assert [type(by_asset[a]).__name__ for a in sorted(by_asset)] == [
        "AssetMaterialization",
        "AssetMaterialization",
        "AssetMaterialization",
        "AssetObservation",
    ]
    rows = {a: (e.metadata["dagster/row_count"].value, e.metadata["rows_processed"].value) for a, e in by_asset.items()}
    assert rows == {
        "marts/dim_customers": (7, 3),
        "marts/fct_events": (4, 0),
        "raw/customers": (5, 2),
        "raw/erased_rows": (2, 2),
    }
    assert all(e.metadata["changed_by"].value == "privacy/erasure" for e in events)
    assert "3 row(s)" in by_asset["marts/dim_customers"].description
    # the preview masks personal columns as every asset's does
    assert "***" in by_asset["raw/customers"].metadata["preview"].value
    # nothing removed: nothing reported, not even a view
    assert table_changes(con, {"raw.customers": 0}, lambda key: 1) == []


def test_a_receipt_with_one_line_holding_the_persons_email_goes_whole_from_raw_and_built_tables():
    """A store receipt the identity graph did not give the person, matched in raw only by the email
    on one of its lines: every line of it leaves raw, its id joins the identifiers and the
    suppression list, and the order lines built from it go too (at 1M customers such lines stayed
    in int_order_lines, which then no longer matched what the landing files derive)."""
    from tessera.privacy import erasure, pseudonym

    con = duckdb.connect()
    pseudonym.install(con, pseudonym.DEMO_SALT)
    erasure.ensure_tables(con)
    con.execute("create schema raw; create schema staging; create schema intermediate")
    con.execute(
        "create table raw.erased_rows (source varchar, _source_file varchar, _source_row bigint, stage varchar, "
        "request_id varchar)"
    )
    con.execute(
        "create table raw.load_rejects (source varchar, _source_file varchar, _source_row bigint, raw_content varchar)"
    )
    pos = (
        "('R1', 'ann@example.com', 'p.csv', 1), ('R1', null, 'p.csv', 2), "  # the second line names nobody
        "('R2', 'bob@example.com', 'p.csv', 3)"
    )
    for source, (view, columns) in erasure.RAW_MATCHES.items():
        cols = ", ".join(f"cast(null as varchar) as {c}" for c in columns)
        if source == "pos_transactions":
            con.execute(
                f"create table raw.{source} as select * from (values {pos}) as t(receipt_id, email, _source_file, "
                "_source_row)"
            )
            con.execute(
                f"create view staging.{view} as select receipt_id, email, null::varchar as loyalty_card, "
                f"null::varchar as phone_e164, _source_file, _source_row from raw.{source}"
            )
        else:
            con.execute(
                f"create table raw.{source} as select {cols}, 'f.csv' as _source_file, 1::bigint as _source_row "
                "where false"
            )
            con.execute(f"create view staging.{view} as select * from raw.{source}")
    con.execute(
        "create table intermediate.int_order_lines as select * from (values ('R1', 'a'), ('R1', 'b'), ('R2', 'c')) "
        "as t(order_id, product_id)"
    )
    hashed = "sha256(getvariable('tessera_pseudonym_salt') || ':' || ?)"
    con.execute(f"insert into privacy.erased_identifiers values ('Q1', 'email', {hashed})", ["ann@example.com"])
    con.execute("create temp table __listed as select 'ann@example.com' as value, true as exact, false as in_built")
    con.execute("create temp table __erase as select 'Q1' as request_id, 'email' as kind, 'ann@example.com' as value")

    removed = erasure.erase_raw(con)
    assert removed["raw.pos_transactions"] == 2
    assert con.execute("select receipt_id, _source_row from raw.pos_transactions").fetchall() == [("R2", 3)]
    assert sorted(con.execute("select _source_row, request_id from raw.erased_rows").fetchall()) == [
        (1, "Q1"),
        (2, "Q1"),
    ]
    assert con.execute("select kind, value from __erase where kind = 'pos'").fetchall() == [("pos", "R1")]
    listed = con.execute(
        f"select request_id, kind from privacy.erased_identifiers where value_hash = {hashed}", ["R1"]
    ).fetchall()
    assert listed == [("Q1", "pos")]
    assert erasure.erase_built(con) == {"intermediate.int_order_lines": 2}
    assert con.execute("select order_id from intermediate.int_order_lines").fetchall() == [("R2",)]
