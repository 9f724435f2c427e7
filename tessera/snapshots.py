"""Versioned publish snapshots: what consumers outside DuckDB read.

Layout under the publish directory, per published table::

    <name>/current                          pointer: {"version": ..., "manifest": ...}
    <name>/versions/<version>/<name>.parquet
    <name>/versions/<version>/exports/...   CSV / JSON Lines exports of that version
    <name>/versions/<version>/manifest.json row counts, files with sha256, checks passed, models

A version is written into a hidden temporary directory and renamed into place, so a reader never
sees a half-written version. The pointer is a small JSON file replaced with os.replace, so it
always names a complete version. Versions older than the retention period are removed, never
the current one. Consumers read the pointer, never list the versions directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

POINTER = "current"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class Export:
    """A file (or one file per value of `per`) written beside a snapshot's Parquet.

    `sql` selects from `{table}` (the version being published) and may join the marts. `pii`
    names the personal columns it carries on purpose (documented in the manifest and
    docs/publishing.md); an export without PII must leave it empty."""

    name: str
    description: str
    sql: str
    format: str  # "csv" or "jsonl"
    per: str | None = None  # one file per distinct value of this column of the result
    pii: tuple[str, ...] = ()
    # the (channel, purpose) consent every customer in it has; the SQL applies it, the manifest says it
    consent: tuple[str, str] | None = None

    def __post_init__(self):
        if self.format not in ("csv", "jsonl"):
            raise ValueError(f"export {self.name}: format must be csv or jsonl, got {self.format!r}")


@dataclass(frozen=True)
class Snapshot:
    name: str
    version: str
    path: Path  # the version's directory
    manifest: dict

    @property
    def parquet(self) -> Path:
        return self.path / f"{self.name}.parquet"


def new_version(now: datetime, run_id: str) -> str:
    """Sortable by time; the run id keeps two publishes in the same microsecond apart."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + re.sub(r"[^0-9a-zA-Z]", "", run_id)[:8]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _slug(value) -> str:
    text = re.sub(r"[^0-9a-zA-Z]+", "_", str(value)).strip("_").lower()
    return text or "blank"


def _copy(con, sql: str, path: Path, fmt: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    options = "format csv, header true" if fmt == "csv" else "format json"
    # COPY answers with the number of rows it wrote: counting the query again would run it twice
    # (the 1M-customer recommendation feed: 14.0 s -> see docs/scaling.md)
    return con.execute(f"copy ({sql}) to '{path.as_posix()}' ({options})").fetchall()[0][0]


def _write_export(con, export: Export, table: str, directory: Path) -> list[dict]:
    sql = export.sql.format(table=table)
    path = directory / f"{export.name}.{export.format}"
    if export.per is None:
        return [_export_file(export, path, _copy(con, sql, path, export.format), directory)]
    values = [r[0] for r in con.execute(f"select distinct {export.per} from ({sql}) order by 1").fetchall()]
    slugs = [_slug(v) for v in values]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"export {export.name}: values of {export.per} collide as file names: {values}")
    files = []
    con.execute(f"create or replace temp table __export_rows as {sql}")
    try:
        for value, slug in zip(values, slugs, strict=True):
            # the value comes from the data: bound as a parameter, never spliced into the SQL
            con.execute("create or replace temp table __export_value as select ? as v", [value])
            part = f"select * from __export_rows where {export.per} is not distinct from (select v from __export_value)"
            path = directory / export.name / f"{slug}.{export.format}"
            rows = _copy(con, part, path, export.format)
            files.append(_export_file(export, path, rows, directory, value))
    finally:
        con.execute("drop table if exists __export_rows")
        con.execute("drop table if exists __export_value")
    return files


def _export_file(export: Export, path: Path, rows: int, directory: Path, value=None) -> dict:
    return {
        "path": path.relative_to(directory.parent).as_posix(),
        "export": export.name,
        "format": export.format,
        **({"per": export.per, "value": value} if export.per else {}),
        "rows": rows,
        "pii": list(export.pii),
        "consent": "/".join(export.consent) if export.consent else None,
        "description": export.description,
    }


