"""Pseudonymous keys in published outputs (tessera/privacy/pseudonym.py)."""

import dagster as dg
import duckdb
import pytest

from tessera.privacy import pseudonym
from tessera.privacy.pseudonym import DEMO_SALT, InsecureSaltError
from tessera.publish import snapshots
from tessera.publish.published import PUBLISHED
from tests.conftest import published_fingerprint, run_job


def test_sql_and_python_give_the_same_key_and_the_salt_changes_it():
    con = duckdb.connect()
    pseudonym.install(con, "a-secret-salt-of-some-length")
    (sql_key,) = con.execute("select customer_pkey('tc_0123456789abcdef')").fetchall()[0]
    assert sql_key == pseudonym.pseudonym("a-secret-salt-of-some-length", "tc_0123456789abcdef")
    assert sql_key.startswith("pk_") and len(sql_key) == 35
    assert sql_key != pseudonym.pseudonym("another-secret-salt-here", "tc_0123456789abcdef")
    # the salt is bound as a parameter: it is not in the macro's SQL text
    macros = con.execute(
        "select macro_definition from duckdb_functions() where function_name = 'customer_pkey'"
    ).fetchall()
    assert macros and not any("a-secret-salt" in str(m) for m in macros)


@pytest.mark.parametrize(
    "salt, mode, refused",
    [
        (DEMO_SALT, "production", "not set"),
        ("short", "production", "at least 16"),
        ("a-long-enough-secret-salt", "production", None),
        (DEMO_SALT, "demo", None),
    ],
)
def test_the_demo_salt_and_short_salts_are_refused_outside_demo_mode(salt, mode, refused):
    if refused:
        with pytest.raises(InsecureSaltError, match=refused):
            pseudonym.check_salt(salt, mode)
    else:
        pseudonym.check_salt(salt, mode)


def test_published_snapshots_carry_only_pseudonymous_keys(pipeline):
    _, settings = pipeline
    con = duckdb.connect()
    for spec in PUBLISHED:
        snap = snapshots.current_snapshot(settings.publish_dir, spec.name)
        for f in snap.manifest["files"]:
            path = snap.path / f["path"]
            reader = {"parquet": "read_parquet", "csv": "read_csv", "jsonl": "read_json"}[f["format"]]
            columns = [r[0] for r in con.execute(f"describe select * from {reader}('{path}')").fetchall()]
            assert "customer_key" not in columns, f["path"]
            if "customer_pkey" in columns:
                bad = con.execute(
                    f"select count(*) from {reader}('{path}') where not regexp_full_match(customer_pkey, 'pk_[0-9a-f]{{32}}')"
                ).fetchall()[0][0]
                assert bad == 0, f["path"]
            # no internal key anywhere in the file, in any column
            text = path.read_bytes()
            assert b"tc_" not in text or f["format"] == "parquet", f["path"]
        table = con.execute(f"select * from read_parquet('{snap.parquet}')").df()
        for column in table.select_dtypes(include="object").columns:
            assert not table[column].astype(str).str.startswith("tc_").any(), (spec.name, column)


def test_publishing_with_the_demo_salt_is_refused_outside_demo_mode(warehouse_copy, monkeypatch):
    settings = warehouse_copy
    before = published_fingerprint(settings)
    monkeypatch.setenv("TESSERA_MODE", "production")
    monkeypatch.delenv("TESSERA_PSEUDONYM_SALT", raising=False)
    result = run_job([dg.AssetKey(["publish", spec.name]) for spec in PUBLISHED])
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures and all("TESSERA_PSEUDONYM_SALT" in e.event_specific_data.error.cause.message for e in failures)
    assert published_fingerprint(settings) == before


def test_every_personal_column_of_a_dbt_model_is_tagged_pii(pipeline):
    """Issue 8: PII columns are tagged in dbt (meta.pii), on every model that carries one."""
    from orchestration.dbt import dbt_manifest
    from orchestration.metadata import PERSONAL_COLUMN_NAMES

    _, settings = pipeline
    con = duckdb.connect(str(settings.duckdb_path), read_only=True)
    untagged = {}
    try:
        for node in dbt_manifest()["nodes"].values():
            if node["resource_type"] != "model":
                continue
            columns = con.execute(
                "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
                [node["schema"], node["alias"]],
            ).fetchall()
            tagged = {n for n, c in node.get("columns", {}).items() if c.get("meta", {}).get("pii")}
            missing = [c for (c,) in columns if c in PERSONAL_COLUMN_NAMES and c not in tagged]
            if missing:
                untagged[node["name"]] = missing
    finally:
        con.close()
    assert untagged == {}
    assert {"email", "phone_e164", "loyalty_card"} <= {
        n
        for node in dbt_manifest()["nodes"].values()
        if node["name"] == "dim_customers"
        for n, c in node["columns"].items()
        if c.get("meta", {}).get("pii")
    }
