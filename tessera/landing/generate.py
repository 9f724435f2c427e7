"""Deterministic demo data: landing files for every source, plus a ground-truth file.

Behaviour: every person has a latent preference over product categories, an activity level and
one to three browser cookies. Sessions follow a weekly seasonality; inside a session the person
views products of the categories they like, adds some to the cart, and checks out or abandons the
cart. Logged-in sessions carry the CRM id from the login on; earlier anonymous events of the same
cookie only carry the cookie. Purchases become web/app orders. People also shop in stores (POS
receipts identified by loyalty card, email, phone or nothing) and receive weekly email campaigns.

Mess: about one person in ten has two to four CRM profiles (`duplicate_rate` extra profiles per
person), the extra ones with case, format and typo variants of the same identity, a quarter of
them without any email, phone or card, and the slips of someone registering again: birth date
with day and month swapped or one digit changed, one typo in the email's local part or the same
address at the domain's alias, one phone or loyalty card digit wrong, a nickname for the first
name (rates in DUPLICATE_SLIPS). Besides: missing values; country names in several spellings;
phones in national and international formats; timestamps with different zone offsets and some
without a zone; a small share of malformed rows (bad dates, bad emails, negative quantities,
unknown products). A slip never turns an email or card into another person's, so the ground
truth stays exact.

Everything is vectorised with numpy and derived from one seeded generator, so a seed gives
byte-identical files. The ground truth (which person each record belongs to) is written outside
the landing folder; the pipeline never reads it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from tessera.landing.frames import write_landing_file

FIRST_NAMES = np.array(
    [
        "Olivia",
        "Amelia",
        "Isla",
        "Ava",
        "Mia",
        "Ivy",
        "Lily",
        "Isabella",
        "Rosie",
        "Sophia",
        "Grace",
        "Freya",
        "Emily",
        "Ella",
        "Poppy",
        "Noah",
        "Oliver",
        "George",
        "Arthur",
        "Leo",
        "Muhammad",
        "Harry",
        "Oscar",
        "Archie",
        "Henry",
        "Theodore",
        "Jack",
        "Charlie",
        "Thomas",
        "Jacob",
        "Alfie",
        "William",
        "James",
        "Joshua",
        "Lucas",
        "Hannah",
        "Chloe",
        "Sarah",
        "Daniel",
        "Samuel",
        "Anna",
        "Lukas",
        "Marie",
        "Louis",
        "Camille",
        "Sean",
        "Aoife",
    ]
)
LAST_NAMES = np.array(
    [
        "Smith",
        "Jones",
        "Taylor",
        "Brown",
        "Williams",
        "Wilson",
        "Johnson",
        "Davies",
        "Robinson",
        "Wright",
        "Thompson",
        "Evans",
        "Walker",
        "White",
        "Roberts",
        "Green",
        "Hall",
        "Wood",
        "Jackson",
        "Clarke",
        "Patel",
        "Khan",
        "Lewis",
        "James",
        "Phillips",
        "Mason",
        "Mitchell",
        "Rose",
        "Davis",
        "Rodriguez",
        "Cox",
        "Alexander",
        "Morgan",
        "Moore",
        "Mills",
        "King",
        "Lee",
        "Baker",
        "Harris",
        "Muller",
        "Schmidt",
        "Schneider",
        "Martin",
        "Bernard",
        "Dubois",
        "Murphy",
        "Kelly",
    ]
)
STREETS = np.array(
    [
        "High Street",
        "Station Road",
        "Church Lane",
        "Victoria Road",
        "Green Lane",
        "Manor Road",
        "Park Avenue",
        "Kings Road",
        "Queens Road",
        "Mill Lane",
        "New Street",
        "School Lane",
    ]
)
# country code, share, calling code, currency, utc offset (hours), cities with postcode prefixes
COUNTRIES = [
    ("GB", 0.70, "44", "GBP", 0, [("London", "SW1A"), ("Manchester", "M1"), ("Leeds", "LS1"), ("Bristol", "BS1")]),
    ("IE", 0.08, "353", "EUR", 0, [("Dublin", "D02"), ("Cork", "T12")]),
    ("DE", 0.08, "49", "EUR", 1, [("Berlin", "10115"), ("Hamburg", "20095")]),
    ("FR", 0.08, "33", "EUR", 1, [("Paris", "75001"), ("Lyon", "69001")]),
    ("US", 0.06, "1", "USD", -5, [("New York", "10001"), ("Boston", "02108")]),
]
COUNTRY_SPELLINGS = {
    "GB": ["GB", "GB", "GB", "GBR", "United Kingdom", "uk"],
    "IE": ["IE", "IE", "IRL", "Ireland"],
    "DE": ["DE", "DE", "DEU", "Germany"],
    "FR": ["FR", "FR", "FRA", "France"],
    "US": ["US", "US", "USA", "United States"],
}
FX_TO_GBP = {"GBP": 1.0, "EUR": 0.85, "USD": 0.78}
CATEGORIES = np.array(
    ["apparel", "shoes", "home", "kitchen", "beauty", "toys", "sports", "books", "garden", "electronics"]
)
CATEGORY_PRICE = np.array([35, 70, 40, 30, 20, 25, 45, 12, 28, 120], dtype=float)
BRANDS_PER_CATEGORY = 4
DEVICES = np.array(["desktop", "mobile", "tablet"])
REFERRERS = np.array(["direct", "organic_search", "paid_search", "email", "social", "affiliate"])
DOMAINS = np.array(["example.com", "mail.example.org", "inbox.example.net", "post.example.co.uk"])
# another domain that delivers to the same mailbox, as googlemail.com does for gmail.com
DOMAIN_ALIASES = {
    "example.com": "mail.example.com",
    "mail.example.org": "example.org",
    "inbox.example.net": "example.net",
    "post.example.co.uk": "post.example.com",
}
# the short form a person may give when registering again (first names without one keep theirs)
NICKNAMES = {
    "Olivia": "Liv",
    "Amelia": "Millie",
    "Isabella": "Bella",
    "Sophia": "Sophie",
    "Rosie": "Rose",
    "Muhammad": "Mohammed",
    "Oliver": "Ollie",
    "Henry": "Harry",
    "Theodore": "Theo",
    "Thomas": "Tom",
    "Jacob": "Jake",
    "William": "Will",
    "James": "Jim",
    "Joshua": "Josh",
    "Lucas": "Luke",
    "Daniel": "Dan",
    "Samuel": "Sam",
    "Lukas": "Luke",
}
# Of the people with more than one CRM profile, the shares with 2, 3 and 4 profiles.
PROFILES_PER_DUPLICATED_PERSON = np.array([0.80, 0.15, 0.05])
# Slips made when a person registers again, per extra profile; each field's rate is a share of
# the extra profiles that carry that field. A few per cent per field, as in hand-keyed registers:
# most extra profiles carry no slip or one, some two, and the base profile is always clean.
# - birth date, day and month swapped: 20 % of the dates where the swap gives another valid date
#   (day 12 or less and not equal to the month, about 37 % of dates), so about 7 % overall; a form
#   rejects the swap of any other date, so such a slip is never kept
# - birth date with one digit of the year's last two, the month or the day changed, still a valid
#   date from 1920 to 2010: 8 % (exclusive of the swap)
# - email local part with one slip (a letter replaced, dropped, doubled or swapped with the next):
#   8 %; the same local part at the domain's alias: 6 % (exclusive of the slip)
# - phone with one digit wrong: 5 %
# - loyalty card with one digit wrong: 5 %
# - first name given in its short form, where it has one: 10 %
# Besides these, every profile misses its birth date 10 % of the time (see _crm_profiles).
DUPLICATE_SLIPS = {
    "birth_date_swapped": 0.20,
    "birth_date_digit": 0.08,
    "email_typo": 0.08,
    "email_domain": 0.06,
    "phone_digit": 0.05,
    "card_digit": 0.05,
    "nickname": 0.10,
}
# Monday..Sunday: weekends are busier.
WEEKDAY_WEIGHT = np.array([0.9, 0.85, 0.9, 0.95, 1.1, 1.35, 1.3])


@dataclass(frozen=True)
class GenerateConfig:
    customers: int = 2000
    days: int = 120
    seed: int = 42
    end_date: date = date(2026, 10, 31)
    products: int | None = None
    duplicate_rate: float = 0.12
    malformed_rate: float = 0.005
    # A large data set is generated in shards of `customers` people each (bench/scale.py), so memory
    # stays that of one shard. Shard k > 0 draws from its own seed, tags every id with "k-" and
    # suffixes its files with "_k"; all shards share shard 0's product catalogue.
    shard: int = 0
    # multiplies everyone's web sessions per day (1.0: the demo); bench/scale.py uses 0.4 for about
    # 30 clickstream events per customer over 120 days
    session_scale: float = 1.0

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be {rule}, got {value!r}"
            for name, value, ok, rule in (
                ("customers", self.customers, self.customers >= 1, "at least 1"),
                ("days", self.days, self.days >= 1, "at least 1"),
                ("products", self.products, self.products is None or self.products >= 1, "at least 1"),
                ("shard", self.shard, self.shard >= 0, "0 or more"),
                ("session_scale", self.session_scale, self.session_scale > 0, "above 0"),
            )
            if not ok
        ]
        if problems:
            raise ValueError("invalid generator settings: " + "; ".join(problems))

    @property
    def tag(self) -> str:
        return f"{self.shard}-" if self.shard else ""

    @property
    def n_products(self) -> int:
        return self.products or int(np.clip(self.customers // 8, 60, 50_000))

    @property
    def start(self) -> datetime:
        start_day = self.end_date - timedelta(days=self.days - 1)
        return datetime(start_day.year, start_day.month, start_day.day)  # naive, UTC


@dataclass
class GenerateResult:
    landing_dir: Path
    truth_dir: Path
    rows: dict[str, int]


# ----------------------------------------------------------------------------------------------
# small vectorised helpers


def _pick(rng: np.random.Generator, values: np.ndarray, n: int, p=None) -> np.ndarray:
    return values[rng.choice(len(values), size=n, p=p)]


def _mask(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    return rng.random(n) < rate


def _codes(prefix: str, numbers, width: int) -> pl.Series:
    """`prefix` + each number zero-padded to `width` digits (f"{prefix}{k:0{width}d}")."""
    digits = pl.Series(np.asarray(numbers, dtype=np.int64)).cast(pl.String).str.zfill(width)
    return (prefix + digits).rename("")


def _numbered(prefix: str, n: int, width: int) -> pl.Series:
    """`prefix` + 1..n zero-padded: the row ids of a generated file."""
    return _codes(prefix, np.arange(1, n + 1), width)


def _at(start: datetime, days=0, seconds=0) -> np.ndarray:
    """UTC timestamps (microseconds) `days` and `seconds` after `start`."""
    offset = np.asarray(days, dtype=np.int64) * 86_400 + np.asarray(seconds, dtype=np.int64)
    return np.datetime64(start, "us") + offset.astype("timedelta64[s]")


def _typo(rng: np.random.Generator, names: pl.Series) -> pl.Series:
    """Swap two adjacent characters in the middle of each name (names under 4 characters stay)."""
    pos = pl.lit(pl.Series(rng.integers(1, 1000, size=len(names))))
    name = pl.lit(names)
    length = name.str.len_chars().cast(pl.Int64)
    i = 1 + pos % pl.max_horizontal(length - 2, 1)
    swapped = name.str.slice(0, i) + name.str.slice(i + 1, 1) + name.str.slice(i, 1) + name.str.slice(i + 2)
    return pl.select(pl.when(length < 4).then(name).otherwise(swapped)).to_series().rename(names.name)


def _slip(rng: np.random.Generator, values: pl.Series, stop: pl.Series) -> pl.Series:
    """One keyboard slip in each lower-case value between its second character and `stop`
    (exclusive): a character replaced by a letter, dropped, doubled, or swapped with the next one.
    What lies from `stop` on is never touched."""
    n = len(values)
    kind = _column(rng.integers(0, 4, size=n))
    value = pl.lit(values)
    stop = pl.lit(stop).cast(pl.Int64)
    # the edited position: 1 .. stop - 2, so a swap with the next character stays before `stop`
    i = 1 + _column(rng.integers(0, 1_000_000, size=n)) % pl.max_horizontal(stop - 2, 1)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    first = rng.integers(0, 26, size=n)
    letter, other = _column(letters[first]), _column(letters[(first + rng.integers(1, 26, size=n)) % 26])
    here = value.str.slice(i, 1)
    head, tail = value.str.slice(0, i), value.str.slice(i + 1)
    return pl.select(
        pl.when(kind == 0)
        .then(head + pl.when(letter == here).then(other).otherwise(letter) + tail)
        .when(kind == 1)
        .then(head + tail)
        .when(kind == 2)
        .then(head + here + here + tail)
        .otherwise(head + value.str.slice(i + 1, 1) + here + value.str.slice(i + 2))
    ).to_series()


def _digit_slip(rng: np.random.Generator, values: pl.Series, first: int, steps=range(1, 10)) -> pl.Series:
    """Each string with one digit from position `first` on changed by a step drawn from `steps`
    (modulo 10); characters that are not digits are never picked, and a value without a digit
    there stays as it is."""
    n = len(values)
    width = max(int(values.str.len_bytes().max() or 0), 1)
    chars = values.fill_null("").to_numpy().astype(f"S{width}").view("S1").reshape(n, width).copy()
    codes = chars.view(np.uint8).astype(np.int64)
    is_digit = (codes >= 48) & (codes <= 57)
    is_digit[:, :first] = False
    # a random digit position per row: the argmax of random keys over the digit positions
    keys = np.where(is_digit, rng.random(is_digit.shape), -1.0)
    at = keys.argmax(axis=1)
    rows = np.flatnonzero(is_digit[np.arange(n), at])
    step = np.asarray(list(steps))[rng.integers(0, len(steps), size=n)]
    codes[rows, at[rows]] = 48 + (codes[rows, at[rows]] - 48 + step[rows]) % 10
    changed = pl.Series(values.name, codes.astype(np.uint8).view(f"S{width}").ravel().astype(str), dtype=pl.String)
    return pl.select(pl.when(pl.lit(values).is_not_null()).then(pl.lit(changed))).to_series().rename(values.name)


def _case_variant(rng: np.random.Generator, values: pl.Series) -> pl.Series:
    choice = pl.Series(rng.integers(0, 4, size=len(values)))
    value = pl.lit(values)
    return pl.select(
        pl.when(choice == 0)
        .then(value.str.to_uppercase())
        .when(choice == 1)
        .then(value.str.to_lowercase())
        .when(choice == 2)
        .then(" " + value + " ")
        .otherwise(value)
    ).to_series()


def _phone_variant(rng: np.random.Generator, calling: pl.Series, national: pl.Series) -> pl.Series:
    """Render a phone in one of several common formats (all the same E.164 number)."""
    fmt = pl.Series(rng.integers(0, 5, size=len(national)))
    cc, n = pl.lit(calling), pl.lit(national)
    us = cc == "1"
    head, tail = n.str.slice(0, 4), n.str.slice(4)
    spaced = head + " " + tail
    trunk = pl.when(us).then(pl.lit("1")).otherwise(pl.lit("0"))  # US numbers keep their trunk digit rule simple
    return pl.select(
        pl.when(fmt == 0)
        .then("+" + cc + n)
        .when(fmt == 1)
        .then("+" + cc + " " + spaced)
        .when(fmt == 2)
        .then("00" + cc + " " + head + "-" + tail)
        .when(fmt == 3)
        .then(pl.when(us).then("+1 (" + n.str.slice(0, 3) + ") " + n.str.slice(3)).otherwise(trunk + spaced))
        .otherwise(pl.when(us).then("+1" + n).otherwise("(" + trunk + head + ") " + tail))
    ).to_series()


def _iso(ts, offset_hours: np.ndarray | int = 0, zone: bool | np.ndarray = True) -> pl.Series:
    """Format UTC timestamps as ISO 8601 in a local offset; where zone is False, drop the zone."""
    ts = pl.Series(ts)
    offset = pl.Series(np.broadcast_to(np.asarray(offset_hours, dtype=np.int64), (len(ts),)))
    zone = pl.Series(np.broadcast_to(np.asarray(zone), (len(ts),)))
    base = (pl.lit(ts) + pl.duration(hours=pl.lit(offset))).dt.strftime("%Y-%m-%dT%H:%M:%S")
    sign = pl.when(pl.lit(offset) < 0).then(pl.lit("-")).otherwise(pl.lit("+"))
    suffix = sign + pl.lit(offset).abs().cast(pl.String).str.zfill(2) + ":00"
    return pl.select(pl.when(zone).then(base + suffix).otherwise(base)).to_series()


def _gather(frame: pl.DataFrame, rows: np.ndarray) -> pl.DataFrame:
    return frame[pl.Series(rows, dtype=pl.Int64)]


def _column(values: np.ndarray) -> pl.Expr:
    """A numpy array drawn for a frame's rows, as a column expression."""
    return pl.lit(pl.Series(values))


