"""Right to erasure: remove a person from every layer, log it, and prove nothing is left.

Runs after the customer view is built (the identity graph of this run knows every record of the
person) and before any model is trained or anything is published:

1. **Identifiers.** For each erasure request (intermediate.int_privacy_requests_resolved) the
   person's customer_key, its published customer_pkey, and every node the identity graph gave it
   (CRM ids, emails, phones, loyalty cards, declared identifiers, store receipts, cookies), plus
   the request's own CRM id and email, plus the ids of the person's orders. Identifiers the
   graph refused to attach to anyone (an email two people share) are not the person's alone and
   are not used.
2. **Suppression list.** privacy.erased_identifiers keeps sha256(salt:value) of each identifier,
   never the value. Every later run matches raw rows against it too, so a landing file delivered
   again, or a new event carrying an erased CRM id, is erased as well.
3. **Raw.** Matching rows are found through the staging models (which normalise emails and
   phones) and deleted from raw by file and row; their positions go to raw.erased_rows, which the
   source reconciliation counts. Rejected lines (raw.load_rejects) mentioning an identifier go
   too.
4. **Everything built from raw.** Every base table in the other schemas loses the rows whose
   identifier columns (customer_key, customer_pkey, customer_id, email, anonymous_id, order_id,
   record ids, graph nodes...) hold an identifier, and rows whose free text (a quarantined line,
   merge evidence) mentions one. dbt rebuilds the same from the cleaned raw next run.
5. **Published snapshots.** Every retained version's files are rewritten without the person's
   customer_pkey (and email, for audiences); the manifest records the rewrite.
6. **Audit log.** privacy.erasure_log: request, when requested, when processed, the run, how many
   identifiers of each kind, and the rows removed per table. No identifier is logged.

The residue check (`residue`) hashes every identifier-holding value of every table and every
published file and counts those on the suppression list: it must be 0. The values are hashed once
per run (`list_values`), before step 3, for steps 3 and 4 and for the check.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from tessera import sql
from tessera.db import transaction
from tessera.faults import crash_point
from tessera.privacy.pseudonym import SALT_VARIABLE
from tessera.publish import snapshots
from tessera.sql import ident
from tessera.timing import Phases

# how each raw source's rows are matched: the staging model and its identifier columns by kind
RAW_MATCHES: dict[str, tuple[str, dict[str, str]]] = {
    "customers": (
        "stg_customers",
        {"customer_id": "crm", "email": "email", "phone_e164": "phone", "loyalty_card": "card"},
    ),
    "orders": ("stg_orders", {"customer_id": "crm", "order_id": "order"}),
    "order_items": ("stg_order_items", {"order_id": "order"}),
    "pos_transactions": (
        "stg_pos_transactions",
        {"receipt_id": "pos", "loyalty_card": "card", "email": "email", "phone_e164": "phone"},
    ),
    "events": ("stg_events", {"customer_id": "crm", "anonymous_id": "cookie"}),
    "email_events": ("stg_email_events", {"email": "email"}),
    "privacy": ("stg_privacy", {"customer_id": "crm", "email": "email"}),
    # a declared identifier goes with its profile, and the person's value with every row holding it
    "identifiers": ("stg_identifiers", {"customer_id": "crm", "id_value": "declared"}),
}
# the raw sources of order lines: (source, staging view, the order's id column, the id's kind);
# an order with one line holding the person's identifier goes whole (add_whole_orders)
ORDER_SOURCES = (
    ("orders", "stg_orders", "order_id", "order"),
    ("order_items", "stg_order_items", "order_id", "order"),
    ("pos_transactions", "stg_pos_transactions", "receipt_id", "pos"),
)
# columns of built tables that hold an identifier (any kind), and free-text columns that may quote one
IDENTIFIER_COLUMNS = (
    "customer_key",
    "customer_pkey",
    "customer_id",
    "other_customer_id",
    "source_customer_id",
    "anchor_customer_id",
    "email",
    "phone_e164",
    "loyalty_card",
    "anonymous_id",
    "order_id",
    "receipt_id",
    "record_id",
    "record_l",
    "record_r",
    "node_value",
    "message_id",
    "id_value",
)
TEXT_COLUMNS = ("raw_content", "evidence")
# raw columns as delivered that hold an identifier (staging cleans them into IDENTIFIER_COLUMNS)
RAW_IDENTIFIER_COLUMNS = ("customer_id", "email", "phone", "loyalty_card", "anonymous_id", "order_id", "receipt_id")
SKIPPED_SCHEMAS = ("raw", "privacy", "information_schema", "pg_catalog")
# shorter values are not searched for inside free text (a substring of something else)
MIN_TEXT_MATCH_CHARS = 6
# Customers who asked for erasure are not trained on, by any model, nor counted in any ranking:
# their history would shape other customers' recommendations, the popularity fallback, the
# propensity models and the clusters. A condition on a relation's customer_key (prefix it with
# the relation's alias: f"i.{NOT_ERASED}").
NOT_ERASED = "customer_key not in (select customer_key from marts.dim_customers where is_erasure_requested)"


def ensure_tables(con) -> None:
    con.execute(sql.load(__file__, "erasure_tables"))


def _base_tables(con) -> list[tuple[str, str, list[str]]]:
    rows = con.execute(
        """
        select c.table_schema, c.table_name, list(c.column_name order by c.ordinal_position)
        from information_schema.columns as c
        inner join information_schema.tables as t using (table_schema, table_name)
        where t.table_type = 'BASE TABLE' and c.data_type = 'VARCHAR'
        group by 1, 2 order by 1, 2
        """
    ).fetchall()
    return [(s, t, cols) for s, t, cols in rows]


def collect_identifiers(con) -> int:
    """Fill the temp table __erase(request_id, kind, value) and add new hashes to the suppression
    list; returns the number of requests."""
    con.execute(sql.load(__file__, "collect_requests"))
    # the person's messages: their ids name the rendered previews and the outbox's message bodies
    for schema, table, columns in _base_tables(con):
        if {"customer_key", "message_id"} <= set(columns) and schema not in SKIPPED_SCHEMAS:
            con.execute(
                f"""
                insert into __erase
                select distinct e.request_id, 'message', m.message_id
                from __erase as e inner join {ident(schema, table)} as m on m.customer_key = e.value
                where e.kind = 'key' and m.message_id is not null
                """
            )
    con.execute("create or replace temp table __erase as select distinct * from __erase where value is not null")
    _add_to_suppression_list(con, "__erase")
    return con.execute("select count(*) from __requests").fetchall()[0][0]


def _hashed(column: str) -> str:
    return f"sha256(getvariable('{SALT_VARIABLE}') || ':' || {column})"


def _add_to_suppression_list(con, identifiers: str) -> None:
    """The hashes of the temp table `identifiers` (request_id, kind, value) the suppression list
    lacks, added to it."""
    con.execute(
        f"""
        insert into privacy.erased_identifiers
        select distinct e.request_id, e.kind, {_hashed("e.value")}
        from {identifiers} as e
        where not exists (select 1 from privacy.erased_identifiers as h where h.value_hash = {_hashed("e.value")})
        """
    )


def erase_raw(con) -> dict[str, int]:
    """Delete raw rows holding an identifier of this run's requests or of the suppression list:
    those whose staging row (RAW_MATCHES) holds a value that list_values found listed as it is."""
    removed: dict[str, int] = {}
    if not con.execute("select count(*) from privacy.erased_identifiers").fetchall()[0][0]:
        return removed  # nobody was ever erased: no raw row to hash and match
    # each listed value with the first request that listed it; only these few values are hashed
    con.execute(
        f"""
        create or replace temp table __listed_requests as
        select l.value, min(h.request_id) as request_id
        from __listed as l inner join privacy.erased_identifiers as h on h.value_hash = {_hashed("l.value")}
        where l.exact
        group by 1
        """
    )
    con.execute(
        "create or replace temp table __raw_rows (source varchar, _source_file varchar, _source_row bigint, "
        "request_id varchar)"
    )
    for source, (view, columns) in RAW_MATCHES.items():
        for column in columns:
            con.execute(
                f"""
                insert into __raw_rows
                select $source, s._source_file, s._source_row, min(x.request_id)
                from {ident("staging", view)} as s inner join __listed_requests as x on x.value = s.{ident(column)}
                group by 1, 2, 3
                """,
                {"source": source},
            )
    con.execute(
        "create or replace temp table __raw_rows as select distinct on (source, _source_file, _source_row) * from __raw_rows"
    )
    add_whole_orders(con)
    for source in RAW_MATCHES:
        n = con.execute(
            f"""
            delete from {ident("raw", source)} as r using __raw_rows as x
            where x.source = $source and x._source_file = r._source_file and x._source_row = r._source_row
            """,
            {"source": source},
        ).fetchall()[0][0]
        removed[f"raw.{source}"] = n
    con.execute(
        "insert into raw.erased_rows select source, _source_file, _source_row, 'raw', request_id from __raw_rows"
    )
    # rejected lines are not parsed: search their text for the values of this run's requests
    text_values(con)
    con.execute(
        f"""
        create or replace temp table __reject_rows as
        select r.source, r._source_file, r._source_row, min(m.request_id) as request_id
        from raw.load_rejects as r
        inner join ({mentions("raw.load_rejects", "raw_content")}) as m on m.rid = r.rowid
        group by 1, 2, 3
        """
    )
    removed["raw.load_rejects"] = con.execute(
        """
        delete from raw.load_rejects as r using __reject_rows as x
        where x.source = r.source and x._source_file = r._source_file and x._source_row = r._source_row
        """
    ).fetchall()[0][0]
    con.execute(
        "insert into raw.erased_rows select source, _source_file, _source_row, 'load_reject', request_id from __reject_rows"
    )
    return removed


def add_whole_orders(con) -> int:
    """An order or store receipt with a raw line that holds the person's identifier is theirs:
    its id joins this run's identifiers (__erase, so every built table loses the rows naming it)
    and the suppression list (a file delivering it again is erased too), and its other lines join
    __raw_rows. Without this, a receipt matched in raw by the email on its lines (a receipt the
    identity graph did not resolve to the person) lost its raw lines but kept its order lines in
    the incremental int_order_lines, as nameless lines no file derives any more (found at 1M
    customers: 26 lines failed assert_order_lines_match_current the next day). Returns how many
    ids were added."""
    con.execute("create or replace temp table __order_ids (request_id varchar, kind varchar, value varchar)")
    sources = [(source, view, column, kind) for source, view, column, kind in ORDER_SOURCES if source in RAW_MATCHES]
    for source, view, column, kind in sources:
        con.execute(
            f"""
            insert into __order_ids
            select min(x.request_id), $kind, s.{ident(column)}
            from {ident("staging", view)} as s
            inner join __raw_rows as x
                on x.source = $source and x._source_file = s._source_file and x._source_row = s._source_row
            where s.{ident(column)} is not null
              and not exists (select 1 from __erase as e where e.kind = $kind and e.value = s.{ident(column)})
            group by s.{ident(column)}
            """,
            {"source": source, "kind": kind},
        )
    # orders and their items name the same order: once each, with its first request
    con.execute(
        "create or replace temp table __order_ids as "
        "select min(request_id) as request_id, kind, value from __order_ids group by kind, value"
    )
    added = con.execute("select count(*) from __order_ids").fetchall()[0][0]
    if not added:
        return 0
    con.execute("insert into __erase select * from __order_ids")
    _add_to_suppression_list(con, "__order_ids")
    for source, view, column, kind in sources:
        con.execute(
            f"""
            insert into __raw_rows
            select $source, s._source_file, s._source_row, min(o.request_id)
            from {ident("staging", view)} as s
            inner join __order_ids as o on o.kind = $kind and o.value = s.{ident(column)}
            group by 1, 2, 3
            """,
            {"source": source, "kind": kind},
        )
    con.execute(
        "create or replace temp table __raw_rows as select distinct on (source, _source_file, _source_row) * from __raw_rows"
    )
    return added


def add_listed_values(con) -> None:
    """Add to __erase the values of built tables' identifier columns that hash to the suppression
    list: a re-delivered record of a person erased earlier comes back through this run's dbt
    build and identity step (same CRM id, so the same customer_key) with no request to name it.
    Reads __listed (list_values), so no value is hashed again."""
    con.execute("insert into __erase select 'suppression list', 'listed', value from __listed where exact and in_built")


def _distinct_values(places: list[tuple[str, str, bool]]) -> str:
    """SQL: (value, in_built) for every distinct non-null value of the (relation, column, built)
    places, once; in_built: some place holding it is built. A customer_key is in a dozen tables, so
    the distinct values of all places are far fewer than those of each column, and sha256 is the
    expensive part: the checks hash this set rather than each column's (docs/scaling.md)."""
    parts = " union all ".join(
        f"select distinct {c} as value, {str(built).lower()} as in_built from {relation} where {c} is not null"
        for relation, c, built in places
    )
    return f"select value, bool_or(in_built) as in_built from ({parts}) group by value"


