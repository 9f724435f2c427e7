"""Load landing files into DuckDB raw tables, faithfully and with lineage.

Every entry of a source folder is accounted for. CSV, Parquet and JSON Lines load (CSV and JSON
Lines also gzip-compressed, `.csv.gz`, `.jsonl.gz`, `.ndjson.gz`; UTF-16 text decoded). Every
other entry (another file type, a spreadsheet, a `.json` document, a folder, a broken symbolic
link, a pipe, a file that cannot be opened or decompressed, a header naming one contract column
twice) is a row of `raw.load_audit` with its `not_loaded_reason`, and the load report lists it;
TESSERA_LANDING_UNLOADED_FILES decides whether it then blocks (the default: a LandingError naming
each, raised after the other files' load committed) or is logged. File names are literal: DuckDB
reads a path as a glob, so a name with glob characters is read through a link of a plain name.
Column names match the contract's whatever their case and surrounding spaces.

Every contract column is stored as text exactly as delivered; a column the contract names but a
file lacks becomes NULL (the source's quality gate decides whether that is acceptable); a column a
file has but the contract does not name is reported, not loaded. Each row keeps the file it came
from and its row number in that file, so a bad value can always be traced back.

CSV records DuckDB cannot parse (too many or too few fields, bytes that are not UTF-8, an
unterminated quote) and JSON lines that are not a JSON object do not fail the file: each goes to
`raw.load_rejects` with its file, its record number, the reason and the line as delivered (a
record that is not UTF-8 also with its exact bytes in hex, `raw_content_hex`), and the file's
other records load. So does a readable record with a value longer than
max_field_chars (the record kept whole, as JSON), and a CSV record that repeats the file's header
(every value equal to its column's name: a header line written again mid-file, e.g. by
concatenating exports), which would otherwise load as a customer called "first_name". Record
numbers keep counting the rejected
records, so `_source_row` is always the record's position in its file. A file that cannot be read
at all (not Parquet, JSON Lines that are not UTF-8 text, a CSV line over max_line_bytes) is a
LandingError: the load stops with the file named and the previous tables kept.

Every file is reconciled before its load commits: the records it holds, counted independently of
DuckDB's scanner (Python's csv module for CSV, non-blank lines for JSON Lines, the footer for
Parquet), must equal the records loaded plus the records quarantined, or the load fails with both
counts named. The counts per file go to `raw.load_audit`, with the contract columns the file
lacked (`missing_columns`, a JSON list): the source's quality gate compares them with what the
source sent before (tessera/quality/delivery.py).

Loads are incremental by file. `raw.load_audit` keeps each loaded file's size and content hash;
a file whose content is unchanged since it was loaded is not read again, a new or changed file is
(its earlier rows, rejects and audit row replaced), and the rows of a file no longer in the folder
are removed. So the raw table always holds exactly what the landing folder holds, and a new day of
events costs the reading of that day's file. `full_refresh=True` reads every file again (also
done by itself when the raw table's columns differ from the contract's).

The source's rows in the raw table, `raw.load_rejects` and `raw.load_audit` change inside one
transaction: a failed load leaves the previous version of all three intact.

JSON Lines files are read one statement per file, and then processed in batches of up to
JSON_BATCH_BYTES (quarantine, extraction, insert): one statement per step per batch instead of per
file. Per-file numbering, rejects, audit rows and reconciliation are the same either way.

A background thread reads each file ahead of the load (READ_AHEAD_BYTES at most): its fingerprint
and, for a file that will load, its independent record count. The load's own statements then find
the file in the page cache, and the disk reads and hashing run beside DuckDB's work instead of
before it.
"""

from __future__ import annotations

import codecs
import csv
import functools
import gzip
import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import duckdb

from tessera.db import table_exists, transaction
from tessera.landing.contract import FILE_SUFFIXES, Source
from tessera.sql import ident

log = logging.getLogger("tessera.landing.loader")


class LandingError(RuntimeError):
    """A landing file that cannot be read at all (as opposed to rows with bad values)."""


@dataclass
class LoadReport:
    source: str
    table: str
    rows: int = 0
    files: list[str] = field(default_factory=list)
    rows_per_file: dict[str, int] = field(default_factory=dict)
    skipped_empty_files: list[str] = field(default_factory=list)
    missing_columns: dict[str, list[str]] = field(default_factory=dict)
    extra_columns: dict[str, list[str]] = field(default_factory=dict)
    rejected: int = 0
    rejected_per_file: dict[str, int] = field(default_factory=dict)
    # this run: files read (new or changed), left as loaded before, and removed from raw
    files_read: list[str] = field(default_factory=list)
    files_unchanged: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    records_scanned: int = 0
    full_refresh: bool = False
    # entries of the folder not loaded, each with its reason; they are in raw.load_audit too
    files_not_loaded: dict[str, str] = field(default_factory=dict)
    # per file read this run, each column whose name differs from its contract column's (case,
    # surrounding spaces) and the contract column it loaded as
    renamed_columns: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def records_read(self) -> int:
        """Every record the files delivered: loaded into raw plus quarantined at load."""
        return self.rows + self.rejected


REJECTS_TABLE = "load_rejects"
AUDIT_TABLE = "load_audit"
# rows removed by an erasure request (tessera/privacy/erasure.py): positions only, no content; a file that
# is loaded again is erased again
ERASED_TABLE = "erased_rows"
# DuckDB writes the records a CSV scan rejected to these temporary tables (dropped before each scan).
_SCAN_REJECTS, _SCAN_SCANS = "tessera_scan_rejects", "tessera_scan_scans"
_CSV_OPTIONS = (
    # bound after the path: max_line_size, compression
    "all_varchar = true, header = true, auto_detect = true, max_line_size = ?, compression = ?, "
    f"store_rejects = true, rejects_table = '{_SCAN_REJECTS}', rejects_scan = '{_SCAN_SCANS}'"
)
# Limits on what one record may hold (settings: TESSERA_MAX_LINE_BYTES, TESSERA_MAX_FIELD_CHARS).
# A CSV line over max_line_bytes cannot be read at all (DuckDB refuses the file: LandingError); a
# readable record with a value over max_field_chars is quarantined with its content.
DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_FIELD_CHARS = 100_000
# DuckDB quotes the offending line in its errors; a huge line must not flood logs and metadata.
_MAX_ERROR_LINE_CHARS = 300


def _short(exc: BaseException) -> str:
    return "\n".join(
        line if len(line) <= _MAX_ERROR_LINE_CHARS else f"{line[:_MAX_ERROR_LINE_CHARS]}... [{len(line):,} characters]"
        for line in str(exc).splitlines()
    )


