"""The crash matrix of issue 33: kill a run at each crash point of an erasure and of a release,
run again, and compare what consumers read with an uninterrupted run's.

    .venv/bin/python bench/crash_matrix.py                      # every point
    .venv/bin/python bench/crash_matrix.py --points erasure:first_rewrite release:promoted

The run lives in data/bench/crash_matrix (its own TESSERA_DATA_DIR and Dagster home). It
generates a small shop, runs the whole graph once (everyone published), then asks for the erasure
of three customers. That state is saved, and for the uninterrupted reference and for each crash
point it is restored to the same path (MLflow stores absolute artifact paths) and run:

- reference: one run;
- a point: one run with TESSERA_CRASH_AT=<point> (it dies by SIGKILL at that point), the
  published release checked while the run is dead (every file the release names matches its
  manifest's sha256; nobody half-erased is served: either the old complete set or the new), then
  one run without it.

After the last run of each, it reports: the release fingerprint (each table's rows and a hash of
its rows without the run-id columns; each export's rows), whether it equals the reference's, the
erasure log's requests, what is left in the journal, and a byte scan of the data directory and
the Dagster home for the erased people's identifiers (the landing folder and the generated truth
excluded: the shop's delivery and the demo's answers). Figures go to
bench/results/crash_matrix.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from tessera import faults  # noqa: E402
from tessera.landing.generate import GenerateConfig, generate  # noqa: E402
from tessera.privacy import byte_residue  # noqa: E402
from tessera.publish import snapshots  # noqa: E402

DATA = {"customers": 150, "days": 100, "seed": 11, "end_date": date(2026, 10, 31)}
DAGSTER_YAML = "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"
REQUESTED_AT = "2026-10-30T09:00:00+00:00"


def environment(data_dir: Path, home: Path, crash_at: str | None = None) -> dict[str, str]:
    from tessera.settings import DERIVED_LOCATION_VARS

    env = {k: v for k, v in os.environ.items() if k not in DERIVED_LOCATION_VARS and k != faults.VARIABLE}
    env.update(
        TESSERA_DATA_DIR=str(data_dir),
        DAGSTER_HOME=str(home),
        DO_NOT_TRACK="1",
        GX_ANALYTICS_ENABLED="false",
        TESSERA_MODE=env.get("TESSERA_MODE", "demo"),
    )
    if crash_at:
        env[faults.VARIABLE] = crash_at
    return env


def tessera_run(env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", "run"], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def request_erasure(data_dir: Path, people: int = 3, unique_email: bool = True) -> list[str]:
    """Write erasure requests (by CRM id) for the first `people` customers with an order and, if
    `unique_email`, an email nobody else has; returns their CRM ids."""
    landing = data_dir / "landing"
    emails = (
        "email is not null and lower(trim(email)) in (select lower(trim(email)) from c group by 1 having count(*) = 1)"
    )
    con = duckdb.connect()
    try:
        con.execute(
            "create temp table c as select * from read_csv(?, all_varchar = true)",
            [str(landing / "customers" / "customers.csv")],
        )
        ids = [
            r[0]
            for r in con.execute(
                f"""
                select distinct customer_id from c
                where {emails if unique_email else "true"}
                  and customer_id in (select customer_id from read_csv(?, all_varchar = true))
                order by customer_id
                limit ?
                """,
                [str(landing / "orders" / "orders.csv"), people],
            ).fetchall()
        ]
    finally:
        con.close()
    lines = [
        {
            "request_id": f"CM{i}",
            "customer_id": c,
            "email": None,
            "request_type": "erasure",
            "channel": None,
            "purpose": None,
            "granted": None,
            "requested_at": REQUESTED_AT,
        }
        for i, c in enumerate(ids, 1)
    ]
    (landing / "privacy").mkdir(parents=True, exist_ok=True)
    (landing / "privacy" / "erasure_requests.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return ids


def identifiers(db: Path, crm_ids: list[str]) -> list[str]:
    """Every identifier the warehouse links to these customers, before the erasure: the identity
    graph's nodes (CRM ids, emails, phones, cards, cookies, receipts), customer keys, published
    keys and order ids. Read from the built tables, independently of the erasure code."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("create temp table ids as select unnest(?::varchar[]) as customer_id", [crm_ids])
        keys = [
            r[0]
            for r in con.execute(
                "select distinct customer_key from intermediate.int_identities_resolved "
                "where node_type = 'crm' and node_value in (select customer_id from ids)"
            ).fetchall()
        ]
        con.execute("create temp table keys as select unnest(?::varchar[]) as customer_key", [keys])
        values = {
            r[0]
            for r in con.execute(
                """
                select node_value from intermediate.int_identities_resolved where customer_key in (select * from keys)
                union select customer_key from keys
                union select order_id from staging.stg_orders where customer_id in (select customer_id from ids)
                """
            ).fetchall()
        }
    finally:
        con.close()
    values |= delivered_attributes(db.parent / "landing" / "customers" / "customers.csv", crm_ids)
    from tessera.privacy.pseudonym import DEMO_SALT, pseudonym

    salt = os.environ.get("TESSERA_PSEUDONYM_SALT", DEMO_SALT)
    values |= {pseudonym(salt, k) for k in keys}
    return sorted(v for v in values if v)