# ----------------------------------------------------------------------------------------------
# the generator


def generate(config: GenerateConfig, landing_dir: Path, truth_dir: Path) -> GenerateResult:
    rng = np.random.default_rng(config.seed if config.shard == 0 else [config.seed, config.shard])
    landing_dir = Path(landing_dir)
    truth_dir = Path(truth_dir)
    sfx = f"_{config.shard}" if config.shard else ""
    for folder in (landing_dir, truth_dir):
        if folder.exists() and config.shard == 0:
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)

    people = _people(rng, config)
    if config.shard == 0:
        products = _products(rng, config)
    else:  # shard 0's catalogue: replay its draws up to the products
        first = np.random.default_rng(config.seed)
        _people(first, replace(config, shard=0))
        products = _products(first, config)
    customers, customer_truth = _crm_profiles(rng, config, people)
    people = _with_login_ids(people, customer_truth)
    sessions, events, cookie_truth = _clickstream(rng, config, people, products)
    orders, order_items = _web_orders(rng, config, people, products, sessions, events)
    pos = _pos(rng, config, people, products)
    email_events = _email(rng, config, people)
    privacy = _privacy(rng, config, people)

    customers, orders, order_items, events = _malform(rng, config, customers, orders, order_items, events)

    rows = {}
    rows["customers"] = write_landing_file(customers, landing_dir / "customers" / f"customers{sfx}.csv")
    if config.shard == 0:
        rows["products"] = write_landing_file(
            products.drop("cat_idx", "rank_in_cat"), landing_dir / "products" / "products.parquet"
        )
    rows["orders"] = write_landing_file(orders.drop("_person_id"), landing_dir / "orders" / f"orders{sfx}.csv")
    rows["order_items"] = write_landing_file(order_items, landing_dir / "order_items" / f"order_items{sfx}.parquet")
    rows["pos_transactions"] = write_landing_file(
        pos.drop("person_id"), landing_dir / "pos_transactions" / f"pos_transactions{sfx}.csv"
    )
    rows["email_events"] = write_landing_file(
        email_events.drop("person_id"), landing_dir / "email_events" / f"email_events{sfx}.csv"
    )
    rows["privacy"] = write_landing_file(privacy, landing_dir / "privacy" / f"privacy{sfx}.jsonl")
    # Clickstream arrives as one JSON Lines file per day, as a tag manager export would.
    days = events.select(pl.col("ts").dt.strftime("%Y-%m-%d").alias("_day"), pl.exclude("person_id", "ts"))
    rows["events"] = 0
    for (d,), part in sorted(days.partition_by("_day", maintain_order=True, include_key=False, as_dict=True).items()):
        rows["events"] += write_landing_file(part, landing_dir / "events" / f"events_{d}{sfx}.jsonl")

    truth = pl.concat(
        [
            customer_truth,
            _truth("pos_transactions", pos["transaction_line_id"], pos["person_id"]),
            _truth("orders", orders["order_id"], orders["_person_id"]),
            cookie_truth,
            _truth("email_events", email_events["email_event_id"], email_events["person_id"]),
        ]
    )
    write_landing_file(truth.with_columns(_person_code(pl.col("person_id"))), truth_dir / f"record_to_person{sfx}.csv")
    write_landing_file(
        people.select(_person_code(pl.col("person_id")), "pref_top_category", "activity"),
        truth_dir / f"people{sfx}.csv",
    )
    (truth_dir / f"manifest{sfx}.json").write_text(
        json.dumps({"config": {k: str(v) for k, v in config.__dict__.items()}, "rows": rows}, indent=2)
    )
    return GenerateResult(landing_dir=landing_dir, truth_dir=truth_dir, rows=rows)