# A CSV or JSON Lines file may come gzip-compressed: `.csv.gz`, `.jsonl.gz`, `.ndjson.gz`.
COMPRESSED_SUFFIX = ".gz"
_COMPRESSIBLE = ("csv", "jsonl")
ACCEPTED_NAMES = ", ".join(
    [
        *sorted(FILE_SUFFIXES),
        *(s + COMPRESSED_SUFFIX for s in sorted(FILE_SUFFIXES) if FILE_SUFFIXES[s] in _COMPRESSIBLE),
    ]
)
_SPREADSHEETS = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods", ".numbers")
# What an entry that is not loaded does to its load: stop it after the commit, or be logged
# (settings: TESSERA_LANDING_UNLOADED_FILES, default block).
POLICIES = ("block", "warn")


def file_kind(path: Path) -> str | None:
    """csv, jsonl or parquet for a file name landing reads (any case of the suffix), else None."""
    name = path.name.lower()
    if name.endswith(COMPRESSED_SUFFIX):
        kind = FILE_SUFFIXES.get(Path(name[: -len(COMPRESSED_SUFFIX)]).suffix)
        return kind if kind in _COMPRESSIBLE else None
    return FILE_SUFFIXES.get(Path(name).suffix)


def is_compressed(path: Path) -> bool:
    return path.name.lower().endswith(COMPRESSED_SUFFIX)


def _unsupported_reason(path: Path) -> str:
    """Why a regular file of a type landing does not read is not loaded."""
    suffix = path.suffix.lower()
    if suffix == COMPRESSED_SUFFIX and len(path.suffixes) > 1:
        suffix = "".join(path.suffixes[-2:]).lower()
    if suffix in _SPREADSHEETS:
        return f"a spreadsheet ({suffix}): landing reads {ACCEPTED_NAMES}; export the sheet as CSV"
    if suffix == ".json":
        with open(path, "rb") as fh:
            start = fh.read(4096).lstrip(codecs.BOM_UTF8).lstrip()
        what = {b"[": "a JSON document holding an array", b"{": "a JSON document"}.get(start[:1], "a .json file")
        return f"{what}: landing reads JSON Lines, one object per line, in files named .jsonl or .ndjson"
    return f"unsupported file type {suffix or '(no suffix)'}: landing reads {ACCEPTED_NAMES}"


def _not_loadable(path: Path, source_name: str) -> str | None:
    """Why an entry of a source folder cannot be loaded (None: it is a file landing reads).
    Nothing but the folder entry is opened, except a .json file's first bytes."""
    try:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            try:
                st = path.stat()
            except FileNotFoundError:
                return f"a symbolic link to a file that does not exist ({os.readlink(path)})"
        if stat.S_ISDIR(st.st_mode):
            return f"a folder: landing reads the files directly in {source_name}/, not the folders inside it"
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file (a pipe, socket or device): landing does not open it"
        if file_kind(path) is None:
            return _unsupported_reason(path)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    return None


def landing_entries(source_dir: Path) -> tuple[list[Path], dict[str, str]]:
    """Every entry of a source folder: the files landing reads (name order), and each other entry
    with the reason it is not loaded (a file of another type, a folder, a broken symbolic link...)."""
    if not source_dir.is_dir():
        return [], {}
    files, not_loaded = [], {}
    for path in sorted(source_dir.iterdir()):
        reason = _not_loadable(path, source_dir.name)
        if reason is None:
            files.append(path)
        else:
            not_loaded[path.name] = reason
    return files, not_loaded


def landing_files(source_dir: Path) -> list[Path]:
    """Files of accepted formats in a source folder, in a stable (name) order."""
    return landing_entries(source_dir)[0]


def landing_state(landing_dir: Path, sources) -> dict[str, dict[str, list[int]]]:
    """Per source, each entry's [size, mtime in ns]: what a sensor compares between ticks. Entries
    that are not loaded count too: a new spreadsheet or broken link starts a run that records it."""
    state = {}
    for source in sources:
        folder = Path(landing_dir) / source.name
        entries = {}
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            try:
                st = path.stat() if path.is_file() else path.lstat()
            except OSError:
                continue
            entries[path.name] = [st.st_size, st.st_mtime_ns]
        state[source.name] = entries
    return state


# DuckDB's readers take a path as a glob pattern: `x[1].csv` reads `x1.csv`, `x*.csv` every file it
# matches, and a backslash escapes (measured on DuckDB 2.0; escaping `[` as `[[]` works but a
# backslash in a name cannot be escaped). A path holding any of these characters is read through a
# symbolic link of a plain name in a private folder: the file itself, never another.
_GLOB_CHARACTERS = frozenset("*?[]{}\\")


def _is_literal(path: str) -> bool:
    return not (_GLOB_CHARACTERS & set(path))


class _ReadPaths:
    """Paths DuckDB can read a landing file by: the file's own when it is literal, else a symbolic
    link of a plain name; and UTF-8 copies of UTF-16 text files. All in one temporary folder,
    removed by close()."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._n = 0

    def _new(self, suffix: str) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="tessera-landing-"))
            if not _is_literal(str(self._dir)):
                raise LandingError(
                    f"the temporary folder {self._dir} holds glob characters: set TMPDIR to a plain path"
                )
        self._n += 1
        return self._dir / f"{self._n}{suffix}"

    def literal(self, path: Path) -> Path:
        if _is_literal(str(path)):
            return path
        suffix = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}[file_kind(path)]
        alias = self._new(suffix + (COMPRESSED_SUFFIX if is_compressed(path) else ""))
        alias.symlink_to(path.resolve())
        return alias

    def utf8_copy(self, path: Path, encoding: str) -> Path:
        """The text of a UTF-16 file in UTF-8, uncompressed: what DuckDB reads instead."""
        copy = self._new(".csv" if file_kind(path) == "csv" else ".jsonl")
        with _open_binary(path) as raw, open(copy, "wb") as out:
            text = io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")
            while chunk := text.read(1 << 20):
                out.write(chunk.encode("utf-8"))
        return copy

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _open_binary(path: Path) -> BinaryIO:
    """A landing file's bytes, decompressed for a .gz file."""
    return gzip.open(path, "rb") if is_compressed(path) else open(path, "rb")


