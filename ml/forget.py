"""Forget erased people in MLflow: retire every model and run artifact that carries one.

The recommender logs, per training run, `id_mappings.json` (every customer_pkey it trained on)
and a model whose bundle holds the id map, one identity feature `id:<customer_pkey>` per customer
and the learned embedding of each (ml/tracking.py). A person who asks for erasure is in every
such run trained before the request. Nothing else tessera logs holds a customer identifier:
params, metrics and tags are counts, dates, configurations and run ids; the propensity,
clustering and bandit runs log aggregates (calibration bins, cluster profiles, arm counts).

`forget(values, ...)` scans every artifact file of every run and logged model in the tracking
store (and, given `artifact_root`, every file under it, including files no run owns any more)
for the values, as raw bytes, case-insensitively, and inside zip (npz, skops), gzip and nested
archive members. Whatever carries one is RETIRED, never rewritten: a model without the person's
row is not the model that was evaluated and promoted, and its other rows were shaped by the
person's interactions all the same (docs/privacy.md, "MLflow after an erasure").

- A run is retired when one of its artifacts carries a value, or a model it logged does.
- A logged model is retired when one of its artifacts carries a value, or its run is retired:
  its whole artifact directory is deleted and it is marked deleted in the store.
- A registered model version of a retired run or model is deleted, its aliases first. If that
  was the champion, the registry has no champion until the next pipeline run trains a model
  without the person and judges it as a first model (ml/promotion.judge_first_model).
- A retired run keeps its params and metrics (they hold no identifier), loses the artifacts that
  carry a value, and is tagged `tessera.privacy.erasure=retired` with the reason, when, and the versions
  retired: the record of what was removed and why. No tag holds an identifier.
- An artifact file no run or model owns is deleted when it carries a value.

Registry changes come before file deletion: a call interrupted half way finds the same files
again next time and finishes the job. A second call with the same values finds nothing.
Afterwards a SQLite tracking store is VACUUMed, so the rows MLflow deleted leave no bytes behind.

Matching: values of 12 characters or more (customer_pkey "pk_" + 32 hex, customer_key "tc_" + 16
hex, most emails) are found anywhere in the bytes, also as UTF-16/UTF-32 (numpy text arrays) and
as JSON escapes them; shorter ones (6 to 11 characters: CRM ids, order ids) only as a whole
token, between characters that are not letters or digits, so that an order id "100234" is not
found inside a logged number 0.41002345; values shorter than 6 characters are not searched for
(they would be found in any binary file by chance) and are counted as `values_not_searched`.

Cost: every byte of every artifact is read once (and each compressed member once, inflated), in
16 MB windows; no model is loaded. Candidate positions are picked in numpy by 2-byte pairs, so
the cost hardly depends on how many values there are: about 85 MB/s on one core (a 285 MB
bundle-like pickle of 1M customer_pkeys and 64-dimension embeddings: 3.4 s for 2 values, 3.5 s for
80); the demo store after three pipeline runs (65 files, 11 MB) in about 2 s, mostly reading
the tracking store.
"""

from __future__ import annotations

import gzip
import io
import logging
import sqlite3
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from ml.registry import CHAMPION

log = logging.getLogger("tessera.ml.forget")

ERASURE_TAG = "tessera.privacy.erasure"
RETIRED = "retired"
REASON_TAG = "tessera.erasure_reason"
RETIRED_AT_TAG = "tessera.erasure_retired_at"
VERSIONS_TAG = "tessera.erasure_model_versions"
REASON = (
    "trained on data of a person who asked for erasure: the model, its id mappings and its registered "
    "versions were deleted (ml/forget.py); the metrics and params are kept, none holds an identifier"
)
# the counts of what a call changed: all 0 when called again with the same values
ACTIONS = (
    "runs_touched",
    "artifacts_removed",
    "logged_models_retired",
    "model_versions_retired",
    "aliases_removed",
    "champion_retired",
)
MIN_SEARCH_CHARS = 6  # shorter values are found in any binary file by chance
MIN_ANYWHERE_CHARS = 12  # shorter values must stand as a whole token
CHUNK_BYTES = 16 * 2**20  # bytes read at a time: a 1 GB bundle never sits in memory whole
MAX_NESTING = 3  # archives inside archives deeper than this are refused, not skipped
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"


class ForgetError(RuntimeError):
    """An artifact store or file forget() cannot scan: it refuses rather than skip it."""


