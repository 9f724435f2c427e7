"""After an erasure: compact the warehouse file, then prove no byte of the person is left.

Deleting rows does not remove their bytes: DuckDB marks the blocks free and reuses them later, so
the file keeps copies of the erased values until they happen to be overwritten (a hostile test
found 13 copies of an email, 10 after CHECKPOINT + VACUUM). `compact` copies the live
database into a new file with COPY FROM DATABASE and renames it over the old one: the new file
holds only live rows, and the old file's blocks go with the old inode.

`scan` then reads every byte of every file under the given roots (the data directory, the Dagster
home, the MLflow artifact store) and counts, ignoring ASCII case, the occurrences of each erased
value; gzip members are read decompressed. Parquet and the DuckDB file compress their pages, so a
value can hide in them from a byte scan: the hash-based residue check (tessera/privacy/erasure.py) reads
those through DuckDB instead. The two together are the erasure proof; each says what it scanned.
"""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import ahocorasick
import duckdb

from tessera.faults import crash_point
from tessera.sql import ident

COMPACT_SUFFIX = ".compact"
# values shorter than this are not searched for: a short id is a substring of something else
MIN_CHARS = 6
CHUNK = 8 << 20
# where a hit in a DuckDB file lies is looked up for at most this many hits per file
MAX_LOCATED = 50
# DuckDB's file layout (storage version 64+): a main header and two database headers of 4 KiB, then
# blocks of `block_size` bytes, each starting with an 8-byte checksum
DUCKDB_HEADERS = 3 * 4096
DUCKDB_CHECKSUM = 8
FREE_OR_METADATA = "no table's data: a free or metadata block"


@dataclass
class Compaction:
    bytes_before: int
    bytes_after: int
    seconds: float


def compact(db_path: Path, config: dict | None = None) -> Compaction:
    """Rewrite the DuckDB file with only its live data. Nothing else may hold the file open (in
    Dagster the `duckdb` pool guarantees it). A crash before the rename leaves the old file and
    a `.compact` leftover, removed by the next call; after it, the new file."""
    started = time.perf_counter()
    tmp = db_path.with_name(db_path.name + COMPACT_SUFFIX)
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        leftover.unlink(missing_ok=True)
    before = db_path.stat().st_size
    con = duckdb.connect(str(db_path), config=config or {})
    try:
        con.execute("checkpoint")
        name = con.execute("select current_database()").fetchall()[0][0]
        con.execute("attach ? as __compacted", [tmp.as_posix()])
        con.execute(f"copy from database {ident(name)} to __compacted")
        con.execute("detach __compacted")
    finally:
        con.close()
    wal = db_path.with_name(db_path.name + ".wal")
    if wal.exists():
        raise RuntimeError(f"{wal} is still there after a clean close: not compacting under an unfinished log")
    crash_point("erasure:compacting")
    os.replace(tmp, db_path)
    return Compaction(before, db_path.stat().st_size, round(time.perf_counter() - started, 2))


@dataclass
class Scan:
    roots: list[str]
    files: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)  # excluded roots, said out loud
    hits: dict[str, int] = field(default_factory=dict)  # file (relative to its root) -> occurrences
    # DuckDB files with hits: file -> {place -> occurrences}, a place being the "schema.table.column"
    # whose data segment holds the hit, or FREE_OR_METADATA (the erasure's check reports it: a hit in
    # live data is an erasure that missed a column, one in a free block a compaction that did not run)
    places: dict[str, dict[str, int]] = field(default_factory=dict)
    # hits inside a live column whose values, read through DuckDB, hold no erased value: bytes of
    # compressed data that happen to spell one (not counted in `hits`, reported beside them)
    coincidences: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Patterns:
    """The erased values as two Aho-Corasick automata: emails ignoring ASCII case (staging lower-cases
    them, and a person types them in any case), everything else in its stored case. Why not fold
    every value: at a million customers an 8-character CRM id such as `C1234567` folded to
    `c1234567` is a string of hex digits, and it was found inside live customers' hex keys (`tc_` +
    16 hex): 6 false hits in the 1M benchmark's compacted warehouse, about 0.65 expected per run.
    A copy of an id in another case than stored is therefore not searched for."""

    folded: ahocorasick.Automaton | None
    exact: ahocorasick.Automaton | None


def _automaton(needles: set[bytes]) -> ahocorasick.Automaton | None:
    """One automaton over the needles; it holds text, so bytes go through Latin-1 (one character per
    byte). A pass over a block finds all needles at once (a regular expression alternating ~10,000
    values read 3 MB/s, which at a million customers made the scan last hours; docs/privacy.md)."""
    if not needles:
        return None
    automaton = ahocorasick.Automaton()
    for needle in needles:
        automaton.add_word(needle.decode("latin-1"), len(needle))
    automaton.make_automaton()
    return automaton


def _pattern(values: Iterable[str]) -> Patterns | None:
    wanted = {v.strip() for v in values if len(v.strip()) >= MIN_CHARS}
    if not wanted:
        return None
    emails = {v for v in wanted if "@" in v}
    return Patterns(
        folded=_automaton({v.lower().encode() for v in emails}),
        exact=_automaton({v.encode() for v in wanted - emails}),
    )


def _hits(automaton: ahocorasick.Automaton | None, text: str, tail: int) -> list[int]:
    """Start offsets in `text` of the matches that end past `tail`."""
    if automaton is None:
        return []
    return [end - n + 1 for end, n in automaton.iter_long(text) if end >= tail]