def _truth(source: str, record_id: pl.Series, person_id: pl.Series) -> pl.DataFrame:
    return pl.DataFrame({"source": source, "record_id": record_id, "person_id": person_id})


def _person_code(person_id: pl.Expr) -> pl.Expr:
    return ("P" + person_id.cast(pl.String).str.zfill(7)).alias("person_id")


def _people(rng: np.random.Generator, c: GenerateConfig) -> pl.DataFrame:
    n = c.customers
    shares = np.array([x[1] for x in COUNTRIES])
    country_idx = rng.choice(len(COUNTRIES), size=n, p=shares / shares.sum())
    city_idx = rng.integers(0, 4, size=n)
    first = _pick(rng, FIRST_NAMES, n)
    last = _pick(rng, LAST_NAMES, n)
    pid = np.arange(1, n + 1) + c.shard * c.customers
    email_local = np.char.lower(first) + "." + np.char.lower(last) + pid.astype(str)
    national = rng.integers(7_000_000_000, 7_999_999_999, size=n).astype(str)
    # latent taste: a concentrated Dirichlet, so each person has one or two favourite categories
    prefs = rng.dirichlet(np.full(len(CATEGORIES), 0.25), size=n)
    birth = np.datetime64("1950-01-01") + rng.integers(0, 365 * 55, size=n).astype("timedelta64[D]")
    signup = _at(c.start, -rng.integers(0, 900, size=n), -rng.integers(0, 86400, size=n))
    people = pl.DataFrame(
        {
            "person_id": pid,
            "first_name": first,
            "last_name": last,
            "email": np.char.add(email_local + "@", _pick(rng, DOMAINS, n)),
            "national": national,
            "calling": [COUNTRIES[i][2] for i in country_idx],
            "country": [COUNTRIES[i][0] for i in country_idx],
            "currency": [COUNTRIES[i][3] for i in country_idx],
            "utc_offset": [COUNTRIES[i][4] for i in country_idx],
            "city": [COUNTRIES[i][5][j % len(COUNTRIES[i][5])][0] for i, j in zip(country_idx, city_idx, strict=False)],
            "postcode": [
                COUNTRIES[i][5][j % len(COUNTRIES[i][5])][1] + " " + str(k)
                for i, j, k in zip(country_idx, city_idx, rng.integers(1, 9, size=n), strict=False)
            ],
            "address": np.char.add(rng.integers(1, 200, size=n).astype(str), " ") + _pick(rng, STREETS, n),
            "birth_date": np.datetime_as_string(birth, unit="D"),
            "gender": _pick(rng, np.array(["F", "M", "X"]), n, p=[0.52, 0.45, 0.03]),
            "has_card": _mask(rng, n, 0.55),
            "activity": rng.lognormal(mean=-2.6, sigma=0.8, size=n),  # sessions per day
            "n_cookies": rng.integers(1, 4, size=n),
            "signup": signup,
            "email_optin": _mask(rng, n, 0.8),
        },
        schema_overrides={"utc_offset": pl.Int64},
    )
    return people.with_columns(
        loyalty_card=pl.when("has_card").then(_codes("LC", 10_000_000 + pid * 7, 0)),
        prefs=pl.Series(prefs, dtype=pl.Array(pl.Float64, len(CATEGORIES))),
        pref_top_category=pl.Series(CATEGORIES[prefs.argmax(axis=1)], dtype=pl.String),
    )