def _places(con, publish_dir: Path) -> list[tuple[str, str, str, bool]]:
    """(relation, column, label, built) of every place the residue check reads: the identifier
    columns (residue_columns) of every table outside privacy, raw included, and of every retained
    published file. built: a table outside raw, where add_listed_values looks."""
    places = [
        (ident(schema, table), ident(c), f"{schema}.{table}.{c}", schema not in SKIPPED_SCHEMAS)
        for schema, table, columns in _base_tables(con)
        if schema != "privacy" and not table.startswith("__")
        for c in residue_columns(schema, columns)
    ]
    for i, (name, version, path, _, f) in enumerate(_snapshot_files(publish_dir)):
        reader = file_view(con, f["format"], path / f["path"], f"__published_{i}")
        for column, kind, *_ in con.execute(f"describe select * from {reader}").fetchall():
            if kind == "VARCHAR" and residue_columns("publish", [column]):
                places.append((reader, ident(column), f"{name}/{version}/{f['path']}:{column}", False))
    return places


def list_values(con, publish_dir: Path) -> int:
    """Fill the temp table __listed(value, exact, in_built): the distinct values of every place
    (_places) and of the staging columns erase_raw matches raw rows by (RAW_MATCHES; some are
    views) that hash to the suppression list as they are (exact) or, where that changes them,
    lower-cased and trimmed; in_built as in _distinct_values. Returns how many.

    One pass, before any row is deleted, serves three users: erase_raw and add_listed_values
    (exact values) and the residue check after the deletes, instead of a hashing pass for each
    (docs/scaling.md)."""
    con.execute("create or replace temp table __hashes as select distinct value_hash from privacy.erased_identifiers")
    con.execute("create or replace temp table __listed (value varchar, exact boolean, in_built boolean)")
    places = [(relation, column, built) for relation, column, _, built in _places(con, publish_dir)]
    # the staging relations that exist (erase_raw reads every one, and fails on a missing one)
    relations = {
        r for (r,) in con.execute("select table_schema || '.' || table_name from information_schema.tables").fetchall()
    }
    places += [
        (f"staging.{view}", column, False)
        for view, columns in RAW_MATCHES.values()
        if f"staging.{view}" in relations
        for column in columns
    ]
    if not places or not con.execute("select count(*) from __hashes").fetchall()[0][0]:
        return 0  # nothing built to read yet, or nobody was ever erased
    listed = "in (select value_hash from __hashes)"
    cleaned = "lower(trim(v.value))"
    con.execute(
        f"insert into __listed select v.value, {_hashed('v.value')} {listed}, v.in_built "
        f"from ({_distinct_values(places)}) as v "
        f"where {_hashed('v.value')} {listed} or ({cleaned} <> v.value and {_hashed(cleaned)} {listed})"
    )
    return con.execute("select count(*) from __listed").fetchall()[0][0]


