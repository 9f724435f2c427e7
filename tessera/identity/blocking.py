"""Candidate pairs: records that share a blocking key, in SQL.

Every record gets a few keys per attribute (`key_expressions`): the value itself, and variants
that survive the typos the comparison levels grade, so a typo in one attribute does not hide a pair:
- names: given name and surname share one key family, so swapped names still meet;
- dates: the date, and year with day and month in either order (a day-month swap);
- identifiers and postcodes: the value, its first half and its last half (one edit leaves a half intact);
- emails: the address and its local part;
- two-attribute keys (`blocking_rules`): the pairs of a value too common to block on alone.
A key held by more than `max_block_size` records is skipped and counted, so one common value cannot
explode the pairs; and blocks are kept smallest first while their pairs fit a budget of
`max_pairs_per_record` per record (block_size_cap), so the pairs to score grow linearly with the
table (on Splink's historical_50k the budget of 30 kept 739k of 2.7M pairs, F1 0.854 -> 0.859).
Pairs are found by one self-join on the long key table: portable SQL, no Python loop, and the
same at any size, on DuckDB or Spark (the few differences of dialect are in dialects.py).
"""

from __future__ import annotations

from tessera.identity.dialects import DUCKDB, int_div, param, quote, runner, string_type

KEYS = "__id_keys"
PAIRS = "__id_pairs"


def _half(expr: str, first: bool, d: str = DUCKDB) -> str:
    if first:
        side = f"left({expr}, {int_div(f'length({expr})', '2', d)})"
    else:
        side = f"right({expr}, {int_div(f'(length({expr}) + 1)', '2', d)})"
    return f"case when length({expr}) >= 4 then {side} end"


def key_expressions(column: str, kind: str, family: str, d: str = DUCKDB) -> list[tuple[str, str]]:
    """(key family, SQL expression of the key in dialect `d`) for one standardised column."""
    c = quote(column, d)
    if kind == "person_name":
        return [("name", c)]
    if kind == "name":
        return [(family, c)]
    if kind == "date":
        mm, dd = f"substr({c}, 6, 2)", f"substr({c}, 9, 2)"
        return [
            (family, c),
            (f"{family}~swap", f"left({c}, 4) || least({mm}, {dd}) || greatest({mm}, {dd})"),
        ]
    if kind == "code":
        return [(family, c), (f"{family}<", _half(c, True, d)), (f"{family}>", _half(c, False, d))]
    if kind == "email":
        return [(family, c), (f"{family}@", f"nullif(split_part({c}, '@', 1), '')")]
    if kind == "text":
        return [(family, c)]
    return []  # categories (a city, a gender) are too coarse to block on alone


def build_keys(
    con,
    records: str,
    compared: list[tuple[str, str, str]],
    rules: tuple[tuple[str, ...], ...],
) -> None:
    """Create the table KEYS (record_id, key): compared is (column, kind, family) per column;
    rules name families of columns whose values are combined into one key. con: a DuckDB
    connection or a runner (dialects.py)."""
    db = runner(con)
    d = db.dialect
    selects = []
    for column, kind, family in compared:
        for name, expr in key_expressions(column, kind, family, d):
            selects.append(f"select record_id, '{name}:' || {expr} as key from {records} where {expr} is not null")
    columns = {family: column for column, _, family in compared}
    for rule in rules:
        if len(rule) < 2 or not set(rule) <= set(columns):
            continue
        parts = [quote(columns[a], d) for a in rule]
        not_null = " and ".join(f"{p} is not null" for p in parts)
        joined = " || '|' || ".join(parts)
        selects.append(f"select record_id, '{'+'.join(rule)}:' || {joined} as key from {records} where {not_null}")
    if not selects:
        text = string_type(d)
        if d == DUCKDB:
            db.con.execute(f"create or replace temp table {KEYS} (record_id varchar, key varchar)")
        else:
            db.create(KEYS, f"select cast(null as {text}) as record_id, cast(null as {text}) as key where false")
        return
    db.create(KEYS, f"select distinct * from ({' union all '.join(selects)})")


