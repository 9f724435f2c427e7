"""Publishing a table: build it beside the published one, validate it, write it as a snapshot
version and swap it in, in that order (docs/publishing.md).

The new table is built as publish.<name>__next from the dbt inputs (dbt_project/models/audiences:
the erasure and consent filters) with the salted pseudonymous key applied here, at publish time
(tessera/privacy/pseudonym.py: the salt is bound into a session variable, never written into SQL
text or into dbt). Its validations count violations on it. Only if every check passes is it written
as a new snapshot version (tessera/publish/snapshots.py) and swapped in for the published table in
one transaction; a failed check or step leaves the last good version in place everywhere.

What a table is (its SQL, validations, exports and the upkeep run after its swap) is declared in
tessera/publish/published.py; Dagster runs the steps (orchestration/publish.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from tessera import markdown
from tessera.db import table_exists, transaction
from tessera.faults import crash_point
from tessera.privacy import pseudonym
from tessera.publish import holdout, snapshots
from tessera.publish.queries import bind, load
from tessera.publish.snapshots import Export
from tessera.publish.uplift import uplift_parameters

CANDIDATE_SUFFIX = "__next"


@dataclass(frozen=True)
class Validation:
    """A blocking check on the candidate table `{table}`: `sql` counts violations (0 = pass)."""

    name: str
    description: str
    sql: str
    # compares with the currently published table: passes on the first publish
    compares_with_published: bool = False


def validation(name: str, description: str, compares_with_published: bool = False, **fragments: str) -> Validation:
    """The validation whose SQL is tessera/publish/sql/checks/<name>.sql; `fragments` are the
    relations it names besides {table} (SQL, not values)."""
    return Validation(
        name, description, load(f"checks/{name}").format(table="{table}", **fragments), compares_with_published
    )


@dataclass(frozen=True)
class Published:
    name: str
    description: str
    # may name the parameters of parameters() as $name
    sql: str
    validations: tuple[Validation, ...] = ()
    # SQL run in the swap transaction after the new version is in place (e.g. history upkeep)
    after_swap: tuple[str, ...] = ()
    # files written into each snapshot version beside the Parquet (docs/publishing.md)
    exports: tuple[Export, ...] = ()
    # when a version holds no row although customers are known: said with it (empty_reason)
    empty_when: str = ""
    # a table of customers (empty when nobody is known); False: of products, whose emptiness is empty_when's
    keyed_by_customer: bool = True


# why every published table is empty on a shop that knows nobody (docs/landing_contract.md, "Partial shops")
NO_CUSTOMER = (
    "no customer is known: the landing delivered no CRM profile (customers), no order with a customer_id "
    "(orders) and no clickstream event with a logged-in customer_id (events), or every customer asked for erasure"
)


def empty_reason(con, spec: Published, rows: int) -> str | None:
    """Why a published version of `spec` holds no row (None when it holds some): for a table of
    customers, nobody is known to tessera (audiences.active_customers is empty), else the table's
    own `empty_when`."""
    if rows:
        return None
    if not spec.keyed_by_customer:
        return spec.empty_when or "its query returned no row"
    (known,) = con.execute("select count(*) from audiences.active_customers").fetchone()
    return NO_CUSTOMER if known == 0 else (spec.empty_when or "its query returned no row")


def parameters(settings) -> dict[str, object]:
    """What a published table's SQL and validations bind: the holdout (tessera/publish/holdout.py)
    and the uplift's window and confidence (tessera/publish/uplift.py)."""
    return {
        "holdout_threshold": holdout.threshold(settings.holdout_share),
        "holdout_share": float(settings.holdout_share),
        **uplift_parameters(settings.uplift_window_days, settings.uplift_confidence),
    }


def candidate_table(name: str) -> str:
    return f"publish.{name}{CANDIDATE_SUFFIX}"


def build_candidate(con, spec: Published, settings, log) -> str:
    """Build publish.<name>__next from the current inputs, keyed by the salted pseudonymous key;
    returns its name. Re-keys tables published before pseudonymous keys first."""
    pseudonym.install(con, settings.pseudonym_salt)
    holdout.install(con)
    con.execute("create schema if not exists publish")
    rekey_published_tables(con, log)
    candidate = candidate_table(spec.name)
    con.execute(f"create or replace table {candidate} as {spec.sql}", bind(spec.sql, parameters(settings)))
    return candidate


def drop_candidate(con, candidate: str) -> None:
    """Drop a candidate that failed its checks: the published version stays."""
    con.execute(f"drop table {candidate}")


def rekey_published_tables(con, log) -> None:
    """Published tables keyed by customer_key (written before pseudonymous keys) are re-keyed in
    place: customer_key is replaced by customer_pkey, so no internal key stays published."""
    rows = con.execute(
        "select table_name from information_schema.columns where table_schema = 'publish' and column_name = 'customer_key'"
    ).fetchall()
    for (table,) in rows:
        con.execute(f"alter table publish.{table} add column if not exists customer_pkey varchar")
        con.execute(f"update publish.{table} set customer_pkey = customer_pkey(customer_key)")
        con.execute(f"alter table publish.{table} drop column customer_key")
        log.info(f"publish.{table}: customer_key replaced by customer_pkey (docs/privacy.md)")


