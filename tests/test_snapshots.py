"""Versioned publish snapshots (tessera/snapshots.py): complete or absent, a pointer, retention."""

import json
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from tessera import snapshots
from tessera.snapshots import Export

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
