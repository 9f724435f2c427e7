"""The normalisation macros in dbt_project/macros/normalise.sql, compiled by dbt and run on DuckDB.

The cases are compiled once into one query over a VALUES table, so each case is a row, and the
assertion is on exactly what the staging models will compute.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
from dbt.cli.main import dbtRunner

from tessera.settings import DBT_PROJECT_DIR

EMAILS = [
    (" Amelia.Smith@Example.COM ", "amelia.smith@example.com"),
    ("o'brien@example.ie", None),  # apostrophes are rare and not accepted by the pattern we use
    ("first.last+tag@mail.example.co.uk", "first.last+tag@mail.example.co.uk"),
    ("name@@example.com", None),
    ("no-at-sign.example.com", None),
    ("name@localhost", None),
    ("", None),
    (None, None),
]
PHONES = [
    ("+44 7700 900123", "44", "+447700900123"),
    ("07700 900123", "44", "+447700900123"),
    ("0044 7700-900-123", "44", "+447700900123"),
    ("(07700) 900123", "44", "+447700900123"),
    ("0151 2345678", "49", "+491512345678"),
    ("+1 (555) 010-0200", "1", "+15550100200"),
    ("15550100200", "1", "+15550100200"),
    ("5550100200", "1", "+15550100200"),
    ("12", "44", None),
    ("7700900123", "44", None),  # no trunk prefix, no country code: ambiguous, not guessed
    (None, "44", None),
]
NAMES = [
    ("  aMELIA ", "Amelia", "amelia"),
    ("SMITH", "Smith", "smith"),
    ("van  der Berg", "Van  der berg", "van der berg"),
    ("", None, None),
]
POSTCODES = [("ls1 2ab", "LS12AB"), (" SW1A-1AA ", "SW1A1AA"), ("", None)]
TIMESTAMPS = [
    ("2026-07-04T22:30:58+01:00", dt.datetime(2026, 7, 4, 21, 30, 58)),
    ("2026-07-04T22:30:58-05:00", dt.datetime(2026, 7, 5, 3, 30, 58)),
    ("2026-01-01T00:00:00Z", dt.datetime(2026, 1, 1)),
    ("2024-11-28T06:09:55", dt.datetime(2024, 11, 28, 6, 9, 55)),  # no zone: read as UTC
    ("not-a-date", None),
]

SQL = """
select
    kind,
    case_id,
    case kind
        when 'email' then {{ tessera.normalise_email('a') }}
        when 'phone' then {{ tessera.normalise_phone('a', 'b') }}
        when 'name' then {{ tessera.name_display('a') }} || '|' || {{ tessera.name_key('a') }}
        when 'postcode' then {{ tessera.postcode_key('a') }}
    end as text_result,
    case when kind = 'ts' then {{ tessera.to_utc_timestamp('a') }} end as ts_result
from cases
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory, monkeypatch_module):
    tmp = tmp_path_factory.mktemp("normalise")
    monkeypatch_module.setenv("TESSERA_DUCKDB_PATH", str(tmp / "compile.duckdb"))
    res = dbtRunner().invoke(
        [
            "compile",
            "--inline",
            SQL,
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(tmp / "target"),
            "--quiet",
        ]
    )
    assert res.success, res.exception
    compiled = res.result.results[0].node.compiled_code
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.execute("create table cases (kind varchar, case_id integer, a varchar, b varchar)")
    rows = [("email", i, raw, None) for i, (raw, _) in enumerate(EMAILS)]
    rows += [("phone", i, raw, cc) for i, (raw, cc, _) in enumerate(PHONES)]
    rows += [("name", i, raw, None) for i, (raw, _, _) in enumerate(NAMES)]
    rows += [("postcode", i, raw, None) for i, (raw, _) in enumerate(POSTCODES)]
    rows += [("ts", i, raw, None) for i, (raw, _) in enumerate(TIMESTAMPS)]
    con.executemany("insert into cases values (?, ?, ?, ?)", rows)
    out = {(k, i): (t, ts) for k, i, t, ts in con.execute(compiled).fetchall()}
    con.close()
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.mark.parametrize("i,raw,expected", [(i, r, e) for i, (r, e) in enumerate(EMAILS)])
def test_normalise_email(results, i, raw, expected):
    assert results[("email", i)][0] == expected


@pytest.mark.parametrize("i,raw,calling_code,expected", [(i, *c) for i, c in enumerate(PHONES)])
def test_normalise_phone_to_e164(results, i, raw, calling_code, expected):
    assert results[("phone", i)][0] == expected


@pytest.mark.parametrize("i,raw,display,key", [(i, *c) for i, c in enumerate(NAMES)])
def test_name_display_and_matching_key(results, i, raw, display, key):
    got = results[("name", i)][0]
    assert got == (None if display is None else f"{display}|{key}")


@pytest.mark.parametrize("i,raw,expected", [(i, r, e) for i, (r, e) in enumerate(POSTCODES)])
def test_postcode_key(results, i, raw, expected):
    assert results[("postcode", i)][0] == expected


@pytest.mark.parametrize("i,raw,expected", [(i, r, e) for i, (r, e) in enumerate(TIMESTAMPS)])
def test_timestamps_become_utc(results, i, raw, expected):
    assert results[("ts", i)][1] == expected
