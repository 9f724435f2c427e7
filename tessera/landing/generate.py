"""Deterministic demo data: landing files for every source, plus a ground-truth file.

Behaviour: every person has a latent preference over product categories, an activity level and
one to three browser cookies. Sessions follow a weekly seasonality; inside a session the person
views products of the categories they like, adds some to the cart, and checks out or abandons the
cart. Logged-in sessions carry the CRM id from the login on; earlier anonymous events of the same
cookie only carry the cookie. Purchases become web/app orders. People also shop in stores (POS
receipts identified by loyalty card, email, phone or nothing) and receive weekly email campaigns.

Mess: duplicate CRM profiles with case, format and typo variants; missing values; country names in
several spellings; phones in national and international formats; timestamps with different zone
offsets and some without a zone; a small share of malformed rows (bad dates, bad emails,
negative quantities, unknown products).

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
import pandas as pd

FIRST_NAMES = np.array(
    "Olivia Amelia Isla Ava Mia Ivy Lily Isabella Rosie Sophia Grace Freya Emily Ella Poppy "
    "Noah Oliver George Arthur Leo Muhammad Harry Oscar Archie Henry Theodore Jack Charlie "
    "Thomas Jacob Alfie William James Joshua Lucas Hannah Chloe Sarah Daniel Samuel Anna Lukas "
    "Marie Louis Camille Sean Aoife".split()
)
LAST_NAMES = np.array(
    "Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright Thompson Evans "
    "Walker White Roberts Green Hall Wood Jackson Clarke Patel Khan Lewis James Phillips Mason "
    "Mitchell Rose Davis Rodriguez Cox Alexander Morgan Moore Mills King Lee Baker Harris "
    "Muller Schmidt Schneider Martin Bernard Dubois Murphy Kelly".split()
)
STREETS = np.array(
    "High Street|Station Road|Church Lane|Victoria Road|Green Lane|Manor Road|Park Avenue|"
    "Kings Road|Queens Road|Mill Lane|New Street|School Lane".split("|")
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


def _typo(rng: np.random.Generator, names: pd.Series) -> pd.Series:
    """Swap two adjacent characters in the middle of each name."""
    out = []
    pos = rng.integers(1, 1000, size=len(names))
    for name, p in zip(names.tolist(), pos.tolist()):
        if len(name) < 4:
            out.append(name)
            continue
        i = 1 + p % (len(name) - 2)
        out.append(name[:i] + name[i + 1] + name[i] + name[i + 2 :])
    return pd.Series(out, index=names.index)


def _case_variant(rng: np.random.Generator, values: pd.Series) -> pd.Series:
    choice = rng.integers(0, 4, size=len(values))
    return pd.Series(
        np.select(
            [choice == 0, choice == 1, choice == 2],
            [values.str.upper(), values.str.lower(), " " + values + " "],
            default=values,
        ),
        index=values.index,
    )


def _phone_variant(rng: np.random.Generator, calling: pd.Series, national: pd.Series) -> pd.Series:
    """Render a phone in one of several common formats (all the same E.164 number)."""
    fmt = rng.integers(0, 5, size=len(national))
    n = national.astype(str)
    spaced = n.str[:4] + " " + n.str[4:]
    trunk = np.where(calling == "1", "1", "0")  # US numbers keep their trunk digit rule simple
    return pd.Series(
        np.select(
            [fmt == 0, fmt == 1, fmt == 2, fmt == 3],
            [
                "+" + calling + n,
                "+" + calling + " " + spaced,
                "00" + calling + " " + n.str[:4] + "-" + n.str[4:],
                np.where(calling == "1", "+1 (" + n.str[:3] + ") " + n.str[3:], trunk + spaced),
            ],
            default=np.where(calling == "1", "+1" + n, "(" + trunk + n.str[:4] + ") " + n.str[4:]),
        ),
        index=national.index,
    )


def _iso(ts: pd.Series, offset_hours: np.ndarray | int = 0, zone: bool | np.ndarray = True) -> pd.Series:
    """Format UTC timestamps as ISO 8601 in a local offset; where zone is False, drop the zone."""
    offset_hours = np.broadcast_to(np.asarray(offset_hours), (len(ts),))
    local = ts + pd.to_timedelta(offset_hours, unit="h")
    base = local.dt.strftime("%Y-%m-%dT%H:%M:%S")
    sign = np.where(offset_hours < 0, "-", "+")
    hours = pd.Series(np.abs(offset_hours).astype(np.int64), index=ts.index).astype(str).str.zfill(2)
    suffix = pd.Series(sign, index=ts.index).astype(str) + hours + ":00"
    zone = np.broadcast_to(np.asarray(zone), (len(ts),))
    return base.where(~zone, base + suffix)


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
    sessions, events, cookie_truth = _clickstream(rng, config, people, products)
    orders, order_items = _web_orders(rng, config, people, products, sessions, events)
    pos = _pos(rng, config, people, products)
    email_events = _email(rng, config, people)
    privacy = _privacy(rng, config, people)

    _malform(rng, config, customers, orders, order_items, events)

    rows = {}
    rows["customers"] = _write(customers, landing_dir / "customers" / f"customers{sfx}.csv")
    if config.shard == 0:
        rows["products"] = _write(
            products.drop(columns=["cat_idx", "rank_in_cat"]), landing_dir / "products" / "products.parquet"
        )
    rows["orders"] = _write(orders.drop(columns=["_person_id"]), landing_dir / "orders" / f"orders{sfx}.csv")
    rows["order_items"] = _write(order_items, landing_dir / "order_items" / f"order_items{sfx}.parquet")
    rows["pos_transactions"] = _write(
        pos.drop(columns=["person_id"]), landing_dir / "pos_transactions" / f"pos_transactions{sfx}.csv"
    )
    rows["email_events"] = _write(
        email_events.drop(columns=["person_id"]), landing_dir / "email_events" / f"email_events{sfx}.csv"
    )
    rows["privacy"] = _write(privacy, landing_dir / "privacy" / f"privacy{sfx}.jsonl")
    # Clickstream arrives as one JSON Lines file per day, as a tag manager export would.
    events_out = events.drop(columns=["person_id", "ts"])
    day = events["ts"].dt.strftime("%Y-%m-%d")
    rows["events"] = 0
    for d, part in events_out.groupby(day.values, sort=True):
        rows["events"] += _write(part, landing_dir / "events" / f"events_{d}{sfx}.jsonl")

    truth = pd.concat(
        [
            customer_truth,
            pd.DataFrame(
                {"source": "pos_transactions", "record_id": pos["transaction_line_id"], "person_id": pos["person_id"]}
            ),
            pd.DataFrame({"source": "orders", "record_id": orders["order_id"], "person_id": orders["_person_id"]}),
            cookie_truth,
            pd.DataFrame(
                {
                    "source": "email_events",
                    "record_id": email_events["email_event_id"],
                    "person_id": email_events["person_id"],
                }
            ),
        ],
        ignore_index=True,
    )
    truth["person_id"] = truth["person_id"].map(lambda p: f"P{int(p):07d}")
    truth.to_csv(truth_dir / f"record_to_person{sfx}.csv", index=False)
    people_out = people[["person_id", "pref_top_category", "activity"]].copy()
    people_out["person_id"] = people_out["person_id"].map(lambda p: f"P{int(p):07d}")
    people_out.to_csv(truth_dir / f"people{sfx}.csv", index=False)
    (truth_dir / f"manifest{sfx}.json").write_text(
        json.dumps({"config": {k: str(v) for k, v in config.__dict__.items()}, "rows": rows}, indent=2)
    )
    return GenerateResult(landing_dir=landing_dir, truth_dir=truth_dir, rows=rows)


def _write(df: pd.DataFrame, path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    df = df.reset_index(drop=True)
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    return len(df)


def _people(rng: np.random.Generator, c: GenerateConfig) -> pd.DataFrame:
    n = c.customers
    shares = np.array([x[1] for x in COUNTRIES])
    country_idx = rng.choice(len(COUNTRIES), size=n, p=shares / shares.sum())
    city_idx = rng.integers(0, 4, size=n)
    first = _pick(rng, FIRST_NAMES, n)
    last = _pick(rng, LAST_NAMES, n)
    pid = np.arange(1, n + 1) + c.shard * c.customers
    email_local = pd.Series(first).str.lower() + "." + pd.Series(last).str.lower() + pid.astype(str)
    national = pd.Series(rng.integers(7_000_000_000, 7_999_999_999, size=n)).astype(str)
    # latent taste: a concentrated Dirichlet, so each person has one or two favourite categories
    prefs = rng.dirichlet(np.full(len(CATEGORIES), 0.25), size=n)
    birth = pd.to_datetime("1950-01-01") + pd.to_timedelta(rng.integers(0, 365 * 55, size=n), unit="D")
    signup = (
        c.start
        - pd.to_timedelta(rng.integers(0, 900, size=n), unit="D")
        - pd.to_timedelta(rng.integers(0, 86400, size=n), unit="s")
    )
    people = pd.DataFrame(
        {
            "person_id": pid,
            "first_name": first,
            "last_name": last,
            "email": email_local + "@" + _pick(rng, DOMAINS, n),
            "national": national,
            "calling": [COUNTRIES[i][2] for i in country_idx],
            "country": [COUNTRIES[i][0] for i in country_idx],
            "currency": [COUNTRIES[i][3] for i in country_idx],
            "utc_offset": [COUNTRIES[i][4] for i in country_idx],
            "city": [COUNTRIES[i][5][j % len(COUNTRIES[i][5])][0] for i, j in zip(country_idx, city_idx)],
            "postcode": [
                COUNTRIES[i][5][j % len(COUNTRIES[i][5])][1] + " " + str(k)
                for i, j, k in zip(country_idx, city_idx, rng.integers(1, 9, size=n))
            ],
            "address": pd.Series(rng.integers(1, 200, size=n)).astype(str) + " " + _pick(rng, STREETS, n),
            "birth_date": birth.strftime("%Y-%m-%d"),
            "gender": _pick(rng, np.array(["F", "M", "X"]), n, p=[0.52, 0.45, 0.03]),
            "has_card": _mask(rng, n, 0.55),
            "activity": rng.lognormal(mean=-2.6, sigma=0.8, size=n),  # sessions per day
            "n_cookies": rng.integers(1, 4, size=n),
            "signup": signup,
            "email_optin": _mask(rng, n, 0.8),
        }
    )
    people["loyalty_card"] = np.where(people["has_card"], "LC" + (10_000_000 + pid * 7).astype(str), None)
    people["prefs"] = list(prefs)
    people["pref_top_category"] = CATEGORIES[prefs.argmax(axis=1)]
    return people


def _products(rng: np.random.Generator, c: GenerateConfig) -> pd.DataFrame:
    n = c.n_products
    cat = np.arange(n) % len(CATEGORIES)
    rng.shuffle(cat)
    brand = rng.integers(0, BRANDS_PER_CATEGORY, size=n)
    price = np.round(CATEGORY_PRICE[cat] * rng.lognormal(0, 0.45, size=n), 2)
    df = pd.DataFrame(
        {
            "product_id": [f"SKU{i:06d}" for i in range(1, n + 1)],
            "name": [f"{CATEGORIES[k].title()} item {i}" for i, k in enumerate(cat, start=1)],
            "category": CATEGORIES[cat],
            "brand": [f"{CATEGORIES[k][:3].upper()}-brand-{b + 1}" for k, b in zip(cat, brand)],
            "price": price.astype(str),
            "currency": "GBP",
            "is_active": np.where(_mask(rng, n, 0.05), "false", "true"),
            "created_at": (c.start - pd.to_timedelta(rng.integers(30, 720, size=n), unit="D")).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "cat_idx": cat,
        }
    )
    df["rank_in_cat"] = df.groupby("cat_idx").cumcount()
    return df


def _crm_profiles(rng: np.random.Generator, c: GenerateConfig, people: pd.DataFrame):
    n = len(people)
    base = pd.DataFrame(
        {
            "person_id": people["person_id"],
            "first_name": people["first_name"],
            "last_name": people["last_name"],
            "email": people["email"],
            "phone": _phone_variant(rng, people["calling"], people["national"]),
            "birth_date": people["birth_date"],
            "gender": people["gender"],
            "address": people["address"],
            "city": people["city"],
            "postcode": people["postcode"],
            "country": [
                COUNTRY_SPELLINGS[x][k % len(COUNTRY_SPELLINGS[x])]
                for x, k in zip(people["country"], rng.integers(0, 12, size=n))
            ],
            "loyalty_card": people["loyalty_card"],
            "signup_ts": people["signup"],
            "utc_offset": people["utc_offset"],
        }
    )
    dup_people = np.flatnonzero(_mask(rng, n, c.duplicate_rate))
    dup = base.iloc[dup_people].copy()
    m = len(dup)
    # A second profile: registered again in store or app, with variants of the same identity.
    variant = rng.integers(0, 4, size=m)
    dup["first_name"] = np.where(variant == 0, _typo(rng, dup["first_name"]), dup["first_name"].str.upper())
    dup["last_name"] = np.where(variant == 1, _typo(rng, dup["last_name"]), dup["last_name"])
    dup["email"] = _case_variant(rng, dup["email"])
    dup["phone"] = _phone_variant(rng, people["calling"].iloc[dup_people], people["national"].iloc[dup_people]).values
    # variant 2: the duplicate kept only its phone; variant 3: it kept nothing strong, so only
    # fuzzy matching on name, birth date and postcode could find it.
    dup.loc[dup.index[variant == 2], "email"] = None
    dup.loc[dup.index[variant == 3], ["email", "phone", "loyalty_card"]] = None
    dup.loc[dup.index[variant != 3], "loyalty_card"] = dup["loyalty_card"][variant != 3].where(
        _mask(rng, int((variant != 3).sum()), 0.5)
    )
    # registered again later, but before the window starts (as profile updates are): a signup
    # after the data's last day would be in the future (the 1m bench's dim_customers gate caught
    # 198 such golden records from duplicates the matcher left apart)
    later = dup["signup_ts"] + pd.to_timedelta(rng.integers(1, 300, size=m), unit="D")
    dup["signup_ts"] = later.where(later < c.start, c.start - pd.Timedelta(days=1))
    profiles = pd.concat([base, dup], ignore_index=True)
    k = len(profiles)
    profiles["customer_id"] = [f"C{c.tag}{i:07d}" for i in rng.permutation(np.arange(1, k + 1))]
    # missing values
    for col, rate in (("phone", 0.08), ("birth_date", 0.1), ("gender", 0.05), ("address", 0.04)):
        profiles.loc[_mask(rng, k, rate), col] = None
    profiles["first_name"] = np.where(_mask(rng, k, 0.1), profiles["first_name"].str.lower(), profiles["first_name"])
    no_zone = _mask(rng, k, 0.1)
    profiles["signup_at"] = _iso(profiles["signup_ts"], profiles["utc_offset"].to_numpy(), ~no_zone)
    upd = profiles["signup_ts"] + pd.to_timedelta(rng.integers(0, 400, size=k), unit="D")
    upd = upd.where(upd < c.start, c.start - pd.Timedelta(days=1))
    profiles["updated_at"] = _iso(upd, 0)
    profiles = profiles.sort_values("customer_id").reset_index(drop=True)
    truth = pd.DataFrame(
        {"source": "customers", "record_id": profiles["customer_id"], "person_id": profiles["person_id"]}
    )
    # The login id a person uses on the web is their first profile (lowest CRM id).
    people["login_id"] = people["person_id"].map(profiles.groupby("person_id")["customer_id"].first())
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
    return profiles[cols], truth


def _clickstream(rng: np.random.Generator, c: GenerateConfig, people: pd.DataFrame, products: pd.DataFrame):
    day_idx = np.arange(c.days)
    weekday = np.array([(c.start + timedelta(days=int(d))).weekday() for d in day_idx])
    day_w = WEEKDAY_WEIGHT[weekday]
    day_p = day_w / day_w.sum()
    n_sess = rng.poisson(people["activity"].to_numpy() * c.days * c.session_scale)
    s_person = np.repeat(np.arange(len(people)), n_sess)
    s = len(s_person)
    s_day = rng.choice(c.days, size=s, p=day_p)
    s_start = (
        c.start
        + pd.to_timedelta(s_day, unit="D")
        + pd.to_timedelta(rng.integers(6 * 3600, 23 * 3600, size=s), unit="s")
    )
    s_cookie_idx = rng.integers(0, 1000, size=s) % people["n_cookies"].to_numpy()[s_person]
    pid = people["person_id"].to_numpy()[s_person]
    sessions = pd.DataFrame(
        {
            "session_id": [f"S{c.tag}{i:09d}" for i in range(1, s + 1)],
            "person_idx": s_person,
            "person_id": pid,
            "start": s_start,
            "anonymous_id": [f"ck-{(p * 7919 + k * 104729) % 10**10:010d}" for p, k in zip(pid, s_cookie_idx)],
            "device": DEVICES[s_cookie_idx % 3],
            "referrer": _pick(rng, REFERRERS, s, p=[0.35, 0.25, 0.12, 0.13, 0.1, 0.05]),
            "country": people["country"].to_numpy()[s_person],
            "utc_offset": people["utc_offset"].to_numpy()[s_person],
        }
    )
    # product views: category from the person's taste, product skewed to the category's head
    n_views = 1 + rng.poisson(2.5, size=s)
    v_sess = np.repeat(np.arange(s), n_views)
    v = len(v_sess)
    prefs = np.stack(people["prefs"].to_numpy())[s_person[v_sess]]
    cum = prefs.cumsum(axis=1)
    v_cat = (cum < rng.random(v)[:, None]).sum(axis=1).clip(0, len(CATEGORIES) - 1)
    cat_sizes = products.groupby("cat_idx").size().reindex(range(len(CATEGORIES)), fill_value=0).to_numpy()
    pos_in_cat = np.floor(cat_sizes[v_cat] * rng.random(v) ** 2).astype(int)
    lookup = products.set_index(["cat_idx", "rank_in_cat"])["product_id"]
    v_product = lookup.reindex(list(zip(v_cat, pos_in_cat))).to_numpy()
    v_cart = _mask(rng, v, 0.22)
    v_removed = v_cart & _mask(rng, v, 0.1)
    sess_cart = np.bincount(v_sess, weights=(v_cart & ~v_removed), minlength=s) > 0
    s_checkout = sess_cart & _mask(rng, s, 0.6)
    s_purchase = s_checkout & _mask(rng, s, 0.9)
    s_search = _mask(rng, s, 0.3)
    # a session logs in at some point (always before checkout); events before that are anonymous
    s_login = s_checkout | _mask(rng, s, 0.35)

    ev = []
    step = pd.to_timedelta(45, unit="s")
    view_pos = np.arange(v) - np.repeat(np.cumsum(n_views) - n_views, n_views)
    view_ts = sessions["start"].to_numpy()[v_sess] + (2 * view_pos + 1) * step.to_timedelta64()
    ev.append(
        pd.DataFrame(
            {
                "sess": np.arange(s),
                "event_type": "page_view",
                "ts": sessions["start"].to_numpy(),
                "product_id": None,
                "order": 0,
            }
        )
    )
    ev.append(
        pd.DataFrame({"sess": v_sess, "event_type": "product_view", "ts": view_ts, "product_id": v_product, "order": 1})
    )
    ev.append(
        pd.DataFrame(
            {
                "sess": v_sess[v_cart],
                "event_type": "add_to_cart",
                "ts": view_ts[v_cart] + np.timedelta64(20, "s"),
                "product_id": v_product[v_cart],
                "order": 2,
            }
        )
    )
    ev.append(
        pd.DataFrame(
            {
                "sess": v_sess[v_removed],
                "event_type": "remove_from_cart",
                "ts": view_ts[v_removed] + np.timedelta64(40, "s"),
                "product_id": v_product[v_removed],
                "order": 3,
            }
        )
    )
    ss = np.flatnonzero(s_search)
    ev.append(
        pd.DataFrame(
            {
                "sess": ss,
                "event_type": "search",
                "ts": sessions["start"].to_numpy()[ss] + np.timedelta64(10, "s"),
                "product_id": None,
                "order": 0,
            }
        )
    )
    end = sessions["start"].to_numpy() + (2 * n_views + 2) * step.to_timedelta64()
    sc = np.flatnonzero(s_checkout)
    ev.append(pd.DataFrame({"sess": sc, "event_type": "checkout", "ts": end[sc], "product_id": None, "order": 4}))
    sp = np.flatnonzero(s_purchase)
    ev.append(
        pd.DataFrame(
            {
                "sess": sp,
                "event_type": "purchase",
                "ts": end[sp] + np.timedelta64(60, "s"),
                "product_id": None,
                "order": 5,
            }
        )
    )
    events = pd.concat(ev, ignore_index=True).sort_values(["sess", "ts", "order"], kind="stable").reset_index(drop=True)
    events["ts"] = pd.to_datetime(events["ts"])
    n_ev = np.bincount(events["sess"], minlength=s)
    ev_pos = np.arange(len(events)) - np.repeat(np.cumsum(n_ev) - n_ev, n_ev)
    login_at = np.where(s_checkout, 0, rng.integers(0, 1000, size=s) % np.maximum(n_ev, 1))
    login_at = np.where(s_checkout, np.minimum(rng.integers(0, 1000, size=s) % np.maximum(n_ev, 1), n_ev - 2), login_at)
    logged = s_login[events["sess"]] & (ev_pos >= login_at[events["sess"]])
    sess = sessions.iloc[events["sess"].to_numpy()].reset_index(drop=True)
    login_ids = people["login_id"].to_numpy()[sess["person_idx"].to_numpy()]
    out = pd.DataFrame(
        {
            "event_id": [f"E{c.tag}{i:010d}" for i in range(1, len(events) + 1)],
            "event_type": events["event_type"],
            "event_ts": _iso(events["ts"], sess["utc_offset"].to_numpy()),
            "anonymous_id": sess["anonymous_id"],
            "customer_id": np.where(logged, login_ids, None),
            "session_id": sess["session_id"],
            "product_id": events["product_id"],
            "device": sess["device"],
            "referrer": sess["referrer"],
            "country": sess["country"],
            "person_id": sess["person_id"],
            "ts": events["ts"],
        }
    )
    sessions["purchase"] = s_purchase
    sessions["n_views"] = n_views
    cookie_truth = (
        sessions[["anonymous_id", "person_id"]]
        .drop_duplicates("anonymous_id")
        .rename(columns={"anonymous_id": "record_id"})
    )
    cookie_truth.insert(0, "source", "events_cookie")
    return sessions, out, cookie_truth


def _web_orders(rng, c: GenerateConfig, people, products, sessions, events):
    purchases = events[events["event_type"] == "purchase"]
    sess_ids = purchases["session_id"].to_numpy()
    sess = sessions.set_index("session_id").loc[sess_ids]
    n = len(sess)
    person_idx = sess["person_idx"].to_numpy()
    currency = people["currency"].to_numpy()[person_idx]
    r = rng.random(n)
    orders = pd.DataFrame(
        {
            "order_id": [f"W{c.tag}{i:08d}" for i in range(1, n + 1)],
            "customer_id": people["login_id"].to_numpy()[person_idx],
            "channel": np.where((sess["device"].to_numpy() != "desktop") & (rng.random(n) < 0.6), "app", "web"),
            "status": np.where(r < 0.02, "cancelled", np.where(r < 0.07, "returned", "completed")),
            "currency": currency,
            "ordered_at": purchases["event_ts"].to_numpy(),
            "_person_id": sess["person_id"].to_numpy(),
        }
    )
    # items: what was carted and not removed in that session
    ev = events[events["session_id"].isin(sess_ids) & events["event_type"].isin(["add_to_cart", "remove_from_cart"])]
    added = ev[ev["event_type"] == "add_to_cart"].groupby(["session_id", "product_id"]).size()
    removed = ev[ev["event_type"] == "remove_from_cart"].groupby(["session_id", "product_id"]).size()
    kept = added.sub(removed, fill_value=0)
    kept = kept[kept > 0].reset_index()[["session_id", "product_id"]]
    order_of_session = pd.Series(orders["order_id"].to_numpy(), index=sess_ids)
    kept["order_id"] = order_of_session.loc[kept["session_id"]].to_numpy()
    kept = kept.sort_values(["order_id", "product_id"]).reset_index(drop=True)
    m = len(kept)
    price = products.set_index("product_id")["price"].astype(float)
    cur = orders.set_index("order_id")["currency"].loc[kept["order_id"]].map(FX_TO_GBP).to_numpy()
    items = pd.DataFrame(
        {
            "order_item_id": [f"WI{c.tag}{i:09d}" for i in range(1, m + 1)],
            "order_id": kept["order_id"],
            "product_id": kept["product_id"],
            "quantity": (1 + rng.poisson(0.3, size=m)).astype(str),
            "unit_price": np.round(price.loc[kept["product_id"]].to_numpy() / cur, 2).astype(str),
        }
    )
    return orders, items


def _pos(rng, c: GenerateConfig, people, products):
    gb = (people["country"] == "GB").to_numpy()
    visits = rng.poisson(people["activity"].to_numpy() * c.days * 0.35 * gb)
    r_person = np.repeat(np.arange(len(people)), visits)
    n = len(r_person)
    r_day = rng.integers(0, c.days, size=n)
    r_ts = (
        c.start
        + pd.to_timedelta(r_day, unit="D")
        + pd.to_timedelta(rng.integers(9 * 3600, 20 * 3600, size=n), unit="s")
    )
    ident = rng.random(n)
    has_card = people["has_card"].to_numpy()[r_person]
    how = np.where(
        has_card & (ident < 0.75), "card", np.where(ident < 0.85, "email", np.where(ident < 0.93, "phone", "none"))
    )
    n_lines = 1 + rng.poisson(1.0, size=n)
    l_receipt = np.repeat(np.arange(n), n_lines)
    m = len(l_receipt)
    prefs = np.stack(people["prefs"].to_numpy())[r_person[l_receipt]]
    cat = (prefs.cumsum(axis=1) < rng.random(m)[:, None]).sum(axis=1).clip(0, len(CATEGORIES) - 1)
    cat_sizes = products.groupby("cat_idx").size().reindex(range(len(CATEGORIES)), fill_value=0).to_numpy()
    pos_in_cat = np.floor(cat_sizes[cat] * rng.random(m) ** 2).astype(int)
    product = (
        products.set_index(["cat_idx", "rank_in_cat"])["product_id"].reindex(list(zip(cat, pos_in_cat))).to_numpy()
    )
    p_idx = r_person[l_receipt]
    l_how = how[l_receipt]
    email_variant = _case_variant(rng, people["email"].iloc[p_idx].reset_index(drop=True))
    phone_variant = _phone_variant(
        rng, people["calling"].iloc[p_idx].reset_index(drop=True), people["national"].iloc[p_idx].reset_index(drop=True)
    )
    price = products.set_index("product_id")["price"].astype(float)
    df = pd.DataFrame(
        {
            "transaction_line_id": [f"PL{c.tag}{i:09d}" for i in range(1, m + 1)],
            "receipt_id": [f"R{c.tag}{i:08d}" for i in l_receipt + 1],
            "store_id": [f"ST{k:02d}" for k in (p_idx % 12) + 1],
            "loyalty_card": np.where(l_how == "card", people["loyalty_card"].to_numpy()[p_idx], None),
            "email": np.where(l_how == "email", email_variant, None),
            "phone": np.where(l_how == "phone", phone_variant, None),
            "product_id": product,
            "quantity": (1 + rng.poisson(0.4, size=m)).astype(str),
            "unit_price": np.round(price.loc[product].to_numpy(), 2).astype(str),
            "currency": "GBP",
            "transacted_at": _iso(pd.Series(r_ts[l_receipt]), 0),
            "person_id": people["person_id"].to_numpy()[p_idx],
        }
    )
    return df


def _email(rng, c: GenerateConfig, people):
    campaign_days = np.arange(2, c.days, 7)
    optin = np.flatnonzero(people["email_optin"].to_numpy())
    k = len(campaign_days)
    rec_person = np.tile(optin, k)
    rec_campaign = np.repeat(np.arange(k), len(optin))
    n = len(rec_person)
    sent_ts = (
        c.start
        + pd.to_timedelta(campaign_days[rec_campaign], unit="D")
        + pd.to_timedelta(9 * 3600 + rng.integers(0, 1800, size=n), unit="s")
    )
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
        frames.append(
            pd.DataFrame(
                {
                    "rec": idx,
                    "event_type": kind,
                    "ts": sent_ts[idx]
                    + pd.to_timedelta(delay + rng.integers(0, 7200, size=len(idx)) * (delay > 0), unit="s"),
                }
            )
        )
    ev = (
        pd.concat(frames, ignore_index=True)
        .sort_values(["ts", "rec", "event_type"], kind="stable")
        .reset_index(drop=True)
    )
    p = rec_person[ev["rec"].to_numpy()]
    return pd.DataFrame(
        {
            "email_event_id": [f"M{c.tag}{i:010d}" for i in range(1, len(ev) + 1)],
            "campaign_id": [f"CMP{campaign_days[rec_campaign[r]]:04d}" for r in ev["rec"]],
            "email": _case_variant(rng, people["email"].iloc[p].reset_index(drop=True)),
            "event_type": ev["event_type"],
            "event_ts": _iso(pd.Series(pd.to_datetime(ev["ts"].to_numpy())), 0),
            "person_id": people["person_id"].to_numpy()[p],
        }
    )


def _withdrawals(customer_ids, channel: str, purpose: str, at) -> pd.DataFrame:
    """Consent-withdrawn privacy records (granted = false) for customer ids at times `at`."""
    return pd.DataFrame(
        {
            "customer_id": customer_ids,
            "email": None,
            "request_type": "consent",
            "channel": channel,
            "purpose": purpose,
            "granted": "false",
            "requested_at": _iso(pd.Series(at), 0),
        }
    )


def _privacy(rng, c: GenerateConfig, people):
    n = len(people)
    rows = pd.DataFrame(
        {
            "customer_id": people["login_id"],
            "email": None,
            "request_type": "consent",
            "channel": "email",
            "purpose": "marketing",
            "granted": np.where(people["email_optin"], "true", "false"),
            "requested_at": _iso(people["signup"], 0),
        }
    )
    revoke = np.flatnonzero(_mask(rng, n, 0.03) & people["email_optin"].to_numpy())
    later = c.start + pd.to_timedelta(rng.integers(0, c.days, size=len(revoke)), unit="D")
    rev = _withdrawals(people["login_id"].iloc[revoke].to_numpy(), "email", "marketing", later)
    erase = np.flatnonzero(_mask(rng, n, 0.003))
    er = pd.DataFrame(
        {
            "customer_id": None,
            "email": people["email"].iloc[erase].to_numpy(),
            "request_type": "erasure",
            "channel": "all",
            "purpose": None,
            "granted": None,
            "requested_at": _iso(
                pd.Series(c.start + pd.to_timedelta(rng.integers(0, c.days, size=len(erase)), unit="D")), 0
            ),
        }
    )
    # ~2 % withdraw consent to personalisation (opt-out: no record means allowed). Drawn from a
    # generator of its own so adding these rows left every other generated row as it was.
    own = np.random.default_rng([c.seed, 711] + ([c.shard] if c.shard else []))
    opt_out = np.flatnonzero(own.random(n) < 0.02)
    later = c.start + pd.to_timedelta(own.integers(0, c.days, size=len(opt_out)), unit="D")
    po = _withdrawals(people["login_id"].iloc[opt_out].to_numpy(), "all", "personalization", later)
    out = pd.concat([rows, rev, er, po], ignore_index=True)
    out.insert(0, "request_id", [f"Q{c.tag}{i:08d}" for i in range(1, len(out) + 1)])
    return out


def _malform(rng, c: GenerateConfig, customers, orders, order_items, events) -> None:
    """A small share of rows that a real feed would deliver broken."""
    rate = c.malformed_rate
    bad = _mask(rng, len(customers), rate)
    customers.loc[bad, "email"] = customers.loc[bad, "email"].str.replace("@", "@@", regex=False)
    bad = _mask(rng, len(orders), rate)
    orders.loc[bad, "ordered_at"] = "not-a-date"
    bad = _mask(rng, len(order_items), rate)
    # a zero quantity is an error; a negative one would be a returned line (a business fact)
    order_items.loc[bad, "quantity"] = "0"
    bad = _mask(rng, len(order_items), rate)
    order_items.loc[bad, "product_id"] = "SKU-UNKNOWN"
    bad = _mask(rng, len(events), rate)
    events.loc[bad, "event_type"] = "pageview"
