"""The demo data generator: deterministic, messy on purpose, with a ground truth kept apart."""

from __future__ import annotations

import hashlib
from datetime import date

import pandas as pd

from tessera.contract import SOURCES
from tessera.generate import GenerateConfig, generate

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
    for source in SOURCES:
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