def text_values(con) -> None:
    """__text_values(value, gram, request_id): the values of __erase that free text is searched
    for (at least MIN_TEXT_MATCH_CHARS long), lower-cased, each with its first
    MIN_TEXT_MATCH_CHARS characters (the gram `mentions` joins on) and its first request."""
    con.execute(
        """
        create or replace temp table __text_values as
        select lower(value) as value, substr(lower(value), 1, $n) as gram, min(request_id) as request_id
        from __erase
        where length(value) >= $n and length(lower(value)) >= $n
        group by 1
        """,
        {"n": MIN_TEXT_MATCH_CHARS},
    )


def mentions(relation: str, column: str) -> str:
    """SQL: (rid, request_id, value) of each row of `relation` (rid: its rowid) whose free-text
    `column` contains, ignoring case, a value of __text_values (text_values), once per value it
    contains.

    The same rows as `contains(lower(column), value)` tried for every value, without trying every
    value: each text is cut into its overlapping MIN_TEXT_MATCH_CHARS-character grams, a hash join
    keeps the values that start with one of them, and only those are checked with contains(). A
    value inside the text starts with one of its grams, so none is missed; the direct way tries
    every line against every value (docs/scaling.md)."""
    n = MIN_TEXT_MATCH_CHARS
    return f"""
        select distinct g.rid, v.request_id, v.value
        from (
            select t.rid, t.text, unnest(range(1, length(t.text) - {n - 2})) as pos
            from (select rowid as rid, lower({column}) as text from {relation} where length({column}) >= {n}) as t
        ) as g
        inner join __text_values as v on v.gram = substr(g.text, g.pos, {n})
        where contains(g.text, v.value)
        """