def _products(rng: np.random.Generator, c: GenerateConfig) -> pl.DataFrame:
    n = c.n_products
    cat = np.arange(n) % len(CATEGORIES)
    rng.shuffle(cat)
    brand = rng.integers(0, BRANDS_PER_CATEGORY, size=n)
    price = np.round(CATEGORY_PRICE[cat] * rng.lognormal(0, 0.45, size=n), 2)
    df = pl.DataFrame(
        {
            "product_id": _numbered("SKU", n, 6),
            "name": [f"{CATEGORIES[k].title()} item {i}" for i, k in enumerate(cat, start=1)],
            "category": CATEGORIES[cat],
            "brand": [f"{CATEGORIES[k][:3].upper()}-brand-{b + 1}" for k, b in zip(cat, brand, strict=False)],
            "price": price.astype(str),
            "currency": "GBP",
            "is_active": np.where(_mask(rng, n, 0.05), "false", "true"),
            "created_at": pl.Series(_at(c.start, -rng.integers(30, 720, size=n))).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "cat_idx": cat,
        }
    )
    return df.with_columns(rank_in_cat=pl.int_range(pl.len()).over("cat_idx"))


def _crm_profiles(rng: np.random.Generator, c: GenerateConfig, people: pl.DataFrame):
    n = people.height
    phone = _phone_variant(rng, people["calling"], people["national"])
    spelling = rng.integers(0, 12, size=n)
    base = people.select(
        "person_id",
        "first_name",
        "last_name",
        "email",
        phone.alias("phone"),
        "birth_date",
        "gender",
        "address",
        "city",
        "postcode",
        pl.Series(
            "country",
            [
                COUNTRY_SPELLINGS[x][k % len(COUNTRY_SPELLINGS[x])]
                for x, k in zip(people["country"], spelling, strict=False)
            ],
        ),
        "loyalty_card",
        pl.col("signup").alias("signup_ts"),
        "utc_offset",
    )
    # Some people registered again, in store or in the app: one to three extra profiles each.
    # `duplicate_rate` is the expected number of extra profiles per person, so the share of people
    # with any is that rate over the mean number of extra profiles of a duplicated person.
    per_person = PROFILES_PER_DUPLICATED_PERSON
    mean_extra = float((per_person * np.arange(1, len(per_person) + 1)).sum())
    duplicated = np.flatnonzero(_mask(rng, n, c.duplicate_rate / mean_extra))
    extra = 1 + rng.choice(len(per_person), size=len(duplicated), p=per_person)
    dup_people = np.repeat(duplicated, extra)
    dup = _registered_again(rng, c, _gather(base, dup_people), _gather(people, dup_people))
    profiles = pl.concat([base, dup])
    k = profiles.height
    customer_id = _codes(f"C{c.tag}", rng.permutation(np.arange(1, k + 1)), 7)
    # missing values
    rates = (("phone", 0.08), ("birth_date", 0.1), ("gender", 0.05), ("address", 0.04))
    missing = {col: _mask(rng, k, rate) for col, rate in rates}
    lower_first = _column(_mask(rng, k, 0.1))
    no_zone = _mask(rng, k, 0.1)
    profiles = profiles.with_columns(
        *(pl.when(~_column(mask)).then(col).alias(col) for col, mask in missing.items()),
        customer_id=customer_id,
        first_name=pl.when(lower_first).then(pl.col("first_name").str.to_lowercase()).otherwise("first_name"),
        signup_at=_iso(profiles["signup_ts"], profiles["utc_offset"].to_numpy(), ~no_zone),
    )
    updated = pl.col("signup_ts") + pl.duration(days=_column(rng.integers(0, 400, size=k)))
    profiles = profiles.with_columns(updated_at=_before(updated, c.start)).sort("customer_id")
    profiles = profiles.with_columns(updated_at=_iso(profiles["updated_at"], 0))
    truth = profiles.select(pl.lit("customers").alias("source"), pl.col("customer_id").alias("record_id"), "person_id")
    cols = [
        "customer_id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "birth_date",
        "gender",
        "address",
        "city",
        "postcode",
        "country",
        "loyalty_card",
        "signup_at",
        "updated_at",
    ]
    return profiles.select(cols), truth