@dataclass(frozen=True)
class Needles:
    """The erased values as lower-case bytes, by their first 6 bytes (`by_head`: value -> whether
    it may be found anywhere, or only as a whole token). Three tables of the 2-byte pairs at
    offsets 0, 2 and 4 of every value pick, in numpy, the few positions of a window where one
    may start; only those are compared, so the cost hardly depends on how many values there are.
    The values themselves are never logged or returned."""

    by_head: dict[bytes, dict[bytes, bool]]
    pairs: np.ndarray  # (3, 65536) bool: pair at offset 0, 2, 4 of some value
    longest: int
    not_searched: int

    @classmethod
    def of(cls, values: Iterable[str]) -> Needles:
        cleaned = {str(v).strip().lower() for v in values if v is not None and str(v).strip()}
        searched = sorted(v for v in cleaned if len(v) >= MIN_SEARCH_CHARS)
        anywhere: dict[bytes, bool] = {}
        for value in searched:
            # as written by Python and JSON (MLflow's log_dict escapes a non-ASCII character as
            # \u00e9); a long value also as numpy and pickle store text arrays (UTF-32) and as UTF-16
            forms = {value.encode(), value.encode("ascii", "backslashreplace").replace(b"\\x", b"\\u00")}
            if len(value) >= MIN_ANYWHERE_CHARS:
                forms |= {value.encode("utf-16-le"), value.encode("utf-32-le")}
            for form in forms:
                anywhere[form] = anywhere.get(form, False) or len(value) >= MIN_ANYWHERE_CHARS
        by_head: dict[bytes, dict[bytes, bool]] = {}
        pairs = np.zeros((3, 65536), dtype=bool)
        for form, free in sorted(anywhere.items()):
            by_head.setdefault(form[:6], {})[form] = free
            for row, offset in enumerate((0, 2, 4)):
                pairs[row, form[offset] << 8 | form[offset + 1]] = True
        return cls(by_head, pairs, max(map(len, anywhere), default=0), len(cleaned) - len(searched))

    def __bool__(self) -> bool:
        return bool(self.by_head)

    def found(self, window: bytes, at_start: bool, at_end: bool) -> bool:
        """Whether lower-cased `window` holds a value. A token match touching the window's start
        (unless it is the stream's) or its end (unless the stream's) is left to the neighbouring
        window, which sees the character beyond it."""
        if len(window) < 6:
            return False
        b = np.frombuffer(window, dtype=np.uint8)
        pair = (b[:-1].astype(np.uint16) << 8) | b[1:]
        n = len(b) - 5
        starts = np.flatnonzero(
            self.pairs[0][pair[:n]] & self.pairs[1][pair[2 : n + 2]] & self.pairs[2][pair[4 : n + 4]]
        )
        for start in starts.tolist():
            for value, free in self.by_head.get(window[start : start + 6], {}).items():
                if not window.startswith(value, start):
                    continue
                end = start + len(value)
                if free:
                    return True
                before = not window[start - 1 : start].isalnum() if start else at_start
                after = not window[end : end + 1].isalnum() if end < len(window) else at_end
                if before and after:
                    return True
        return False


def stream_carries(stream: BinaryIO, needles: Needles, chunk_bytes: int = CHUNK_BYTES) -> tuple[bool, bytes, int]:
    """Whether the stream's bytes hold a value (case-insensitive), read `chunk_bytes` at a time
    with an overlap, so a value across two chunks is found; the first 4 bytes; the bytes read."""
    overlap = needles.longest + 1
    head, tail, read = b"", b"", 0
    tail_at_start = True  # the tail is the stream's beginning
    while chunk := stream.read(chunk_bytes):
        head = head or chunk[:4]
        read += len(chunk)
        window = tail + chunk.lower()
        if needles.found(window, tail_at_start, at_end=False):
            return True, head, read
        tail_at_start = tail_at_start and len(window) <= overlap
        tail = window[-overlap:]
    return needles.found(tail, tail_at_start, at_end=True), head, read


Opener = Callable[[], AbstractContextManager[BinaryIO]]


def file_carries(path: Path, needles: Needles, chunk_bytes: int = CHUNK_BYTES) -> tuple[bool, int]:
    """Whether the file holds a value in its raw bytes or, for a gzip or zip file (npz, skops,
    wheel...), in any member, nested archives included; and the bytes read (members inflated).
    A file that looks like an archive but cannot be read as one is refused (ForgetError)."""
    try:
        return _carries(lambda: path.open("rb"), needles, chunk_bytes, 0)
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise ForgetError(f"cannot scan artifact {path}: {type(e).__name__}: {e}") from e


