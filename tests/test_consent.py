"""Consent per channel and purpose (marts.customer_consents) and the outputs it keeps people out of."""

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from tessera.landing.generate import GenerateConfig, generate
from tessera.publish import snapshots
from tessera.settings import load_settings
from tests.conftest import SMALL, run_job, use_data_dir, with_pkeys

DBT_PROJECT = Path(__file__).resolve().parent.parent / "dbt_project" / "dbt_project.yml"


def frame(settings, sql) -> pd.DataFrame:
    con = with_pkeys(duckdb.connect(str(settings.duckdb_path), read_only=True))
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def test_customer_consents_follow_the_latest_applicable_record_else_the_default(pipeline):
    """An oracle in pandas, independent of the model's SQL, over every customer and pair."""
    _, settings = pipeline
    matrix = yaml.safe_load(DBT_PROJECT.read_text())["vars"]["consent_purposes"]
    records = frame(
        settings,
        "select * from intermediate.int_privacy_requests_resolved where request_type = 'consent' and customer_key is not null",
    )
    customers = frame(settings, "select distinct customer_key from intermediate.int_identities_resolved")
    expected = []
    for pair in matrix:
        applicable = records[
            records["channel"].isin([pair["channel"], "all"]) & records["purpose"].isin([pair["purpose"], "all"])
        ]
        # latest first; at the same instant a revoke (granted False) first
        latest = applicable.sort_values(["requested_at", "granted"], ascending=[False, True]).drop_duplicates(
            "customer_key"
        )
        decided = dict(zip(latest["customer_key"], latest["granted"], strict=True))
        for key in customers["customer_key"]:
            expected.append((key, pair["channel"], pair["purpose"], bool(decided.get(key, pair["default"]))))
    got = frame(settings, "select customer_key, channel, purpose, granted from marts.customer_consents")
    assert sorted(map(tuple, got.itertuples(index=False))) == sorted(expected)
    # the data has both decisions and defaults
    assert got["granted"].any() and not got["granted"].all()


def test_dim_customers_carries_each_pair_as_a_column(pipeline):
    _, settings = pipeline
    wide = frame(settings, "select * from marts.dim_customers")
    long = frame(settings, "select * from marts.customer_consents")
    for pair in yaml.safe_load(DBT_PROJECT.read_text())["vars"]["consent_purposes"]:
        column = f"consent_{pair['channel']}_{pair['purpose']}"
        state = long[(long["channel"] == pair["channel"]) & (long["purpose"] == pair["purpose"])]
        merged = wide[["customer_key", column]].merge(state[["customer_key", "granted"]], on="customer_key")
        assert len(merged) == len(wide)
        assert (merged[column] == merged["granted"]).all()
    assert (wide["email_marketing_consent"] == wide["consent_email_marketing"]).all()
    assert (wide["personalization_consent"] == wide["consent_web_personalization"]).all()


@pytest.fixture(scope="module")
def revoked(tmp_path_factory):
    """The small demo plus a privacy delivery revoking consent for 30 customers, a grant on an
    unknown channel (quarantined) and a grant on an unknown purpose (quarantined)."""
    mp = pytest.MonkeyPatch()
    use_data_dir(mp, tmp_path_factory.mktemp("consent") / "data")
    settings = load_settings()
    generate(GenerateConfig(**SMALL), settings.landing_dir, settings.truth_dir)
    ids = sorted(pd.read_csv(next((settings.landing_dir / "customers").glob("*.csv")))["customer_id"].dropna())
    marketing, personal = ids[:30], ids[30:60]
    when = "2026-10-30T12:00:00+00:00"
    lines = (
        [
            {
                "request_id": f"RV{i}",
                "customer_id": c,
                "email": None,
                "request_type": "consent",
                "channel": "all",
                "purpose": "marketing",
                "granted": "false",
                "requested_at": when,
            }
            for i, c in enumerate(marketing)
        ]
        + [
            {
                "request_id": f"RP{i}",
                "customer_id": c,
                "email": None,
                "request_type": "consent",
                "channel": "all",
                "purpose": "personalization",
                "granted": "false",
                "requested_at": when,
            }
            for i, c in enumerate(personal)
        ]
        + [
            {
                "request_id": "RX1",
                "customer_id": ids[61],
                "email": None,
                "request_type": "consent",
                "channel": "fax",
                "purpose": "marketing",
                "granted": "true",
                "requested_at": when,
            },
            {
                "request_id": "RX2",
                "customer_id": ids[62],
                "email": None,
                "request_type": "consent",
                "channel": "email",
                "purpose": "profiling",
                "granted": "true",
                "requested_at": when,
            },
        ]
    )
    (settings.landing_dir / "privacy" / "privacy_revocations.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines)
    )
    result = run_job()
    yield result, settings, marketing, personal
    mp.undo()