def delivered_attributes(customers_csv: Path, crm_ids: list[str]) -> set[str]:
    """The person's phone and email as delivered (not normalised), street address, and first and
    last names, each only if no other customer in the file shares it (a shared name found in a
    file is not evidence of this person)."""
    con = duckdb.connect()
    try:
        con.execute("create temp table c as select * from read_csv(?, all_varchar = true)", [str(customers_csv)])
        values = set()
        present = {r[0] for r in con.execute("describe c").fetchall()}
        for column in [c for c in ("first_name", "last_name", "address", "phone", "email") if c in present]:
            values |= {
                r[0]
                for r in con.execute(
                    f"""
                    select {column} from c where customer_id in (select unnest(?::varchar[]))
                      and lower({column}) in (select lower({column}) from c group by 1 having count(*) = 1)
                    """,
                    [crm_ids],
                ).fetchall()
                if r[0]
            }
        return values
    finally:
        con.close()


READERS = {"parquet": "read_parquet", "csv": "read_csv", "jsonl": "read_json"}


def release_fingerprint(publish_dir: Path) -> dict[str, object]:
    """What consumers read: per current table, its rows and a hash of them without the columns
    naming MLflow runs and model versions (they differ between otherwise identical runs); per
    export file, its rows."""
    con = duckdb.connect()
    out: dict[str, object] = {}
    try:
        for name in snapshots.current_names(publish_dir):
            snap = snapshots.current_snapshot(publish_dir, name)
            columns = "columns(lambda c: c not like '%run_id' and c <> 'model_version')"
            out[name] = list(
                con.execute(f"select count(*), sum(hash({columns})) from read_parquet('{snap.parquet}')").fetchall()[0]
            )
            for f in snap.manifest["files"]:
                if f["format"] != "parquet":
                    out[f"{name}/{f['path']}"] = f["rows"]
    finally:
        con.close()
    return out


def release_consistent(publish_dir: Path) -> list[str]:
    """Problems with the release as a reader finds it: a named version missing, or a file whose
    bytes do not match its manifest's sha256 (the issue's 2,915-row file under a 2,917 manifest)."""
    problems = []
    for name in snapshots.current_names(publish_dir):
        try:
            snap = snapshots.current_snapshot(publish_dir, name)
        except (OSError, ValueError) as err:
            problems.append(f"{name}: {type(err).__name__}")
            continue
        for f in snap.manifest["files"]:
            path = snap.path / f["path"]
            if not path.exists() or snapshots.file_sha256(path) != f["sha256"]:
                problems.append(f"{name}/{snap.version}/{f['path']}: does not match its manifest")
    return problems


def journal(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            "logged_requests": con.execute("select count(distinct request_id) from privacy.erasure_log").fetchall()[0][
                0
            ],
            "pending_values": con.execute("select count(*) from privacy.erasure_pending").fetchall()[0][0],
            "pending_requests": con.execute("select count(*) from privacy.erasure_pending_requests").fetchall()[0][0],
            "owed_compactions": con.execute("select count(*) from privacy.maintenance").fetchall()[0][0],
        }
    finally:
        con.close()


