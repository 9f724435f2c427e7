"""The erasure's byte scan (tessera/privacy/byte_residue.py): every erased value found, in any case,
across block boundaries and inside gzip members, counted per file without naming the value."""

from __future__ import annotations

import gzip

from tessera.privacy import byte_residue


def test_every_value_is_counted_per_file_across_blocks_case_and_gzip(tmp_path, monkeypatch):
    monkeypatch.setattr(byte_residue, "CHUNK", 64)  # small blocks: values straddle their boundaries
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    filler = b"x" * 60
    (root / "a.bin").write_bytes(filler + b"ALICE@Example.com" + filler + b"alice@example.com,c-000123")
    with gzip.open(root / "sub" / "b.jsonl.gz", "wb") as f:
        f.write(b'{"id": "C-000123"}\n' * 3)
    (root / "clean.txt").write_bytes(b"nothing of them here; c-0001 is too different" + filler)
    (root / "landing").mkdir()
    (root / "landing" / "c.txt").write_bytes(b"alice@example.com")

    found = byte_residue.scan(
        {"data": root},
        ["alice@example.com", "c-000123", "abc"],  # "abc": under MIN_CHARS, never searched
        exclude={"excluded for the test": root / "landing"},
    )
    assert found.hits == {"data/a.bin": 3, "data/sub/b.jsonl.gz": 3}
    assert found.files == 3 and found.skipped == ["excluded for the test: excluded"]
    assert found.bytes == sum(p.stat().st_size for p in (root / "a.bin", root / "clean.txt")) + 19 * 3


def test_no_searchable_value_scans_nothing(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"abc")
    assert byte_residue.scan({"data": tmp_path}, ["abc", " "]).files == 0