def _registered_again(rng: np.random.Generator, c: GenerateConfig, dup: pl.DataFrame, person: pl.DataFrame):
    """Extra profiles of the same people (`dup`: rows of their base profile, `person`: the same
    rows of the people), with the variants and slips of a person registering again.

    Each profile draws a variant: 0, first name misspelt (two letters swapped); 1, last name
    misspelt; 2 and 3, first name in capitals. Variants 0 and 1 keep the email (in another case or
    padded with spaces), 0 to 2 keep the phone (in another format) and half of them the loyalty
    card; variant 3 keeps nothing strong, so only fuzzy matching on name, birth date and postcode
    can find it. On top of that, independent slips at the rates of DUPLICATE_SLIPS: birth date
    with day and month swapped or one digit changed, one slip in the email's local part or the
    same local part at the domain's alias, one phone or loyalty card digit wrong, the first
    name's short form.
    """
    m = dup.height
    slips = {name: _mask(rng, m, rate) for name, rate in DUPLICATE_SLIPS.items() if not name.startswith("birth")}
    # one uniform draw decides between the two birth date slips, so they never both apply
    birth_slip = rng.random(m)
    variant = rng.integers(0, 4, size=m)
    first_name = pl.select(
        pl.when(_column(slips["nickname"]))
        .then(pl.lit(dup["first_name"]).replace(NICKNAMES))
        .otherwise(pl.lit(dup["first_name"]))
    ).to_series()
    first_typo = _typo(rng, first_name)
    last_typo = _typo(rng, dup["last_name"])
    email = _case_variant(rng, _slipped_emails(rng, dup["email"], slips["email_typo"], slips["email_domain"]))
    national = pl.select(
        pl.when(_column(slips["phone_digit"]))
        .then(pl.lit(_digit_slip(rng, person["national"], first=1)))
        .otherwise(pl.lit(person["national"]))
    ).to_series()
    phone = _phone_variant(rng, person["calling"], national)
    # a card number is 10,000,000 + 7 x person id, so another card lies a multiple of 7 away; a
    # digit stepped by 3 or 7 (mod 10) changes by -7 or +7, any other step by no multiple of 7:
    # without those two steps a misread card is never another person's (in any shard)
    card_slip = _digit_slip(rng, dup["loyalty_card"], first=2, steps=(1, 2, 4, 5, 6, 8, 9))
    keeps_card = np.zeros(m, dtype=bool)
    keeps_card[variant != 3] = _mask(rng, int((variant != 3).sum()), 0.5)
    birth_date = _slipped_birth_dates(rng, dup["birth_date"], birth_slip)
    # registered again later, but before the window starts (as profile updates are): a signup
    # after the data's last day would be in the future (the 1m bench's dim_customers gate caught
    # 198 such golden records from duplicates the matcher left apart)
    later = pl.col("signup_ts") + pl.duration(days=_column(rng.integers(1, 300, size=m)))
    v = _column(variant)
    return dup.with_columns(
        first_name=pl.when(v == 0).then(pl.lit(first_typo)).otherwise(pl.lit(first_name).str.to_uppercase()),
        last_name=pl.when(v == 1).then(pl.lit(last_typo)).otherwise("last_name"),
        email=pl.when(v < 2).then(pl.lit(email)),
        phone=pl.when(v != 3).then(pl.lit(phone)),
        loyalty_card=pl.when(_column(keeps_card)).then(
            pl.when(_column(slips["card_digit"])).then(pl.lit(card_slip)).otherwise("loyalty_card")
        ),
        birth_date=pl.lit(birth_date),
        signup_ts=_before(later, c.start),
    )


def _slipped_emails(rng: np.random.Generator, emails: pl.Series, typo: np.ndarray, alias: np.ndarray) -> pl.Series:
    """Emails with one slip in the local part where `typo`, else at the domain's alias where `alias`.

    A demo local part is first.last followed by the person id: the slip stays in the letters
    before the id, so a misspelt address is never another person's."""
    local = emails.str.extract(r"^([^@]+)@", 1)
    domain = emails.str.extract(r"@(.+)$", 1)
    slipped = _slip(rng, local, pl.select(pl.lit(local).str.find(r"\d")).to_series())
    return pl.select(
        pl.when(_column(typo))
        .then(pl.lit(slipped) + "@" + pl.lit(domain))
        .when(_column(alias))
        .then(pl.lit(local) + "@" + pl.lit(domain).replace(DOMAIN_ALIASES))
        .otherwise(pl.lit(emails))
    ).to_series()


