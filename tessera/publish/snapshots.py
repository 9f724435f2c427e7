"""Versioned publish snapshots and releases: what consumers outside DuckDB read.

Layout under the publish directory::

    release.json                            {"current": {name: version}, "retained": {name: [...]}}
    <name>/versions/<version>/<name>.parquet
    <name>/versions/<version>/exports/...   CSV / JSON Lines exports of that version
    <name>/versions/<version>/manifest.json row counts, files with sha256, checks passed, models
    .staging/<run id>/<name>/versions/...   versions a run has written, not yet released

A version is written into a hidden temporary directory and renamed into place, so a reader never
sees a half-written version. A run writes its versions into its staging directory; publish/release
moves them under <name>/versions/ and then replaces release.json (one os.replace), so readers move
from one complete set of versions (every table's) to the next in one step. A version is never
changed in place: an erasure writes a rewritten copy as a new version and releases it in place of
the old one (tessera/privacy/erasure.py). Whatever the release does not name (versions left by a crash,
replaced or expired versions) is removed by the next release. Consumers read release.json (or
current_snapshot), never list the versions directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tessera.publish.columns import descriptions as column_descriptions

POINTER = "current"  # per-table pointer of releases before release.json (read, then removed)
RELEASE = "release.json"
RELEASE_FORMAT = 1
STAGING = ".staging"
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
    pseudonym_salt: str | None = None,
    salt_check: str | None = None,
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
        described = column_descriptions(f"publish.{name}")
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
            # each column's meaning travels with the data (tessera/publish/columns.yml)
            "columns": [{"name": c[0], "type": c[1], "description": described.get(c[0], "")} for c in columns],
            "models": models,
            "checks": checks,
            "files": files,
        }
        if pseudonym_salt is not None:  # "demo" or "deployment": serving refuses "demo" in production
            manifest["pseudonym_salt"] = pseudonym_salt
        if salt_check is not None:  # pseudonym.salt_check: the serving API's lookup verifies its salt by it
            manifest["salt_check"] = salt_check
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


# --- the release: which version of every table is current, moved in one step ---------------------


def _legacy_release(publish_dir: Path) -> dict:
    """The release a publish directory written before releases implies: each table's own
    `current` pointer, and every complete version on disk retained."""
    current, retained = {}, {}
    if publish_dir.exists():
        for pointer in sorted(publish_dir.glob(f"*/{POINTER}")):
            name = pointer.parent.name
            current[name] = json.loads(pointer.read_text())["version"]
            retained[name] = versions(publish_dir, name)
    return {"format": RELEASE_FORMAT, "release": None, "current": current, "retained": retained}


def read_release(publish_dir: Path) -> dict:
    """{"release", "released_at", "dagster_run_id", "current": {name: version}, "retained":
    {name: [versions]}}: what readers see. An unreadable release file is an error, never
    "nothing published" (a reader keeps what it has, tessera/serving.py)."""
    path = publish_dir / RELEASE
    if not path.exists():
        return _legacy_release(publish_dir)
    try:
        release = json.loads(path.read_text())
        release["current"], release["retained"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a readable release ({type(err).__name__}: {err})") from err
    return release


def _complete(publish_dir: Path, name: str, version: str) -> Path:
    path = publish_dir / name / "versions" / version
    if not (path / MANIFEST).exists():
        raise FileNotFoundError(f"{path} is not a complete snapshot (no {MANIFEST})")
    return path


def release(
    publish_dir: Path,
    changes: dict[str, str],
    *,
    run_id: str = "",
    now: datetime | None = None,
    keep_days: float | None = None,
    replaced: dict[tuple[str, str], str] | None = None,
) -> dict:
    """Make `changes` ({name: version}, each a complete version under <name>/versions/) current,
    together with every other table's current version, in one step: the release file is written
    beside the old one and renamed over it, so a reader sees the previous set or the new one,
    never a mix.

    `replaced` ({(name, old version): new version}) swaps rewritten versions in for the ones they
    replace wherever the release names them (an erasure, tessera/privacy/erasure.py). `keep_days` drops
    from the release the versions published longer ago than that, never a current one. Then
    every version directory the release does not name is removed (sweep). Returns the release."""
    now = now or datetime.now(UTC)
    old = read_release(publish_dir)
    current = dict(old["current"])
    retained = {name: list(vs) for name, vs in old["retained"].items()}
    for (name, before), after in (replaced or {}).items():
        _complete(publish_dir, name, after)
        if current.get(name) == before:
            current[name] = after
        retained[name] = [after if v == before else v for v in retained.get(name, [])]
    for name, version in changes.items():
        _complete(publish_dir, name, version)
        current[name] = version
        retained.setdefault(name, [])
        if version not in retained[name]:
            retained[name].append(version)
    if keep_days is not None:
        cutoff = now.astimezone(UTC) - timedelta(days=keep_days)
        for name, vs in retained.items():
            retained[name] = [v for v in vs if v == current.get(name) or _published_at(publish_dir, name, v) >= cutoff]
    new = {
        "format": RELEASE_FORMAT,
        "release": now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ"),
        "released_at": now.astimezone(UTC).isoformat(),
        "dagster_run_id": run_id,
        "current": dict(sorted(current.items())),
        "retained": {name: sorted(vs) for name, vs in sorted(retained.items())},
    }
    publish_dir.mkdir(parents=True, exist_ok=True)
    tmp = publish_dir / f".{RELEASE}.tmp"
    tmp.write_text(json.dumps(new, indent=2) + "\n")
    os.replace(tmp, publish_dir / RELEASE)
    new["removed"] = sweep(publish_dir)
    return new


def _published_at(publish_dir: Path, name: str, version: str) -> datetime:
    manifest = json.loads((publish_dir / name / "versions" / version / MANIFEST).read_text())
    return datetime.fromisoformat(manifest["published_at"])


def sweep(publish_dir: Path) -> list[str]:
    """Remove what the release does not name: versions left by a crash between writing and
    releasing, versions replaced by an erasure's rewrite or dropped by retention, unfinished
    temporary directories, and the per-table `current` pointers of releases before this format.
    Only a step holding the DuckDB pool releases or sweeps, so no other writer is mid-way.
    Returns "<name>/<version>" of every version removed."""
    path = publish_dir / RELEASE
    if not path.exists():
        return []
    named = read_release(publish_dir)
    removed = []
    for name_dir in sorted(p for p in publish_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        keep = set(named["retained"].get(name_dir.name, [])) | {named["current"].get(name_dir.name)}
        root = name_dir / "versions"
        for version_dir in sorted(root.iterdir()) if root.exists() else []:
            if version_dir.name.startswith("."):
                shutil.rmtree(version_dir)  # an unfinished write or rewrite
            elif version_dir.name not in keep:
                shutil.rmtree(version_dir)
                removed.append(f"{name_dir.name}/{version_dir.name}")
        (name_dir / POINTER).unlink(missing_ok=True)
    return removed


def set_current(publish_dir: Path, name: str, version: str) -> None:
    """Release one table's version (the others stay as they are): a rollback, or a publish run
    that does not include publish/release."""
    release(publish_dir, {name: version})


def current_version(publish_dir: Path, name: str) -> str | None:
    return read_release(publish_dir)["current"].get(name)


def current_names(publish_dir: Path) -> list[str]:
    """The tables the current release names."""
    return sorted(read_release(publish_dir)["current"])


def current_snapshot(publish_dir: Path, name: str) -> Snapshot:
    version = current_version(publish_dir, name)
    if version is None:
        raise FileNotFoundError(f"{name} has never been published under {publish_dir} (no {name} in {RELEASE})")
    path = publish_dir / name / "versions" / version
    return Snapshot(name, version, path, json.loads((path / MANIFEST).read_text()))


def versions(publish_dir: Path, name: str) -> list[str]:
    """The complete versions of `name` on disk (released or not)."""
    root = publish_dir / name / "versions"
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def prune(publish_dir: Path, name: str, keep_days: float, now: datetime) -> list[str]:
    """Drop versions of `name` published more than `keep_days` before `now` from the release
    (never the current one) and remove them. Returns the versions removed."""
    before = set(versions(publish_dir, name))
    current = current_version(publish_dir, name)
    release(publish_dir, {name: current} if current else {}, now=now, keep_days=keep_days)
    return sorted(before - set(versions(publish_dir, name)))


# --- staging: versions a run has written but not yet released -------------------------------------


def staging_dir(publish_dir: Path, run_id: str) -> Path:
    """Where a run writes its versions (write_snapshot(con, staging_dir(...), ...)) until
    publish/release moves them into place."""
    return publish_dir / STAGING / re.sub(r"[^0-9a-zA-Z-]", "", run_id)


def promote_staged(publish_dir: Path, run_id: str) -> dict[str, str]:
    """Move every version the run staged under <name>/versions/ (a rename each, same
    filesystem) and return {name: version} for release(); the newest if a table was staged twice.
    A crash after some moves leaves versions no release names: the next sweep removes them."""
    root = staging_dir(publish_dir, run_id)
    changes: dict[str, str] = {}
    for name_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []:
        for version in versions(root, name_dir.name):
            target = publish_dir / name_dir.name / "versions" / version
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(name_dir / "versions" / version, target)
            changes[name_dir.name] = max(version, changes.get(name_dir.name, version))
    if root.exists():
        shutil.rmtree(root)
    return changes


def sweep_staging(publish_dir: Path, is_active: Callable[[str], bool]) -> list[str]:
    """Remove the staging directories of runs that are no longer in progress (killed, failed,
    or finished without publish/release). Returns their run ids."""
    root = publish_dir / STAGING
    removed = []
    for run_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []:
        if not is_active(run_dir.name):
            shutil.rmtree(run_dir)
            removed.append(run_dir.name)
    return removed
