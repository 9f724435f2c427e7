"""Write dbt_project/seeds/currencies.csv, the ISO 4217 list, from a package's bundled data.

Nothing here is typed from memory: every code, name and number of minor units comes from the
`iso4217` package, which ships ISO's own current-currencies table (list one, as SIX publishes it)
and says when that table was published.

- code: the alphabetic code (BRL);
- name: ISO's English currency name (Brazilian Real);
- minor_units: the decimal places of its minor unit (2 for BRL, 0 for JPY, 3 for BHD), empty where
  ISO says "N.A." (gold, SDR, XXX and the other codes that are not a country's money).

A country with no universal currency (ISO's Antarctica entry) has no code and is left out. This
is the one list of accepted currency codes: the staging models quarantine any other value, and the
raw quality gates read it at validation time (tessera/quality/suites.py). Which of these codes can be
converted, and from which day, is dbt_project/seeds/fx_rates.csv.

The seed is committed; rerun this after upgrading the package:

    python -m venv /tmp/seedgen && /tmp/seedgen/bin/pip install iso4217==1.16.20260101
    /tmp/seedgen/bin/python scripts/currency_seed.py
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import iso4217

SEED = Path(__file__).resolve().parent.parent / "dbt_project" / "seeds" / "currencies.csv"
COLUMNS = ["code", "name", "minor_units"]


def build() -> list[dict]:
    rows = []
    for code, entry in iso4217.raw_table.items():
        if code is None:  # "No universal currency"
            continue
        units = entry["CcyMnrUnts"]
        if units != "N.A." and not (units or "").isdigit():
            raise SystemExit(f"{code}: minor units {units!r} are neither a number nor N.A. in iso4217's table")
        if len(code) != 3 or not code.isalpha() or not code.isupper():
            raise SystemExit(f"{code!r} is not a three-letter upper-case code in iso4217's table")
        rows.append({"code": code, "name": entry["CcyNm"], "minor_units": "" if units == "N.A." else units})
    return sorted(rows, key=lambda r: r["code"])


def main() -> int:
    rows = build()
    with open(SEED, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(
        f"{SEED.name}: {len(rows)} ISO 4217 codes, table published {iso4217.__published__} (iso4217 {iso4217.__version__})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
