"""Write dbt_project/seeds/countries.csv and country_aliases.csv from packages' bundled data.

Nothing here is typed from memory: every country, code and name comes from a package.

- countries.csv: the 249 ISO 3166-1 countries of `pycountry` (alpha-2, alpha-3, English short
  name), each with its international calling code (`phonenumbers`; empty for a territory without
  one, such as Antarctica), its current currency (`babel`'s CLDR territory currencies; empty when
  CLDR lists none) and its UN M49 sub-region (`country_converter`'s bundled table).
- country_aliases.csv: every spelling the staging models accept, lower case: the alpha-2 and
  alpha-3 codes, pycountry's name, official name and common name, country_converter's short and
  official names, each also folded to ASCII (Cote d'Ivoire for Côte d'Ivoire), and the few
  EXTRA_ALIASES below (spellings real exports use that no standard lists, each naming a code the
  ISO list holds). A spelling that would name two countries stops the script.

The seeds are committed; rerun this after upgrading the packages:

    python -m venv /tmp/seedgen && /tmp/seedgen/bin/pip install \
        pycountry==26.2.16 phonenumbers==9.0.43 babel==2.18.0 country-converter==1.3.2
    /tmp/seedgen/bin/python scripts/country_seeds.py
"""

from __future__ import annotations

import csv
import sys
import unicodedata
from pathlib import Path

import country_converter
import phonenumbers
import pycountry
from babel.numbers import get_territory_currencies

SEEDS = Path(__file__).resolve().parent.parent / "dbt_project" / "seeds"

# Spellings found in real exports that are neither ISO codes nor a package's country name. Each
# names one ISO 3166-1 alpha-2 code; "Channel Islands", "European Community" and "Unspecified" (UCI
# Online Retail) are deliberately absent: they name no single country and stay unknown.
EXTRA_ALIASES = {
    "uk": "GB",
    "great britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "eire": "IE",
    "rsa": "ZA",
}


def _folded(text: str) -> str:
    """The text without accents (NFKD, combining marks dropped)."""
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def _converter_names() -> tuple[dict[str, list[str]], dict[str, str]]:
    """country_converter's short and official names, and UN M49 sub-region, by alpha-3 code (its
    bundled TSV, read as text: pandas would read Namibia's code NA as missing; its ISO2 column is
    a regular expression, ISO3 a plain code)."""
    path = Path(country_converter.__file__).parent / "country_data.tsv"
    names: dict[str, list[str]] = {}
    regions: dict[str, str] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            names.setdefault(row["ISO3"], []).extend([row["name_short"], row["name_official"]])
            regions[row["ISO3"]] = row["UNregion"]
    return names, regions


def build() -> tuple[list[dict], list[tuple[str, str]]]:
    converter_names, regions = _converter_names()
    countries, aliases = [], {}

    def add(alias: str, code: str) -> None:
        for spelling in {alias.strip().lower(), _folded(alias).strip().lower()}:
            if not spelling:
                continue
            if aliases.get(spelling, code) != code:
                raise SystemExit(f"alias {spelling!r} would name both {aliases[spelling]} and {code}")
            aliases[spelling] = code

    for c in sorted(pycountry.countries, key=lambda c: c.alpha_2):
        calling = phonenumbers.country_code_for_region(c.alpha_2)
        currencies = get_territory_currencies(c.alpha_2)
        countries.append(
            {
                "country_code": c.alpha_2,
                "alpha3": c.alpha_3,
                "country_name": c.name,
                "calling_code": str(calling) if calling else "",
                "currency": currencies[0] if currencies else "",
                "region": regions.get(c.alpha_3, ""),
            }
        )
        for name in (c.alpha_2, c.alpha_3, c.name, getattr(c, "official_name", ""), getattr(c, "common_name", "")):
            add(name, c.alpha_2)
        for name in converter_names.get(c.alpha_3, []):
            add(name, c.alpha_2)
    codes = {c["country_code"] for c in countries}
    for alias, code in EXTRA_ALIASES.items():
        if code not in codes:
            raise SystemExit(f"extra alias {alias!r} names {code}, which is not an ISO 3166-1 code")
        add(alias, code)
    return countries, sorted(aliases.items(), key=lambda kv: (kv[1], kv[0]))


def main() -> int:
    countries, aliases = build()
    with open(SEEDS / "countries.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(countries[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(countries)
    with open(SEEDS / "country_aliases.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["alias", "country_code"])
        writer.writerows(aliases)
    print(f"{len(countries)} countries, {len(aliases)} aliases written to {SEEDS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
