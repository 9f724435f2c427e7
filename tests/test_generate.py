"""The demo data generator: deterministic, messy on purpose, with a ground truth kept apart."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date

import pandas as pd

from tessera.landing.contract import SOURCES
from tessera.landing.generate import NICKNAMES, GenerateConfig, generate

CONFIG = GenerateConfig(customers=150, days=21, seed=11, end_date=date(2026, 10, 31))


def _digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_gives_byte_identical_landing_files(tmp_path):
    a = generate(CONFIG, tmp_path / "a" / "landing", tmp_path / "a" / "truth")
    b = generate(CONFIG, tmp_path / "b" / "landing", tmp_path / "b" / "truth")
    assert a.rows == b.rows
    assert _digest(a.landing_dir) == _digest(b.landing_dir)


def test_another_seed_gives_other_data(tmp_path):
    a = generate(CONFIG, tmp_path / "a" / "landing", tmp_path / "a" / "truth")
    other = GenerateConfig(customers=150, days=21, seed=12, end_date=date(2026, 10, 31))
    b = generate(other, tmp_path / "b" / "landing", tmp_path / "b" / "truth")
    assert _digest(a.landing_dir) != _digest(b.landing_dir)


def test_every_source_folder_is_written_in_the_contract_shape(tmp_path):
    result = generate(CONFIG, tmp_path / "landing", tmp_path / "truth")
    # declared identifiers are optional: the demo's profiles link by email, phone and card
    for source in [s for s in SOURCES if s.name != "identifiers"]:
        files = list((result.landing_dir / source.name).iterdir())
        assert files, source.name
        assert result.rows[source.name] > 0
    customers = pd.read_csv(result.landing_dir / "customers" / "customers.csv", dtype=str)
    assert list(customers.columns) == SOURCES[0].column_names
    # all three accepted formats are exercised
    suffixes = {p.suffix for p in result.landing_dir.rglob("*") if p.is_file()}
    assert suffixes == {".csv", ".parquet", ".jsonl"}


def test_ground_truth_lives_outside_landing_and_covers_every_profile(tmp_path):
    result = generate(CONFIG, tmp_path / "landing", tmp_path / "truth")
    assert not list(result.landing_dir.rglob("*truth*"))
    truth = pd.read_csv(result.truth_dir / "record_to_person.csv")
    customers = pd.read_csv(result.landing_dir / "customers" / "customers.csv", dtype=str)
    crm = truth[truth["source"] == "customers"]
    assert set(crm["record_id"]) == set(customers["customer_id"])
    # duplicates exist: more CRM profiles than people
    assert crm["person_id"].nunique() < len(crm)
    assert crm["person_id"].nunique() == CONFIG.customers


def test_people_show_up_with_format_variants_of_the_same_identity(tmp_path):
    result = generate(CONFIG, tmp_path / "landing", tmp_path / "truth")
    customers = pd.read_csv(result.landing_dir / "customers" / "customers.csv", dtype=str)
    phones = customers["phone"].dropna()
    assert phones.str.startswith("+").any() and phones.str.startswith("0").any()
    assert (customers["email"].dropna() != customers["email"].dropna().str.strip().str.lower()).any()
    assert customers["country"].isin(["GB", "GBR", "United Kingdom", "uk"]).sum() > 0
    assert customers["country"].nunique() > 5


def test_no_profile_signs_up_or_is_updated_after_the_data_window(tmp_path):
    """Duplicate profiles sign up again later than the original, but never after the window's
    last day: a 120-day window once gave signups up to 300 days past its start."""
    config = replace(CONFIG, customers=2_000, days=120)
    result = generate(config, tmp_path / "landing", tmp_path / "truth")
    customers = pd.read_csv(result.landing_dir / "customers" / "customers.csv", dtype=str)
    end = pd.Timestamp(config.end_date, tz="UTC") + pd.Timedelta(days=1)
    for column in ("signup_at", "updated_at"):
        stamps = pd.to_datetime(customers[column], utc=True, format="mixed")
        assert stamps.notna().all() and (stamps < end).all(), column
    truth = pd.read_csv(result.truth_dir / "record_to_person.csv")
    assert truth[truth["source"] == "customers"]["person_id"].duplicated().sum() > 50  # duplicates exist


def test_shards_add_people_with_disjoint_ids_and_share_one_catalogue(tmp_path):
    """bench/scale.py generates 1M customers in shards: shard 1 must add other people (no id,
    email or cookie shared with shard 0) over the same products, and leave shard 0's files alone."""
    import duckdb

    landing, truth = tmp_path / "landing", tmp_path / "truth"
    generate(CONFIG, landing, truth)
    before = _digest(landing)
    result = generate(replace(CONFIG, shard=1), landing, truth)
    assert "products" not in result.rows  # written once, by shard 0
    assert sorted(p.name for p in (landing / "customers").iterdir()) == ["customers.csv", "customers_1.csv"]
    con = duckdb.connect()

    def ids(sql: str, pattern: str) -> tuple[set, set]:
        a = {r[0] for r in con.execute(sql.format(f=f"{landing}/{pattern}")).fetchall()}
        b = {r[0] for r in con.execute(sql.format(f=f"{landing}/{pattern.replace('.', '_1.')}")).fetchall()}
        return a, b

    for sql, pattern in [
        ("select customer_id from read_csv('{f}', all_varchar=true)", "customers/customers.csv"),
        (
            "select lower(trim(email)) from read_csv('{f}', all_varchar=true) where email is not null",
            "customers/customers.csv",
        ),
        ("select order_id from read_csv('{f}', all_varchar=true)", "orders/orders.csv"),
        ("select receipt_id from read_csv('{f}', all_varchar=true)", "pos_transactions/pos_transactions.csv"),
        ("select request_id from read_json('{f}', format='newline_delimited')", "privacy/privacy.jsonl"),
    ]:
        a, b = ids(sql, pattern)
        assert a and b and not (a & b), pattern

    def events(glob: str) -> set:
        sql = f"select anonymous_id from read_json('{landing}/events/{glob}', format='newline_delimited')"
        return {r[0] for r in con.execute(sql).fetchall()}

    assert not events("events_????-??-??.jsonl") & events("events_*_1.jsonl")
    # every product an order of shard 1 names is in the one catalogue, but for the unknown product
    # _malform plants on purpose (shard 1 drew none of those until the CRM profiles' slips moved
    # the random stream, and the test then failed on one)
    catalogue = {
        r[0]
        for r in con.execute(f"select product_id from read_parquet('{landing}/products/products.parquet')").fetchall()
    }
    bought = {
        r[0]
        for r in con.execute(
            f"select product_id from read_parquet('{landing}/order_items/order_items_1.parquet')"
        ).fetchall()
    }
    assert bought and bought <= catalogue | {None, "", "SKU-UNKNOWN"}
    # shard 1 wrote only new files: shard 0's bytes are as they were
    assert _digest_without(landing, "_1.") == before