def erase_built(con) -> dict[str, int]:
    """Delete the person's rows from every base table outside raw: identifier columns by value,
    graph node keys, free text by substring, ignoring case (mentions)."""
    removed: dict[str, int] = {}
    con.execute("create or replace temp table __values as select distinct value from __erase")
    con.execute("create or replace temp table __node_keys as select distinct kind || ':' || value as k from __erase")
    text_values(con)
    for schema, table, columns in _base_tables(con):
        if schema in SKIPPED_SCHEMAS or table.startswith("__"):
            continue
        conditions = [f"{ident(c)} in (select value from __values)" for c in columns if c in IDENTIFIER_COLUMNS]
        if "node_key" in columns:
            conditions.append("node_key in (select k from __node_keys)")
        conditions += [
            f"rowid in (select rid from ({mentions(ident(schema, table), ident(c))}))"
            for c in columns
            if c in TEXT_COLUMNS
        ]
        if not conditions:
            continue
        n = con.execute(f"delete from {ident(schema, table)} where {' or '.join(conditions)}").fetchall()[0][0]
        if n:
            removed[f"{schema}.{table}"] = n
    return removed


WRITERS = {"parquet": "format parquet", "csv": "format csv, header true", "jsonl": "format json"}


def file_view(con, file_format: str, path: Path, name: str) -> str:
    """A temp view `name` over a published file (parquet, csv or jsonl), its path handed to DuckDB
    as a value, never as SQL text; returns the view's name."""
    read = {"parquet": con.read_parquet, "csv": con.read_csv, "jsonl": con.read_json}[file_format]
    read(path.as_posix()).create_view(name, replace=True)
    return name


