"""One erasure run as the pipeline performs it: the requests applied to every layer and file, the
residue counted, the warehouse compacted when an erasure left deleted values in its free blocks,
and the bytes of every place tessera writes scanned for the erased values (docs/privacy.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ml.forget import forget
from tessera.decisioning.render import erase_previews
from tessera.privacy import byte_residue, erasure, pseudonym
from tessera.publish import snapshots
from tessera.realtime import audience as trigger_audience
from tessera.realtime import outbox as realtime_outbox
from tessera.settings import RealtimeSettings, Settings, mlflow_artifact_root, realtime_configured

Connect = Callable[..., AbstractContextManager[duckdb.DuckDBPyConnection]]


@dataclass
class ErasureOutcome:
    done: dict  # erasure.apply_erasures' counts
    residue: dict[str, int]  # places still holding a listed value, with their row counts
    requests_ever: int
    compaction: byte_residue.Compaction | None
    proof: byte_residue.Scan | None
    stale_staging: list[str]

    @property
    def rows_removed(self) -> int:
        return sum(self.done["removed"].values())

    def summary(self) -> str:
        d, c, p, stale = self.done, self.compaction, self.proof, self.stale_staging
        return (
            f"erasure: {d['requests']} new request(s), {d['completed']} completed, {self.rows_removed} row(s) removed, "
            f"residue {self.residue or 'none'}"
            + (f", warehouse compacted {c.bytes_before} -> {c.bytes_after} bytes" if c else "")
            + (f", {p.files} file(s) scanned byte by byte, hits in {len(p.hits)}" if p else "")
            + (f"; removed the staging of {len(stale)} finished run(s)" if stale else "")
        )


def run_erasure(
    settings: Settings, connect: Connect, run_id: str, dagster_home: Path, in_progress: Callable[[str], bool]
) -> ErasureOutcome:
    """Apply every pending erasure request. `connect()` opens the warehouse (and closes it on
    exit); `in_progress(run_id)` says whether another run may still write its publish staging."""
    pseudonym.check_salt(settings.pseudonym_salt, settings.mode)
    stale = snapshots.sweep_staging(settings.publish_dir, lambda r: r != run_id and in_progress(r))
    realtime = realtime_configured()
    with connect() as con:
        pseudonym.install(con, settings.pseudonym_salt)
        done = erasure.apply_erasures(con, settings.publish_dir, run_id, file_steps=file_steps(settings, realtime))
        residue_started = time.perf_counter()
        # the values apply_erasures hashed before deleting: deletions add no value (erasure.residue)
        found = erasure.residue(con, settings.publish_dir, reuse_listed=True)
        done["seconds"]["residue_check"] = round(time.perf_counter() - residue_started, 2)
        requests_ever = erasure.requests_logged(con)
        owed = erasure.compaction_owed(con)
        listed = erasure.listed_hashes(con) if realtime is not None else []
    if realtime is not None:
        from tessera.realtime.privacy import sync_suppression

        # the online suppression list also holds those erased before real time was turned on
        done["files"]["online_store_suppression"] = sync_suppression(realtime, listed)
    compaction = None
    if owed:  # after the connection closed: nothing else holds the file (the duckdb pool)
        compaction = byte_residue.compact(settings.duckdb_path, settings.duckdb_config())
        with connect() as con:
            erasure.compaction_paid(con)
    proof = None
    if done["values"]:
        roots, excluded = scan_places(settings, dagster_home)
        proof = byte_residue.scan(roots, done["values"], excluded)
    return ErasureOutcome(done, found, requests_ever, compaction, proof, stale)


def scan_places(settings: Settings, dagster_home: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """(roots, excluded) of the bytes proof. Excluded: the landing folder, which is what the shop
    delivered (tessera never rewrites a delivery; the suppression list erases a re-delivered
    record, and docs/privacy.md asks the shop to delete it from its exports), and the generated
    ground truth of demo data, and the benchmarks' workspaces under `<data dir>/bench` (other shops
    the benchmarks generate with the same generator, hence the same ids: a demo's erasure found its
    erased ids in them)."""
    roots = {"data": settings.data_dir, "dagster_home": dagster_home}
    if not settings.duckdb_path.resolve().is_relative_to(settings.data_dir.resolve()):
        roots["warehouse"] = settings.duckdb_path.parent
    if not settings.publish_dir.resolve().is_relative_to(settings.data_dir.resolve()):
        roots["publish"] = settings.publish_dir
    excluded = {
        "landing folder (the shop's delivery)": settings.landing_dir,
        "generated ground truth (demo data)": settings.truth_dir,
        "benchmark workspaces (other generated shops)": settings.data_dir / "bench",
    }
    return roots, excluded


def file_steps(settings: Settings, realtime: RealtimeSettings | None = None) -> dict:
    """What else tessera wrote that may hold an erased person, each given the erased values: the
    rendered message previews of every day, the realtime outbox files and the trigger audience,
    MLflow (runs, logged models and registered versions trained on the person are retired:
    docs/privacy.md), and with real time configured (TESSERA_REDIS_URL) the online store: session
    state, stream events, trigger keys, suppression list, and Redis's append-only file rewritten
    (tessera/realtime/privacy.py forget_people)."""
    steps = {
        "previews": lambda values: erase_previews(settings.data_dir / "decisioning" / "previews", values),
        # the realtime outbox files and the trigger audience (tessera/realtime/outbox.py, audience.py)
        "realtime": lambda values: {
            **realtime_outbox.erase(settings.publish_dir, values),
            **trigger_audience.erase(trigger_audience.default_dir(settings.data_dir), values),
        },
        "mlflow": lambda values: forget(
            values, settings.mlflow_tracking_uri, settings.mlflow_model_name, mlflow_artifact_root(settings)
        ),
    }
    if realtime is not None:
        steps["online_store"] = _online_store_step(settings, realtime)
    return steps


def _online_store_step(settings: Settings, realtime: RealtimeSettings):
    """The online store's erasure: session state, stream events, suppression (forget_people), then
    what the trigger worker keeps of the person (decision marks and cap counts by customer_pkey,
    last views by visitor id: tessera.realtime.triggers.forget)."""
    import redis

    from tessera.decisioning.catalogue import load_catalogue
    from tessera.realtime.privacy import erasure_step
    from tessera.realtime.triggers import forget as forget_trigger_keys

    people = erasure_step(realtime, settings.pseudonym_salt)

    def step(values: list[str]) -> dict:
        counts = people(values)
        client = redis.Redis.from_url(realtime.redis_url, socket_timeout=60, socket_connect_timeout=5)
        try:
            pkeys = [v for v in values if v.startswith(pseudonym.PREFIX)]
            visitors = [f"{kind}:{v}" for v in values for kind in ("u", "a")]
            counts["trigger_keys_deleted"] = forget_trigger_keys(
                client, pkeys, visitors, load_catalogue(settings.actions_file)
            )
        finally:
            client.close()
        return counts

    return step
