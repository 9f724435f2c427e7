"""Versioned publish snapshots (tessera/publish/snapshots.py): complete or absent, a pointer, retention."""

import json
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from tessera.publish import snapshots
from tessera.publish.snapshots import Export

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute(
        """
        create table segs as select * from (values
            ('c1', 'Champions', 'treatment'), ('c2', 'Champions', 'control'),
            ('c3', 'At Risk', 'treatment'), ('c4', 'Can''t Lose Them', 'treatment'))
            as t(customer_key, segment, holdout_group)
        """
    )
    yield con
    con.close()


def write(con, root, version, published_at=NOW, exports=()):
    return snapshots.write_snapshot(
        con, root, "segs", "segs", version, published_at=published_at, run_id="run-1", checks=[], exports=exports
    )


def test_a_snapshot_holds_the_table_and_a_manifest_with_row_counts_and_hashes(con, tmp_path):
    exports = (
        Export(
            "audience", "per segment", "select * from {table} where holdout_group = 'treatment'", "csv", per="segment"
        ),
        Export("feed", "all", "select customer_key, segment from {table} order by 1", "jsonl"),
    )
    snap = write(con, tmp_path, "v1", exports=exports)
    files = {f["path"]: f for f in snap.manifest["files"]}
    assert snap.manifest["rows"] == 4
    assert set(files) == {
        "segs.parquet",
        "exports/audience/champions.csv",
        "exports/audience/at_risk.csv",
        "exports/audience/can_t_lose_them.csv",
        "exports/feed.jsonl",
    }
    # the control customer c2 is not in the Champions audience
    assert files["exports/audience/champions.csv"]["rows"] == 1
    assert (snap.path / "exports/audience/champions.csv").read_text().splitlines() == [
        "customer_key,segment,holdout_group",
        "c1,Champions,treatment",
    ]
    assert [
        json.loads(line)["customer_key"] for line in (snap.path / "exports/feed.jsonl").read_text().splitlines()
    ] == ["c1", "c2", "c3", "c4"]
    assert con.execute(f"select count(*) from read_parquet('{snap.parquet}')").fetchall()[0][0] == 4
    assert json.loads((snap.path / "manifest.json").read_text()) == snap.manifest


def test_the_pointer_names_only_complete_versions_and_moves_on_set_current(con, tmp_path):
    assert snapshots.current_version(tmp_path, "segs") is None
    write(con, tmp_path, "v1")
    # written but not yet current: consumers still see nothing (then the previous version)
    assert snapshots.current_version(tmp_path, "segs") is None
    snapshots.set_current(tmp_path, "segs", "v1")
    write(con, tmp_path, "v2")
    assert snapshots.current_snapshot(tmp_path, "segs").version == "v1"
    snapshots.set_current(tmp_path, "segs", "v2")
    assert snapshots.current_snapshot(tmp_path, "segs").version == "v2"
    with pytest.raises(FileNotFoundError, match="not a complete snapshot"):
        snapshots.set_current(tmp_path, "segs", "v3")


def test_a_failed_export_leaves_no_version_behind(con, tmp_path):
    broken = Export("broken", "refers to a missing column", "select no_such_column from {table}", "csv")
    with pytest.raises(duckdb.BinderException):
        write(con, tmp_path, "v1", exports=(broken,))
    assert snapshots.versions(tmp_path, "segs") == []
    assert not list((tmp_path / "segs" / "versions").iterdir())


def test_prune_removes_old_versions_but_never_the_current_one(con, tmp_path):
    for days, version in ((40, "v1"), (31, "v2"), (5, "v3")):
        write(con, tmp_path, version, published_at=NOW - timedelta(days=days))
        snapshots.set_current(tmp_path, "segs", version)
    snapshots.set_current(tmp_path, "segs", "v1")  # e.g. a rollback to an old version
    assert snapshots.prune(tmp_path, "segs", keep_days=30, now=NOW) == ["v2"]
    assert snapshots.versions(tmp_path, "segs") == ["v1", "v3"]
    assert snapshots.prune(tmp_path, "segs", keep_days=0, now=NOW) == ["v3"]
    assert snapshots.versions(tmp_path, "segs") == ["v1"]