def _digest_without(folder, marker: str) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and marker not in path.name:
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_invalid_settings_are_refused_naming_each_problem():
    import pytest

    with pytest.raises(ValueError) as err:
        GenerateConfig(customers=0, days=10, shard=-1, session_scale=0)
    message = str(err.value)
    assert "customers must be at least 1, got 0" in message
    assert "shard must be 0 or more, got -1" in message and "session_scale must be above 0" in message
    assert "days" not in message


def test_extra_crm_profiles_carry_registration_slips_that_never_point_at_another_person(tmp_path):
    """Duplicate profiles are messy the way re-registrations are (issue: a demo on which the
    matcher's F1 means something), while every email and card still names one person only."""
    import polars as pl

    config = replace(CONFIG, customers=2_000, days=7)
    result = generate(config, tmp_path / "landing", tmp_path / "truth")
    customers = pl.read_csv(result.landing_dir / "customers" / "customers.csv", infer_schema=False)
    truth = pl.read_csv(result.truth_dir / "record_to_person.csv", infer_schema=False)
    profiles = customers.join(
        truth.filter(pl.col("source") == "customers").select(customer_id="record_id", person_id="person_id"),
        on="customer_id",
        how="left",
    )
    assert profiles["person_id"].null_count() == 0
    # two to four profiles for some people, and about `duplicate_rate` extra profiles per person
    per_person = profiles.group_by("person_id").len()["len"]
    assert set(per_person.unique()) == {1, 2, 3, 4}
    assert 1.09 * config.customers < profiles.height < 1.15 * config.customers

    def pairs(column: pl.Expr) -> pl.DataFrame:
        """Each two different values of `column` on profiles of the same person."""
        values = profiles.select("person_id", value=column).drop_nulls().unique()
        return values.join(values, on="person_id", suffix="_other").filter(pl.col("value") < pl.col("value_other"))

    dates = pairs(pl.col("birth_date"))
    assert customers["birth_date"].drop_nulls().str.to_date("%Y-%m-%d", strict=False).null_count() == 0
    swapped = dates.filter(
        pl.col("value").str.slice(0, 4) + pl.col("value").str.slice(7, 3) + pl.col("value").str.slice(4, 3)
        == pl.col("value_other")
    )
    one_digit = dates.filter(
        pl.sum_horizontal(pl.col("value").str.slice(i, 1) != pl.col("value_other").str.slice(i, 1) for i in range(10))
        == 1
    )
    assert swapped.height > 0 and one_digit.height > 0
    # nearly all differences are one slip (two slipped extra profiles of a person differ by two)
    assert swapped.height + one_digit.height >= 0.9 * dates.height
    emails = pairs(pl.col("email").str.strip_chars().str.to_lowercase())
    local = pl.col("value").str.extract(r"^([^@]+)@"), pl.col("value_other").str.extract(r"^([^@]+)@")
    domain = pl.col("value").str.extract(r"@(.+)$"), pl.col("value_other").str.extract(r"@(.+)$")
    assert emails.filter((local[0] == local[1]) & (domain[0] != domain[1])).height > 0  # the domain's alias
    assert emails.filter((local[0] != local[1]) & (domain[0] == domain[1])).height > 0  # a typo
    assert pairs(pl.col("loyalty_card")).height > 0
    names = pairs(pl.col("first_name").str.strip_chars().str.to_lowercase())
    short_forms = [(min(a, b), max(a, b)) for a, b in ((k.lower(), v.lower()) for k, v in NICKNAMES.items())]
    assert any(pair in short_forms for pair in names.select("value", "value_other").iter_rows())
    # a slip never lands on another person's email or card
    for column in ("email", "loyalty_card"):
        owners = (
            profiles.select("person_id", value=pl.col(column).str.strip_chars().str.to_lowercase())
            .drop_nulls()
            .group_by("value")
            .agg(pl.col("person_id").n_unique())
        )
        assert owners["person_id"].max() == 1, column