def _version_dirs(publish_dir: Path):
    """(name, version, version directory, staged) of every version on disk: released or not,
    and those staged by runs still in progress."""
    roots = [(publish_dir, False)]
    staging = publish_dir / snapshots.STAGING
    if staging.exists():
        roots += [(run_dir, True) for run_dir in sorted(staging.iterdir()) if run_dir.is_dir()]
    for root, staged in roots:
        if not root.exists():
            continue
        for name_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for version in snapshots.versions(root, name_dir.name):
                yield name_dir.name, version, name_dir / "versions" / version, staged


def _snapshot_files(publish_dir: Path):
    """(name, version, version directory, manifest, file entry) of every version on disk."""
    for name, version, path, _ in _version_dirs(publish_dir):
        manifest = json.loads((path / snapshots.MANIFEST).read_text())
        for f in manifest["files"]:
            yield name, version, path, manifest, f


# the columns a published file names a person by
SNAPSHOT_KEYS = ("customer_pkey", "email", "message_id")
REWRITE_SUFFIX = re.compile(r"-erasure(\d+)$")


def rewritten_version(version: str) -> str:
    """The name of a version's rewrite: <version>-erasure<n>, n one more than the last rewrite."""
    m = REWRITE_SUFFIX.search(version)
    n = int(m.group(1)) + 1 if m else 1
    return f"{REWRITE_SUFFIX.sub('', version)}-erasure{n}"