def text_encoding(path: Path) -> str | None:
    """'utf-16' (with its byte order mark), 'utf-16-le' or 'utf-16-be' (without one: ASCII text
    with every other byte NUL) for a UTF-16 text file; None for any other (read as UTF-8)."""
    with _open_binary(path) as fh:
        start = fh.read(4096)
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if len(start) >= 16 and b"\x00" in start:
        # Latin text: the high byte of nearly every character is NUL, the low byte almost never
        even, odd = start[0::2].count(0) / len(start[0::2]), start[1::2].count(0) / len(start[1::2])
        if odd >= 0.9 and even <= 0.02:
            return "utf-16-le"
        if even >= 0.9 and odd <= 0.02:
            return "utf-16-be"
    return None


def _compression(path: Path) -> str:
    return "gzip" if is_compressed(path) else "none"


def _file_relation(
    con: duckdb.DuckDBPyConnection, pending: _Pending, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> tuple[str, list[str], list]:
    """SQL for a relation over one CSV or Parquet file, its column names, and the query parameters."""
    path, read = pending.path, pending.read_path
    if pending.kind == "csv":
        sql = f"select * from read_csv(?, {_CSV_OPTIONS})"
        params = [str(read), int(max_line_bytes), _compression(read)]
    elif pending.kind == "parquet":
        sql = "select * from read_parquet(?)"
        params = [str(read)]
    else:
        raise ValueError(f"{path}: JSON Lines are loaded in batches (_load_json_batch), not by _file_relation")
    try:
        columns = [d[0] for d in con.execute(f"{sql} limit 0", params).description]
    except duckdb.Error as exc:
        raise LandingError(f"cannot read landing file {path}: {_short(exc)}") from exc
    return sql, columns, params


def _delivered_names(con: duckdb.DuckDBPyConnection, pending: _Pending, columns: list[str]) -> list[str]:
    """The column names as the file spells them. DuckDB trims them and renames a name equal to an
    earlier one but for case (email, EMAIL -> email, EMAIL_1); only when a name looks renamed is
    the header read again (CSV: its first record as data; Parquet: its schema)."""
    lowered = [c.lower() for c in columns]
    renamed = any(
        (m := re.fullmatch(r"(.+)_\d+", c)) is not None and m.group(1).lower() in lowered[:i]
        for i, c in enumerate(columns)
    )
    if not renamed:
        return columns
    read = str(pending.read_path)
    try:
        if pending.kind == "parquet":
            import pyarrow.parquet as pq

            names = list(pq.read_schema(read).names)
        else:
            names = list(
                con.execute(
                    "select * from read_csv(?, all_varchar = true, header = false, auto_detect = true, compression = ?) "
                    "limit 1",
                    [read, _compression(pending.read_path)],
                ).fetchone()
                or []
            )
    except (duckdb.Error, OSError, ValueError) as exc:
        raise LandingError(f"cannot read the header of landing file {pending.path}: {_short(exc)}") from exc
    if len(names) != len(columns):
        return columns
    return [(n or "").strip() for n in names]


_JSON_LINES = "_landing_json_lines"
# whether a line holds a JSON object: try() gives NULL for text that is not JSON, in one parse
# (json_valid and then json_type parsed every line twice)
_IS_OBJECT = "coalesce(try(json_type(line)) = 'OBJECT', false)"
# json_type raises on text that is not JSON, and DuckDB does not short-circuit `and`
_JSON_TYPE = "json_type(case when json_valid(line) then line end)"
# not null (an empty line), not empty and not ASCII whitespace only (bytes.strip's set); CASE
# evaluates the pattern only for a line that starts with whitespace
_NOT_BLANK = (
    "case when line is null or line = '' then false when ord(line) in (32, 9, 11, 12, 13) "
    "then not regexp_full_match(line, '[ \\t\\x0B\\x0C\\r]*') else true end"
)
# JSON Lines files are staged (one scan each) and then processed together until their sizes reach
# this many bytes: one statement per step for the batch instead of one per file (a clickstream of
# many small files spent its time in per-statement overhead: docs/scaling.md).
JSON_BATCH_BYTES = 256 * 1024 * 1024
# How far the read-ahead thread may run ahead of the load, in file bytes (at least one file). It
# only has to stay ahead; a bound keeps the files it read in the page cache until DuckDB reads them.
READ_AHEAD_BYTES = 512 * 1024 * 1024


def _stage_json_lines(
    con: duckdb.DuckDBPyConnection, batch: list[_Pending], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> None:
    """Every non-blank line of some JSON Lines files with its file, its record number (the count
    of non-blank lines of its file up to it) and whether it holds a JSON object, so a line that is
    not one can be quarantined and its neighbours go on. A file that is not UTF-8 text cannot be
    split into lines: LandingError naming it.

    The lines are read by DuckDB's CSV scanner with one column, no quoting and NUL as the
    separator (valid JSON never holds a raw NUL; a line that does is invalid JSON and is quarantined
    up to its first NUL), several times faster than splitting the file's text with string_split.
    Each file is scanned by a statement of its own: numbered in one scan
    of several files, lines of different files interleaved (seen on 20 clickstream files).

    A blank line is one of ASCII whitespace only, as count_landing_records (bytes.strip) counts
    them. The trailing carriage return is cut, and the blank test made, only for the lines that
    need it: rtrim and trim on every line were most of a line's cost (docs/scaling.md)."""
    con.execute(
        f"create or replace temp table {_JSON_LINES} "
        "(_source_file varchar, _line bigint, line varchar, _is_object boolean)"
    )
    for pending in batch:
        path, read = pending.path, pending.read_path
        try:
            con.execute(
                f"insert into {_JSON_LINES} "
                f"select ?, _line, line, {_IS_OBJECT} from ("
                "select row_number() over () as _line, line from ("
                "select case when ends_with(line, chr(13)) then rtrim(line, chr(13)) else line end as line "
                "from read_csv(?, columns={'line': 'VARCHAR'}, header=false, "
                "delim=chr(0), quote='', escape='', auto_detect=false, strict_mode=false, "
                "compression = ?, max_line_size = ?)"
                f") where {_NOT_BLANK}"
                ")",
                [path.name, str(read), _compression(read), int(max_line_bytes)],
            )
        except duckdb.Error as exc:
            raise LandingError(f"cannot read landing file {path}: {_short(exc)}") from exc


def _quarantine_json_rejects(con: duckdb.DuckDBPyConnection, rejects: str, source: str) -> dict[str, int]:
    """The staged lines that are not JSON objects go to `rejects`; how many, per file."""
    con.execute(
        f"insert into {rejects} (source, _source_file, _source_row, reason, raw_content) "
        "select ?, _source_file, _line, "
        f"case when json_valid(line) then 'NOT A JSON OBJECT: the line holds a JSON ' || lower({_JSON_TYPE}) "
        "else 'INVALID JSON: the line does not parse as JSON' end, line "
        f"from {_JSON_LINES} where not _is_object order by _source_file, _line",
        [source],
    )
    return dict(
        con.execute(f"select _source_file, count(*) from {_JSON_LINES} where not _is_object group by 1").fetchall()
    )


def file_fingerprint(path: Path, limits: str = "") -> tuple[int, str]:
    """Size and SHA-256 hash of a file's bytes and of the load's limits: whether the file, or how
    it would load, changed since it was loaded. SHA-256 rather than BLAKE2b (used before): OpenSSL's
    SHA-256 runs on the CPU's SHA instructions, faster on large landing folders (docs/scaling.md).
    A warehouse loaded with the old hash reads every
    file once more on its next load (a changed fingerprint is a changed file), then skips them."""
    seeded = hashlib.sha256(limits.encode())
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, lambda: seeded)
    return path.stat().st_size, digest.hexdigest()


def _ensure_tables(con: duckdb.DuckDBPyConnection, source: Source, schema: str, full_refresh: bool) -> bool:
    """Create the raw, rejects and audit tables if missing; True if the raw table is (re)built empty."""
    table, rejects, audit = f"{schema}.{source.name}", f"{schema}.{REJECTS_TABLE}", f"{schema}.{AUDIT_TABLE}"
    con.execute(f"create schema if not exists {schema}")
    con.execute(
        f"create table if not exists {rejects} (source varchar, _source_file varchar, _source_row bigint, "
        "reason varchar, raw_content varchar)"
    )
    con.execute(
        f"create table if not exists {audit} (source varchar, _source_file varchar, landing_records bigint, "
        "loaded_rows bigint, quarantined_rows bigint)"
    )
    con.execute(
        f"create table if not exists {schema}.{ERASED_TABLE} (source varchar, _source_file varchar, "
        "_source_row bigint, stage varchar, request_id varchar)"
    )
    # databases from before incremental loads: no fingerprint, so every file is read once more
    con.execute(f"alter table {audit} add column if not exists file_bytes bigint")
    con.execute(f"alter table {audit} add column if not exists file_hash varchar")
    # the contract columns each file lacked (JSON list); NULL for files loaded before it was kept
    con.execute(f"alter table {audit} add column if not exists missing_columns varchar")
    # an entry of the folder that was not loaded (another file type, a folder, a broken link, two
    # spellings of one column...): why; NULL for a loaded file
    con.execute(f"alter table {audit} add column if not exists not_loaded_reason varchar")
    # the bytes of a rejected record that is not valid UTF-8, in hex (raw_content shows each such
    # byte as \\xNN); NULL for any other record
    con.execute(f"alter table {rejects} add column if not exists raw_content_hex varchar")
    expected = [*source.column_names, "_source_file", "_source_row"]
    exists = table_exists(con, schema, source.name)
    current = [r[0] for r in con.execute(f"describe {table}").fetchall()] if exists else []
    if full_refresh or current != expected:
        column_defs = ", ".join(f"{ident(c)} varchar" for c in source.column_names)
        con.execute(f"create or replace table {table} ({column_defs}, _source_file varchar, _source_row bigint)")
        con.execute(f"delete from {rejects} where source = ?", [source.name])
        con.execute(f"delete from {audit} where source = ?", [source.name])
        con.execute(f"delete from {schema}.{ERASED_TABLE} where source = ?", [source.name])
        return True
    return False


def _forget_file(con: duckdb.DuckDBPyConnection, source: Source, schema: str, file_name: str) -> None:
    con.execute(f"delete from {schema}.{source.name} where _source_file = ?", [file_name])
    for name in (REJECTS_TABLE, AUDIT_TABLE, ERASED_TABLE):
        con.execute(f"delete from {schema}.{name} where source = ? and _source_file = ?", [source.name, file_name])


@dataclass(frozen=True)
class _Pending:
    """A landing file about to load: its fingerprint, its independent record count when the
    read-ahead thread could take it (None: count it at reconciliation), and the path DuckDB reads
    it by (the file itself, a link of a literal name, or its UTF-8 copy)."""

    path: Path
    fingerprint: tuple[int, str]
    records: int | None
    read_path: Path

    @property
    def kind(self) -> str:
        return file_kind(self.path)


def read_ahead(paths: list[Path], work: Callable[[Path], object], ahead_bytes: int) -> Iterator[tuple[Path, object]]:
    """(path, work(path)) for each path in order, work running in one background thread that stays
    at most `ahead_bytes` of file sizes (and at least one file) ahead of the consumer. work's
    exception is raised when its path's turn comes. Close the generator to stop early: work not
    yet started is cancelled, and the one running is waited for."""
    sizes = [p.stat().st_size for p in paths]
    pending: deque = deque()
    queued = 0
    submitted = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-read-ahead") as pool:
        try:
            for i, path in enumerate(paths):
                while submitted < len(paths) and (submitted <= i or queued + sizes[submitted] <= ahead_bytes):
                    pending.append(pool.submit(work, paths[submitted]))
                    queued += sizes[submitted]
                    submitted += 1
                result = pending.popleft().result()
                queued -= sizes[i]
                yield path, result
        finally:
            for future in pending:
                future.cancel()


def _unloaded_files_policy(unloaded_files: str | None) -> str:
    """The policy for entries not loaded: the one given, else the setting; refuses an unknown one."""
    if unloaded_files is None:
        from tessera.settings import load_settings

        unloaded_files = load_settings().landing_unloaded_files
    if unloaded_files not in POLICIES:
        raise ValueError(f"unloaded_files must be one of {', '.join(POLICIES)}, got {unloaded_files!r}")
    return unloaded_files


def _previously_loaded(con: duckdb.DuckDBPyConnection, source: Source, audit: str) -> dict[str, tuple[int, str]]:
    """The fingerprint (size, hash) of each file loaded before, by name. The audit rows of entries
    not loaded are dropped: those entries are judged anew on every load."""
    con.execute(f"delete from {audit} where source = ? and not_loaded_reason is not null", [source.name])
    return {
        name: (size, digest)
        for name, size, digest in con.execute(
            f"select _source_file, file_bytes, file_hash from {audit} where source = ?", [source.name]
        ).fetchall()
    }


# what examining a landing file found: None for an empty file; the reason a file cannot be read;
# else its fingerprint, its record count if it will load, and the path DuckDB will read it by
_Examined = tuple[tuple[int, str], int | None, Path] | str | None


def _examine(
    path: Path, loaded: dict[str, tuple[int, str]], limits: str, read_paths: _ReadPaths, max_line_bytes: int
) -> _Examined:
    """Runs in the read-ahead thread: see _Examined. The record count is None for a file loaded
    before with the same fingerprint (it is not read again) and for Parquet (whose count needs the
    connection)."""
    try:
        if path.stat().st_size == 0:
            return None
        fingerprint = file_fingerprint(path, limits)
        if loaded.get(path.name) == fingerprint:
            return fingerprint, None, path
        if is_compressed(path) and _decompresses_to_nothing(path):
            return None
        encoding = text_encoding(path) if file_kind(path) in _COMPRESSIBLE else None
        read = read_paths.utf8_copy(path, encoding) if encoding else read_paths.literal(path)
        return fingerprint, count_text_records(read, max_line_bytes), read
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        return f"cannot be decompressed: {exc}"
    except UnicodeDecodeError as exc:
        return f"not UTF-16 text, though it starts as UTF-16: {exc.reason} at byte {exc.start}"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"


def _decompresses_to_nothing(path: Path) -> bool:
    with _open_binary(path) as fh:
        return not fh.read(1)


@dataclass
class _SourceLoad:
    """One load of a source's folder, inside load_source's transaction: takes each examined file
    in folder order, forgetting what changed or went, loading what is new, JSON Lines files in
    batches of about json_batch_bytes."""

    con: duckdb.DuckDBPyConnection
    source: Source
    schema: str
    report: LoadReport
    loaded: dict[str, tuple[int, str]]  # the fingerprint of each file loaded before
    not_loaded: dict[str, str]  # entries not loaded, with their reason; take() adds to it
    max_line_bytes: int
    max_field_chars: int
    json_batch_bytes: int
    json_batch: list[_Pending] = field(default_factory=list)

    @property
    def tables(self) -> tuple[str, str, str]:
        """The source's raw table, the rejects table and the audit table."""
        return self.report.table, f"{self.schema}.{REJECTS_TABLE}", f"{self.schema}.{AUDIT_TABLE}"

    def forget(self, name: str) -> None:
        _forget_file(self.con, self.source, self.schema, name)

    def forget_removed(self, present: set[str]) -> None:
        """Forget the files loaded before that are no longer in the folder."""
        for name in sorted(set(self.loaded) - present):
            self.forget(name)
            self.report.files_removed.append(name)

    def take(self, path: Path, examined: _Examined) -> None:
        name = path.name
        if examined is None:
            if name in self.loaded:
                self.forget(name)
            self.report.skipped_empty_files.append(name)
            return
        if isinstance(examined, str):
            if name in self.loaded:
                self.forget(name)
                self.report.files_removed.append(name)
            self.not_loaded[name] = examined
            return
        fingerprint, records, read = examined
        if self.loaded.get(name) == fingerprint:
            self.report.files_unchanged.append(name)
            return
        if name in self.loaded:
            self.forget(name)
        self.load(_Pending(path, fingerprint, records, read))
        self.report.files_read.append(name)

    def load(self, pending: _Pending) -> None:
        if pending.kind == "jsonl":
            self.json_batch.append(pending)
            if sum(p.fingerprint[0] for p in self.json_batch) >= self.json_batch_bytes:
                self.load_json_batch()
            return
        self.load_json_batch()  # files load in folder order
        _load_file(self.con, self.source, pending, *self.tables, self.report, self.max_line_bytes, self.max_field_chars)

    def load_json_batch(self) -> None:
        if self.json_batch:
            _load_json_batch(
                self.con,
                self.source,
                self.json_batch,
                *self.tables,
                self.report,
                self.max_line_bytes,
                self.max_field_chars,
            )
            self.json_batch.clear()


def load_source(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    landing_dir: Path,
    schema: str = "raw",
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_field_chars: int = DEFAULT_MAX_FIELD_CHARS,
    full_refresh: bool = False,
    json_batch_bytes: int = JSON_BATCH_BYTES,
    read_ahead_bytes: int = READ_AHEAD_BYTES,
    unloaded_files: str | None = None,
) -> LoadReport:
    """Load the source's landing folder into raw.<source> (see the module's docstring).

    unloaded_files: what an entry of the folder that is not loaded does, after the files that can
    be are loaded and every entry is in raw.load_audit: "block" raises a LandingError naming each
    with its reason, "warn" logs them and returns (report.files_not_loaded). None: the setting
    TESSERA_LANDING_UNLOADED_FILES (default block)."""
    unloaded_files = _unloaded_files_policy(unloaded_files)
    audit = f"{schema}.{AUDIT_TABLE}"
    report = LoadReport(source=source.name, table=f"{schema}.{source.name}")
    read_paths = _ReadPaths()
    # one transaction: a load that fails leaves raw as the previous load left it
    with closing(read_paths), transaction(con):
        report.full_refresh = _ensure_tables(con, source, schema, full_refresh)
        loaded = _previously_loaded(con, source, audit)
        files, not_loaded = landing_entries(Path(landing_dir) / source.name)
        report.files_not_loaded = not_loaded
        run = _SourceLoad(
            con, source, schema, report, loaded, not_loaded, max_line_bytes, max_field_chars, json_batch_bytes
        )
        run.forget_removed({p.name for p in files})
        limits = f"max_line_bytes={max_line_bytes};max_field_chars={max_field_chars}"
        examine = functools.partial(
            _examine, loaded=loaded, limits=limits, read_paths=read_paths, max_line_bytes=max_line_bytes
        )
        scans = read_ahead(files, examine, read_ahead_bytes)
        try:
            for path, examined in scans:
                run.take(path, examined)
        finally:
            scans.close()  # stops the read-ahead thread when the load fails
        run.load_json_batch()
        _audit_not_loaded(con, source, audit, landing_dir, not_loaded)
        _report_totals(con, source, audit, report)
    report.files_not_loaded = dict(sorted(not_loaded.items()))
    _enforce_unloaded_files(source, report, unloaded_files)
    return report


def _enforce_unloaded_files(source: Source, report: LoadReport, unloaded_files: str) -> None:
    """After the load is committed: "block" raises a LandingError naming each entry not loaded,
    "warn" logs them."""
    not_loaded = report.files_not_loaded
    if not not_loaded:
        return
    listed = "; ".join(f"{name}: {reason}" for name, reason in not_loaded.items())
    if unloaded_files == "block":
        raise LandingError(
            f"{len(not_loaded)} landing file{'s' if len(not_loaded) > 1 else ''} of {source.name} "
            f"{'were' if len(not_loaded) > 1 else 'was'} not loaded: {listed}. The other files were loaded "
            "and raw.load_audit records every file with its reason (not_loaded_reason); the run stops here "
            "(TESSERA_LANDING_UNLOADED_FILES=block). Remove, rename or convert the files, or set "
            "TESSERA_LANDING_UNLOADED_FILES=warn to go on without them."
        )
    log.warning(
        "%s: %d landing file(s) not loaded (recorded in raw.load_audit): %s", source.name, len(not_loaded), listed
    )


def _audit_not_loaded(
    con: duckdb.DuckDBPyConnection, source: Source, audit: str, landing_dir: Path, not_loaded: dict[str, str]
) -> None:
    """An audit row for each entry not loaded: its reason, no record count (nothing was read),
    nothing loaded or quarantined, and its size when it is a file."""
    rows = []
    for name, reason in sorted(not_loaded.items()):
        try:
            size = (Path(landing_dir) / source.name / name).stat().st_size
        except OSError:
            size = None
        rows.append([source.name, name, size, reason])
    if rows:
        con.executemany(
            f"insert into {audit} (source, _source_file, landing_records, loaded_rows, quarantined_rows, file_bytes, "
            "not_loaded_reason) values (?, ?, null, 0, 0, ?, ?)",
            rows,
        )


def _report_totals(con: duckdb.DuckDBPyConnection, source: Source, audit: str, report: LoadReport) -> None:
    """Per-file and total counts over every file now loaded, read or not in this run."""
    for name, loaded_rows, quarantined in con.execute(
        f"select _source_file, loaded_rows, quarantined_rows from {audit} "
        "where source = ? and not_loaded_reason is null order by _source_file",
        [source.name],
    ).fetchall():
        report.files.append(name)
        report.rows_per_file[name] = loaded_rows
        report.rows += loaded_rows
        if quarantined:
            report.rejected_per_file[name] = quarantined
            report.rejected += quarantined


def _load_file(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    pending: _Pending,
    table: str,
    rejects: str,
    audit: str,
    report: LoadReport,
    max_line_bytes: int,
    max_field_chars: int,
) -> None:
    """Load one CSV or Parquet file (or record why not: two of its columns name one contract column)."""
    path, kind = pending.path, pending.kind
    sql, columns, params = _file_relation(con, pending, max_line_bytes)
    mapping = _match_columns(report, source, path.name, _delivered_names(con, pending, columns))
    if mapping is None:
        return
    select = ", ".join(
        f"cast({ident(columns[mapping[c]])} as varchar) as {ident(c)}"
        if c in mapping
        else f"null::varchar as {ident(c)}"
        for c in source.column_names
    )
    repeats_header, header_params = _repeats_header_sql(columns) if kind == "csv" else ("false", [])
    try:
        # DuckDB leaves an earlier scan's rejects in place when this one has none
        con.execute(f"drop table if exists {_SCAN_REJECTS}")
        con.execute(f"drop table if exists {_SCAN_SCANS}")
        # _kept: the record's rank among those the scanner read
        con.execute(
            "create or replace temp table _landing_batch as "
            f"select {select}, {repeats_header} as _repeats_header, row_number() over () as _kept from ({sql}) as f",
            [*header_params, *params],
        )
    except duckdb.Error as exc:
        raise LandingError(f"cannot load landing file {path}: {_short(exc)}") from exc
    n_scan_rejected = (
        _quarantine_scan_rejects(con, rejects, source.name, pending, max_line_bytes) if kind == "csv" else 0
    )
    too_long, too_long_params = _first_long_column_sql(source, max_field_chars)
    con.execute(
        "create or replace temp table _landing_numbered as "
        f"select b.*, ? as _source_file, {_record_number_sql(n_scan_rejected)} as _record, "
        f"{too_long} as _too_long_column from _landing_batch as b",
        [path.name, *too_long_params],
    )
    con.execute("drop table _landing_batch")
    scan_rejected = {path.name: n_scan_rejected}
    _insert_numbered(
        con, source, table, rejects, audit, [pending], scan_rejected, report, max_line_bytes, max_field_chars
    )


def _load_json_batch(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    batch: list[_Pending],
    table: str,
    rejects: str,
    audit: str,
    report: LoadReport,
    max_line_bytes: int,
    max_field_chars: int,
) -> None:
    """Load some JSON Lines files with one statement per step. Each line is staged as text
    (read_json would infer types and reformat timestamps; we keep the text as delivered); a JSON
    line's record number is its line number, rejected lines included. A key names a contract
    column whatever its case; a file whose keys spell one column two ways is not loaded."""
    _stage_json_lines(con, batch, max_line_bytes)
    keys: dict[str, list[str]] = {p.path.name: [] for p in batch}
    for name, key in con.execute(
        f"select distinct _source_file, unnest(json_keys(line)) from {_JSON_LINES} where _is_object order by all"
    ).fetchall():
        keys[name].append(key)
    # contract column -> the keys that name it in this batch (one per file)
    spellings: dict[str, list[str]] = {c: [] for c in source.column_names}
    kept = []
    for pending in batch:
        name = pending.path.name
        mapping = _match_columns(report, source, name, keys[name])
        if mapping is None:
            con.execute(f"delete from {_JSON_LINES} where _source_file = ?", [name])
            continue
        kept.append(pending)
        for column, i in mapping.items():
            if keys[name][i] not in spellings[column]:
                spellings[column].append(keys[name][i])
    scan_rejected = _quarantine_json_rejects(con, rejects, source.name)
    # one json_extract_string with every path parses each line once (->> per column parsed it
    # once per column); a column spelled differently in some file takes each spelling's value
    paths: list[str] = []
    select = []
    for column in source.column_names:
        found = spellings[column] or [column]
        values = [f"_v[{len(paths) + i}]::varchar" for i in range(1, len(found) + 1)]
        paths += found
        select.append(f"{values[0] if len(values) == 1 else 'coalesce(' + ', '.join(values) + ')'} as {ident(column)}")
    too_long, too_long_params = _first_long_column_sql(source, max_field_chars)
    con.execute(
        "create or replace temp table _landing_numbered as "
        f"select b.*, {too_long} as _too_long_column from ("
        f"select {', '.join(select)}, false as _repeats_header, _source_file, _line as _record from ("
        f"select _source_file, _line, json_extract_string(line, ?::varchar[]) as _v from {_JSON_LINES} where _is_object"
        ")) as b",
        [*too_long_params, ["$." + ident(k) for k in paths]],
    )
    con.execute(f"drop table {_JSON_LINES}")
    _insert_numbered(con, source, table, rejects, audit, kept, scan_rejected, report, max_line_bytes, max_field_chars)


def _match_columns(report: LoadReport, source: Source, file_name: str, delivered: list[str]) -> dict[str, int] | None:
    """Which of a file's columns holds each contract column: the one whose name equals it but for
    case and surrounding spaces (an `EMAIL` header is the email column). The file's contract columns
    it lacks, its columns the contract does not name, and the names it spells differently go in
    the report. None, with the file among report.files_not_loaded, when two of its columns name one
    contract column (email and EMAIL): which holds the value is not known, and taking either
    would drop the other's values."""
    contract = {c.lower(): c for c in source.column_names}
    found: dict[str, list[int]] = {}
    extra = []
    for i, name in enumerate(delivered):
        column = contract.get(name.strip().lower())
        if column is None:
            extra.append(name)
        else:
            found.setdefault(column, []).append(i)
    for column in source.column_names:
        if len(found.get(column, [])) > 1:
            names = [delivered[i] for i in found[column]]
            listed = ", ".join(names[:-1]) + " and " + names[-1]
            report.files_not_loaded[file_name] = (
                f"columns {listed} {'both' if len(names) == 2 else 'all'} name the contract column {column}: "
                "which one holds it is not known"
            )
            return None
    mapping = {column: positions[0] for column, positions in found.items()}
    missing = [c for c in source.column_names if c not in mapping]
    renamed = {delivered[i]: c for c, i in sorted(mapping.items(), key=lambda item: item[1]) if delivered[i] != c}
    if missing:
        report.missing_columns[file_name] = missing
    if extra:
        report.extra_columns[file_name] = extra
    if renamed:
        report.renamed_columns[file_name] = renamed
    return mapping


def _insert_numbered(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    table: str,
    rejects: str,
    audit: str,
    batch: list[_Pending],
    scan_rejected: dict[str, int],
    report: LoadReport,
    max_line_bytes: int,
    max_field_chars: int,
) -> None:
    """Quarantine the over-long records of _landing_numbered, insert the others into the raw table,
    then reconcile each file against its independent count and write its audit row."""
    too_long = _quarantine_long_values(con, rejects, source, max_field_chars)
    headers = _quarantine_repeated_headers(con, rejects, source)
    # _landing_numbered holds its files in name order (landing_files) and each file's records in
    # order, and DuckDB keeps insertion order (preserve_insertion_order, on by default): the rows
    # land by (_source_file, _source_row) without a sort
    con.execute(
        f"insert into {table} select {', '.join(ident(c) for c in source.column_names)}, _source_file, "
        f"_record as _source_row from _landing_numbered where {_LOADS}"
    )
    loaded = dict(
        con.execute(f"select _source_file, count(*) from _landing_numbered where {_LOADS} group by 1").fetchall()
    )
    con.execute("drop table _landing_numbered")
    for pending in batch:
        path, fingerprint = pending.path, pending.fingerprint
        n = loaded.get(path.name, 0)
        n_rejected = scan_rejected.get(path.name, 0) + too_long.get(path.name, 0) + headers.get(path.name, 0)
        landing = (
            pending.records
            if pending.records is not None
            else count_landing_records(con, pending.read_path, max_line_bytes)
        )
        if landing != n + n_rejected:
            raise LandingError(
                f"{path} does not reconcile: it holds {landing} records but {n} loaded and {n_rejected} "
                "were quarantined; nothing from this load is kept"
            )
        con.execute(
            f"insert into {audit} (source, _source_file, landing_records, loaded_rows, quarantined_rows, file_bytes, "
            "file_hash, missing_columns) values (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                source.name,
                path.name,
                landing,
                n,
                n_rejected,
                *fingerprint,
                json.dumps(report.missing_columns.get(path.name, [])),
            ],
        )
        report.records_scanned += landing