def test_a_version_cannot_be_written_twice_and_the_current_one_cannot_be_discarded(con, tmp_path):
    write(con, tmp_path, "v1")
    with pytest.raises(FileExistsError):
        write(con, tmp_path, "v1")
    snapshots.set_current(tmp_path, "segs", "v1")
    with pytest.raises(ValueError, match="is current"):
        snapshots.discard(tmp_path, "segs", "v1")


def test_versions_sort_by_time():
    a = snapshots.new_version(NOW, "b2c3-d4")
    b = snapshots.new_version(NOW + timedelta(microseconds=1), "a1")
    assert a < b and a.endswith("-b2c3d4")


def test_an_export_with_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="format must be csv or jsonl"):
        Export("x", "x", "select 1", "xlsx")


def test_a_release_moves_every_table_in_one_step_and_readers_see_old_or_new_never_a_mix(con, tmp_path):
    con.execute("create table scores as select customer_key, 0.5 as score from segs")
    for version in ("v1", "v2"):
        staging = snapshots.staging_dir(tmp_path, f"run-{version}")
        for name, table in (("segs", "segs"), ("scores", "scores")):
            snapshots.write_snapshot(
                con, staging, name, table, version, published_at=NOW, run_id=f"run-{version}", checks=[]
            )
        if version == "v1":
            snapshots.release(tmp_path, snapshots.promote_staged(tmp_path, "run-v1"))
    # run-v2 staged both tables: nothing it wrote is visible before its release
    assert {n: snapshots.current_version(tmp_path, n) for n in ("segs", "scores")} == {"segs": "v1", "scores": "v1"}
    # a crash after moving one staged version into place, before the release file moved
    staged = snapshots.staging_dir(tmp_path, "run-v2")
    (tmp_path / "segs" / "versions" / "v2").parent.mkdir(exist_ok=True)
    (staged / "segs" / "versions" / "v2").rename(tmp_path / "segs" / "versions" / "v2")
    assert snapshots.current_version(tmp_path, "segs") == "v1"
    # the next release (another run's) sweeps the unreleased version; the dead run's staging goes too
    snapshots.release(tmp_path, {})
    assert snapshots.versions(tmp_path, "segs") == ["v1"]
    assert snapshots.sweep_staging(tmp_path, is_active=lambda run: False) == ["run-v2"]
    assert not (tmp_path / snapshots.STAGING / "run-v2").exists()
    release = json.loads((tmp_path / snapshots.RELEASE).read_text())
    assert release["current"] == {"scores": "v1", "segs": "v1"}


def test_a_staging_directory_of_a_run_in_progress_is_kept(con, tmp_path):
    snapshots.write_snapshot(
        con, snapshots.staging_dir(tmp_path, "live"), "segs", "segs", "v1", published_at=NOW, run_id="live", checks=[]
    )
    assert snapshots.sweep_staging(tmp_path, is_active=lambda run: run == "live") == []
    assert snapshots.versions(snapshots.staging_dir(tmp_path, "live"), "segs") == ["v1"]


def test_a_publish_directory_from_before_releases_is_read_through_its_pointers_and_converted(con, tmp_path):
    write(con, tmp_path, "v1")
    (tmp_path / "segs" / "current").write_text(json.dumps({"version": "v1", "manifest": "versions/v1/manifest.json"}))
    assert snapshots.current_version(tmp_path, "segs") == "v1"
    write(con, tmp_path, "v2")
    snapshots.set_current(tmp_path, "segs", "v2")
    assert not (tmp_path / "segs" / "current").exists()
    assert snapshots.read_release(tmp_path)["retained"] == {"segs": ["v1", "v2"]}


def test_an_unreadable_release_is_an_error_not_an_empty_publish(tmp_path):
    (tmp_path / snapshots.RELEASE).write_text("{not json")
    with pytest.raises(ValueError, match="not a readable release"):
        snapshots.current_version(tmp_path, "segs")