def erase_snapshots(con, publish_dir: Path, now: datetime) -> dict[str, int]:
    """Rewrite every version on disk that holds an erased person (by customer_pkey or email) as a
    new version without them, and release the rewrites in place of the originals in one step
    (snapshots.release), which removes the originals. A version is never changed in place: a
    reader holds the old complete version or the new one, and a crash leaves the original named
    by the release (the next run rewrites it again) and the unfinished copy unnamed (swept).

    Who is erased: every value of the journal (privacy.erasure_pending: this run's requests and
    any a killed run left) and every value list_values found hashing to the suppression list
    (__listed), so a file the journal no longer knows about is still found."""
    con.execute(
        "create or replace temp table __file_values as "
        "select value from privacy.erasure_pending union select value from __listed"
    )
    removed: dict[str, int] = {}
    if not con.execute("select count(*) from __file_values").fetchall()[0][0]:
        return removed
    replaced: dict[tuple[str, str], str] = {}
    for name, version, path, staged in list(_version_dirs(publish_dir)):
        manifest = json.loads((path / snapshots.MANIFEST).read_text())
        counts = {}
        for f in manifest["files"]:
            reader = file_view(con, f["format"], path / f["path"], "__snapshot_file")
            columns = [r[0] for r in con.execute(f"describe select * from {reader}").fetchall()]
            where = " or ".join(f"{c} in (select value from __file_values)" for c in SNAPSHOT_KEYS if c in columns)
            if where and (n := con.execute(f"select count(*) from {reader} where {where}").fetchall()[0][0]):
                counts[f["path"]] = (n, where)
        if not counts:
            continue
        new_version = rewritten_version(version)
        tmp = path.parent / f".{new_version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(path, tmp)
        for f in manifest["files"]:
            if f["path"] not in counts:
                continue
            n, where = counts[f["path"]]
            source, target = path / f["path"], tmp / f["path"]
            reader = file_view(con, f["format"], source, "__snapshot_file")
            con.execute(
                f"copy (select * from {reader} where not ({where})) to ? ({WRITERS[f['format']]})", [target.as_posix()]
            )
            f.update(rows=f["rows"] - n, sha256=snapshots.file_sha256(target), bytes=target.stat().st_size)
            if f["path"] == f"{name}.parquet":
                manifest["rows"] -= n
            removed[f"{name}/{version}/{f['path']}"] = n
        manifest["version"] = new_version
        manifest["rewritten_from"] = version
        manifest.setdefault("erasures", []).append({"rewritten_at": now.isoformat(), "from_version": version})
        (tmp / snapshots.MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        os.replace(tmp, path.parent / new_version)
        crash_point("erasure:first_rewrite")
        if staged:  # not released yet: its run's publish/release will move the rewrite
            shutil.rmtree(path)
        else:
            replaced[(name, version)] = new_version
    if replaced:
        snapshots.release(publish_dir, {}, now=now, replaced=replaced)
    return removed


def erase_files(values: list[str], steps: dict[str, Callable[[list[str]], dict]]) -> dict[str, dict]:
    """Run each file step (previews, MLflow: whatever else tessera wrote that holds people) on the
    erased values; each must be idempotent (a resumed erasure runs it again)."""
    return {name: step(values) for name, step in steps.items()}


def apply_erasures(
    con,
    publish_dir: Path,
    run_id: str,
    now: datetime | None = None,
    file_steps: dict[str, Callable[[list[str]], dict]] | None = None,
) -> dict:
    """Steps 1-6 of the module docstring, as a journaled operation; the connection needs
    pseudonym.install().

    1. One transaction: identifiers collected and listed, rows deleted from raw and every built
       table, and the journal written (privacy.erasure_pending*: the values and the requests). A
       crash inside it changes nothing: the requests are still in raw next run.
    2. Files: published versions rewritten as new versions (erase_snapshots), then `file_steps`.
       A crash here leaves the journal: the next run does this step again from it.
    3. One transaction: the log entries written, the journal emptied, and a compaction of the
       warehouse file owed (privacy.maintenance; `compact` pays it).

    Returns the counts, and `values`: the erased values (for the bytes proof, never logged)."""
    now = now or datetime.now(UTC)
    phase = Phases()
    ensure_tables(con)
    snapshots.sweep(publish_dir)  # a killed rewrite's or release's leftovers: never scanned or rewritten
    with transaction(con):
        with phase("collect_identifiers"):
            requests = collect_identifiers(con)
        with phase("list_values"):
            list_values(con, publish_dir)
        with phase("erase_raw"):
            removed = erase_raw(con)
        with phase("add_listed_values"):
            add_listed_values(con)
        with phase("erase_built"):
            removed.update(erase_built(con))
        _journal(con, run_id, removed)
        crash_point("erasure:deleted")
    crash_point("erasure:journaled")
    with phase("erase_snapshots"):
        removed.update(erase_snapshots(con, publish_dir, now))
    values = [r[0] for r in con.execute("select distinct value from privacy.erasure_pending order by 1").fetchall()]
    with phase("erase_files"):
        files = erase_files(values, file_steps or {}) if values else {}
    crash_point("erasure:files")
    kinds = dict(con.execute("select kind, count(*) from privacy.erasure_pending group by 1 order by 1").fetchall())
    with transaction(con):
        completed = con.execute(sql.load(__file__, "log_completed"), {"processed_at": now}).fetchall()[0][0]
        if completed or values:
            con.execute("insert into privacy.maintenance values ('compact', ?)", [now])
        con.execute(sql.load(__file__, "clear_journal"))
    return {
        "requests": requests,
        "completed": completed,
        "identifiers": kinds,
        "removed": removed,
        "files": files,
        "seconds": phase.seconds,
        "values": values,
    }


def _journal(con, run_id: str, removed: dict[str, int]) -> None:
    """Write this run's requests and values into the journal (inside the caller's transaction)."""
    con.execute("insert into privacy.erasure_pending select distinct request_id, kind, value from __erase")
    for request_id, requested_at in con.execute("select request_id, requested_at from __requests").fetchall():
        per_request = dict(
            con.execute(
                "select kind, count(*) from __erase where request_id = ? group by 1 order by 1", [request_id]
            ).fetchall()
        )
        con.execute(
            "insert into privacy.erasure_pending_requests values (?, ?, ?, ?, ?)",
            [request_id, requested_at, run_id, json.dumps(per_request), json.dumps(removed)],
        )


def residue_columns(schema: str, columns: list[str]) -> list[str]:
    """The columns the residue check hashes: those that hold an identifier. Hashing every text
    value of every table costs minutes on large shops (docs/scaling.md); an identifier can only
    match a hash as a whole value, and identifiers live in these columns. tests/test_erasure.py scans
    every text column of every table and file independently."""
    named = set(IDENTIFIER_COLUMNS) | (set(RAW_IDENTIFIER_COLUMNS) if schema == "raw" else set())
    return [c for c in columns if c in named]


def residue(con, publish_dir: Path, reuse_listed: bool = False) -> dict[str, int]:
    """Every identifier-holding value (residue_columns) of every table, raw included, and of every
    published file whose hash is on the suppression list, counted per place. Empty: nothing of an
    erased person is left.

    The distinct values of all those places are hashed once (list_values), as they are and, where
    that changes them, lower-cased and trimmed; only when some value is listed are the places
    searched for it, to say where and how many rows.

    reuse_listed: use the __listed that list_values left on this connection instead of hashing
    again. Sound only if every change since was a deletion of rows or a rewrite of a file without
    some rows, as in apply_erasures: that adds no value anywhere, so each value listed now was
    listed then, and the count below reads the places as they are now."""
    if not reuse_listed:
        list_values(con, publish_dir)
    found: dict[str, int] = hashed_id_residue(con, publish_dir)
    if not con.execute("select count(*) from __listed").fetchall()[0][0]:
        return found
    for relation, column, label, _ in _places(con, publish_dir):
        sql = f"select count(*) from {relation} where {column} in (select value from __listed)"
        if n := con.execute(sql).fetchall()[0][0]:
            found[label] = n
    return found


# a published column of hashed ids (exports/customer_identifiers: the serving API's lookup), hashed
# as the suppression list is: an erased id is found there by equality, not by hashing again
HASHED_ID_COLUMN = "id_hash"


def hashed_id_residue(con, publish_dir: Path) -> dict[str, int]:
    """Rows of every retained published file whose id_hash is on the suppression list, per file.
    The erasure's rewrite removes them by customer_pkey; this proves no id of an erased person is
    left in the lookup under another key (one its identity graph attached to someone else since)."""
    found: dict[str, int] = {}
    for i, (name, version, path, _, f) in enumerate(_snapshot_files(publish_dir)):
        reader = file_view(con, f["format"], path / f["path"], f"__hashed_ids_{i}")
        columns = [r[0] for r in con.execute(f"describe select * from {reader}").fetchall()]
        if HASHED_ID_COLUMN not in columns:
            continue
        sql = (
            f"select count(*) from {reader} "
            f"where {HASHED_ID_COLUMN} in (select value_hash from privacy.erased_identifiers)"
        )
        if n := con.execute(sql).fetchall()[0][0]:
            found[f"{name}/{version}/{f['path']}:{HASHED_ID_COLUMN}"] = n
    return found


def listed_hashes(con) -> list[str]:
    """Every hash of the suppression list (privacy.erased_identifiers): for the online store's."""
    ensure_tables(con)
    return [
        h for (h,) in con.execute("select distinct value_hash from privacy.erased_identifiers order by 1").fetchall()
    ]


def requests_logged(con) -> int:
    """Erasure requests ever completed on this warehouse."""
    return con.execute("select count(distinct request_id) from privacy.erasure_log").fetchall()[0][0]


def compaction_owed(con) -> bool:
    return bool(con.execute("select count(*) from privacy.maintenance where task = 'compact'").fetchall()[0][0])


def compaction_paid(con) -> None:
    """The warehouse file was compacted (byte_residue.compact): nothing is owed any more."""
    con.execute("delete from privacy.maintenance where task = 'compact'")
    con.execute("checkpoint")