def byte_scan(data_dir: Path, home: Path, values: list[str]) -> dict:
    scan = byte_residue.scan(
        {"data": data_dir, "dagster_home": home},
        values,
        {"landing": data_dir / "landing", "truth": data_dir / "truth"},
    )
    return {"files": scan.files, "bytes": scan.bytes, "hits": scan.hits}


def prepare(root: Path) -> tuple[Path, Path, list[str]]:
    """Generate, run once, request three erasures; save the state beside it. Returns the saved
    data dir and home, and the erased people's identifiers."""
    data_dir, home = root / "data", root / "dagster_home"
    shutil.rmtree(root, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    generate(GenerateConfig(**DATA), data_dir / "landing", data_dir / "truth")
    first = tessera_run(environment(data_dir, home))
    if first.returncode != 0:
        raise RuntimeError("the first run failed:\n" + first.stdout[-3000:] + first.stderr[-3000:])
    crm_ids = request_erasure(data_dir)
    values = identifiers(data_dir / "tessera.duckdb", crm_ids)
    saved = root / "saved"
    shutil.copytree(data_dir, saved / "data", symlinks=True)
    shutil.copytree(home, saved / "dagster_home", symlinks=True)
    (saved / "identifiers.json").write_text(json.dumps(values))
    return saved, root, values


def restore(saved: Path, root: Path) -> tuple[Path, Path]:
    data_dir, home = root / "data", root / "dagster_home"
    shutil.rmtree(data_dir, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(saved / "data", data_dir, symlinks=True)
    shutil.copytree(saved / "dagster_home", home, symlinks=True)
    return data_dir, home


def run_case(saved: Path, root: Path, values: list[str], point: str | None) -> dict:
    data_dir, home = restore(saved, root)
    result: dict = {"point": point or "none (reference)"}
    started = time.perf_counter()
    if point:
        killed = tessera_run(environment(data_dir, home, point))
        result["killed"] = killed.returncode == -9
        if not result["killed"]:
            result["killed_run_output"] = (killed.stdout + killed.stderr)[-2000:]
        result["while_dead"] = {
            "release_problems": release_consistent(data_dir / "publish"),
            **journal(data_dir / "tessera.duckdb"),
        }
    final = tessera_run(environment(data_dir, home))
    result["final_run_ok"] = final.returncode == 0
    if final.returncode != 0:
        result["final_run_output"] = (final.stdout + final.stderr)[-3000:]
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["release_problems"] = release_consistent(data_dir / "publish")
    result["fingerprint"] = release_fingerprint(data_dir / "publish")
    result["journal"] = journal(data_dir / "tessera.duckdb")
    result["bytes"] = byte_scan(data_dir, home, values)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", nargs="*", default=list(faults.POINTS), choices=faults.POINTS)
    parser.add_argument("--root", type=Path, default=ROOT / "data" / "bench" / "crash_matrix")
    parser.add_argument("--reuse", action="store_true", help="start from the state the last call saved")
    args = parser.parse_args(argv)
    if args.reuse and (args.root / "saved" / "identifiers.json").exists():
        saved, root = args.root / "saved", args.root
        values = json.loads((saved / "identifiers.json").read_text())
    else:
        saved, root, values = prepare(args.root)
    reference = run_case(saved, root, values, None)
    rows = [reference]
    for point in args.points:
        case = run_case(saved, root, values, point)
        case["same_as_reference"] = case["fingerprint"] == reference["fingerprint"]
        rows.append(case)
        print(
            f"{point:24} killed={case.get('killed')} dead-release-problems={len(case['while_dead']['release_problems'])} "
            f"final_ok={case['final_run_ok']} same={case['same_as_reference']} journal={case['journal']} "
            f"byte_hits={len(case['bytes']['hits'])} ({case['seconds']} s)",
            flush=True,
        )
    print(
        f"reference: final_ok={reference['final_run_ok']} journal={reference['journal']} "
        f"byte_hits={len(reference['bytes']['hits'])} files_scanned={reference['bytes']['files']}"
    )
    out = ROOT / "bench" / "results" / "crash_matrix.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"identifiers_scanned": len(values), "cases": rows}, indent=2, default=str) + "\n")
    print(f"figures: {out.relative_to(ROOT)}")
    ok = all(
        r["final_run_ok"] and not r["release_problems"] and not r["bytes"]["hits"] and r.get("same_as_reference", True)
        for r in rows
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