def block_size_cap(con, max_block_size: int, pair_budget: float | None) -> int:
    """The largest block size kept: `max_block_size`, lowered until the pairs of the blocks kept
    (smallest first) fit in `pair_budget` (None: no budget). The pairs of a small block are likelier
    matches than those of a large one (a shared rare surname says more than a shared common one),
    so the budget drops the least promising blocks first, and the pairs to score grow linearly with
    the records, not with the square of a common value's frequency. All blocks of one size are kept
    or dropped together, so the cap does not depend on the order records arrive in."""
    if pair_budget is None:
        return int(max_block_size)
    db = runner(con)
    cap, budget = param("cap", db.dialect), param("budget", db.dialect)
    fits = db.rows(
        f"""
        select coalesce(max(n), 1) from (
            select n, sum(pairs) over (order by n) as running
            from (select n, sum(n * (n - 1) / 2) as pairs from __id_key_sizes where n between 2 and {cap} group by n)
        ) where running <= {budget}
        """,
        {"cap": int(max_block_size), "budget": float(pair_budget)},
    )[0][0]
    return int(fits)


def candidate_pairs(
    con,
    max_block_size: int,
    extra_pairs: str | None = None,
    only_with: str | None = None,
    pair_budget: float | None = None,
) -> dict:
    """Create the temp table PAIRS (record_l < record_r) of records sharing a key held by 2 to
    max_block_size records (lowered to fit `pair_budget`: block_size_cap), plus `extra_pairs` (a
    table of record_l, record_r: the deterministic links, so they are scored too). With `only_with`
    (a table of record_id), only pairs touching one of those records, of both kinds: an incremental
    run compares new records with everyone, not every pair again (with the cap a full run on all
    the records would use). con: a DuckDB connection or a runner (dialects.py)."""
    db = runner(con)
    p_cap = param("cap", db.dialect)
    db.create(
        "__id_key_sizes",
        f"""
        select key, split_part(key, ':', 1) as family, count(*) as n from {KEYS} group by key
        """,
    )
    cap = block_size_cap(db, max_block_size, pair_budget)

    def touching(left: str, right: str) -> str:
        if not only_with:
            return ""
        return f"and ({left} in (select record_id from {only_with}) or {right} in (select record_id from {only_with}))"

    extra = (
        f"union all select least(record_l, record_r), greatest(record_l, record_r) from {extra_pairs} "
        f"where true {touching('record_l', 'record_r')}"
        if extra_pairs
        else ""
    )
    # the keys kept first, as 64-bit hashes: the self-join then reads only them, and compares
    # integers (two keys that collide only propose a few more pairs, which scoring judges)
    hash64 = "hash" if db.dialect == DUCKDB else "xxhash64"
    db.create(
        "__id_kept_keys",
        f"""
        select record_id, {hash64}(key) as key from {KEYS}
        where key in (select key from __id_key_sizes where n between 2 and {p_cap})
        """,
        {"cap": cap},
    )
    db.create(
        PAIRS,
        f"""
        select distinct record_l, record_r from (
            select a.record_id as record_l, b.record_id as record_r
            from __id_kept_keys as a
            inner join __id_kept_keys as b on a.key = b.key and a.record_id < b.record_id
            where true {touching("a.record_id", "b.record_id")}
            {extra}
        )
        """,
    )
    db.drop("__id_kept_keys")
    skipped = dict(
        db.rows(
            f"select family, count(*) from __id_key_sizes where n > {p_cap} group by family order by family",
            {"cap": cap},
        )
    )
    total = db.rows(f"select count(*) from {PAIRS}")[0][0]
    shared_keys = db.rows(f"select count(*) from __id_key_sizes where n between 2 and {p_cap}", {"cap": cap})[0][0]
    db.drop("__id_key_sizes")
    return {
        "candidate_pairs": int(total),
        "blocking_keys_shared": int(shared_keys),
        "block_size_cap": cap,
        "skipped_blocks_per_key": skipped,
    }
