"""Declared identifiers through the graph: rows of landing/identifiers join two CRM profiles that
share nothing else into one customer of dim_customers, with the id type as the link's evidence;
the rows identity cannot use are quarantined with their reason; and erasing the person removes
every row holding their person id."""

from __future__ import annotations

import csv
import json

import dagster as dg
import duckdb
import pytest

from tessera.landing.contract import SOURCES_BY_NAME
from tests.conftest import run_job, use_copy_of

# two order profiles of one marketplace buyer: other names, other cities, no email, phone or birth date
BUYER = {
    "CMKT1": {"first_name": "Xanthe", "last_name": "Quillfeather", "city": "Recife"},
    "CMKT2": {"first_name": "Bartholomew", "last_name": "Zzyzx", "city": "Natal"},
}
PERSON_ID = "u-7f3a9c"


def _write(path, columns: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({c: row.get(c, "") for c in columns} for row in rows)


def _run(*models: str) -> dg.ExecuteInProcessResult:
    from orchestration.dbt import model_key
    from orchestration.definitions import defs

    targets = [model_key(m) for m in models]
    selection = dg.AssetSelection.keys(*targets).upstream().resolve(defs.resolve_asset_graph())
    return run_job(sorted(selection, key=str))


@pytest.fixture(scope="module")
def declared(tmp_path_factory, built_warehouse):
    mp = pytest.MonkeyPatch()
    settings = use_copy_of(built_warehouse, tmp_path_factory.mktemp("declared") / "data", mp)
    land = settings.landing_dir
    dates = {"country": "BR", "signup_at": "2026-09-01T00:00:00Z", "updated_at": "2026-09-01T00:00:00Z"}
    _write(
        land / "customers" / "customers_zz_marketplace.csv",
        SOURCES_BY_NAME["customers"].column_names,
        [{"customer_id": cid, **person, **dates} for cid, person in BUYER.items()],
    )
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    existing = [r[0] for r in con.execute("select customer_id from raw.customers order by 1 limit 200").fetchall()]
    con.close()
    identifiers = [
        {"customer_id": "CMKT1", "id_type": "person_id", "id_value": PERSON_ID},
        {"customer_id": "CMKT2", "id_type": " Person ID ", "id_value": f" {PERSON_ID} "},
        {"customer_id": "CNOSUCH", "id_type": "person_id", "id_value": PERSON_ID},  # row 3: no such profile
        {"customer_id": "CMKT1", "id_type": "login_id", "id_value": ""},  # row 4: no value
        # a login per existing profile: each its own value, so they link nothing
        *({"customer_id": c, "id_type": "login_id", "id_value": f"login-{c}"} for c in existing),
    ]
    _write(land / "identifiers" / "identifiers.csv", SOURCES_BY_NAME["identifiers"].column_names, identifiers)
    result = _run("dim_customers", "source_reconciliation")
    yield settings, result, len(identifiers)
    mp.undo()


@pytest.mark.graph
def test_landed_identifiers_merge_two_crm_profiles_into_one_customer(declared):
    settings, result, delivered = declared
    assert result.success, [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        [(key_1, key_2)] = con.execute(
            """
            select max(customer_key) filter (where node_value = 'CMKT1'), max(customer_key) filter (where node_value = 'CMKT2')
            from intermediate.int_identities_resolved where node_type = 'crm'
            """
        ).fetchall()
        assert key_1 is not None and key_1 == key_2
        assert con.execute(
            "select crm_profile_count from marts.dim_customers where customer_key = ?", [key_1]
        ).fetchall() == [(2,)]
        assert con.execute(
            "select kind, evidence, accepted from identity.identity_links where record_l = 'CMKT1' and record_r = 'CMKT2'"
        ).fetchall() == [("deterministic", "person_id", True)]
        # the person id is a node of that customer's identity graph (what an erasure collects)
        assert con.execute(
            "select node_key, customer_key from intermediate.int_identities_resolved where node_type = 'declared' "
            "and node_value = ?",
            [PERSON_ID],
        ).fetchall() == [(f"declared:person_id:{PERSON_ID}", key_1)]
        # the unique logins linked no profile to another
        assert con.execute(
            "select count(*) from identity.identity_links where evidence like '%login_id%'"
        ).fetchall() == [(0,)]
        quarantined = con.execute(
            """
            select _source_row, record_id, reason from quarantine.quarantined_records
            where source = 'identifiers' order by _source_row
            """
        ).fetchall()
        assert quarantined == [
            (3, "CNOSUCH", "unknown profile: no usable CRM profile with this customer_id"),
            (4, "CMKT1", "missing id_value"),
        ]
        assert con.execute(
            """
            select landing_records, valid_rows, quarantined_records, reconciles
            from quarantine.source_reconciliation where source = 'identifiers'
            """
        ).fetchall() == [(delivered, delivered - 2, 2, True)]
    finally:
        con.close()
    [identity] = [
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["identity", "identity_map"])
    ]
    assert (identity["declared_identifiers"].value, identity["declared_links"].value) == (delivered - 2, 1)
    assert identity["overshared_declared_identifier_values"].value == {}


@pytest.mark.graph
def test_erasing_the_person_removes_every_row_holding_their_profiles_or_their_person_id(declared):
    # runs after the merge test (same module, file order): it changes the data directory
    settings, _, _ = declared
    # every contract column, as a privacy delivery sends them (a dropped column fails the gate)
    request = dict.fromkeys(SOURCES_BY_NAME["privacy"].column_names) | {
        "request_id": "ER_MKT",
        "customer_id": "CMKT2",
        "request_type": "erasure",
        "requested_at": "2026-10-30T09:00:00+00:00",
    }
    (settings.landing_dir / "privacy" / "erasure_mkt.jsonl").write_text(json.dumps(request) + "\n")
    from orchestration.definitions import defs
    from orchestration.keys import ERASURE_KEY

    erasure = dg.AssetSelection.keys(ERASURE_KEY).upstream().resolve(defs.resolve_asset_graph())
    result = run_job(sorted(erasure, key=str))
    assert result.success, [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    try:
        # the unknown profile's row held the person id too: it goes as well
        assert con.execute(
            "select count(*) from raw.identifiers where trim(id_value) = ? or customer_id in ('CMKT1', 'CMKT2')",
            [PERSON_ID],
        ).fetchall() == [(0,)]
        erased = dict(
            con.execute(
                "select source, count(*) from raw.erased_rows where request_id = 'ER_MKT' group by 1"
            ).fetchall()
        )
        # both profiles; the rows of both profiles and the unknown profile's row with the person id
        assert (erased["customers"], erased["identifiers"]) == (2, 4)
        columns = con.execute(
            """select c.table_schema, c.table_name, c.column_name from information_schema.columns c
               join information_schema.tables t using (table_schema, table_name)
               where t.table_type = 'BASE TABLE' and c.data_type = 'VARCHAR' and c.table_schema <> 'privacy'"""
        ).fetchall()
        held = {
            f"{s}.{t}.{c}"
            for s, t, c in columns
            if con.execute(
                f'select count(*) from "{s}"."{t}" where contains(lower("{c}"), ?) or "{c}" in (?, ?)',
                [PERSON_ID, "CMKT1", "CMKT2"],
            ).fetchall()[0][0]
        }
        assert held == set()
    finally:
        con.close()