def _slipped_birth_dates(rng: np.random.Generator, dates: pl.Series, u: np.ndarray) -> pl.Series:
    """ISO birth dates with day and month swapped or one digit changed, each still a valid date.

    `u` is a uniform draw per date: below DUPLICATE_SLIPS["birth_date_swapped"] the date is
    swapped where that gives another valid date; the next DUPLICATE_SLIPS["birth_date_digit"]
    of the range changes one digit of the year's last two, the month or the day. A digit change
    is tried up to eight times per date for a valid date from 1920 to 2010; the few dates with
    none keep their value."""
    swap_rate, digit_rate = DUPLICATE_SLIPS["birth_date_swapped"], DUPLICATE_SLIPS["birth_date_digit"]
    value = pl.lit(dates)
    year, month, day = value.str.slice(0, 4), value.str.slice(5, 2), value.str.slice(8, 2)
    swappable = (day.cast(pl.Int64) <= 12) & (day != month)
    swapped = pl.select(
        pl.when(_column(u < swap_rate) & swappable).then(year + "-" + day + "-" + month).otherwise(value)
    ).to_series()
    digit = (u >= swap_rate) & (u < swap_rate + digit_rate)
    out = swapped
    pending = pl.Series(digit)
    for _ in range(8):
        candidate = _digit_slip(rng, dates, first=2)
        parsed = candidate.str.to_date("%Y-%m-%d", strict=False)
        valid = parsed.is_between(date(1920, 1, 1), date(2010, 12, 31)).fill_null(False)
        take = pending & valid
        out = pl.select(pl.when(pl.lit(take)).then(pl.lit(candidate)).otherwise(pl.lit(out))).to_series()
        pending = pending & ~valid
    return out.rename(dates.name)


def _before(ts: pl.Expr, start: datetime) -> pl.Expr:
    """`ts` where it lies before `start`, else the day before `start`."""
    return pl.when(ts < start).then(ts).otherwise(pl.lit(start - timedelta(days=1)))


def _with_login_ids(people: pl.DataFrame, customer_truth: pl.DataFrame) -> pl.DataFrame:
    """The login id a person uses on the web is their first profile (lowest CRM id)."""
    first = customer_truth.group_by("person_id").agg(login_id=pl.col("record_id").min())
    return people.join(first, on="person_id", how="left", maintain_order="left")


def _draw_products(rng: np.random.Generator, prefs: np.ndarray, products: pl.DataFrame) -> pl.Series:
    """One product per row of `prefs`: a category from the person's taste, then a product skewed
    to the head of that category (None where the category has no products)."""
    m = len(prefs)
    cat = (prefs.cumsum(axis=1) < rng.random(m)[:, None]).sum(axis=1).clip(0, len(CATEGORIES) - 1)
    cat_idx = products["cat_idx"].to_numpy()
    cat_sizes = np.bincount(cat_idx, minlength=len(CATEGORIES))
    pos_in_cat = np.floor(cat_sizes[cat] * rng.random(m) ** 2).astype(int)
    # products ordered by (category, rank in category): a category's products are one run
    ordered = products.sort("cat_idx", "rank_in_cat")["product_id"]
    first_of_cat = np.cumsum(cat_sizes) - cat_sizes
    found = pl.Series(pos_in_cat < cat_sizes[cat])
    at = pl.Series(np.where(found, first_of_cat[cat] + pos_in_cat, 0))
    return pl.select(pl.when(found).then(ordered.gather(at))).to_series().alias("product_id")


def _clickstream(rng: np.random.Generator, c: GenerateConfig, people: pl.DataFrame, products: pl.DataFrame):
    day_idx = np.arange(c.days)
    weekday = np.array([(c.start + timedelta(days=int(d))).weekday() for d in day_idx])
    day_w = WEEKDAY_WEIGHT[weekday]
    day_p = day_w / day_w.sum()
    n_sess = rng.poisson(people["activity"].to_numpy() * c.days * c.session_scale)
    s_person = np.repeat(np.arange(people.height), n_sess)
    s = len(s_person)
    s_day = rng.choice(c.days, size=s, p=day_p)
    s_start = _at(c.start, s_day, rng.integers(6 * 3600, 23 * 3600, size=s))
    s_cookie_idx = rng.integers(0, 1000, size=s) % people["n_cookies"].to_numpy()[s_person]
    pid = people["person_id"].to_numpy()[s_person]
    sessions = pl.DataFrame(
        {
            "session_id": _numbered(f"S{c.tag}", s, 9),
            "person_idx": s_person,
            "person_id": pid,
            "start": s_start,
            "anonymous_id": _codes("ck-", (pid * 7919 + s_cookie_idx * 104729) % 10**10, 10),
            "device": DEVICES[s_cookie_idx % 3],
            "referrer": _pick(rng, REFERRERS, s, p=[0.35, 0.25, 0.12, 0.13, 0.1, 0.05]),
            "country": people["country"].gather(s_person),
            "utc_offset": people["utc_offset"].gather(s_person),
        },
        schema_overrides={"device": pl.String, "referrer": pl.String},
    )
    # product views: category from the person's taste, product skewed to the category's head
    n_views = 1 + rng.poisson(2.5, size=s)
    v_sess = np.repeat(np.arange(s), n_views)
    v = len(v_sess)
    v_product = _draw_products(rng, people["prefs"].to_numpy()[s_person[v_sess]], products)
    v_cart = _mask(rng, v, 0.22)
    v_removed = v_cart & _mask(rng, v, 0.1)
    sess_cart = np.bincount(v_sess, weights=(v_cart & ~v_removed), minlength=s) > 0
    s_checkout = sess_cart & _mask(rng, s, 0.6)
    s_purchase = s_checkout & _mask(rng, s, 0.9)
    s_search = _mask(rng, s, 0.3)
    # a session logs in at some point (always before checkout); events before that are anonymous
    s_login = s_checkout | _mask(rng, s, 0.35)

    step = np.timedelta64(45, "s")
    view_pos = np.arange(v) - np.repeat(np.cumsum(n_views) - n_views, n_views)
    view_ts = s_start[v_sess] + (2 * view_pos + 1) * step
    ss = np.flatnonzero(s_search)
    end = s_start + (2 * n_views + 2) * step
    sc = np.flatnonzero(s_checkout)
    sp = np.flatnonzero(s_purchase)
    events = pl.concat(
        [
            _events(np.arange(s), "page_view", s_start, None, 0),
            _events(v_sess, "product_view", view_ts, v_product, 1),
            _events(
                v_sess[v_cart], "add_to_cart", view_ts[v_cart] + np.timedelta64(20, "s"), v_product.filter(v_cart), 2
            ),
            _events(
                v_sess[v_removed],
                "remove_from_cart",
                view_ts[v_removed] + np.timedelta64(40, "s"),
                v_product.filter(v_removed),
                3,
            ),
            _events(ss, "search", s_start[ss] + np.timedelta64(10, "s"), None, 0),
            _events(sc, "checkout", end[sc], None, 4),
            _events(sp, "purchase", end[sp] + np.timedelta64(60, "s"), None, 5),
        ]
    ).sort(["sess", "ts", "order"], maintain_order=True)
    ev_sess = events["sess"].to_numpy()
    n_ev = np.bincount(ev_sess, minlength=s)
    ev_pos = np.arange(events.height) - np.repeat(np.cumsum(n_ev) - n_ev, n_ev)
    login_at = np.where(s_checkout, 0, rng.integers(0, 1000, size=s) % np.maximum(n_ev, 1))
    login_at = np.where(s_checkout, np.minimum(rng.integers(0, 1000, size=s) % np.maximum(n_ev, 1), n_ev - 2), login_at)
    logged = s_login[ev_sess] & (ev_pos >= login_at[ev_sess])
    sess = _gather(sessions, ev_sess)
    login_ids = _gather(people, sess["person_idx"].to_numpy())["login_id"]
    out = pl.DataFrame(
        {
            "event_id": _numbered(f"E{c.tag}", events.height, 10),
            "event_type": events["event_type"],
            "event_ts": _iso(events["ts"], sess["utc_offset"].to_numpy()),
            "anonymous_id": sess["anonymous_id"],
            "customer_id": pl.select(pl.when(pl.Series(logged)).then(login_ids)).to_series(),
            "session_id": sess["session_id"],
            "product_id": events["product_id"],
            "device": sess["device"],
            "referrer": sess["referrer"],
            "country": sess["country"],
            "person_id": sess["person_id"],
            "ts": events["ts"],
        }
    )
    cookie_truth = sessions.select(
        pl.lit("events_cookie").alias("source"), pl.col("anonymous_id").alias("record_id"), "person_id"
    ).unique("record_id", keep="first", maintain_order=True)
    return sessions, out, cookie_truth