def _count(path: Path, pattern: Patterns) -> tuple[list[int], int]:
    """(file offsets of the occurrences, bytes read) of the file, decompressed if gzip. Occurrences
    are leftmost-longest and do not overlap, per automaton. Blocks are searched with the previous
    block's last 256 bytes in front, so a value across a boundary is seen; a match is counted in the
    block where it ends."""
    opener = gzip.open if path.suffix == ".gz" else open
    offsets: list[int] = []
    size = 0
    with opener(path, "rb") as f:
        tail = b""
        while block := f.read(CHUNK):
            base = size - len(tail)  # file offset of text[0]
            size += len(block)
            text = tail + block
            starts = _hits(pattern.exact, text.decode("latin-1"), len(tail))
            starts += _hits(pattern.folded, text.lower().decode("latin-1"), len(tail))
            offsets += sorted(base + s for s in starts)
            tail = block[-256:]
    return offsets, size


Place = tuple[str, str, str] | None  # (schema, table, column) of a data segment, None for any other block


def _locate(db_path: Path, offsets: Iterable[int]) -> dict[Place, int]:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        block_size = con.execute("select block_size from pragma_database_size()").fetchall()[0][0]
        segments: dict[int, list[tuple[int, tuple[str, str, str]]]] = {}
        tables = con.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = current_database()"
        ).fetchall()
        for schema, table in tables:
            rows = con.execute(
                "select block_id, block_offset, column_name from pragma_storage_info(?) where block_id >= 0",
                [f"{ident(schema)}.{ident(table)}"],
            ).fetchall()
            for block_id, block_offset, column in rows:
                segments.setdefault(block_id, []).append((block_offset, (schema, table, column)))
    finally:
        con.close()
    places: dict[Place, int] = {}
    for offset in offsets:
        block, within = divmod(offset - DUCKDB_HEADERS, block_size)
        owners = [name for start, name in sorted(segments.get(block, [])) if start <= within - DUCKDB_CHECKSUM]
        place = owners[-1] if owners and offset >= DUCKDB_HEADERS else None
        places[place] = places.get(place, 0) + 1
    return places


def _name(place: Place) -> str:
    return FREE_OR_METADATA if place is None else ".".join(place)


def locate(db_path: Path, offsets: Iterable[int]) -> dict[str, int]:
    """{place: occurrences} of byte offsets in a DuckDB file that nothing holds open: the
    "schema.table.column" whose data segment starts at or before the offset in its block
    (pragma_storage_info), else FREE_OR_METADATA. Names tables and columns, never a value."""
    return {_name(place): n for place, n in _locate(db_path, offsets).items()}


def column_occurrences(db_path: Path, place: tuple[str, str, str], pattern: Patterns) -> int:
    """Occurrences of the erased values in the column's values as DuckDB reads them (decompressed,
    cast to text, one value per line): what the column really holds, whatever its compressed
    bytes look like."""
    schema, table, column = place
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        cursor = con.execute(
            f"select cast({ident(column)} as varchar) from {ident(schema)}.{ident(table)} where {ident(column)} is not null"
        )
        found = 0
        while rows := cursor.fetchmany(200_000):
            data = "\n".join(r[0] for r in rows).encode()
            found += len(_hits(pattern.exact, data.decode("latin-1"), 0))
            found += len(_hits(pattern.folded, data.lower().decode("latin-1"), 0))
        return found
    finally:
        con.close()


def scan(roots: dict[str, Path], values: Iterable[str], exclude: dict[str, Path] | None = None) -> Scan:
    """Count the erased values in every file under `roots` ({label: directory}), except under
    `exclude` ({reason: directory}). Hits are keyed "<label>/<relative path>": no value is named."""
    pattern = _pattern(values)
    excluded = {p.resolve() for p in (exclude or {}).values()}
    result = Scan(roots=sorted(roots), skipped=[f"{reason}: excluded" for reason in sorted(exclude or {})])
    if pattern is None:
        return result
    seen: set[Path] = set()
    for label, root in sorted(roots.items()):
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath).resolve()
            dirnames[:] = [d for d in dirnames if (here / d).resolve() not in excluded]
            for filename in sorted(filenames):
                path = here / filename
                if path in seen or not path.is_file():
                    continue
                seen.add(path)
                offsets, size = _count(path, pattern)
                result.files += 1
                result.bytes += size
                if offsets:
                    name = f"{label}/{path.relative_to(root.resolve()).as_posix()}"
                    result.hits[name] = len(offsets)
                    if path.suffix == ".duckdb":
                        _explain(result, name, path, offsets, pattern)
    return result


def _explain(result: Scan, name: str, path: Path, offsets: list[int], pattern: Patterns) -> None:
    """Where the hits in a DuckDB file lie; a hit inside a live column whose values hold no erased
    value is a coincidence of the compressed bytes (FSST codes, bit-packed integers) and is not a
    hit: the 1M benchmark's compacted warehouse had one in `fct_orders.order_id`, whose 4.3M ids
    hold none of the erased ones (docs/privacy.md)."""
    located = _locate(path, offsets[:MAX_LOCATED])
    explained = 0
    for place, n in located.items():
        if place is not None and column_occurrences(path, place, pattern) == 0:
            result.coincidences.setdefault(name, {})[_name(place)] = n
            explained += n
        else:
            result.places.setdefault(name, {})[_name(place)] = n
    if explained == result.hits[name]:
        del result.hits[name]
    else:
        result.hits[name] -= explained