def _quarantine_scan_rejects(
    con: duckdb.DuckDBPyConnection,
    rejects: str,
    source: str,
    pending: _Pending,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> int:
    """Copy the records the last CSV scan rejected into `rejects`, one row per record.

    DuckDB numbers a rejected record by its line in the file counting the header as line 1 and a
    quoted multi-line field as one line, so the record's position among the data rows is line - 1.
    A record with several faults (a short row that also holds bad bytes) gets them all in `reason`.

    DuckDB's copy of a record that is not valid UTF-8 replaces bytes with '?' (`Ren\xe9,` became
    `Ren??`): such a record is read again from the file at the byte position DuckDB gives, and kept
    whole, in hex (raw_content_hex) and as text with each byte that is not UTF-8 written \\xNN.
    """
    con.execute(
        f"""
        create or replace temp table _landing_rejected as
        select
            cast(line as bigint) - 1 as record,
            string_agg(cast(error_type as varchar) || ': ' || error_message, '; ' order by column_idx) as reason,
            coalesce(min(csv_line), '(DuckDB kept no copy of this line)') as raw_content,
            cast(null as varchar) as raw_content_hex,
            min(line_byte_position) as line_byte_position,
            bool_or(cast(error_type as varchar) = 'INVALID ENCODING') as invalid_encoding
        from {_SCAN_REJECTS}
        group by line
        """
    )
    undecodable = con.execute(
        "select record, line_byte_position from _landing_rejected where invalid_encoding order by line_byte_position"
    ).fetchall()
    if undecodable:
        recovered = []
        with _open_binary(pending.read_path) as fh:
            for record, position in undecodable:
                data = _record_at(fh, int(position) - 1, max_line_bytes) if position else b""
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError:  # the record DuckDB could not decode: found
                    recovered.append([data.decode("utf-8", "backslashreplace"), data.hex(), record])
        con.executemany("update _landing_rejected set raw_content = ?, raw_content_hex = ? where record = ?", recovered)
    con.execute(
        f"insert into {rejects} (source, _source_file, _source_row, reason, raw_content, raw_content_hex) "
        "select ?, ?, record, reason, raw_content, raw_content_hex from _landing_rejected order by record",
        [source, pending.path.name],
    )
    return con.execute("select count(*) from _landing_rejected").fetchall()[0][0]


def _record_at(fh: BinaryIO, start: int, max_bytes: int) -> bytes:
    """The CSV record that begins at byte `start`, up to the line end outside double quotes and
    without it; at most max_bytes. Line ends at `start` are skipped: after a blank line DuckDB
    points at the end of the line before it."""
    fh.seek(start)
    record = bytearray()
    while (byte := fh.read(1)) in (b"\n", b"\r"):
        pass
    record += byte
    quoted = byte == b'"'
    while byte and len(record) <= max_bytes and (chunk := fh.read(1 << 16)):
        for i, value in enumerate(chunk):
            if value == 0x22:
                quoted = not quoted
            elif value == 0x0A and not quoted:
                record += chunk[:i]
                return bytes(record[:-1] if record.endswith(b"\r") else record)
        record += chunk
    return bytes(record[:max_bytes])


def _first_long_column_sql(source: Source, max_field_chars: int) -> tuple[str, list]:
    """SQL naming the first column whose value is longer than max_field_chars (NULL if none), and
    the values it binds."""
    cases = " ".join(f"when length({ident(c)}) > ? then ?" for c in source.column_names)
    return f"case {cases} end", [v for c in source.column_names for v in (int(max_field_chars), c)]


def _quarantine_long_values(
    con: duckdb.DuckDBPyConnection, rejects: str, source: Source, max_field_chars: int
) -> dict[str, int]:
    """Quarantine the records of _landing_numbered with a value over max_field_chars characters;
    the reason names the first such column, raw_content keeps the whole record as JSON. How many,
    per file."""
    struct = ", ".join(f"{_sql_string(c)}: {ident(c)}" for c in source.column_names)
    length = " ".join(f"when _too_long_column = {_sql_string(c)} then length({ident(c)})" for c in source.column_names)
    con.execute(
        f"insert into {rejects} (source, _source_file, _source_row, reason, raw_content) "
        "select ?, _source_file, _record, "
        f"'VALUE TOO LONG: ' || _too_long_column || ' holds ' || (case {length} end) || "
        f"' characters, over the limit of ' || ?, to_json({{{struct}}}) "
        "from _landing_numbered where _too_long_column is not null order by _source_file, _record",
        [source.name, str(int(max_field_chars))],
    )
    return dict(
        con.execute(
            "select _source_file, count(*) from _landing_numbered where _too_long_column is not null group by 1"
        ).fetchall()
    )


# the records of _landing_numbered that load: not too long, not a repeated header
_LOADS = "_too_long_column is null and not _repeats_header"


def _repeats_header_sql(columns: list[str]) -> tuple[str, list[str]]:
    """SQL: whether a CSV record's every value is its own column's name (trimmed, any case): the
    header line repeated inside the file. NULL values make it false. With the names it binds."""
    if not columns:
        return "false", []
    tests = " and ".join(f"lower(trim({ident(c)})) = ?" for c in columns)
    return f"coalesce({tests}, false)", [c.strip().lower() for c in columns]


def _quarantine_repeated_headers(con: duckdb.DuckDBPyConnection, rejects: str, source: Source) -> dict[str, int]:
    """Quarantine the records of _landing_numbered that repeat their file's header line (and are not
    already quarantined as too long); raw_content keeps the record as JSON. How many, per file."""
    struct = ", ".join(f"{_sql_string(c)}: {ident(c)}" for c in source.column_names)
    where = "_repeats_header and _too_long_column is null"
    con.execute(
        f"insert into {rejects} (source, _source_file, _source_row, reason, raw_content) "
        "select ?, _source_file, _record, "
        "'REPEATED HEADER: every value of the record is its column''s name: the header line again, not data', "
        f"to_json({{{struct}}}) from _landing_numbered where {where} order by _source_file, _record",
        [source.name],
    )
    return dict(
        con.execute(f"select _source_file, count(*) from _landing_numbered where {where} group by 1").fetchall()
    )


def _record_number_sql(n_rejected: int) -> str:
    """The file position of the _kept-th loaded record, counting the rejected records before it.

    With rejected positions r_1 < r_2 < ..., r_j - j records were kept before r_j, so the k-th kept
    record sits at k + #{j : r_j - j < k}."""
    if not n_rejected:
        return "b._kept"
    return (
        "b._kept + (select count(*) from (select record - row_number() over (order by record) as kept_before "
        "from _landing_rejected) as r where r.kept_before < b._kept)"
    )


def count_landing_records(
    con: duckdb.DuckDBPyConnection, path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> int:
    """Records in a landing file, counted without DuckDB's scanner.

    CSV: records as Python's csv module splits them (quoted newlines stay inside their record;
    blank lines are not records), less the header; bytes that are not UTF-8 are counted, not
    decoded. JSON Lines: non-blank lines. Parquet: the row count its footer declares. A .gz file
    is counted decompressed, a UTF-16 one decoded."""
    if file_kind(path) == "parquet":
        read_paths = _ReadPaths()
        try:
            read = read_paths.literal(path)
            rows = con.execute("select sum(num_rows) from parquet_file_metadata(?)", [str(read)]).fetchall()
        finally:
            read_paths.close()
        return int(rows[0][0] or 0)
    return count_text_records(path, max_line_bytes)


def count_text_records(path: Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> int | None:
    """count_landing_records for a CSV or JSON Lines file, without a connection (the read-ahead
    thread calls it); None for Parquet."""
    kind = file_kind(path)
    if kind == "parquet":
        return None
    encoding = text_encoding(path)
    if kind == "jsonl":
        if encoding:
            with io.TextIOWrapper(_open_binary(path), encoding=encoding, newline="") as text:
                return sum(1 for line in text if line.strip(" \t\n\r\x0b\x0c"))
        with _open_binary(path) as fh:
            return sum(1 for line in fh if line.strip())
    records = None if encoding else _count_plain_lines(path)
    if records is None:
        # the csv module refuses fields over 128 KiB by default; the loader accepts lines up to max_line_bytes
        csv.field_size_limit(max(csv.field_size_limit(), int(max_line_bytes)))
        with io.TextIOWrapper(_open_binary(path), encoding=encoding or "utf-8", errors="replace", newline="") as fh:
            records = sum(1 for record in csv.reader(fh) if record)
    return max(records - 1, 0)


def _count_plain_lines(path: Path, chunk_bytes: int = 1 << 24) -> int | None:
    """The lines of a CSV file without quotes, carriage returns, NULs or empty lines: there, each
    line is one record to the csv module, so counting newlines counts what csv.reader would, several
    times faster (docs/scaling.md). None for any other file,
    which csv.reader splits."""
    lines = 0
    last = b"\n"  # as if a newline came before the file: an empty first line is an empty line
    with _open_binary(path) as fh:
        while chunk := fh.read(chunk_bytes):
            if b'"' in chunk or b"\r" in chunk or b"\x00" in chunk or b"\n\n" in chunk or last + chunk[:1] == b"\n\n":
                return None
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")  # a last line without its newline is a line too


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