def keys_of(settings, ids) -> set[str]:
    """The published (pseudonymous) keys of the people with these CRM ids."""
    nodes = ", ".join(f"'crm:{i}'" for i in ids)
    sql = (
        f"select customer_pkey(customer_key) as k from intermediate.int_identities_resolved where node_key in ({nodes})"
    )
    return set(frame(settings, sql)["k"])


@pytest.mark.graph
def test_revoked_marketing_consent_keeps_customers_out_of_every_email_audience(revoked):
    result, settings, marketing, _ = revoked
    assert result.success
    keys = keys_of(settings, marketing)
    assert len(keys) >= 25  # a few may share a person with another id
    snap = snapshots.current_snapshot(settings.publish_dir, "customer_segments")
    audiences = [f for f in snap.manifest["files"] if f.get("export", "").startswith("email_audience")]
    assert audiences and all(f["consent"] == "email/marketing" for f in audiences)
    sent = pd.concat([pd.read_csv(snap.path / f["path"]) for f in audiences])
    assert not keys & set(sent["customer_pkey"])
    # they are still published (segments, scores): consent limits what is sent, not who is counted
    published = frame(settings, "select customer_pkey, rfm_holdout_group from publish.customer_segments")
    mine = published[published["customer_pkey"].isin(keys)]
    assert len(mine) == len(keys)
    # and most of them would have been emailed: treatment group, with an address
    emailable = frame(
        settings, "select customer_pkey(customer_key) as customer_pkey from marts.dim_customers where email is not null"
    )
    would = set(mine[mine["rfm_holdout_group"] == "treatment"]["customer_pkey"]) & set(emailable["customer_pkey"])
    assert len(would) >= 15


@pytest.mark.graph
def test_revoked_personalisation_keeps_customers_out_of_the_feed_and_off_personal_lists(revoked):
    _, settings, _, personal = revoked
    keys = keys_of(settings, personal)
    assert len(keys) >= 25
    snap = snapshots.current_snapshot(settings.publish_dir, "customer_recommendations")
    feed = [json.loads(line) for line in (snap.path / "exports" / "recommendations.jsonl").read_text().splitlines()]
    fed = {line["customer_pkey"] for line in feed}
    assert not keys & fed
    # everyone else who consents is in it
    published = set(frame(settings, "select customer_pkey from publish.customer_recommendations")["customer_pkey"])
    consenting = set(
        frame(
            settings,
            "select customer_pkey(customer_key) as customer_pkey from marts.customer_consents "
            "where channel = 'web' and purpose = 'personalization' and granted",
        )["customer_pkey"]
    )
    assert fed == published & consenting
    sources = frame(settings, "select distinct customer_pkey, source from publish.customer_recommendations")
    assert set(sources[sources["customer_pkey"].isin(keys)]["source"]) == {"popularity"}


@pytest.mark.graph
def test_consent_records_naming_an_unknown_channel_or_purpose_are_quarantined(revoked):
    _, settings, _, _ = revoked
    reasons = frame(
        settings,
        "select record_id, reason from quarantine.quarantined_records where source = 'privacy' and record_id in ('RX1', 'RX2')",
    )
    assert dict(zip(reasons["record_id"], reasons["reason"], strict=True)) == {
        "RX1": "unknown consent channel",
        "RX2": "unknown consent purpose",
    }