def write_snapshot(
    con,
    publish_dir: Path,
    name: str,
    table: str,
    version: str,
    *,
    published_at: datetime,
    run_id: str,
    checks: list[dict],
    exports: tuple[Export, ...] = (),
) -> Snapshot:
    """Write `table` (a DuckDB relation) as version `version` of `name`, complete or not at all.

    The manifest records the rows, columns, each file with its sha256, the checks that passed and
    the models the rows came from (distinct values of the columns naming MLflow runs and model
    versions). The pointer is not moved: call set_current once the version is also in DuckDB."""
    versions = publish_dir / name / "versions"
    final = versions / version
    if final.exists():
        raise FileExistsError(f"snapshot {name} version {version} already exists")
    tmp = versions / f".{version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        parquet = tmp / f"{name}.parquet"
        con.execute(f"copy {table} to '{parquet.as_posix()}' (format parquet)")
        rows = con.execute(f"select count(*) from {table}").fetchall()[0][0]
        columns = con.execute(f"describe {table}").fetchall()
        model_columns = [c[0] for c in columns if c[0].endswith("run_id") or c[0] == "model_version"]
        models = {
            c: [
                r[0]
                for r in con.execute(f"select distinct {c} from {table} where {c} is not null order by 1").fetchall()
            ]
            for c in model_columns
        }
        files = [{"path": parquet.name, "format": "parquet", "rows": rows, "pii": []}]
        for export in exports:
            files.extend(_write_export(con, export, table, tmp / "exports"))
        for f in files:
            f["sha256"] = file_sha256(tmp / f["path"])
            f["bytes"] = (tmp / f["path"]).stat().st_size
        manifest = {
            "format": MANIFEST_FORMAT,
            "name": name,
            "version": version,
            "published_at": published_at.astimezone(UTC).isoformat(),
            "dagster_run_id": run_id,
            "rows": rows,
            "columns": [{"name": c[0], "type": c[1]} for c in columns],
            "models": models,
            "checks": checks,
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Snapshot(name, version, final, manifest)


def discard(publish_dir: Path, name: str, version: str) -> None:
    """Remove a version that never became current (its DuckDB swap failed)."""
    if current_version(publish_dir, name) == version:
        raise ValueError(f"{name} version {version} is current; it cannot be discarded")
    shutil.rmtree(publish_dir / name / "versions" / version, ignore_errors=False)


def set_current(publish_dir: Path, name: str, version: str) -> None:
    path = publish_dir / name / "versions" / version
    if not (path / MANIFEST).exists():
        raise FileNotFoundError(f"{path} is not a complete snapshot (no {MANIFEST})")
    pointer = publish_dir / name / POINTER
    tmp = pointer.with_name(f".{POINTER}.tmp")
    tmp.write_text(json.dumps({"version": version, "manifest": f"versions/{version}/{MANIFEST}"}) + "\n")
    os.replace(tmp, pointer)


def current_version(publish_dir: Path, name: str) -> str | None:
    pointer = publish_dir / name / POINTER
    if not pointer.exists():
        return None
    return json.loads(pointer.read_text())["version"]


def current_snapshot(publish_dir: Path, name: str) -> Snapshot:
    version = current_version(publish_dir, name)
    if version is None:
        raise FileNotFoundError(f"{name} has never been published under {publish_dir} (no {name}/{POINTER})")
    path = publish_dir / name / "versions" / version
    return Snapshot(name, version, path, json.loads((path / MANIFEST).read_text()))


def versions(publish_dir: Path, name: str) -> list[str]:
    root = publish_dir / name / "versions"
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def prune(publish_dir: Path, name: str, keep_days: float, now: datetime) -> list[str]:
    """Remove versions published more than `keep_days` before `now`, never the current one, and
    leftovers of interrupted writes. Returns the versions removed."""
    current = current_version(publish_dir, name)
    cutoff = now.astimezone(UTC) - timedelta(days=keep_days)
    removed = []
    root = publish_dir / name / "versions"
    for version in versions(publish_dir, name):
        if version == current:
            continue
        manifest = json.loads((root / version / MANIFEST).read_text())
        if datetime.fromisoformat(manifest["published_at"]) < cutoff:
            shutil.rmtree(root / version)
            removed.append(version)
    if root.exists():
        for leftover in root.glob(".*.tmp"):
            shutil.rmtree(leftover)
    return removed