def _events(sess: np.ndarray, kind: str, ts: np.ndarray, product: pl.Series | None, order: int) -> pl.DataFrame:
    return pl.DataFrame(
        {"sess": sess, "event_type": kind, "ts": ts, "product_id": product, "order": order},
        schema={
            "sess": pl.Int64,
            "event_type": pl.String,
            "ts": pl.Datetime("us"),
            "product_id": pl.String,
            "order": pl.Int64,
        },
    )


def _web_orders(rng, c: GenerateConfig, people, products, sessions, events):
    purchases = events.filter(pl.col("event_type") == "purchase")
    sess = purchases.select("session_id").join(sessions, on="session_id", how="left", maintain_order="left")
    n = sess.height
    buyers = _gather(people, sess["person_idx"].to_numpy())
    r = rng.random(n)
    orders = pl.DataFrame(
        {
            "order_id": _numbered(f"W{c.tag}", n, 8),
            "customer_id": buyers["login_id"],
            "channel": np.where((sess["device"].to_numpy() != "desktop") & (rng.random(n) < 0.6), "app", "web"),
            "status": np.where(r < 0.02, "cancelled", np.where(r < 0.07, "returned", "completed")),
            "currency": buyers["currency"],
            "ordered_at": purchases["event_ts"],
            "_person_id": sess["person_id"],
        },
        schema_overrides={"channel": pl.String, "status": pl.String},
    )
    # items: what was carted and not removed in that session
    kind = pl.col("event_type")
    kept = (
        events.filter(
            pl.col("session_id").is_in(sess["session_id"].implode())
            & kind.is_in(["add_to_cart", "remove_from_cart"])
            & pl.col("product_id").is_not_null()
        )
        .group_by("session_id", "product_id")
        .agg(net=(kind == "add_to_cart").sum().cast(pl.Int64) - (kind == "remove_from_cart").sum().cast(pl.Int64))
        .filter(pl.col("net") > 0)
        .join(orders.select("order_id", "currency", session_id=sess["session_id"]), on="session_id")
        .join(products.select("product_id", pl.col("price").cast(pl.Float64)), on="product_id", how="left")
        .sort("order_id", "product_id")
    )
    m = kept.height
    cur = kept["currency"].replace_strict(FX_TO_GBP, return_dtype=pl.Float64).to_numpy()
    items = pl.DataFrame(
        {
            "order_item_id": _numbered(f"WI{c.tag}", m, 9),
            "order_id": kept["order_id"],
            "product_id": kept["product_id"],
            "quantity": (1 + rng.poisson(0.3, size=m)).astype(str),
            "unit_price": np.round(kept["price"].to_numpy() / cur, 2).astype(str),
        },
        schema_overrides={"quantity": pl.String, "unit_price": pl.String},
    )
    return orders, items


def _pos(rng, c: GenerateConfig, people, products):
    gb = (people["country"] == "GB").to_numpy()
    visits = rng.poisson(people["activity"].to_numpy() * c.days * 0.35 * gb)
    r_person = np.repeat(np.arange(people.height), visits)
    n = len(r_person)
    r_ts = _at(c.start, rng.integers(0, c.days, size=n), rng.integers(9 * 3600, 20 * 3600, size=n))
    ident = rng.random(n)
    has_card = people["has_card"].to_numpy()[r_person]
    how = np.where(
        has_card & (ident < 0.75), "card", np.where(ident < 0.85, "email", np.where(ident < 0.93, "phone", "none"))
    )
    n_lines = 1 + rng.poisson(1.0, size=n)
    l_receipt = np.repeat(np.arange(n), n_lines)
    m = len(l_receipt)
    p_idx = r_person[l_receipt]
    product = _draw_products(rng, people["prefs"].to_numpy()[p_idx], products)
    l_how = pl.Series(how[l_receipt], dtype=pl.String)
    buyers = _gather(people, p_idx)
    email_variant = _case_variant(rng, buyers["email"])
    phone_variant = _phone_variant(rng, buyers["calling"], buyers["national"])
    price = products.select("product_id", pl.col("price").cast(pl.Float64))
    unit_price = product.to_frame().join(price, on="product_id", how="left", maintain_order="left")["price"]
    return pl.DataFrame(
        {
            "transaction_line_id": _numbered(f"PL{c.tag}", m, 9),
            "receipt_id": _codes(f"R{c.tag}", l_receipt + 1, 8),
            "store_id": _codes("ST", (p_idx % 12) + 1, 2),
            "loyalty_card": buyers.select(pl.when(l_how == "card").then("loyalty_card")).to_series(),
            "email": pl.select(pl.when(l_how == "email").then(email_variant)).to_series(),
            "phone": pl.select(pl.when(l_how == "phone").then(phone_variant)).to_series(),
            "product_id": product,
            "quantity": (1 + rng.poisson(0.4, size=m)).astype(str),
            "unit_price": np.round(unit_price.to_numpy(), 2).astype(str),
            "currency": "GBP",
            "transacted_at": _iso(r_ts[l_receipt], 0),
            "person_id": buyers["person_id"],
        },
        schema_overrides={"quantity": pl.String, "unit_price": pl.String},
    )