def _carries(opener: Opener, needles: Needles, chunk_bytes: int, depth: int) -> tuple[bool, int]:
    with opener() as stream:
        hit, head, read = stream_carries(stream, needles, chunk_bytes)
    if hit or not head.startswith((GZIP_MAGIC, ZIP_MAGIC)):
        return hit, read
    if depth >= MAX_NESTING:
        raise ForgetError(f"archives nested deeper than {MAX_NESTING} levels: cannot tell what the innermost holds")
    if head.startswith(GZIP_MAGIC):
        hit, inflated = _carries(lambda: _gunzip(opener), needles, chunk_bytes, depth + 1)
        return hit, read + inflated
    with opener() as stream, zipfile.ZipFile(stream if stream.seekable() else io.BytesIO(stream.read())) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            hit, inflated = _carries(lambda i=info: archive.open(i), needles, chunk_bytes, depth + 1)
            read += inflated
            if hit:
                return True, read
    return False, read


@contextmanager
def _gunzip(opener: Opener) -> Iterator[BinaryIO]:
    with opener() as raw, gzip.GzipFile(fileobj=raw) as inflated:
        yield inflated


def local_path(uri: str, what: str) -> Path:
    """The local directory of an artifact URI (file:// or a plain path); anything else is refused:
    forget() reads the bytes where they are and cannot vouch for a store it does not scan."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    if parsed.scheme == "":
        return Path(uri)
    raise ForgetError(
        f"{what}: artifacts at a {parsed.scheme}: location; forget() scans local artifact stores only "
        "(TESSERA_DATA_DIR/mlflow/artifacts), so it cannot show that this one holds no erased person"
    )


def _paged(search: Callable, **kwargs) -> Iterator:
    token = None
    while True:
        page = search(**kwargs, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


@dataclass
class _Store:
    """What the tracking store knows: each run's and active logged model's artifact directory, the
    registered model versions and their aliases."""

    runs: dict[str, Path]  # run id -> artifact directory
    models: dict[str, tuple[Path, str | None, bool]]  # model id -> (artifact directory, run id, tagged retired)
    versions: list[tuple[str, str, str | None]]  # (registered model, version, run id: its own or its model's)
    aliases: dict[tuple[str, str], list[str]]  # (registered model, version) -> aliases

    @classmethod
    def read(cls, client: MlflowClient) -> _Store:
        experiments = [e.experiment_id for e in _paged(client.search_experiments, view_type=ViewType.ALL)]
        runs: dict[str, Path] = {}
        models: dict[str, tuple[Path, str | None, bool]] = {}
        for start in range(0, len(experiments), 50):
            batch = experiments[start : start + 50]
            for run in _paged(client.search_runs, experiment_ids=batch, run_view_type=ViewType.ALL, max_results=1000):
                runs[run.info.run_id] = local_path(run.info.artifact_uri, f"run {run.info.run_id}")
            for model in _paged(client.search_logged_models, experiment_ids=batch):
                where = local_path(model.artifact_location, f"logged model {model.model_id}")
                models[model.model_id] = (where, model.source_run_id, model.tags.get(ERASURE_TAG) == RETIRED)
        versions, aliases = [], {}
        for registered in _paged(client.search_registered_models, max_results=100):
            for alias, version in registered.aliases.items():
                aliases.setdefault((registered.name, str(version)), []).append(alias)
            name = registered.name.replace("'", "\\'")
            for v in _paged(client.search_model_versions, filter_string=f"name = '{name}'"):
                versions.append((v.name, str(v.version), v.run_id or _source_run(v.source or "", models)))
        versions.sort(key=lambda v: (v[0], int(v[1])))
        return cls(runs, models, versions, aliases)


def _source_run(source: str, models: dict[str, tuple[Path, str | None, bool]]) -> str | None:
    """The run of a version registered without a run id: its logged model's, or the runs:/ uri's."""
    if source.startswith("models:/") and (model := models.get(source.removeprefix("models:/"))):
        return model[1]
    if source.startswith("runs:/"):
        return source.removeprefix("runs:/").split("/", 1)[0]
    return None


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.is_dir() else []


def forget(values: Iterable[str], tracking_uri: str, model_name: str, artifact_root: Path | None = None) -> dict:
    """Retire every MLflow run, logged model and registered model version whose artifacts carry
    one of `values` (the erased people's customer_key and customer_pkey, or any identifier; values
    nobody carries are ignored), as the module docstring says. `artifact_root`: also scan every
    file under it, and delete one that carries a value though no run or model owns it.

    Returns the ACTIONS counts (runs tagged, artifact files deleted, logged models, model versions
    and aliases retired, and 1 if `model_name`'s champion was one of them), what was scanned
    (`files_scanned`, `bytes_scanned`, `seconds`), `values_not_searched` (too short to search
    for) and `store_vacuumed`. Nothing it logs or returns holds a value."""
    started = time.perf_counter()
    needles = Needles.of(values)
    out = dict.fromkeys(ACTIONS, 0) | {
        "values_not_searched": needles.not_searched,
        "files_scanned": 0,
        "bytes_scanned": 0,
        "store_vacuumed": 0,
    }
    if not needles:
        out["seconds"] = round(time.perf_counter() - started, 3)
        return out
    database = sqlite_file(tracking_uri)
    # no SQLite store yet (nothing was ever logged): nothing to read, and none is created
    never_written = database is not None and not database.exists()
    client = None if never_written else MlflowClient(tracking_uri=tracking_uri)
    store = _Store({}, {}, [], {}) if client is None else _Store.read(client)

    def carrying(files: list[Path]) -> list[Path]:
        hits = []
        for f in files:
            hit, read = file_carries(f, needles)
            out["files_scanned"] += 1
            out["bytes_scanned"] += read
            if hit:
                hits.append(f)
        return hits

    # what carries a value
    run_hits = {run_id: carrying(_files(d)) for run_id, d in sorted(store.runs.items())}
    model_hits = {model_id: carrying(_files(d)) for model_id, (d, _, _) in sorted(store.models.items())}
    orphan_hits: list[Path] = []
    if artifact_root is not None:
        owned = [*store.runs.values(), *(d for d, _, _ in store.models.values())]
        orphan_hits = carrying([f for f in _files(artifact_root) if not any(f.is_relative_to(d) for d in owned)])

    # what is retired: a run or model that carries a value, the models of such a run, the run of
    # such a model, the registered versions of either; and a model an interrupted call tagged
    retired_runs = {r for r, hits in run_hits.items() if hits}
    retired_models = {
        m for m, (_, run, tagged) in store.models.items() if model_hits[m] or tagged or run in retired_runs
    }
    retired_runs |= {run for m in retired_models if (run := store.models[m][1]) in store.runs}
    retired_versions = [(name, version, run) for name, version, run in store.versions if run in retired_runs]

    # the registry first, the files last, the logged models' deletion after them: an interrupted
    # call leaves files that carry a value, or models tagged retired, and the next one finishes
    now = datetime.now(UTC).isoformat(timespec="seconds")
    tags = {ERASURE_TAG: RETIRED, REASON_TAG: REASON, RETIRED_AT_TAG: now}
    for model_id in sorted(retired_models):
        client.set_logged_model_tags(model_id, tags)
    for name, version, _ in retired_versions:
        for alias in sorted(store.aliases.get((name, version), [])):
            client.delete_registered_model_alias(name, alias)
            out["aliases_removed"] += 1
            out["champion_retired"] += int(name == model_name and alias == CHAMPION)
        client.delete_model_version(name, version)
        out["model_versions_retired"] += 1
    for run_id in sorted(retired_runs):
        versions = ",".join(f"{name}/{version}" for name, version, run in retired_versions if run == run_id)
        for key, value in (tags | {VERSIONS_TAG: versions or "none"}).items():
            client.set_tag(run_id, key, value)
        out["runs_touched"] += 1
    removed = [f for m in sorted(retired_models) for f in _files(store.models[m][0])]  # nothing loadable remains
    removed += [f for r in sorted(retired_runs) for f in run_hits.get(r, [])] + orphan_hits
    for path in removed:
        path.unlink()
        out["artifacts_removed"] += 1
    for model_id in sorted(retired_models):
        _remove_empty_tree(store.models[model_id][0])
        client.delete_logged_model(model_id)
        out["logged_models_retired"] += 1

    if any(out[k] for k in ACTIONS):
        out["store_vacuumed"] = int(vacuum_sqlite(tracking_uri))
    out["seconds"] = round(time.perf_counter() - started, 3)
    log.info(
        "MLflow after erasure: %s; scanned %d files, %d bytes in %.1f s",
        ", ".join(f"{k} {out[k]}" for k in ACTIONS),
        out["files_scanned"],
        out["bytes_scanned"],
        out["seconds"],
    )
    return out


def _remove_empty_tree(directory: Path) -> None:
    """A retired model's emptied artifact directory, and its parent models/<model id>/ if empty."""
    if not directory.is_dir():
        return
    for sub in sorted((p for p in directory.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        sub.rmdir()  # raises if a file is left: nothing of a retired model may stay behind
    directory.rmdir()
    if not any(directory.parent.iterdir()):
        directory.parent.rmdir()


def vacuum_sqlite(tracking_uri: str) -> bool:
    """VACUUM a SQLite tracking store (the rows MLflow deleted keep their bytes in free pages
    until then); False for any other store."""
    path = sqlite_file(tracking_uri)
    if path is None or not path.exists():
        return False
    with closing(sqlite3.connect(path, timeout=60)) as con:
        con.execute("VACUUM")
    return True


def sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a sqlite:/// tracking URI; None for any other store."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///").split("?", 1)[0])