def run_validations(
    con, spec: Published, candidate: str, params: dict[str, object] | None = None
) -> list[tuple[Validation, int]]:
    """Each validation's violation count; `params` are what its SQL may bind ($name)."""
    results = []
    for v in spec.validations:
        if v.compares_with_published and not table_exists(con, "publish", spec.name):
            results.append((v, 0))  # first publish: nothing to compare with
            continue
        sql = v.sql.format(table=candidate)
        results.append((v, con.execute(sql, bind(sql, params or {})).fetchall()[0][0]))
    return results


def check_records(results: list[tuple[Validation, int]], gate: str, suite_name: str, suite) -> list[dict]:
    """The checks a snapshot's manifest records as passed: the validations, then the Great
    Expectations suite (`suite`: its result, with .evaluated and .rows_validated)."""
    return [{"name": v.name, "passed": True, "violations": n} for v, n in results] + [
        {
            "name": gate,
            "passed": True,
            "suite": f"expectations/{suite_name}.json",
            "expectations_evaluated": suite.evaluated,
            "rows_validated": suite.rows_validated,
        }
    ]


def swap_in(con, name: str, candidate: str, after_swap: tuple[str, ...] = ()) -> int:
    """Replace publish.<name> with the candidate in one transaction."""
    with transaction(con):
        con.execute(f"drop table if exists publish.{name}")
        con.execute(f"alter table {candidate} rename to {name}")
        for sql in after_swap:
            con.execute(sql)
    return con.execute(f"select count(*) from publish.{name}").fetchall()[0][0]


def publish_version(
    con, spec: Published, candidate: str, settings, run_id: str, checks: list[dict], log, release_now: bool
) -> dict:
    """Write the candidate as a new snapshot version into the run's staging directory, then swap
    it in for the DuckDB table. publish/release moves every table's staged version into place
    together; `release_now` (the run does not include publish/release, e.g. one table
    materialised from the UI) releases this table's version by itself.

    The snapshot is written first (complete or not at all) and discarded if the swap fails."""
    now = datetime.now(UTC)
    version = snapshots.new_version(now, run_id)
    staging = snapshots.staging_dir(settings.publish_dir, run_id)
    snap = snapshots.write_snapshot(
        con,
        staging,
        spec.name,
        candidate,
        version,
        published_at=now,
        run_id=run_id,
        checks=checks,
        exports=spec.exports,
        pseudonym_salt=pseudonym.salt_label(settings.pseudonym_salt),
        salt_check=pseudonym.salt_check(settings.pseudonym_salt),
    )
    try:
        rows = swap_in(con, spec.name, candidate, spec.after_swap)
    except BaseException:
        snapshots.discard(staging, spec.name, version)
        raise
    if release_now:
        changes = snapshots.promote_staged(settings.publish_dir, run_id)
        done = snapshots.release(
            settings.publish_dir, changes, run_id=run_id, now=now, keep_days=settings.publish_retention_days
        )
        log.info(f"publish/{spec.name}: released on its own (publish/release is not in this run)")
        if done["removed"]:
            log.info(f"publish: removed {len(done['removed'])} version(s) no release names")
    return {"rows": rows, "version": version, "snapshot": snap}


def release_staged(settings, run_id: str, run_in_progress) -> dict:
    """Move every version the run staged into place and release them together (release.json in
    one step), then remove what no release names: versions, and the staging directories of runs
    no longer in progress (`run_in_progress(run_id)`). Returns the release with "changes" (the
    versions moved) and "stale_runs" (the staging directories removed)."""
    changes = snapshots.promote_staged(settings.publish_dir, run_id)
    crash_point("release:promoted")
    done = snapshots.release(settings.publish_dir, changes, run_id=run_id, keep_days=settings.publish_retention_days)
    stale_runs = snapshots.sweep_staging(settings.publish_dir, run_in_progress)
    return {**done, "changes": changes, "stale_runs": stale_runs}


def drop_leftover_candidates(con) -> list[str]:
    """publish.<name>__next tables: a candidate lives within one publish step (which holds the
    pool, as this step does), so any that exists now was left by a killed run."""
    names = [
        r[0]
        for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'publish' and table_name like '%\\_\\_next' escape '\\'"
        ).fetchall()
    ]
    for name in names:
        con.execute(f"drop table publish.{name}")
    return names


def exports_table(manifest: dict) -> str:
    rows = [f for f in manifest["files"] if f["format"] != "parquet"]
    if not rows:
        return "no exports"
    cells = [(f["path"], f["rows"], ", ".join(f["pii"]) or "none") for f in rows]
    return markdown.table(cells, ["file", "rows", "personal data"], ("left", "right", "left"))