def _email(rng, c: GenerateConfig, people):
    campaign_days = np.arange(2, c.days, 7)
    optin = np.flatnonzero(people["email_optin"].to_numpy())
    k = len(campaign_days)
    rec_person = np.tile(optin, k)
    rec_campaign = np.repeat(np.arange(k), len(optin))
    n = len(rec_person)
    sent_ts = _at(c.start, campaign_days[rec_campaign], 9 * 3600 + rng.integers(0, 1800, size=n))
    engagement = np.clip(people["activity"].to_numpy()[rec_person] * 4, 0.05, 0.6)
    bounce = _mask(rng, n, 0.02)
    opened = ~bounce & (rng.random(n) < engagement)
    clicked = opened & _mask(rng, n, 0.3)
    unsub = opened & ~clicked & _mask(rng, n, 0.01)
    frames = []
    for kind, mask, delay in (
        ("sent", np.ones(n, bool), 0),
        ("bounce", bounce, 60),
        ("open", opened, 3600),
        ("click", clicked, 3700),
        ("unsubscribe", unsub, 3800),
    ):
        idx = np.flatnonzero(mask)
        ts = sent_ts[idx] + (delay + rng.integers(0, 7200, size=len(idx)) * (delay > 0)).astype("timedelta64[s]")
        frames.append(
            pl.DataFrame(
                {"rec": idx, "event_type": kind, "ts": ts},
                schema={"rec": pl.Int64, "event_type": pl.String, "ts": pl.Datetime("us")},
            )
        )
    ev = pl.concat(frames).sort(["ts", "rec", "event_type"], maintain_order=True)
    rec = ev["rec"].to_numpy()
    p = rec_person[rec]
    recipients = _gather(people, p)
    return pl.DataFrame(
        {
            "email_event_id": _numbered(f"M{c.tag}", ev.height, 10),
            "campaign_id": _codes("CMP", campaign_days[rec_campaign[rec]], 4),
            "email": _case_variant(rng, recipients["email"]),
            "event_type": ev["event_type"],
            "event_ts": _iso(ev["ts"], 0),
            "person_id": recipients["person_id"],
        }
    )


PRIVACY_SCHEMA = {
    "customer_id": pl.String,
    "email": pl.String,
    "request_type": pl.String,
    "channel": pl.String,
    "purpose": pl.String,
    "granted": pl.String,
    "requested_at": pl.String,
}


def _requests(customer_id, email, request_type: str, channel: str, purpose, granted, at) -> pl.DataFrame:
    """Privacy records: consent given or withdrawn (granted 'true' / 'false'), or erasure requests."""
    return pl.DataFrame(
        {
            "customer_id": customer_id,
            "email": email,
            "request_type": request_type,
            "channel": channel,
            "purpose": purpose,
            "granted": granted,
            "requested_at": _iso(at, 0),
        },
        schema=PRIVACY_SCHEMA,
    )


def _withdrawals(customer_ids, channel: str, purpose: str, at) -> pl.DataFrame:
    """Consent-withdrawn privacy records (granted = false) for customer ids at times `at`."""
    return _requests(customer_ids, None, "consent", channel, purpose, "false", at)


def _privacy(rng, c: GenerateConfig, people):
    n = people.height
    optin = people["email_optin"].to_numpy()
    login_ids = people["login_id"]
    rows = _requests(
        login_ids, None, "consent", "email", "marketing", np.where(optin, "true", "false"), people["signup"]
    )
    revoke = np.flatnonzero(_mask(rng, n, 0.03) & optin)
    later = _at(c.start, rng.integers(0, c.days, size=len(revoke)))
    rev = _withdrawals(login_ids.gather(revoke), "email", "marketing", later)
    erase = np.flatnonzero(_mask(rng, n, 0.003))
    at = _at(c.start, rng.integers(0, c.days, size=len(erase)))
    er = _requests(None, people["email"].gather(erase), "erasure", "all", None, None, at)
    # ~2 % withdraw consent to personalisation (opt-out: no record means allowed). Drawn from a
    # generator of its own so adding these rows left every other generated row as it was.
    own = np.random.default_rng([c.seed, 711] + ([c.shard] if c.shard else []))
    opt_out = np.flatnonzero(own.random(n) < 0.02)
    later = _at(c.start, own.integers(0, c.days, size=len(opt_out)))
    po = _withdrawals(login_ids.gather(opt_out), "all", "personalization", later)
    out = pl.concat([rows, rev, er, po])
    return out.select(_numbered(f"Q{c.tag}", out.height, 8).alias("request_id"), pl.all())


def _malform(rng, c: GenerateConfig, customers, orders, order_items, events):
    """A small share of rows that a real feed would deliver broken."""
    rate = c.malformed_rate

    def broken(frame: pl.DataFrame) -> pl.Expr:
        # never more than the 1 % the raw contracts tolerate (`mostly: 0.99`): at a small shop's
        # size a random draw could otherwise break 1 row of 88 and stop the whole demo graph
        mask = _mask(rng, frame.height, rate)
        allowed = int(frame.height * 0.01)
        mask[np.flatnonzero(mask)[allowed:]] = False
        return _column(mask)

    bad = broken(customers)
    customers = customers.with_columns(
        email=pl.when(bad).then(pl.col("email").str.replace_all("@", "@@", literal=True)).otherwise("email")
    )
    orders = orders.with_columns(ordered_at=pl.when(broken(orders)).then(pl.lit("not-a-date")).otherwise("ordered_at"))
    # a zero quantity is an error; a negative one would be a returned line (a business fact)
    bad_quantity = broken(order_items)
    bad_product = broken(order_items)
    order_items = order_items.with_columns(
        quantity=pl.when(bad_quantity).then(pl.lit("0")).otherwise("quantity"),
        product_id=pl.when(bad_product).then(pl.lit("SKU-UNKNOWN")).otherwise("product_id"),
    )
    events = events.with_columns(event_type=pl.when(broken(events)).then(pl.lit("pageview")).otherwise("event_type"))
    return customers, orders, order_items, events
